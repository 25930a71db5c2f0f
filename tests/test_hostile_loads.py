"""Hostile and careless weight loads (issue 19, items 1-3, 6, 7, 14, 16, 17).

Each test fails on the code before the fix: a load is all or nothing and
never guesses, downloads are bounded and own their temporary files.
Files are written in the upstream formats (Keras ``.weights.h5``, legacy
``.h5``, ``torch.save``, the safetensors package); downloads run against a
local ``http.server`` thread.
"""

import hashlib
import http.server
import json
import logging
import os
import struct
import threading
import time

import numpy as np
import pytest

import zoo
from tests.support.helpers import assert_untouched, save_legacy_h5, snapshot
from zoo import weights as zw
from zoo.weights.readers.errors import CheckpointError

SIZE = (64, 64, 3)


def _build(name="test_resnet", **kw):
    kw.setdefault("input_shape", SIZE)
    return zoo.create_model(name, **kw)


def _save(model, path):
    model.save_weights(str(path))
    return str(path)


# ---------------------------------------------------------------- item 1


def test_other_dense_head_is_refused_naming_both(tmp_path):
    bilinear = _build(mode="dense", head="bilinear", classes=3)
    f = _save(bilinear, tmp_path / "bilinear.weights.h5")
    with pytest.raises(CheckpointError, match=r"bilinear.*head='fcn'"):
        _build(mode="dense", classes=3, weights=f)
    fcn = _build(mode="dense", classes=3)
    before = snapshot(fcn)
    with pytest.raises(CheckpointError, match=r"fcn.*head='bilinear'|deeplabv3 or fcn.*bilinear"):
        zoo.load_weights(bilinear, _save(fcn, tmp_path / "fcn.weights.h5"), "test_resnet",
                         weight_map=zoo.assembler.derive_weight_map(
                             zoo.assembler.backbone_spec("test_resnet"), "dense", ["score"]))
    assert_untouched(fcn, before)


def test_drnseg_file_into_bilinear_is_refused(tmp_path):
    seg = _build("test_drn_d", mode="dense", classes=3)
    assert seg.zoo["head"] == "drnseg"
    f = _save(seg, tmp_path / "seg.weights.h5")
    with pytest.raises(CheckpointError, match=r"drnseg.*head='bilinear'"):
        _build("test_drn_d", mode="dense", head="bilinear", classes=3, weights=f)


@pytest.mark.parametrize("saved, built, os_", [("deeplabv3", "fcn32s", 32), ("deeplabv3", "fcn", 8),
                                                ("fcn", "deeplabv3", 8)])
def test_head_pairs_are_refused_and_nothing_written(tmp_path, saved, built, os_):
    f = _save(_build(mode="dense", head=saved, classes=3, output_stride=os_),
              tmp_path / f"{saved}.weights.h5")
    with pytest.raises(CheckpointError, match=rf"holds an? (\w+ or )?{saved}( or \w+)? head.*head='{built}'"):
        _build(mode="dense", head=built, classes=3, weights=f, output_stride=os_)


def test_same_head_reloads_and_classifier_file_starts_head_fresh(tmp_path, caplog):
    m = _build(mode="dense", head="bilinear", classes=3)
    f = _save(m, tmp_path / "same.weights.h5")
    again = _build(mode="dense", head="bilinear", classes=3, weights=f)
    np.testing.assert_array_equal(again.get_layer("score").get_weights()[0],
                                  m.get_layer("score").get_weights()[0])
    clf = _save(_build(), tmp_path / "clf.weights.h5")
    with caplog.at_level(logging.WARNING, logger="zoo.weights"):
        _build(mode="dense", classes=3, weights=clf)
    fresh = [r for r in caplog.records if "starts from its initial values" in r.getMessage()]
    assert len(fresh) == 1 and "fcn" in fresh[0].getMessage()


# ---------------------------------------------------------------- item 2


def test_class_count_mismatch_is_refused_unless_asked(tmp_path):
    f = _save(_build(classes=10), tmp_path / "ten.weights.h5")
    m = _build()
    before = snapshot(m)
    with pytest.raises(CheckpointError, match=r"10 outputs.*1000.*skip_mismatch=True"):
        zoo.load_weights(m, f)
    assert_untouched(m, before)
    with pytest.warns(UserWarning, match="class count differs"):
        zoo.load_weights(m, f, skip_mismatch=True)
    assert m.get_layer("fc").get_weights()[0].shape[-1] == 1000


