"""Fuzzing the checkpoint loaders, image headers and the folder walker with hypothesis.

Valid ``.pth`` (zip and legacy), legacy ``.h5``, Keras 3 ``.weights.h5`` and
``.keras`` files are mutated (byte flips, truncations, spliced, dropped and
duplicated zip members), and random pickles are built from opcodes. Every
case must end in a successful load or in ``CheckpointError``/``ValueError``
naming the file, within bounded time and memory (tracemalloc peak), without
a partial load (all weights compared before/after), and without changing any
later load (valid files are read back and compared after every case).

``.safetensors`` headers are generated field by field (lengths, JSON, types,
dtypes, shapes, offsets, keys, ``__metadata__``) with the same promises, plus
a tracemalloc peak bounded by a multiple of the file size. PNG and JPEG
headers are built field by field (and small files of five formats flipped)
for ``zoo.apps.imaging`` and the folder dataset's mask reader: an image
within the pixel limit or a ValueError naming the file. Folder trees for
``folder:`` data (odd names, missing partners, symlinks, FIFOs) end in a
consistent split or a one-line error naming a path, under an alarm.

The default suite runs a fixed, derandomized handful of examples per kind;
``-m slow`` runs many more.
"""

import io
import json
import math
import os
import pickle
import struct
import time
import tracemalloc
import zipfile
import zlib

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


# --------------------------------------------------------------------------
# safetensors headers.
# --------------------------------------------------------------------------

ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3"]
ST_ODD = [None, True, 1, -1, 2 ** 70, 1.5, float("nan"), "", "x", [], [1], {}, {"a": 1}]
ST_KEYS = ["conv.weight", "conv.bias", "fc.weight", "fc.bias", "bn.weight", "bn.running_var",
           "weight", "", "a.b.c.d", "\u00e9t\u00e9.w", "__metadata__x", ".", "conv..weight"]
ST_KINDS = ("length", "not_json", "wrong_types", "dtype", "size", "offsets", "zero_size", "keys",
            "metadata", "mutated")
ST_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F8_E4M3": 1}


def _st_file(header, data):
    raw = header if isinstance(header, bytes) else json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@st.composite
def st_shape(draw):
    return draw(st.lists(st.integers(0, 5), max_size=4))


@st.composite
def st_entries(draw, kind):
    """A header whose entries are valid but for the ``kind`` of damage."""
    header, offset = {}, 0
    n = draw(st.integers(1, 100 if kind == "zero_size" else 6))
    for i in range(n):
        dtype = draw(st.sampled_from(ST_DTYPES))
        shape = [0] if kind == "zero_size" and draw(st.booleans()) else draw(st_shape())
        size = math.prod(shape) * ST_ITEMSIZE[dtype]
        info = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        if kind == "wrong_types":
            field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "info", "drop"]))
            if field == "info":
                info = draw(st.sampled_from(ST_ODD))
            elif field == "drop":
                info.pop(draw(st.sampled_from(sorted(info))))
            elif field == "shape" and draw(st.booleans()):
                info["shape"] = [draw(st.sampled_from(ST_ODD))] + shape
            elif field == "data_offsets" and draw(st.booleans()):
                info["data_offsets"] = draw(st.lists(st.sampled_from(ST_ODD + [0, 4]), max_size=3))
            else:
                info[field] = draw(st.sampled_from(ST_ODD))
        elif kind == "dtype":
            info["dtype"] = draw(st.sampled_from(["F4", "f32", "float32", "F128", "C64", "U64", "I16",
                                                  "F8_E5M2", "BF16", " F32", "F32\u0000"]))
        elif kind == "size":
            info["shape"] = draw(st.sampled_from([
                [size + 1], shape + [2], [-1] + shape, [2 ** 32, 2 ** 32], [2 ** 63], [2 ** 70, 0],
                [3, -3], shape[::-1] + [0]]))
        elif kind == "offsets":
            begin, end = info["data_offsets"]
            info["data_offsets"] = draw(st.sampled_from([
                [0, end - begin], [begin - 1, end - 1], [end, begin], [-size, 0], [begin, end + 2 ** 64],
                [begin + 2 ** 40, end + 2 ** 40], [begin, end, end], [begin], [float(begin), float(end)],
                [str(begin), str(end)], [begin + 1, end + 1]]))
        key = draw(st.sampled_from(ST_KEYS)) if kind == "keys" else f"t{i}.w"
        header[key] = info
    return header, offset


