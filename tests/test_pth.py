"""Tests for zoo.weights.readers.pth, the torch-free PyTorch checkpoint reader.

torch is only used here, to write reference checkpoints.
"""

import collections
import copyreg
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import numpy as np
import pytest

from tests.support.helpers import save_torch
from zoo.weights.readers.errors import CheckpointError
from zoo.weights.readers.pth import is_pth, read_pth

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state_dict(torch):
    """A small state_dict covering every layout the reader must honour."""
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(20, generator=g)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(8, 3, 3, 3, generator=g)  # OIHW
    sd["conv.bias"] = torch.randn(8, generator=g)
    sd["bn.running_mean"] = torch.randn(8, generator=g)
    sd["bn.running_var"] = torch.rand(8, generator=g) + 0.5
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["half"] = torch.randn(3, 4, generator=g).half()
    sd["bf16"] = torch.randn(5, generator=g).bfloat16()
    sd["fc.weight.T"] = torch.randn(4, 6, generator=g).t()  # non-contiguous
    sd["shared.a"] = shared[2:8]
    sd["shared.b"] = shared[10:16].view(2, 3)
    sd["mask"] = torch.tensor([True, False, True])
    sd["int8"] = torch.tensor([-3, 0, 127], dtype=torch.int8)
    sd["uint16"] = torch.tensor([0, 1, 65535]).to(torch.uint16)  # _rebuild_tensor_v3
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))  # _rebuild_parameter
    return sd


def _expected(tensor):
    tensor = tensor.detach()
    if str(tensor.dtype) == "torch.bfloat16":
        return tensor.float().numpy()  # bfloat16 widens exactly to float32
    return tensor.numpy()