# ---------------------------------------------------------------- item 6


def _tiny():
    from tests.support.helpers import tiny_model

    return tiny_model()


@pytest.mark.parametrize("bad", ["int", "bool", "overflow"])
def test_integer_bool_and_overflowing_tensors_are_refused(tmp_path, bad):
    m = _tiny()
    before = snapshot(m)
    keras_h5 = tmp_path / "t.weights.h5"
    m.save_weights(str(keras_h5))
    import h5py

    with h5py.File(keras_h5, "r+") as f:
        found = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
        name = [n for n in found if "conv" in n][0]
        data = f[name][()]
        del f[name]
        if bad == "int":
            f[name] = data.astype("int64")
        elif bad == "bool":
            f[name] = data > 0
        else:
            big = data.astype("float64")
            big.flat[0] = 1e300
            f[name] = big
    with pytest.raises(CheckpointError, match=r"conv.*(int64|bool|overflow)"):
        zoo.load_weights(m, str(keras_h5))
    assert_untouched(m, before)


def test_integer_torch_tensor_is_refused_naming_it(tmp_path):
    import torch

    m = _tiny()
    state = _tiny_torch_state()
    state["conv.weight"] = torch.ones(4, 3, 3, 3, dtype=torch.int32)
    path = str(tmp_path / "int.pth")
    torch.save(state, path)
    before = snapshot(m)
    with pytest.raises(CheckpointError, match=r"'conv \(into conv/kernel\)' is int32"):
        zoo.load_weights(m, path)
    assert_untouched(m, before)


# --------------------------------------------------------------- item 16


def _tiny_torch_state():
    import torch

    g = torch.Generator().manual_seed(0)
    shapes = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "bn.weight": (4,), "bn.bias": (4,),
              "bn.running_mean": (4,), "bn.running_var": (4,), "fc.weight": (2, 4), "fc.bias": (2,)}
    return {k: torch.rand(v, generator=g) + 0.5 for k, v in shapes.items()}


def test_safetensors_reads_only_tensors_the_model_uses(tmp_path, monkeypatch):
    import safetensors
    import torch
    from safetensors.torch import save_file

    state = _tiny_torch_state()
    state["unused.weight"] = torch.zeros(256, 256)
    path = str(tmp_path / "extra.safetensors")
    save_file(state, path)
    read = []
    real = safetensors.safe_open

    class Spy:
        def __init__(self, *a, **k):
            self.inner = real(*a, **k)

        def __enter__(self):
            self.f = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def get_tensor(self, name):
            read.append(name)
            return self.f.get_tensor(name)

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    m = _tiny()
    with pytest.raises(CheckpointError, match="unused"):
        zoo.load_weights(m, path)
    assert "unused.weight" not in read and "conv.weight" in read
    del state["unused.weight"]
    save_file(state, path)
    zoo.load_weights(m, path)
    np.testing.assert_allclose(m.get_layer("fc").get_weights()[1], state["fc.bias"].numpy())


def test_safetensors_dotless_key_is_named(tmp_path):
    from safetensors.torch import save_file

    state = _tiny_torch_state()
    state["weight"] = state.pop("fc.weight")
    path = str(tmp_path / "flat.safetensors")
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"tensor 'weight' has no module path") as err:
        zoo.load_weights(_tiny(), path)
    assert "''" not in str(err.value)


def test_safetensors_header_of_many_empty_tensors_is_bounded(tmp_path):
    from zoo.weights.readers import safetensors as st_io

    n = st_io.MAX_TENSORS + 1
    header = json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                         for i in range(n)}).encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match=rf"declares {n} tensors"):
        zoo.load_weights(_tiny(), str(path))


# ---------------------------------------------------------------- item 7


