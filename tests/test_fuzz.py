"""Fuzzing the checkpoint loaders with hypothesis.

Valid ``.pth`` (zip and legacy), legacy ``.h5``, Keras 3 ``.weights.h5`` and
``.keras`` files are mutated (byte flips, truncations, spliced, dropped and
duplicated zip members), and random pickles are built from opcodes. Every
case must end in a successful load or in ``CheckpointError``/``ValueError``
naming the file, within bounded time and memory (tracemalloc peak), without
a partial load (all weights compared before/after), and without changing any
later load (valid files are read back and compared after every case).

The default suite runs a fixed, derandomized handful of examples per kind;
``-m slow`` runs many more.
"""

import io
import os
import pickle
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support.helpers import randomize, save_legacy_h5, tiny_model  # noqa: E402
from tests.support.pickles import MAGIC, int_op, str_op  # noqa: E402
from zoo.weights.readers.errors import CheckpointError  # noqa: E402

DEFAULT_EXAMPLES = 20
SLOW_EXAMPLES = 300
PEAK_LIMIT = 64 << 20  # bytes traced during one load; the files are a few KiB
TIME_LIMIT = 30.0  # seconds for one load, on a loaded 2-core machine

# Spliced zips duplicate member names on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")


class Env:
    """The valid files, the model under test and what a clean load gives."""

    def __init__(self, folder):
        import torch

        from zoo.weights.readers.h5 import read_h5
        from zoo.weights.readers.pth import read_pth

        self.folder = folder
        self.model = tiny_model()
        src = randomize(tiny_model(), seed=3)
        self.files = {
            "h5_legacy": save_legacy_h5(src, str(folder / "legacy.h5")),
            "weights_h5": str(folder / "model.weights.h5"),
            "keras": str(folder / "model.keras"),
            "pth_zip": str(folder / "zip.pth"),
            "pth_legacy": str(folder / "legacy.pth"),
        }
        src.save_weights(self.files["weights_h5"])
        src.save(self.files["keras"])
        sd = {}
        for layer in src.layers:
            ws = [torch.tensor(np.asarray(w)) for w in layer.get_weights()]
            if layer.name == "conv":
                sd.update({"conv.weight": ws[0].permute(3, 2, 0, 1).contiguous(), "conv.bias": ws[1]})
            elif layer.name == "bn":
                sd.update({f"bn.{k}": w for k, w in zip(("weight", "bias", "running_mean", "running_var"), ws)})
            elif layer.name == "fc":
                sd.update({"fc.weight": ws[0].t().contiguous(), "fc.bias": ws[1]})
        torch.save(sd, self.files["pth_zip"])
        torch.save(sd, self.files["pth_legacy"], _use_new_zipfile_serialization=False)
        self.bytes = {k: open(p, "rb").read() for k, p in self.files.items()}
        self.expected_weights = [w.copy() for w in src.get_weights()]
        self.expected_pth = {k: v.numpy().copy() for k, v in sd.items()}
        self.expected_h5 = read_h5(self.files["weights_h5"])
        self.read_pth, self.read_h5 = read_pth, read_h5
        self.count = 0

    def path(self, suffix):
        self.count += 1
        return str(self.folder / f"case{self.count}{suffix}")

    def check(self, data, suffix):
        """Loads mutated ``data`` and checks every promise."""
        from zoo import weights as zw

        path = self.path(suffix)
        with open(path, "wb") as f:
            f.write(data)
        before = [w.copy() for w in self.model.get_weights()]
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            zw.load_weights(self.model, path)
            error = None
        except Exception as e:  # noqa: BLE001 - the type is what is checked
            error = e
        finally:
            elapsed = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        os.remove(path)
        assert elapsed < TIME_LIMIT, elapsed
        assert peak < PEAK_LIMIT, peak
        if error is not None:
            assert type(error) in (CheckpointError, ValueError), repr(error)
            assert path in str(error), str(error)
            for a, b in zip(self.model.get_weights(), before, strict=True):
                np.testing.assert_array_equal(a, b, err_msg="partial load")
        self.check_later_loads()

    def check_later_loads(self):
        """Valid files still read exactly as before the case."""
        from zoo import weights as zw

        for key in ("pth_zip", "pth_legacy"):
            got = self.read_pth(self.files[key])
            assert list(got) == list(self.expected_pth)
            for k, v in self.expected_pth.items():
                assert got[k].dtype == v.dtype
                np.testing.assert_array_equal(got[k], v, err_msg=f"{key} {k}")
        zw.load_weights(self.model, self.files["h5_legacy"])
        for a, b in zip(self.model.get_weights(), self.expected_weights, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pytest.importorskip("torch")
    return Env(tmp_path_factory.mktemp("fuzz"))


def test_valid_files_load(env):
    for key in env.files:
        env.check(env.bytes[key], os.path.splitext(env.files[key])[1])
    for key in ("h5_legacy", "weights_h5", "keras", "pth_zip", "pth_legacy"):
        from zoo import weights as zw

        zw.load_weights(env.model, env.files[key])
        for a, b in zip(env.model.get_weights(), env.expected_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=0, err_msg=key)


# --------------------------------------------------------------------------
# Mutations of valid files.
# --------------------------------------------------------------------------

FILE_KINDS = ("h5_legacy", "weights_h5", "keras", "pth_zip", "pth_legacy")
ZIP_KINDS = ("keras", "pth_zip")
SUFFIX = {"h5_legacy": ".h5", "weights_h5": ".weights.h5", "keras": ".keras", "pth_zip": ".pth",
          "pth_legacy": ".pth"}


@st.composite
def byte_mutation(draw, data):
    data = bytearray(data)
    how = draw(st.sampled_from(["flip", "truncate", "flip_and_truncate", "overwrite"]))
    if how in ("flip", "flip_and_truncate"):
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= draw(st.integers(1, 255))
    if how == "overwrite":
        pos = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=16))
        data[pos:pos + len(chunk)] = chunk
    if how in ("truncate", "flip_and_truncate"):
        data = data[:draw(st.integers(0, len(data) - 1))]
    return bytes(data)