@st.composite
def st_case(draw, kind, valid):
    data_slack = draw(st.sampled_from([0, 0, 1, 7]))
    if kind == "mutated":
        return draw(byte_mutation(valid))
    if kind == "length":
        header = json.dumps({"t.w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}).encode()
        body = header + b"\1\2"
        length = draw(st.sampled_from([0, 1, 2, len(header) - 1, len(header) + 1, len(body), len(body) + 1,
                                       2 ** 25, 2 ** 32, 2 ** 63, 2 ** 64 - 1]))
        return struct.pack("<Q", length) + body[:draw(st.integers(0, len(body)))]
    if kind == "not_json":
        header = draw(st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"{", b"{}}", b"{\"a\": }", b"\xff\xfe{}", b"{\"a\": NaN}", b"[" * 5000,
                             b"{\"a\":" * 5000, b"{\"a\": {\"dtype\": \"F32\"", b"{\"\\ud800\": 1}",
                             b"{\"a\": 1e999999}"]),
            st.sampled_from(["[]", "1", "\"str\"", "null", "true", "[{}]"]).map(str.encode)))
        return _st_file(header, b"\0" * draw(st.integers(0, 8)))
    if kind == "metadata":
        header, size = draw(st_entries("keys"))
        header["__metadata__"] = draw(st.sampled_from(ST_ODD + [{"format": "pt"}, {"format": 1},
                                                                 {"a": {"b": []}}, "pt"]))
        return _st_file(header, b"\0" * (size + data_slack))
    header, size = draw(st_entries(kind))
    return _st_file(header, b"\0" * (size + data_slack))