def _assert_same(result, sd):
    assert isinstance(result, collections.OrderedDict)
    assert list(result) == list(sd)
    for key, tensor in sd.items():
        want = _expected(tensor)
        got = result[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        assert got.flags["C_CONTIGUOUS"], key
        np.testing.assert_array_equal(got, want, err_msg=key)


def _save(torch, obj, path, fmt):
    save_torch(obj, path, legacy=fmt != "zip")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_round_trip(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    sd = _state_dict(torch)
    path = tmp_path / f"model_{fmt}.pth"
    _save(torch, sd, path, fmt)
    result = read_pth(path)
    _assert_same(result, sd)
    assert result["bn.num_batches_tracked"].shape == ()
    assert result["bf16"].dtype == np.float32
    # Shared storage must not leak between the returned arrays.
    result["shared.a"][0] += 1
    np.testing.assert_array_equal(result["shared.b"], sd["shared.b"].numpy())


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_real_module_state_dict_and_wrappers(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sd = net.state_dict()  # an OrderedDict carrying a _metadata attribute
    for wrapper in ("state_dict", "model"):
        path = tmp_path / f"ckpt_{wrapper}.pth"
        _save(torch, {"epoch": 3, wrapper: sd, "optimizer": {"lr": 0.1}}, path, fmt)
        _assert_same(read_pth(path), sd)


def test_bare_dict_from_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"b": torch.ones(2), "a": torch.zeros(1)}  # plain dict, not OrderedDict
    path = tmp_path / "plain.pt"
    torch.save(sd, path)
    _assert_same(read_pth(path), sd)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_lazy_neg_and_conj_views(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    # torch stores these as the un-negated/un-conjugated data plus a metadata flag.
    sd = {"neg": torch._neg_view(torch.tensor([1.0, -2.0])),
          "conj": torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64).conj()}
    path = tmp_path / "views.pth"
    _save(torch, sd, path, fmt)
    _assert_same(read_pth(path), {k: v.resolve_neg().resolve_conj() for k, v in sd.items()})


def test_big_endian_zip(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"w": torch.arange(6, dtype=torch.float32).view(2, 3) / 7}
    little = tmp_path / "little.pth"
    torch.save(sd, little)
    big = tmp_path / "big.pth"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif name.endswith("/data/0"):
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(name, data)
    _assert_same(read_pth(big), sd)


# --------------------------------------------------------------------------
# torch 0.2/0.3 style legacy files.
# --------------------------------------------------------------------------


class _Storage03:
    def __init__(self, key, tensor, view=None):
        self.key, self.tensor, self.view = key, tensor, view


def _write_torch03(torch, obj, path, views=()):
    """Writes `obj` the way torch 0.3 did: _rebuild_tensor v1 over FloatStorage.

    Args:
        views: names of tensors in `obj` to serialize through a storage view
            (view_metadata) starting one element into their storage.
    """
    storages = {}  # key -> flat float tensor of the whole storage
    tensor_names = {}

    def storage_of(t):
        key = str(t.untyped_storage().data_ptr())
        storages[key] = torch.empty(0).set_(t.untyped_storage())
        return key

    def reduce_tensor(t):
        key = storage_of(t)
        offset = t.storage_offset()
        view = None
        if tensor_names.get(id(t)) in views:
            # The view starts 1 element in, so the tensor's offset shrinks by 1.
            view = (key + "_view", 1, storages[key].numel() - 1)
            offset -= 1
        return (torch._utils._rebuild_tensor,
                (_Storage03(key, t, view), offset, tuple(t.size()), t.stride()))

    class Pickler03(pickle.Pickler):
        dispatch_table = copyreg.dispatch_table.copy()
        dispatch_table[torch.Tensor] = reduce_tensor

        def persistent_id(self, o):
            if isinstance(o, _Storage03):
                numel = storages[o.key].numel()
                return ("storage", torch.FloatStorage, o.key, "cpu", numel, o.view)
            return None

    def walk(o):
        for k, v in o.items():
            if isinstance(v, dict):
                walk(v)
            else:
                tensor_names[id(v)] = k

    walk(obj)
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        Pickler03(f, protocol=2).dump(obj)
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            flat = storages[key]
            f.write(struct.pack("<q", flat.numel()))
            f.write(flat.numpy().tobytes())


def _state_dict_03(torch):
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(12, generator=g)
    sd = collections.OrderedDict()
    sd["features.0.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["features.0.bias"] = torch.randn(4, generator=g)
    sd["features.1.running_var"] = torch.rand(4, generator=g)
    sd["classifier.weight"] = torch.randn(5, 4, generator=g).t()
    sd["tied.a"] = shared[1:5]
    sd["tied.b"] = shared[6:12].view(3, 2)
    return sd


def test_torch03_legacy_file(tmp_path):
    torch = pytest.importorskip("torch")
    sd = _state_dict_03(torch)
    path = tmp_path / "vgg_2017.pth"
    _write_torch03(torch, sd, path, views=("tied.b",))
    assert is_pth(path)
    _assert_same(read_pth(path), sd)


def test_torch03_wrapped_with_module_prefix(tmp_path):
    torch = pytest.importorskip("torch")
    sd = collections.OrderedDict(("module." + k, v) for k, v in _state_dict_03(torch).items())
    path = tmp_path / "checkpoint.pth.tar"
    _write_torch03(torch, {"epoch": 90, "arch": "vgg16", "best_prec1": 71.5, "state_dict": sd}, path)
    result = read_pth(path)
    assert all(k.startswith("module.") for k in result)
    _assert_same(result, sd)


# --------------------------------------------------------------------------
# Security.
# --------------------------------------------------------------------------


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused(tmp_path, fmt, attack):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    if attack == "os.system":
        payload, refused = _Evil(os.system, f"touch {marker}"), ("os.system", "posix.system")
    else:
        payload, refused = _Evil(eval, f"open({str(marker)!r}, 'w')"), ("builtins.eval", "__builtin__.eval")
    path = tmp_path / "evil.pth"
    _save(torch, {"w": torch.ones(2), "x": payload}, path, fmt)
    assert is_pth(path)  # it looks like a checkpoint; reading must still be safe
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    message = str(err.value)
    assert any(f"'{name}'" in message for name in refused), message
    assert str(path) in message
    assert not marker.exists()


def test_whole_module_pickle_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match=r"refusing to unpickle global 'torch\.nn"):
        read_pth(path)


def _write_zip_pickle(path, obj, persistent_id):
    class P(pickle.Pickler):
        pass

    P.persistent_id = lambda self, o: persistent_id(o)
    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())


def test_unknown_persistent_id_kind_is_refused(tmp_path):
    path = tmp_path / "module_pid.pth"
    marker = object()
    _write_zip_pickle(path, {"w": marker}, lambda o: ("module", "x", None, None) if o is marker else None)
    with pytest.raises(CheckpointError, match="persistent id of kind 'module'") as err:
        read_pth(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------
# Corrupt and unsupported files.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["last_bytes", "half", "tenth"])
def test_truncated_legacy_file(tmp_path, cut):
    torch = pytest.importorskip("torch")
    full = tmp_path / "full.pth"
    _save(torch, _state_dict(torch), full, "legacy")
    data = full.read_bytes()
    keep = {"last_bytes": len(data) - 2, "half": len(data) // 2, "tenth": len(data) // 10}[cut]
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    assert str(path) in str(err.value)
    if cut == "last_bytes":
        # Strip the path first: pytest's tmp dir name contains "truncated" too.
        assert "truncated" in str(err.value).replace(str(path), "")


def _rewrite_zip(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def test_corrupt_zip(tmp_path):
    torch = pytest.importorskip("torch")
    good = tmp_path / "good.pth"
    torch.save(_state_dict(torch), good)

    missing = tmp_path / "missing_member.pth"
    _rewrite_zip(good, missing, lambda n, d: None if n.endswith("/data/1") else d)
    short = tmp_path / "short_member.pth"
    _rewrite_zip(good, short, lambda n, d: d[:-4] if n.endswith("/data/0") else d)
    flipped = tmp_path / "bad_crc.pth"
    raw = bytearray(good.read_bytes())
    offset = raw.index(b"little") + 200  # inside the first storage record
    raw[offset] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    halved = tmp_path / "halved.pth"
    halved.write_bytes(good.read_bytes()[: len(raw) // 2])

    for path, what in [(missing, "missing zip member data/1"), (short, "data/0 declares"),
                       (flipped, "cannot read"), (halved, "not a PyTorch checkpoint")]:
        with pytest.raises(CheckpointError) as err:
            read_pth(path)
        assert str(path) in str(err.value)
        assert what in str(err.value)


def test_tar_format_is_rejected(tmp_path):
    path = tmp_path / "ancient.pth"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("pickle")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x80\x02N."))
    assert not is_pth(path)
    with pytest.raises(CheckpointError, match="tar-format") as err:
        read_pth(path)
    assert str(path) in str(err.value)


def test_non_state_dict_object_is_rejected(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "list.pth"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_pth(path)
    nested = tmp_path / "nested.pth"
    torch.save({"encoder": {"w": torch.ones(1)}}, nested)
    with pytest.raises(CheckpointError, match="'encoder'"):
        read_pth(nested)


# --------------------------------------------------------------------------
# Sniffing and independence from torch.
# --------------------------------------------------------------------------


def test_is_pth(tmp_path):
    torch = pytest.importorskip("torch")
    h5py = pytest.importorskip("h5py")
    zip_pth, legacy_pth = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"w": torch.ones(2)}, zip_pth)
    _save(torch, {"w": torch.ones(2)}, legacy_pth, "legacy")
    random_bin = tmp_path / "random.pth"
    random_bin.write_bytes(np.random.default_rng(0).bytes(4096))
    h5 = tmp_path / "weights.h5"
    with h5py.File(h5, "w") as f:
        f["w"] = np.ones(2)
    plain_pickle = tmp_path / "int.pkl"
    plain_pickle.write_bytes(pickle.dumps(12345, protocol=2))  # 0x80 but not the magic
    plain_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("archive/readme.txt", "hi")

    assert is_pth(zip_pth) and is_pth(str(legacy_pth))
    for path in (random_bin, h5, plain_pickle, plain_zip, tmp_path / "absent.pth", tmp_path):
        assert not is_pth(path), path


def test_reader_never_imports_torch(tmp_path):
    torch = pytest.importorskip("torch")
    paths = []
    for fmt in ("zip", "legacy"):
        path = tmp_path / f"{fmt}.pth"
        _save(torch, {"w": torch.arange(4.0), "n": torch.tensor(2)}, path, fmt)
        paths.append(str(path))
    # Load zoo.weights.readers.pth from its file with bare parent packages, so the check
    # covers the reader alone and does not pay for zoo/__init__'s imports.
    code = textwrap.dedent(f"""
        import importlib.util, sys, types
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        for name in ("zoo", "zoo.weights.readers"):
            pkg = types.ModuleType(name)
            pkg.__path__ = [{REPO_ROOT!r} + "/" + name.replace(".", "/")]
            sys.modules[name] = pkg
        for name in ("zoo.weights.readers.errors", "zoo.weights.readers.pth"):
            spec = importlib.util.spec_from_file_location(
                name, {REPO_ROOT!r} + "/" + name.replace(".", "/") + ".py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        for path in {paths!r}:
            sd = sys.modules["zoo.weights.readers.pth"].read_pth(path)
            print(sorted(sd), sd["w"].tolist(), int(sd["n"]))
        assert sys.modules["torch"] is None
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['n', 'w'] [0.0, 1.0, 2.0, 3.0] 2"] * 2
