"""weights/manifest.json: well-formed, and its facts agree with the builders."""

import re

import pytest

import zoo
from zoo.weights import load_manifest

MANIFEST = load_manifest()


def _files(entry):
    return list(entry["files"].values()) if "files" in entry else [entry]


@pytest.mark.parametrize("model", sorted(MANIFEST))
def test_entries_are_well_formed(model):
    assert model in zoo.list_models(), f"{model} is not a registered model"
    for tag, entry in MANIFEST[model].items():
        for spec in _files(entry):
            # fyu/drn serves plain http; the recorded hash guards integrity.
            assert re.match(r"https?://", spec["url"]), (model, tag)
            if "?" not in spec["url"]:  # not a download-service link
                assert spec["url"].rsplit("/", 1)[-1] == spec["file"], (model, tag)
            if spec["hash"] is None:
                # Only where upstream publishes no hash; the entry must say so.
                assert "no hash" in entry.get("note", "").lower(), (model, tag)
                continue
            algo, _, digest = spec["hash"].partition(":")
            assert algo in ("md5", "sha256", "sha384") and re.fullmatch(r"[0-9a-f]{8,96}", digest), (model, tag)
            if algo == "md5":
                assert len(digest) == 32
            elif algo == "sha384":
                # a full digest, for files whose names carry no hash (fyu/drn Cityscapes)
                assert len(digest) == 96
            else:
                # torch hub style: the file name carries the SHA-256 prefix.
                assert digest[:8] in spec["file"], (model, tag)
            assert spec["format"], (model, tag)
        assert "preprocessing" in entry and "classes" in entry and "classifier" in entry


@pytest.mark.parametrize(
    "model,tag",
    [(m, t) for m in sorted(MANIFEST) for t in MANIFEST[m] if "params" in MANIFEST[m][t]],
)
def test_recorded_parameter_counts_match_builders(model, tag):
    entry = MANIFEST[model][tag]
    kwargs = dict(entry.get("builder_kwargs", {}))
    info = zoo.model_info(model, **kwargs)
    assert info["params"] == entry["params"]
