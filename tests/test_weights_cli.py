"""``zoo weights list|fetch|verify`` on a temporary manifest with file:// URLs."""

import hashlib

import pytest

from tests.support.helpers import serve_files, use_manifest
from zoo import cli
from zoo import weights as zw

A = b"first weights file " * 50
B = b"second weights file " * 50


@pytest.fixture
def world(tmp_path, monkeypatch):
    served = serve_files(tmp_path, {"a.pth": A, "b.h5": B})
    manifest = {
        "resnet50": {
            "imagenet": {
                "files": {
                    "torch": {"file": "a.pth", "url": (served / "a.pth").as_uri(),
                              "hash": "sha256:" + hashlib.sha256(A).hexdigest()[:8], "format": "pth"},
                    "keras_top": {"file": "b.h5", "url": (served / "dead.h5").as_uri(),
                                  "mirrors": [(served / "b.h5").as_uri()],
                                  "hash": "md5:" + hashlib.md5(B).hexdigest(), "format": "keras_legacy_h5"},
                },
            },
        },
        "drn_d_22": {
            "cityscapes": {"file": "c.pth", "url": (served / "c.pth").as_uri(), "hash": None, "format": "pth"},
        },
    }
    return manifest, served, use_manifest(monkeypatch, tmp_path, manifest)


def _run(capsys, *argv):
    rc = cli.main(["weights", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_shows_every_tag_file_and_missing(world, capsys):
    rc, out, _ = _run(capsys, "list")
    assert rc == 0
    header, *lines = out.strip().splitlines()
    assert header.split() == ["MODEL", "TAG", "KEY", "FILE", "LOCAL"]
    assert len(lines) == 3
    assert any(l.split()[:4] == ["resnet50", "imagenet", "torch", "a.pth"] and l.endswith("missing") for l in lines)
    assert any(l.split()[:4] == ["drn_d_22", "cityscapes", "-", "c.pth"] for l in lines)


def test_fetch_downloads_with_progress_then_list_finds_it(world, capsys):
    manifest, served, cache = world
    rc, out, _ = _run(capsys, "fetch", "resnet50", "imagenet")
    assert rc == 0
    assert (cache / "a.pth").read_bytes() == A
    assert (cache / "b.h5").read_bytes() == B  # from the mirror: the primary is dead
    assert str(cache / "a.pth") in out and str(cache / "b.h5") in out
    assert f"{len(A)}/{len(A)}" in out and f"{len(B)}/{len(B)}" in out  # Keras's progress bar
    rc, out, _ = _run(capsys, "list", "resnet50")
    assert rc == 0 and "missing" not in out
    assert f"{cache / 'a.pth'} (verified)" in out


def test_fetch_one_file_of_a_tag(world, capsys):
    manifest, served, cache = world
    rc, out, _ = _run(capsys, "fetch", "resnet50", "imagenet", "--file", "torch")
    assert rc == 0 and (cache / "a.pth").is_file() and not (cache / "b.h5").exists()
    rc, _, err = _run(capsys, "fetch", "resnet50", "imagenet", "--file", "nope")
    assert rc == 2 and "keras_top" in err and "Traceback" not in err


def test_fetch_bad_hash_is_one_line_exit_2_and_leaves_nothing(world, capsys):
    manifest, served, cache = world
    manifest["resnet50"]["imagenet"]["files"]["torch"]["hash"] = "sha256:00000000"
    rc, out, err = _run(capsys, "fetch", "resnet50", "imagenet", "--file", "torch")
    assert rc == 2 and err.startswith("error:") and "hash mismatch" in err and "Traceback" not in err
    assert not (cache / "a.pth").exists()


def test_fetch_unknown_tag_exit_2(world, capsys):
    rc, _, err = _run(capsys, "fetch", "resnet50", "nope")
    assert rc == 2 and "imagenet" in err


def test_verify_summarises_and_fails_on_a_bad_file(world, capsys):
    manifest, served, cache = world
    cache.mkdir(parents=True)
    (cache / "a.pth").write_bytes(A)
    (cache / "c.pth").write_bytes(b"whatever")
    rc, out, _ = _run(capsys, "verify")
    assert rc == 0
    assert "1 ok, 0 mismatched, 1 unverified (no hash), 1 not local" in out
    (cache / "b.h5").write_bytes(B[:-1])
    rc, out, err = _run(capsys, "verify")
    assert rc == 2
    assert "1 ok, 1 mismatched" in out and "MISMATCH" in out and "md5:" + hashlib.md5(B).hexdigest() in out
    assert str(cache / "b.h5") in err and "zoo weights fetch" in err


def test_verify_rehashes_even_cached_files(world, capsys, monkeypatch):
    manifest, served, cache = world
    _run(capsys, "fetch", "resnet50", "imagenet", "--file", "torch")
    calls = []
    real = zw.file_digest
    monkeypatch.setattr(zw, "file_digest", lambda p, a: calls.append(p) or real(p, a))
    rc, out, _ = _run(capsys, "verify", "resnet50")
    assert rc == 0 and calls == [str(cache / "a.pth")]


def test_list_on_the_real_manifest_finds_a_local_timm_file(tmp_path, monkeypatch, capsys):
    spec = zw.file_spec("resnet50", "a1_in1k", "torch")
    (tmp_path / spec["file"]).write_bytes(b"not checked by list")
    monkeypatch.setenv(zw.ENV_DIR, str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    rc, out, _ = _run(capsys, "list", "resnet50")
    assert rc == 0
    rows = {tuple(l.split()[:3]): l for l in out.splitlines()[1:]}
    assert rows[("resnet50", "a1_in1k", "torch")].endswith(str(tmp_path / spec["file"]))
    assert rows[("resnet50", "imagenet", "keras_top")].endswith("missing")
    assert all(r[0] == "resnet50" for r in rows)
