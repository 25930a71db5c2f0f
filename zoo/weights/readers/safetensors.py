"""Read ``.safetensors`` checkpoints (Hugging Face hub, timm) into numpy arrays.

The format is an 8-byte little-endian header length, a JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{...}}``) and one flat byte buffer. It holds no code, so reading it is safe;
what can go wrong is size: a corrupt or hostile header can claim gigabytes.
The header length and every declared offset are therefore checked against the
file size before the ``safetensors`` package maps anything.
"""

import json
import math
import os
import struct

import numpy as np

from zoo.weights.readers.errors import CheckpointError

__all__ = ["CheckpointError", "is_safetensors", "read_safetensors"]

# The safetensors package itself refuses headers above 100 MB; parsing JSON
# costs about 20x its size, so the zoo takes at most 32 MiB (a 100 000-tensor
# header is about 12 MB) and at most MAX_TENSORS entries, counted before the
# header is parsed (a header of many zero-size tensors costs memory, not file
# bytes).
_MAX_HEADER = 32 * 1024 * 1024
MAX_TENSORS = 100_000

_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


def _count(value):
    """A non-negative int that is not a bool (a shape entry or an offset)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_safetensors(path):
    """True when ``path`` starts like a safetensors file (by content, not suffix).

    Args:
        path: a file path.

    Returns:
        Whether the first 8 bytes are a plausible header length and the header
        begins with ``{``.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= length <= size - 8


def read_header(path):
    """Reads and validates the JSON header without touching tensor data.

    Args:
        path: a safetensors file.

    Returns:
        ``(tensors, metadata)``: ``{name: {"dtype", "shape", "data_offsets"}}``
        in file order, and the ``__metadata__`` dict (or ``{}``).

    Raises:
        CheckpointError: naming the file, for a header longer than the file, a
            malformed header, or offsets outside the data buffer or
            disagreeing with the tensor's shape and dtype.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, _MAX_HEADER):
            raise CheckpointError(
                f"{path}: safetensors header claims {length} bytes but the file has "
                f"{size} bytes; the file is truncated or corrupt"
            )
        text = f.read(length)
    declared = text.count(b'"data_offsets"')
    if declared > MAX_TENSORS:
        raise CheckpointError(
            f"{path}: safetensors header declares {declared} tensors; more than "
            f"{MAX_TENSORS} is not a model checkpoint")
    try:
        header = json.loads(text.decode("utf8"))
    except RecursionError:  # deeply nested arrays or objects
        raise CheckpointError(f"{path}: unreadable safetensors header (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: safetensors __metadata__ is not a JSON object")
    buffer = size - 8 - length
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed safetensors entry for tensor {name!r}") from None
        # JSON may hold any type here: non-negative Python ints only, and the
        # element count in Python ints (numpy's int64 product would wrap).
        if not (isinstance(dtype, str) and isinstance(shape, list)
                and all(_count(v) for v in (*shape, begin, end))):
            raise CheckpointError(f"{path}: malformed safetensors entry for tensor {name!r}")
        count = math.prod(shape)
        if dtype not in _ITEMSIZE:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not 0 <= begin <= end <= buffer:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies at bytes {begin}..{end} but the data "
                f"buffer has {buffer} bytes; the file is truncated or corrupt"
            )
        if end - begin != count * _ITEMSIZE[dtype]:
            raise CheckpointError(
                f"{path}: tensor {name!r} ({dtype}, shape {shape}) needs "
                f"{count * _ITEMSIZE[dtype]} bytes but its offsets span {end - begin}"
            )
    return header, metadata


def _read_bf16(path, start, info):
    """bfloat16 -> float32, which numpy (and so safetensors' numpy API) lacks."""
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + begin)
        raw = np.frombuffer(f.read(end - begin), dtype="<u2")
    # bfloat16 is the top half of a float32: widening the bits is exact.
    return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(info["shape"])


def _placeholder(info):
    """An empty stand-in for a tensor that is not read (keeps its name)."""
    return np.empty((0,), dtype=np.float32)


def read_safetensors(path, wanted=None):
    """Reads the tensors of a safetensors file.

    Args:
        path: a safetensors file (e.g. a hub ``model.safetensors``).
        wanted: None (read every tensor), or ``wanted(names) -> set`` given
            the header's tensor names in file order: only those are read;
            the others appear as empty placeholders, so that the loader's
            name checks still see them without their data being read (a
            file's tensors the model never uses cost no memory).

    Returns:
        ``{name: numpy array}`` (bfloat16 widened to
        float32).

    Raises:
        CheckpointError: naming the file, for any malformed or truncated file.
    """
    header, _ = read_header(path)
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a runtime dependency
        raise CheckpointError(
            f"{path}: reading .safetensors needs the 'safetensors' package: pip install safetensors"
        ) from None
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
    out = {}
    keep = set(header) if wanted is None else set(wanted(list(header)))
    try:
        with safe_open(path, framework="np") as f:
            for name, info in header.items():
                if name not in keep:
                    out[name] = _placeholder(info)
                elif info["dtype"] == "BF16":
                    out[name] = _read_bf16(path, 8 + length, info)
                else:
                    out[name] = f.get_tensor(name)
    except CheckpointError:
        raise
    except Exception as e:  # the package raises its own SafetensorError and OSError
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    return out