@st.composite
def zip_splice(draw, data, other):
    """Rebuilds a zip with members dropped, duplicated, swapped or mutated."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    with zipfile.ZipFile(io.BytesIO(other)) as zf:
        foreign = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "duplicate", "swap", "mutate", "foreign", "rename"]))
        i = draw(st.integers(0, len(members) - 1))
        name, content = members[i]
        if how == "drop" and len(members) > 1:
            members.pop(i)
        elif how == "duplicate":
            members.append((name, content))
        elif how == "swap":
            j = draw(st.integers(0, len(members) - 1))
            members[i] = (name, members[j][1])
        elif how == "mutate" and content:
            members[i] = (name, draw(byte_mutation(content)))
        elif how == "foreign":
            members[i] = (name, draw(st.sampled_from(foreign))[1])
        elif how == "rename":
            members[i] = (draw(st.sampled_from([m[0] for m in foreign] + ["archive/data/99", "x"])), content)
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in members:
            zf.writestr(name, content)
    return buf.getvalue()


def _file_case(env, data, kind):
    if kind in ZIP_KINDS and data.draw(st.booleans()):
        other = env.bytes["pth_zip" if kind == "keras" else "keras"]
        mutated = data.draw(zip_splice(env.bytes[kind], other))
    else:
        mutated = data.draw(byte_mutation(env.bytes[kind]))
    env.check(mutated, SUFFIX[kind])


_SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                 suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("kind", FILE_KINDS)
@settings(max_examples=DEFAULT_EXAMPLES, **_SETTINGS)
@given(data=st.data())
def test_mutated_file(env, kind, data):
    _file_case(env, data, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", FILE_KINDS)
@settings(max_examples=SLOW_EXAMPLES, **dict(_SETTINGS, derandomize=False))
@given(data=st.data())
def test_mutated_file_many(env, kind, data):
    _file_case(env, data, kind)


# --------------------------------------------------------------------------
# Random pickles from opcodes.
# --------------------------------------------------------------------------

GLOBALS = [
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"), ("torch", "FloatStorage"), ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"), ("torch.storage", "UntypedStorage"), ("torch", "float32"),
    ("torch", "bfloat16"), ("torch", "uint16"), ("os", "system"), ("builtins", "eval"),
    ("torch.nn.modules.linear", "Linear"), ("builtins", "getattr"),
]
STRINGS = ["w", "conv.weight", "storage", "cpu", "0", "1", "state_dict", "name", "itemsize", "_fn",
           "neg", "conj", "module"]


@st.composite
def opcode(draw):
    kind = draw(st.sampled_from(
        ["int", "bigint", "str", "const", "container", "mark", "build_tuple", "setitem", "append",
         "build", "reduce", "persid", "pop", "dup", "memo", "global", "newobj", "stack_global", "tuple_of_ints"]))
    if kind == "int":
        return int_op(draw(st.integers(-2, 300)))
    if kind == "bigint":
        return int_op(draw(st.sampled_from([2 ** 28, 2 ** 31 - 1, 2 ** 40, 2 ** 63, -(2 ** 31), 16384])))
    if kind == "str":
        return str_op(draw(st.sampled_from(STRINGS)))
    if kind == "const":
        return draw(st.sampled_from([b"N", b"\x88", b"\x89"]))
    if kind == "container":
        return draw(st.sampled_from([b"}", b"]", b")"]))
    if kind == "mark":
        return b"("
    if kind == "build_tuple":
        return draw(st.sampled_from([b"t", b"\x85", b"\x86", b"\x87", b"l", b"d"]))
    if kind == "setitem":
        return draw(st.sampled_from([b"s", b"u"]))
    if kind == "append":
        return draw(st.sampled_from([b"a", b"e"]))
    if kind == "build":
        return b"b"
    if kind == "reduce":
        return b"R"
    if kind == "persid":
        return b"Q"
    if kind == "pop":
        return draw(st.sampled_from([b"0", b"1"]))
    if kind == "dup":
        return b"2"
    if kind == "memo":
        index = draw(st.sampled_from([0, 1, 2, 255, 2 ** 24, 2 ** 28, 2 ** 32 - 1]))
        op = draw(st.sampled_from(["put", "get"]))
        if index < 256 and draw(st.booleans()):
            return (b"q" if op == "put" else b"h") + bytes([index])
        return (b"r" if op == "put" else b"j") + struct.pack("<I", index)
    if kind == "global":
        module, name = draw(st.sampled_from(GLOBALS))
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    if kind == "newobj":
        return b"\x81"
    if kind == "stack_global":
        return b"\x93"
    values = draw(st.lists(st.sampled_from([0, 1, 3, 4, 16384, 2 ** 31]), max_size=3))
    return b"(" + b"".join(int_op(v) for v in values) + b"t"


@st.composite
def tensor_pickle(draw):
    """A well-formed state_dict pickle whose numbers are hostile."""
    dims = st.integers(0, 4)
    rank = draw(dims)
    big = st.sampled_from([0, 1, 2, 3, 4, 5, 16384, 2 ** 31, 2 ** 40])
    size = tuple(draw(big) for _ in range(rank))
    stride = tuple(draw(big) for _ in range(rank))
    numel, offset = draw(big), draw(big)
    storage = draw(st.sampled_from(["FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage"]))
    pid = (b"(" + str_op("storage") + b"ctorch\n" + storage.encode() + b"\n" + str_op("0") + str_op("cpu")
           + int_op(numel) + b"tQ")
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + int_op(offset) + b"(" + b"".join(map(int_op, size))
              + b"t(" + b"".join(map(int_op, stride)) + b"t\x89ccollections\nOrderedDict\n)RtR")
    return b"\x80\x02}(" + str_op("conv.weight") + tensor + b"u."


@st.composite
def random_pickle(draw):
    ops = draw(st.lists(opcode(), min_size=1, max_size=40))
    return b"\x80\x02" + b"".join(ops) + b"."


def _wrap(draw, pkl):
    """A zip or legacy container around a pickle, with a random storage record."""
    storage = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", pkl)
            zf.writestr("archive/data/0", storage)
        return buf.getvalue()
    head = pickle.dumps(MAGIC, 2) + pickle.dumps(1001, 2) + pickle.dumps({"little_endian": True}, 2)
    # Legacy persistent ids carry a sixth (view) field.
    pkl = pkl.replace(b"tQ", b"NtQ") if draw(st.booleans()) else pkl
    numel = draw(st.sampled_from([len(storage) // 4, 1, 2 ** 28]))
    return head + pkl + pickle.dumps(["0"], 2) + struct.pack("<q", numel) + storage


def _pickle_case(env, data):
    pkl = data.draw(st.one_of(random_pickle(), tensor_pickle()))
    env.check(_wrap(data.draw, pkl), ".pth")


@settings(max_examples=5 * DEFAULT_EXAMPLES, **_SETTINGS)
@given(data=st.data())
def test_random_pickle(env, data):
    _pickle_case(env, data)


@pytest.mark.slow
@settings(max_examples=5 * SLOW_EXAMPLES, **dict(_SETTINGS, derandomize=False))
@given(data=st.data())
def test_random_pickle_many(env, data):
    _pickle_case(env, data)