def _st_check(env, data):
    """``read_safetensors`` on its own ends in arrays or a CheckpointError
    naming the file, within bounded memory; then the same bytes go through
    ``load_weights`` (no partial load)."""
    from zoo.weights.readers.safetensors import read_header, read_safetensors

    path = env.path(".safetensors")
    with open(path, "wb") as f:
        f.write(data)
    tracemalloc.start()
    try:
        try:
            header, _ = read_header(path)
            got = read_safetensors(path)
        except CheckpointError as e:
            assert path in str(e), str(e)
        else:
            assert list(got) == list(header)
            for name, array in got.items():
                assert isinstance(array, np.ndarray)
                assert array.shape == tuple(header[name]["shape"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(data) + (1 << 20), (peak, len(data))
    os.remove(path)
    env.check(data, ".safetensors")


@pytest.fixture(scope="module")
def st_valid(env):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    path = env.path(".safetensors")
    save_file(env.expected_pth, path, metadata={"format": "pt"})
    data = open(path, "rb").read()
    os.remove(path)
    return data


def test_valid_safetensors_loads(env, st_valid):
    env.check(st_valid, ".safetensors")
    for a, b in zip(env.model.get_weights(), env.expected_weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ST_KINDS)
@settings(max_examples=DEFAULT_EXAMPLES // 5, **_SETTINGS)
@given(data=st.data())
def test_safetensors_header(env, st_valid, kind, data):
    _st_check(env, data.draw(st_case(kind, st_valid)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ST_KINDS)
@settings(max_examples=SLOW_EXAMPLES, **dict(_SETTINGS, derandomize=False))
@given(data=st.data())
def test_safetensors_header_many(env, st_valid, kind, data):
    _st_check(env, data.draw(st_case(kind, st_valid)))


@pytest.mark.parametrize("header", [
    {"a.w": {"dtype": "F32", "shape": [2 ** 70], "data_offsets": [0, 4]}},
    {"a.w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}},
    {"a.w": {"dtype": "F32", "shape": [1], "data_offsets": "ab"}},
    {"a.w": {"dtype": "F32", "shape": [1], "data_offsets": [None, 4]}},
    {"a.w": {"dtype": "F32", "shape": [2 ** 32, 2 ** 32], "data_offsets": [0, 0]}},
    {"a.w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}},
    {"a.w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
    {"a.w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": [1]},
    b"[" * 100000,
])
def test_safetensors_header_regressions(tmp_path, header):
    """Found by the fuzz: raw OverflowError (int64 shape product), TypeError
    (unhashable dtype, non-int offsets), RecursionError (deep JSON), and a
    wrapped int64 product that passed the size check."""
    from zoo.weights.readers.safetensors import read_header

    path = str(tmp_path / "bad.safetensors")
    with open(path, "wb") as f:
        f.write(_st_file(header, b"\0" * 16))
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_header(path)


# --------------------------------------------------------------------------
# Image headers: zoo.apps.imaging (predict, heatmap) and the folder
# dataset's mask reader.
# --------------------------------------------------------------------------

IMAGE_LIMIT = 10 ** 6  # pixels; the fuzzed headers declare up to 2**64


def _png_chunk(kind, body, crc_ok=True):
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc if crc_ok else crc ^ 1)


PNG_DEPTHS = {0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]}
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@st.composite
def png_bytes(draw):
    """A PNG built field by field: IHDR's width, height, bit depth, colour
    type, compression, filter and interlace drawn (valid and not), pixel
    data that may disagree with them, optional PLTE/tRNS/unknown chunks,
    bad CRCs, lying chunk lengths and truncation. Each damage is drawn on
    its own, so that many files are damaged in one field only."""
    def rarely():
        return draw(st.integers(0, 3)) == 0

    def dim():
        if rarely():
            return draw(st.sampled_from([0, 2 ** 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 20000, 1001]))
        return draw(st.integers(1, 12))

    width, height = dim(), dim()
    color = draw(st.sampled_from([1, 5, 7])) if rarely() else draw(st.sampled_from(sorted(PNG_DEPTHS)))
    depth = draw(st.sampled_from([0, 3, 32] + PNG_DEPTHS.get(color, [8]))) if rarely() else \
        draw(st.sampled_from(PNG_DEPTHS.get(color, [8])))
    extra = [draw(st.sampled_from([1, 2, 255])) if rarely() and rarely() else 0 for _ in range(3)]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, *extra)
    channels = PNG_CHANNELS.get(color, 3)
    row = 1 + (min(width, 64) * channels * depth + 7) // 8
    rows = draw(st.sampled_from([0, 1, height - 1, height + 1])) if rarely() else height
    raw = b"\0" * row * max(0, min(rows, 64))
    idat = zlib.compress(raw)
    if rarely():
        idat = idat[:draw(st.integers(0, len(idat)))]
    chunks = [_png_chunk(b"IHDR", ihdr, not rarely())]
    if color == 3 or rarely():
        entries = draw(st.sampled_from([0, 257])) if rarely() else 1 << min(depth, 8)
        chunks.append(_png_chunk(b"PLTE", b"\7" * (3 * entries + (1 if rarely() else 0))))
    if rarely():
        chunks.append(_png_chunk(draw(st.sampled_from([b"tRNS", b"gAMA", b"zzZz", b"IHDR", b"acTL"])),
                                 draw(st.binary(max_size=12))))
    chunks += [_png_chunk(b"IDAT", idat, not rarely())]
    if not rarely():
        chunks.append(_png_chunk(b"IEND", b""))
    data = b"\x89PNG\r\n\x1a\n" + b"".join(chunks)
    if rarely():  # a chunk length that lies
        at = draw(st.sampled_from([8, 8 + 25]))
        data = data[:at] + struct.pack(">I", draw(st.sampled_from([0, 1, 2 ** 31, 2 ** 32 - 1]))) + data[at + 4:]
    if rarely():
        data = data[:draw(st.integers(0, len(data)))]
    return data


def _jpeg_clean(mode):
    from PIL import Image

    pixels = np.arange(12 * 10 * 3, dtype="uint8").reshape(12, 10, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(buf, "JPEG")
    return buf.getvalue()


@st.composite
def jpeg_bytes(draw):
    """A small valid JPEG whose SOF fields (precision, height, width,
    component count, sampling factors) and segment lengths are redrawn, then
    maybe truncated at or inside a marker."""
    data = bytearray(_jpeg_clean(draw(st.sampled_from(["L", "RGB"]))))
    sof = data.index(b"\xff\xc0")
    if draw(st.booleans()):
        data[sof + 4] = draw(st.sampled_from([8, 12, 16, 0, 255]))
    if draw(st.booleans()):
        data[sof + 5:sof + 7] = struct.pack(">H", draw(st.sampled_from([0, 1, 11, 13, 65535])))
    if draw(st.booleans()):
        data[sof + 7:sof + 9] = struct.pack(">H", draw(st.sampled_from([0, 1, 9, 11, 65535])))
    if draw(st.booleans()):
        data[sof + 9] = draw(st.sampled_from([0, 1, 2, 3, 4, 255]))
    if draw(st.booleans()):
        data[sof + 11] = draw(st.sampled_from([0x11, 0x22, 0x44, 0x00, 0xFF]))
    if draw(st.booleans()):  # a segment length that lies
        markers = [i for i in range(2, len(data) - 3) if data[i] == 0xFF and data[i + 1] not in (0, 0xD8, 0xD9)]
        at = draw(st.sampled_from(markers))
        data[at + 2:at + 4] = struct.pack(">H", draw(st.sampled_from([0, 1, 2, 3, 65535])))
    if draw(st.booleans()):
        markers = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] != 0]
        data = data[:draw(st.sampled_from(markers)) + draw(st.integers(0, 3))]
    return bytes(data)


@st.composite
def flipped_image(draw):
    """Byte flips and truncations of small JPEG/PNG/GIF/BMP/WebP files."""
    from PIL import Image

    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]))
    buf = io.BytesIO()
    Image.fromarray(np.arange(12 * 10 * 3, dtype="uint8").reshape(12, 10, 3)).save(buf, fmt)
    data = buf.getvalue()
    if draw(st.booleans()):
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return data[:draw(st.integers(1, len(data) - 1))]


