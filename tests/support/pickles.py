"""Hand-made PyTorch checkpoint bytes (no torch needed to write an attack).

The pickle opcodes and containers the hostile-input and fuzz tests build
their files from: torch's zip layout (``archive/data.pkl`` plus
``archive/data/<key>`` storages) and the legacy (torch < 1.6) stream.
"""

import pickle
import struct
import zipfile

# torch's legacy-format magic number, the first record of a legacy file.
MAGIC = 0x1950A86A20F9469CFC6C


def op(value):
    """The protocol-2 opcodes that push ``value`` (no PROTO, no STOP)."""
    return pickle.dumps(value, 2)[2:-1]


def int_op(v):
    """The opcode pushing the int ``v`` (BININT1, BININT or LONG1), for any size."""
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def str_op(s):
    """The BINUNICODE opcode pushing the string ``s``."""
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def global_op(module, name):
    """The GLOBAL opcode for ``module.name``."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_pickle(size, stride, numel, storage="FloatStorage", offset=0, key="0", count=1):
    """``{"w0": tensor, ...}`` over one storage, as torch's zip format pickles it."""
    pid = b"(" + op("storage") + global_op("torch", storage) + op(key) + op("cpu") + op(numel) + b"tQ"
    body = b"\x80\x02}("
    for i in range(count):
        body += (op(f"w{i}") + global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + op(offset)
                 + op(tuple(size)) + op(tuple(stride)) + b"\x89"
                 + global_op("collections", "OrderedDict") + b")RtR")
    return body + b"u."


def write_zip(path, pkl, members=(), compress=zipfile.ZIP_STORED):
    """A torch zip checkpoint at ``path``: ``pkl`` and ``(key, bytes)`` storages."""
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("archive/data.pkl", pkl)
        for name, data in members:
            zf.writestr(f"archive/data/{name}", data)
    return path


def legacy_bytes(obj_pickle, keys, records):
    """A legacy (torch < 1.6) file around a hand-made object pickle.

    Args:
        obj_pickle: the state_dict pickle.
        keys: the storage keys, in file order.
        records: ``(numel, data)`` per storage.
    """
    out = pickle.dumps(MAGIC, 2) + pickle.dumps(1001, 2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 8}}, 2)
    out += obj_pickle + pickle.dumps(keys, 2)
    for numel, data in records:
        out += struct.pack("<q", numel) + data
    return out
