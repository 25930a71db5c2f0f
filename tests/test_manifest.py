"""zoo/weights/manifest.json: well-formed, and its facts agree with the builders."""

import os
import re

import pytest

import zoo
from tests.cases import light_or_slow
from zoo.analysis.info import count_parameters
from zoo.registry import get_entry
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
            if "hf" in spec:
                # Hub files share one name (model.safetensors): the local name is per model.
                owner, repo, hub_file = spec["hf"][len("hf://"):].split("/", 2)
                assert spec["url"] == f"https://huggingface.co/{owner}/{repo}/resolve/main/{hub_file}", (model, tag)
                assert spec["file"] == f"{repo}{os.path.splitext(hub_file)[1]}", (model, tag)
            elif "?" not in spec["url"]:  # not a download-service link
                assert spec["url"].rsplit("/", 1)[-1] == spec["file"], (model, tag)
            for mirror in spec.get("mirrors", []):
                # The same file under the same hash, somewhere else.
                assert re.match(r"https?://", mirror) and mirror != spec["url"], (model, tag)
                if "?" not in mirror:
                    assert mirror.rsplit("/", 1)[-1] == spec["file"], (model, tag)
            if spec["file"].endswith(".safetensors"):
                assert spec["format"] == "safetensors", (model, tag)
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
        assert "preprocessing" in entry and "classes" in entry and "classifier" not in entry


def test_a_file_name_means_one_file():
    # Local copies are found by name: two records with one name must be one file.
    seen = {}
    for model in MANIFEST:
        for tag, entry in MANIFEST[model].items():
            for spec in _files(entry):
                record = (spec["url"], spec["hash"])
                assert seen.setdefault(spec["file"], record) == record, (model, tag, spec["file"])


def test_timm_resnet_tags_are_torchvision_layout_safetensors():
    tags = [(m, t) for m in MANIFEST for t in MANIFEST[m] if t.endswith("_in1k")]
    assert ("resnet50", "a1_in1k") in tags and len(tags) >= 5
    for model, tag in tags:
        spec = MANIFEST[model][tag]["files"]["torch"]
        assert spec["layout"] == "torchvision" and spec["format"] == "safetensors"
        assert spec["hf"] == f"hf://timm/{model}.{tag}/model.safetensors"
        pre = spec["preprocessing"]
        assert pre["type"] == "torch" and pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
        assert {"crop_pct", "test_input_size", "test_crop_pct"} <= set(pre)


@pytest.mark.parametrize("name,tag", [light_or_slow(m, t, id=f"{m}-{t}") for m in sorted(MANIFEST)
                                      for t in MANIFEST[m] if "params" in MANIFEST[m][t]])
def test_recorded_parameter_counts_match_builders(name, tag):
    """One full-depth build per record (LIGHT models in the default suite,
    the rest in the slow step): model_info would also build a features model
    and count FLOPs."""
    entry = MANIFEST[name][tag]
    kwargs = dict(entry.get("builder_kwargs", {}))
    kwargs.setdefault("mode", get_entry(name).info_mode)
    assert count_parameters(zoo.create_model(name, **kwargs)) == entry["params"]