IMAGE_CASES = {"png": png_bytes, "jpeg": jpeg_bytes, "flipped": flipped_image}


def _image_check(folder, data, suffix):
    """``read_image`` (1, 3 and 4 channels), ``image_size`` and the folder
    dataset's ``read_mask`` each return within the pixel limit or raise a
    ValueError naming the file; never another exception."""
    from zoo.apps.imaging import image_size, read_image
    from zoo.training.data import read_mask

    path = str(folder / f"case{suffix}")
    with open(path, "wb") as f:
        f.write(data)
    saved = os.environ.get("ZOO_MAX_IMAGE_PIXELS")
    os.environ["ZOO_MAX_IMAGE_PIXELS"] = str(IMAGE_LIMIT)
    try:
        for read in (image_size, lambda p: read_image(p, 3), lambda p: read_image(p, 1),
                     lambda p: read_image(p, 4), read_mask):
            try:
                out = read(path)
            except ValueError as e:
                assert path in str(e), str(e)
                continue
            shape = out if read is image_size else (out[0] if isinstance(out, tuple) else out).shape
            assert 0 < shape[0] * shape[1] <= IMAGE_LIMIT, shape
    finally:
        if saved is None:
            del os.environ["ZOO_MAX_IMAGE_PIXELS"]
        else:
            os.environ["ZOO_MAX_IMAGE_PIXELS"] = saved


@pytest.mark.parametrize("kind", sorted(IMAGE_CASES))
@settings(max_examples=DEFAULT_EXAMPLES, **_SETTINGS)
@given(data=st.data())
def test_image_header(tmp_path, kind, data):
    _image_check(tmp_path, data.draw(IMAGE_CASES[kind]()), ".jpg" if kind == "jpeg" else ".png")


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(IMAGE_CASES))
@settings(max_examples=SLOW_EXAMPLES, **dict(_SETTINGS, derandomize=False))
@given(data=st.data())
def test_image_header_many(tmp_path, kind, data):
    _image_check(tmp_path, data.draw(IMAGE_CASES[kind]()), ".jpg" if kind == "jpeg" else ".png")


# --------------------------------------------------------------------------
# The dataset folder walker (``folder:PATH`` in zoo.training.data).
# --------------------------------------------------------------------------