@pytest.mark.parametrize("record, field", [
    ({"type": "torch", "mean": [float("nan"), 0.4, 0.4], "std": [0.2, 0.2, 0.2]}, r"mean\[0\].*finite"),
    ({"type": "torch", "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.0, 0.2]}, r"std\[1\] must be > 0"),
    ({"type": "torch", "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, -1.0]}, r"std\[2\] must be > 0"),
    ({"type": "caffe", "mean": [1e40, 100.0, 100.0]}, r"mean\[0\].*sane range"),
    ({"type": "torch", "mean": ["abc", 0.4, 0.4], "std": [0.2, 0.2, 0.2]}, r"mean\[0\] must be a number"),
    ({"type": "torch", "mean": "abc", "std": [0.2, 0.2, 0.2]}, r"3-value 'mean'"),
    ({"type": "torch", "mean": [True, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}, r"mean\[0\] must be a number"),
    ({"type": "torch", "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, float("inf")]}, r"std\[2\].*finite"),
    ({"type": "sepia"}, r"unknown preprocessing type 'sepia'"),
])
def test_bad_preprocessing_records_are_refused_naming_the_field(record, field):
    with pytest.raises(ValueError, match=field):
        _build(include_preprocessing=True, preprocessing=record)


# ------------------------------------------------------------ items 14, 17


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        try:
            if name == "stall":
                time.sleep(3)
            if name == "endless":
                self.send_response(200)
                self.end_headers()
                chunk = b"\0" * 65536
                for _ in range(2000):  # 128 MiB at most, never all read
                    self.wfile.write(chunk)
                return
            data = self.files.get(name)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.files
    httpd.shutdown()
    httpd.server_close()


def _world(monkeypatch, tmp_path, url, hash_, **extra):
    from tests.support.helpers import use_manifest

    spec = {"file": "w.bin", "url": url, "hash": hash_, **extra}
    cache = use_manifest(monkeypatch, tmp_path, {"m": {"t": spec}})
    return spec, cache


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_stalled_mirror_times_out_and_the_next_one_is_used(server, monkeypatch, tmp_path):
    base, files = server
    files["good"] = b"payload"
    monkeypatch.setenv(zw.ENV_TIMEOUT, "0.5")
    spec, cache = _world(monkeypatch, tmp_path, f"{base}/stall", "sha256:" + _sha(b"payload"),
                         mirrors=[f"{base}/good"])
    start = time.monotonic()
    path = zw.resolve_file("m", "t")
    assert open(path, "rb").read() == b"payload"
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("capped_by", ["size_bytes", "env"])
def test_endless_download_is_capped_and_leaves_no_part(server, monkeypatch, tmp_path, capped_by):
    base, _ = server
    extra = {"size_bytes": 100_000} if capped_by == "size_bytes" else {}
    if capped_by == "env":
        monkeypatch.setenv(zw.ENV_MAX_BYTES, "200000")
    spec, cache = _world(monkeypatch, tmp_path, f"{base}/endless", "sha256:" + "0" * 64, **extra)
    with pytest.raises((CheckpointError, FileNotFoundError), match=r"more than the (100000|200000) bytes"):
        zw.resolve_file("m", "t")
    assert [p.name for p in cache.iterdir() if p.name.startswith(".part")] == []


def test_downloaded_file_is_readable_by_others(server, monkeypatch, tmp_path):
    base, files = server
    files["w.bin"] = b"shared"
    spec, cache = _world(monkeypatch, tmp_path, f"{base}/w.bin", "sha256:" + _sha(b"shared"))
    old = os.umask(0o022)
    try:
        path = zw.resolve_file("m", "t")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_only_our_own_dead_parts_are_cleaned(server, monkeypatch, tmp_path):
    import subprocess
    import sys

    base, files = server
    files["w.bin"] = b"data"
    spec, cache = _world(monkeypatch, tmp_path, f"{base}/w.bin", "sha256:" + _sha(b"data"))
    cache.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    prefix = zw._part_prefix().rsplit("-", 2)[0]
    stale = cache / f"{prefix}-{dead.pid}-{'a' * 16}-w.bin"
    live = cache / f"{prefix}-{os.getppid()}-{'b' * 16}-w.bin"
    other_host = cache / f".part-otherhost-{dead.pid}-{'c' * 16}-w.bin"
    mkstemp_style = cache / ".part-abc123"
    for p in (stale, live, other_host, mkstemp_style):
        p.write_bytes(b"x")
    zw.resolve_file("m", "t")
    assert not stale.exists()
    assert live.exists() and other_host.exists() and mkstemp_style.exists()


def _forge(prefix_hex, avoid):
    i = 0
    while True:
        data = b"forged-%d" % i
        if _sha(data).startswith(prefix_hex) and data != avoid:
            return data
        i += 1


def test_short_prefix_over_http_warns_and_pins_the_full_hash(server, monkeypatch, tmp_path):
    base, files = server
    good = b"the real weights"
    short = "sha256:" + _sha(good)[:2]
    files["w.bin"] = good
    spec, cache = _world(monkeypatch, tmp_path, f"{base}/w.bin", short)
    with pytest.warns(UserWarning, match=r"plain http.*8-bit SHA-256 prefix"):
        path = zw.resolve_file("m", "t")
    assert zw.pinned_sha256(short) == _sha(good)
    # A forgery of the short prefix is refused, downloaded or found locally.
    os.remove(path)
    files["w.bin"] = _forge(_sha(good)[:2], good)
    with pytest.warns(UserWarning, match="plain http"):
        with pytest.raises((CheckpointError, FileNotFoundError), match="recorded when this file was first"):
            zw.resolve_file("m", "t")
    assert not os.path.exists(path)
    with open(path, "wb") as f:
        f.write(files["w.bin"])
    with pytest.raises(CheckpointError, match="recorded when this file was first"):
        zw.resolve_file("m", "t")


# ---------------------------------------------------------------- item 3


def _some_pth(path):
    import torch

    torch.save(_tiny_torch_state(), str(path))
    return str(path)


def test_path_gets_the_preprocessing_of_the_published_file_it_is(tmp_path):
    from zoo.preprocessing import preprocessing_for

    imagenet = zw.manifest_entry("drn_d_22", "imagenet")["preprocessing"]
    path = _some_pth(tmp_path / "drn_d_22-4bd2f8ea.pth")
    assert preprocessing_for("drn_d_22", path) == imagenet
    assert preprocessing_for("drn_d_22", path)["mean"] != \
        zw.manifest_entry("drn_d_22", "cityscapes")["preprocessing"]["mean"]


def test_path_matched_by_its_verified_hash(tmp_path, monkeypatch):
    from zoo.preprocessing import preprocessing_for

    want = zw.file_spec("drn_d_22", "imagenet")["hash"]
    path = _some_pth(tmp_path / "renamed.pth")
    monkeypatch.setattr(zw, "is_verified", lambda p, h: p == path and h == want)
    assert preprocessing_for("drn_d_22", path) == \
        zw.manifest_entry("drn_d_22", "imagenet")["preprocessing"]


def test_unknown_files_take_their_layouts_preprocessing_and_say_so(tmp_path):
    from zoo.preprocessing import DEFAULT_PREPROCESSING, preprocessing_for

    legacy = save_legacy_h5(_tiny(), str(tmp_path / "my_resnet50.h5"))
    with pytest.warns(UserWarning, match="keras.applications legacy .h5: caffe"):
        pre = preprocessing_for("resnet50", legacy)
    assert pre["type"] == "caffe" and pre.get("channels", "BGR") == "BGR"
    with pytest.warns(UserWarning, match="PyTorch file"):
        assert preprocessing_for("drn_d_22", _some_pth(tmp_path / "fine.pth")) == DEFAULT_PREPROCESSING
    with pytest.raises(ValueError, match="preprocessing="):
        preprocessing_for("drn_d_22", legacy)


def test_googlenet_by_path_keeps_transform_input_of_the_published_file(tmp_path):
    pytest.importorskip("torch")
    from tests.support import googlenet_torch_ref as ref
    from tests.support.helpers import save_torch

    net = ref.randomize(ref.GoogLeNet(classes=1000, aux_logits=False, transform_input=True)).eval()
    published = save_torch(net.state_dict(), tmp_path / "googlenet-1378be20.pth")
    model = zoo.GoogLeNet(weights=published, input_shape=(99, 131, 3))
    assert "transform_input" in [l.name for l in model.layers]
    renamed = save_torch(net.state_dict(), tmp_path / "mine.pth")
    assert "transform_input" not in [l.name for l in
                                     zoo.GoogLeNet(weights=renamed, input_shape=(99, 131, 3)).layers]
