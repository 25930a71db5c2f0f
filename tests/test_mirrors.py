"""Mirrors in resolution and hash-verified local files (with their cache).

Everything runs on ``file://`` URLs and files written here: no network.
"""

import hashlib
import os
import warnings

import pytest

from tests.support.helpers import serve_files, use_manifest
from zoo import weights as zw
from zoo.weights.readers.errors import CheckpointError

GOOD = b"keras-zoo weights " * 64
BAD = b"a different file!! " * 64


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A one-entry manifest whose file is served from tmp_path/served."""
    served = serve_files(tmp_path, {"good.bin": GOOD, "bad.bin": BAD})
    spec = {
        "file": "toy-weights.bin",
        "url": (served / "missing.bin").as_uri(),  # a dead primary
        "hash": "sha256:" + _sha(GOOD),
        "format": "pth",
        "mirrors": [],
    }
    manifest = {"vgg16": {"imagenet": {"files": {"notop": spec}}}}
    return spec, served, use_manifest(monkeypatch, tmp_path, manifest)


def _resolve():
    return zw.resolve_file("vgg16", "imagenet", "notop")


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------- mirrors


def test_dead_primary_then_bad_mirror_then_good_mirror(world):
    spec, served, cache = world
    spec["mirrors"] = [(served / "bad.bin").as_uri(), (served / "good.bin").as_uri()]
    path = _resolve()
    assert path == str(cache / "toy-weights.bin")
    assert open(path, "rb").read() == GOOD
    # No partial or rejected download left behind.
    assert [n for n in _files(cache) if not n.startswith(".keras_zoo_verified")] == ["toy-weights.bin"]


@pytest.mark.parametrize("mirror, error, named", [
    # a hash mismatch everywhere: each URL named with its failure
    ("bad.bin", CheckpointError, ["hash mismatch", "missing.bin", "bad.bin"]),
    # nothing reachable: the file, every URL, the local folder and the hash
    ("gone.bin", FileNotFoundError, ["toy-weights.bin", "missing.bin", "gone.bin", zw.ENV_DIR,
                                     "sha256:" + _sha(GOOD)]),
], ids=["bad", "dead"])
def test_failed_sources_leave_no_file_and_name_every_url(world, mirror, error, named):
    spec, served, cache = world
    spec["mirrors"] = [(served / mirror).as_uri()]
    with pytest.raises(error) as e:
        _resolve()
    msg = str(e.value)
    for part in named:
        assert part in msg, (part, msg)
    assert _files(cache) == []


def test_primary_is_tried_first(world, monkeypatch):
    spec, served, cache = world
    spec["url"] = (served / "good.bin").as_uri()
    spec["mirrors"] = [(served / "bad.bin").as_uri()]
    tried = []
    real = zw.download

    def spy(url, dest, expected, progress=True):
        tried.append(url)
        return real(url, dest, expected, progress)

    monkeypatch.setattr(zw, "download", spy)
    _resolve()
    assert tried == [spec["url"]]


# ---------------------------------------------------------- local verification


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = zw.file_digest

    def digest(path, algo):
        calls.append(path)
        return real(path, algo)

    monkeypatch.setattr(zw, "file_digest", digest)
    return calls


def test_local_file_is_hashed_once_then_cached(world, tmp_path, monkeypatch, counted):
    env = tmp_path / "env"
    env.mkdir()
    local = env / "toy-weights.bin"
    local.write_bytes(GOOD)
    monkeypatch.setenv(zw.ENV_DIR, str(env))
    assert _resolve() == str(local)
    assert counted == [str(local)]
    assert _resolve() == str(local)
    assert counted == [str(local)]  # the cache answered
    # Touching the file (same bytes, new mtime) hashes it again.
    st = os.stat(local)
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _resolve()
    assert len(counted) == 2
    _resolve()
    assert len(counted) == 2


def test_rewritten_local_file_is_rechecked_and_refused(world, tmp_path, monkeypatch, counted):
    env = tmp_path / "env"
    env.mkdir()
    local = env / "toy-weights.bin"
    local.write_bytes(GOOD)
    monkeypatch.setenv(zw.ENV_DIR, str(env))
    _resolve()
    # Same size, other bytes (a different file under the published name).
    local.write_bytes(BAD[: len(GOOD)])
    st = os.stat(local)
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(CheckpointError) as e:
        _resolve()
    msg = str(e.value)
    assert str(local) in msg
    assert "sha256:" + _sha(GOOD) in msg and "sha256:" + _sha(BAD[: len(GOOD)]) in msg
    assert "zoo weights fetch vgg16 imagenet" in msg and "delete it" in msg
    assert len(counted) == 2


def test_truncated_local_file_is_refused(world, tmp_path, monkeypatch):
    env = tmp_path / "env"
    env.mkdir()
    (env / "toy-weights.bin").write_bytes(GOOD[:100])
    monkeypatch.setenv(zw.ENV_DIR, str(env))
    with pytest.raises(CheckpointError, match="toy-weights.bin: hash mismatch"):
        _resolve()


def test_download_is_recorded_as_verified(world, counted):
    spec, served, cache = world
    spec["url"] = (served / "good.bin").as_uri()
    path = _resolve()
    assert len(counted) == 1  # the download's own check
    assert _resolve() == path
    assert len(counted) == 1


def test_unverified_entries_are_used_with_a_warning(world, tmp_path, monkeypatch, counted):
    spec, served, cache = world
    spec["hash"] = None
    env = tmp_path / "env"
    env.mkdir()
    (env / "toy-weights.bin").write_bytes(BAD)
    monkeypatch.setenv(zw.ENV_DIR, str(env))
    with pytest.warns(UserWarning, match="not verified"):
        assert _resolve() == str(env / "toy-weights.bin")
    assert counted == []


def test_unwritable_cache_only_costs_a_rehash(world, tmp_path, monkeypatch, counted):
    env = tmp_path / "env"
    env.mkdir()
    (env / "toy-weights.bin").write_bytes(GOOD)
    monkeypatch.setenv(zw.ENV_DIR, str(env))
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")  # the cache's folder cannot be created under a file
    monkeypatch.setattr(zw, "verify_cache_path", lambda: str(blocker / "verified.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _resolve()
        _resolve()
    assert len(counted) == 2