STEM_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0")
STEMS = st.one_of(st.sampled_from(["a", "b", "a.b", " a ", "\u00e9t\u00e9", "x.png", "..", ".", "-", "\udcff",
                                   "\u200b", "A"]),
                  st.text(STEM_CHARS, min_size=1, max_size=6))
IMAGE_EXTS = [".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".Jpeg"]
OTHER_EXTS = ["", ".txt", ".png.bak", ".gif", ".tif", ".npy"]
PLACES = ["images", "masks", "train/images", "train/masks", "val/images", "val/masks", "validation/images",
          "images/sub", "", "train", "masks/sub"]
CONTENTS = ["image", "mask", "mask_big", "mask_colour", "empty", "garbage", "dir", "link_outside",
            "link_dangling", "link_self", "link_parent", "fifo", "truncated", "bomb"]


@st.composite
def folder_tree(draw):
    """Entries ``(place, name, content)``: image/mask pairs (partners may be
    missing, extensions in any case, stems repeated) and noise."""
    entries = []
    for stem in draw(st.lists(STEMS, max_size=4)):
        base = draw(st.sampled_from(["", "", "train/", "val/"]))
        entries.append((base + "images", stem + draw(st.sampled_from(IMAGE_EXTS)),
                        draw(st.sampled_from(["image"] * 6 + CONTENTS))))
        if draw(st.integers(0, 3)):
            entries.append((base + "masks", stem + draw(st.sampled_from([".png"] * 4 + [".PNG", ".jpg"])),
                            draw(st.sampled_from(["mask"] * 6 + CONTENTS))))
    for _ in range(draw(st.integers(0, 4))):
        entries.append((draw(st.sampled_from(PLACES)),
                        draw(STEMS) + draw(st.sampled_from(IMAGE_EXTS + OTHER_EXTS)),
                        draw(st.sampled_from(CONTENTS))))
    if draw(st.integers(0, 5)) == 0:  # images/ or masks/ themselves odd
        entries.append(("", draw(st.sampled_from(["images", "masks"])),
                        draw(st.sampled_from(["empty", "link_self", "link_parent", "link_dangling"]))))
    return entries


def _png_file(path, array):
    """A PNG whatever the name's extension."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, "PNG")


def _write_tree(root, outside, entries):
    write_png = _png_file
    for place, name, content in entries:
        if name in (".", ".."):
            continue
        folder = os.path.join(root, place)
        if os.path.lexists(folder) and not os.path.isdir(folder):
            continue
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            continue
        if content == "image":
            write_png(path, np.full((6, 4, 3), 40, "uint8"))
        elif content == "mask":
            write_png(path, np.tile(np.array([0, 1, 2, 255], "uint8"), (6, 1)))
        elif content == "mask_big":
            write_png(path, np.zeros((7, 4), "uint8"))
        elif content == "mask_colour":
            write_png(path, np.arange(72, dtype="uint8").reshape(6, 4, 3))
        elif content == "empty":
            open(path, "wb").close()
        elif content == "garbage":
            with open(path, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\nnot really")
        elif content == "truncated":
            write_png(path, np.full((6, 4, 3), 40, "uint8"))
            with open(path, "r+b") as f:
                f.truncate(40)
        elif content == "bomb":
            with open(path, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
                        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 40001)) + _png_chunk(b"IEND", b""))
        elif content == "dir":
            os.makedirs(path)
        elif content == "link_outside":
            os.symlink(os.path.join(outside, "image.png"), path)
        elif content == "link_dangling":
            os.symlink(os.path.join(outside, "missing.png"), path)
        elif content == "link_self":
            os.symlink(path, path)
        elif content == "link_parent":
            os.symlink(root, path)
        elif content == "fifo":
            os.mkfifo(path)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang("the folder walker hangs")


def _walk_check(tmp_path, entries):
    """The splits the builder would generate: each a consistent list of
    examples, or a ValueError / FileNotFoundError (a named missing file)
    whose one-line message names a path under the root."""
    import signal
    import tempfile
    import types

    from zoo.apps.imaging import image_size
    from zoo.training import data

    outside = tmp_path / "outside"
    if not outside.exists():
        _png_file(str(outside / "image.png"), np.full((6, 4, 3), 9, "uint8"))
    root = tempfile.mkdtemp(dir=tmp_path, prefix="root ")
    _write_tree(root, str(outside), entries)
    fake = types.SimpleNamespace(builder_config=types.SimpleNamespace(root=root),
                                 _generate_examples=lambda f: data.SegmentationFolder._generate_examples(None, f))
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        fingerprint = data._folder_fingerprint(root)
        assert fingerprint == data._folder_fingerprint(root) and len(fingerprint) == 16
        for split, examples in data.SegmentationFolder._split_generators(fake, None).items():
            try:
                got = list(examples)
            except (ValueError, FileNotFoundError) as e:
                message = str(e)
                assert "\n" not in message and root in message, message
                continue
            folder = os.path.dirname(os.path.dirname(got[0][1]["image"]))
            images = os.path.join(folder, "images")
            listed = sorted(n for n in os.listdir(images) if os.path.splitext(n)[1].lower() in IMAGE_EXTS[:3])
            assert [os.path.basename(ex["image"]) for _, ex in got] == listed
            assert len({stem for stem, _ in got}) == len(got)
            for stem, ex in got:
                assert ex["file_name"] == stem and os.path.splitext(os.path.basename(ex["image"]))[0] == stem
                mask = ex["segmentation_mask"]
                assert mask.dtype == np.uint8 and mask.ndim == 3 and mask.shape[-1] == 1
                assert mask.shape[:2] == image_size(ex["image"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@settings(max_examples=DEFAULT_EXAMPLES, **_SETTINGS)
@given(entries=folder_tree())
def test_folder_walker(tmp_path, entries):
    _walk_check(tmp_path, entries)


@pytest.mark.slow
@settings(max_examples=10 * SLOW_EXAMPLES, **dict(_SETTINGS, derandomize=False))
@given(entries=folder_tree())
def test_folder_walker_many(tmp_path, entries):
    _walk_check(tmp_path, entries)


def test_mask_with_a_broken_chunk_is_a_value_error(tmp_path):
    """Found by the image fuzz: Pillow reports a chunk boundary inside IDAT
    data as SyntaxError ("broken PNG file"), which read_mask let through."""
    from zoo.training.data import read_mask

    raw = np.random.default_rng(0).integers(0, 256, (8, 9)).astype("uint8")
    raw[:, 0] = 0
    idat = zlib.compress(raw.tobytes(), 0)
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                     + struct.pack(">I", 10) + b"IDAT" + idat + b"\0\0\0\0" + _png_chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=r"broken\.png cannot be read as an image"):
        read_mask(str(path))


def test_folder_with_a_non_utf8_file_name_is_named(tmp_path):
    """Found by the walker fuzz: a file name that is not UTF-8 raised a bare
    UnicodeEncodeError from the folder's fingerprint (before any file was
    named); it is now hashed as bytes and refused by name."""
    from zoo.training import data

    for sub in ("images", "masks"):
        _png_file(str(tmp_path / sub / "ok.png"), np.zeros((4, 4, 3) if sub == "images" else (4, 4), "uint8"))
        _png_file(os.fsdecode(os.fsencode(str(tmp_path / sub)) + b"/\xff.png"),
                  np.zeros((4, 4, 3) if sub == "images" else (4, 4), "uint8"))
    assert len(data._folder_fingerprint(str(tmp_path))) == 16
    with pytest.raises(ValueError, match=r"\\udcff\.png.*not valid UTF-8"):
        data.folder_pairs(str(tmp_path))


def test_folder_with_damaged_image_pixels_is_named(tmp_path):
    """Found while fuzzing the folder reader: an image whose header is sound
    but whose pixel data is cut was stored as is, and the first pass over the
    data failed with a bare InvalidArgumentError naming no file."""
    from zoo.training import data

    root = tmp_path / "d"
    _png_file(str(root / "images" / "a.png"), np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype("uint8"))
    _png_file(str(root / "masks" / "a.png"), np.ones((16, 16), "uint8"))
    image = root / "images" / "a.png"
    image.write_bytes(image.read_bytes()[:-60])
    with pytest.raises(ValueError, match=r"images/a\.png: not a readable"):
        data.load(f"folder:{root}", "train", str(tmp_path / "tfds"))
