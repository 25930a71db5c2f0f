"""Read PyTorch ``.pth`` checkpoints into numpy arrays without importing torch.

``torch.load`` is a thin layer over :mod:`pickle`, so loading an untrusted
checkpoint with it runs whatever code the file names. This reader instead
unpickles with a :class:`pickle.Unpickler` whose ``find_class`` maps a short
allow-list of torch names (the tensor-rebuild functions, storage types and
dtypes) onto local stand-ins and refuses every other global. Tensors are first
rebuilt as lazy descriptions (storage, offset, size, stride, dtype) and only
turned into arrays once every storage's bytes are known, which the legacy
format stores after the pickle.

Supported containers:

* zip (torch >= 1.6 default): ``<archive>/data.pkl`` plus one
  ``<archive>/data/<key>`` member of raw storage bytes per storage, and an
  optional ``<archive>/byteorder`` record.
* legacy (``_use_new_zipfile_serialization=False`` and torch 0.1.10 - 1.5,
  including the 2017 torch 0.2/0.3 files): consecutive pickles (magic number,
  protocol version, sys_info, the object, the list of storage keys) followed
  by each storage as an int64 element count and its raw little-endian bytes.
"""

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np

from zoo.weights.readers.errors import CheckpointError
from zoo.weights.readers.limits import read_zip_member

__all__ = ["CheckpointError", "is_pth", "read_pth"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# The magic-number pickle is ~15 bytes; a little slack covers a protocol-4
# FRAME header.
_SNIFF_BYTES = 64
# The arrays returned may total at most this many times the storage bytes the
# file holds (bfloat16 widening doubles; distinct views of one storage, such
# as a fused weight and its slices, add more), plus a little slack.
_OUTPUT_FACTOR = 8
_OUTPUT_SLACK = 1 << 20


# --------------------------------------------------------------------------
# Stand-ins for the torch globals a state_dict pickle may name.
# --------------------------------------------------------------------------


class _Placeholder:
    """Base of the stand-ins a pickle can name: immutable.

    A pickle's BUILD opcode sets attributes on whatever object is on its
    stack. If a stand-in for ``torch.float32`` could be changed that way, one
    crafted file would change how every later file decodes. Stand-ins
    therefore have no ``__dict__``, refuse attribute assignment, and refuse
    BUILD (``__setstate__``); and each unpickler gets its own fresh set
    (:func:`_fresh_globals`), so not even a bug here could leak state from
    one load to the next.
    """

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{self!r} is read-only")

    def __delattr__(self, name):
        raise AttributeError(f"{self!r} is read-only")

    def __setstate__(self, state):
        raise ValueError(f"the pickle tries to modify {self!r} (BUILD on an allowed global)")

    def __reduce__(self):
        raise TypeError(f"{self!r} cannot be pickled")


class _DType(_Placeholder):
    """A tensor element type: how its bytes map onto numpy.

    Attributes:
        name: torch's name, e.g. ``"float32"``.
        file_dtype: numpy dtype of one stored element (little endian).
        itemsize: bytes per element.
    """

    __slots__ = ("name", "file_dtype", "itemsize")

    def __init__(self, name, file_dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "file_dtype", np.dtype(file_dtype))
        object.__setattr__(self, "itemsize", self.file_dtype.itemsize)

    @property
    def out_itemsize(self):
        """Bytes per element of the returned array (bfloat16 widens to 4)."""
        return 4 if self.name == "bfloat16" else self.itemsize

    def to_numpy(self, stored):
        """Converts stored elements (any byte order) to a native-order array."""
        if self.name == "bfloat16":
            # bfloat16 is the top half of a float32, so widening the raw bits
            # and shifting them up is exact.
            bits = stored.astype(np.uint32, order="C") << np.uint32(16)
            return bits.view(np.float32)
        return stored.astype(self.file_dtype.newbyteorder("="), order="C", copy=True)

    def __repr__(self):
        return f"torch.{self.name}"


# torch dtype name -> numpy dtype of one stored element.
_DTYPE_SPECS = (
    ("float64", "<f8"),
    ("float32", "<f4"),
    ("float16", "<f2"),
    ("bfloat16", "<u2"),
    ("complex64", "<c8"),
    ("complex128", "<c16"),
    ("int64", "<i8"),
    ("int32", "<i4"),
    ("int16", "<i2"),
    ("int8", "i1"),
    ("uint8", "u1"),
    ("uint16", "<u2"),
    ("uint32", "<u4"),
    ("uint64", "<u8"),
    ("bool", "?"),
)


class _StorageType(_Placeholder):
    """Stand-in for ``torch.FloatStorage`` and friends (and UntypedStorage)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __repr__(self):
        return f"torch.{self.name}"


# torch storage class name -> dtype name of its elements.
_STORAGE_SPECS = (
    ("DoubleStorage", "float64"),
    ("FloatStorage", "float32"),
    ("HalfStorage", "float16"),
    ("BFloat16Storage", "bfloat16"),
    ("ComplexFloatStorage", "complex64"),
    ("ComplexDoubleStorage", "complex128"),
    ("LongStorage", "int64"),
    ("IntStorage", "int32"),
    ("ShortStorage", "int16"),
    ("CharStorage", "int8"),
    ("ByteStorage", "uint8"),
    ("BoolStorage", "bool"),
    # An untyped storage counts bytes; _rebuild_tensor_v3 names the dtype.
    ("UntypedStorage", "uint8"),
)


class _Function(_Placeholder):
    """An allowed torch function, callable by REDUCE but not modifiable."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args):
        return self._fn(*args)

    def __repr__(self):
        return f"torch._utils.{self._fn.__name__}"


class _RootStorage:
    """One serialized storage: its element type, length and (later) bytes."""

    def __init__(self, key, storage_type, numel):
        self.key = key
        self.dtype = storage_type.dtype
        self.numel = numel
        self.data = None  # bytes, filled in once the container is read

    @property
    def nbytes(self):
        return self.numel * self.dtype.itemsize


class _StorageView:
    """What persistent_load hands to the pickle: a slice of a root storage.

    Only legacy files from torch < 1.0 contain real views; everything else
    views the whole root.
    """

    def __init__(self, root, offset=0, numel=None):
        self.root = root
        self.offset = offset
        self.numel = root.numel - offset if numel is None else numel

    @property
    def dtype(self):
        return self.root.dtype

    def raw_bytes(self):
        start = self.offset * self.root.dtype.itemsize
        return memoryview(self.root.data)[start : start + self.numel * self.root.dtype.itemsize]


class _LazyTensor:
    """A tensor described by the pickle, materialized once bytes are known."""

    def __init__(self, storage, offset, size, stride, dtype=None, metadata=None):
        if not isinstance(storage, _StorageView):
            raise ValueError(f"tensor storage is {type(storage).__name__}, not a storage reference")
        self.storage = storage
        self.offset = _non_negative_int(offset, "storage offset")
        self.size = _int_tuple(size, "size")
        self.stride = _int_tuple(stride, "stride")
        if len(self.size) != len(self.stride):
            raise ValueError(f"tensor size {self.size} and stride {self.stride} differ in rank")
        self.dtype = storage.dtype if dtype is None else dtype
        if not isinstance(self.dtype, _DType):
            raise ValueError(f"tensor dtype {self.dtype!r} is not a torch dtype")
        self.metadata = metadata if isinstance(metadata, dict) else {}


def _non_negative_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"tensor {what} {value!r} is not a non-negative int")
    return value


def _int_tuple(values, what):
    if not isinstance(values, (tuple, list)):
        raise ValueError(f"tensor {what} {values!r} is not a tuple")
    return tuple(_non_negative_int(v, what) for v in values)


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Stand-in for torch._utils._rebuild_tensor (torch 0.2/0.3 files)."""
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Stand-in for torch._utils._rebuild_tensor_v2 (torch >= 0.4)."""
    return _LazyTensor(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    """Stand-in for torch._utils._rebuild_tensor_v3 (uint16/32/64 over UntypedStorage)."""
    return _LazyTensor(storage, storage_offset, size, stride, dtype=dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """Stand-in for torch._utils._rebuild_parameter: a Parameter is its data."""
    if not isinstance(data, _LazyTensor):
        raise ValueError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """Stand-in for torch._utils._rebuild_parameter_with_state; the state is dropped."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _fresh_globals():
    """A new ``(module, name) -> stand-in`` table: the only names a pickle may use.

    Built anew for every unpickler, so nothing one file does to its
    stand-ins can reach another load.
    """
    dtypes = {name: _DType(name, spec) for name, spec in _DTYPE_SPECS}
    # collections.OrderedDict is a C type whose attributes cannot be set.
    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    for fn in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
               _rebuild_parameter_with_state):
        allowed[("torch._utils", fn.__name__)] = _Function(fn)
    for name, dtype in _STORAGE_SPECS:
        storage_type = _StorageType(name, dtypes[dtype])
        # GPU-trained legacy checkpoints name torch.cuda.*Storage; torch itself
        # resolves storage types by name alone, ignoring the module.
        modules = ("torch", "torch.storage") if name == "UntypedStorage" else ("torch", "torch.cuda")
        for module in modules:
            allowed[(module, name)] = storage_type
    for name, dtype in dtypes.items():
        allowed[("torch", name)] = dtype
    return allowed


# The (module, name) pairs a pickle may name; nothing else is unpickled.
ALLOWED_NAMES = frozenset(_fresh_globals())


# --------------------------------------------------------------------------
# The restricted unpickler.
# --------------------------------------------------------------------------


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that only resolves names from :data:`ALLOWED_NAMES`.

    It is Python's pure-Python unpickler on purpose: the C one grows its memo
    to any index a ``LONG_BINPUT`` names (a 10-byte pickle can make it touch
    gigabytes), while this one keeps the memo in a dict, and every read it
    makes is bounded by the bytes actually present.

    Args:
        file: binary file positioned at a pickle.
        path: checkpoint path, for error messages.
        storages: dict root key -> _RootStorage, shared across the pickles
            of one file; None refuses every persistent id.
        legacy: True for the legacy container (persistent ids carry
            view metadata).
    """

    def __init__(self, file, path, storages=None, legacy=False):
        # utf-8 matches torch.load and decodes Python 2 str keys as text.
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._storages = storages
        self._legacy = legacy
        self._globals = _fresh_globals()

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"refusing to unpickle global '{module}.{name}' from {self._path}: "
                "only tensor-rebuild names are allowed") from None

    def persistent_load(self, pid):
        if self._storages is None:
            raise CheckpointError(f"unexpected persistent id {pid!r} in {self._path}")
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        if isinstance(kind, bytes):
            kind = kind.decode("ascii", "replace")
        if kind != "storage":
            raise CheckpointError(
                f"refusing persistent id of kind {kind!r} in {self._path}: only 'storage' is allowed")
        expected = 6 if self._legacy else 5
        if len(pid) != expected:
            raise CheckpointError(f"malformed storage id {pid!r} in {self._path}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage type {storage_type!r} in {self._path} is not a torch storage")
        if not isinstance(key, (str, int)):
            raise CheckpointError(f"storage key {key!r} in {self._path} is not a str")
        root = self._storages.get(key)
        if root is None:
            root = _RootStorage(key, storage_type, _non_negative_int(numel, "storage numel"))
            self._storages[key] = root
        view = pid[5] if self._legacy else None
        if view is None:
            return _StorageView(root)
        # Views are keyed separately but always carve a slice out of a root.
        _view_key, offset, view_numel = view
        view = _StorageView(root, _non_negative_int(offset, "view offset"),
                            _non_negative_int(view_numel, "view numel"))
        if view.offset + view.numel > root.numel:
            raise CheckpointError(f"storage view {pid!r} in {self._path} exceeds its storage")
        return view


# --------------------------------------------------------------------------
# Containers.
# --------------------------------------------------------------------------


def _zip_pickle_name(zf):
    """Returns the ``<archive>/data.pkl`` member name, or None."""
    for name in zf.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name
    return None


def _read_member(path, zf, name, expected=None, limit=None):
    try:
        return read_zip_member(path, zf, name, expected, limit)
    except CheckpointError as e:
        if "zip bomb" in str(e):
            raise CheckpointError(f"{e} (torch.save writes members uncompressed)") from None
        raise


def _read_zip(path, zf):
    """Unpickles a zip-format checkpoint.

    Returns:
        (object, storages, byteorder, read_member) where read_member(root)
        returns the raw bytes of one storage; bytes are read on demand so that
        storages the caller does not need (e.g. optimizer state) are skipped.
    """
    pkl_name = _zip_pickle_name(zf)
    if pkl_name is None:
        raise CheckpointError(f"{path} is a zip archive without an <archive>/data.pkl member")
    prefix = pkl_name[: -len("data.pkl")]
    names = set(zf.namelist())
    if prefix + "constants.pkl" in names:
        raise CheckpointError(f"{path} is a TorchScript archive (torch.jit.save), not a state_dict")
    byteorder = "little"
    if prefix + "byteorder" in names:
        record = _read_member(path, zf, prefix + "byteorder", limit=16)
        byteorder = record.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path} has an unknown byteorder record {byteorder!r}")
    storages = {}
    obj = _RestrictedUnpickler(io.BytesIO(_read_member(path, zf, pkl_name)), path, storages).load()

    def read_storage(root):
        return _read_member(path, zf, f"{prefix}data/{root.key}", expected=root.nbytes)

    return obj, storages, byteorder, read_storage


def _read_legacy(path, f):
    """Unpickles a legacy checkpoint and reads every storage's bytes.

    Args:
        path: checkpoint path, for error messages.
        f: the whole file as a ``BytesIO``: every read is bounded by the
            bytes the file really has.
    """
    magic = _RestrictedUnpickler(f, path).load()
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path} does not start with the torch magic number")
    protocol = _RestrictedUnpickler(f, path).load()
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path} has unsupported legacy protocol version {protocol!r}")
    _RestrictedUnpickler(f, path).load()  # sys_info: type sizes only matter to torch
    storages = {}
    obj = _RestrictedUnpickler(f, path, storages, legacy=True).load()
    keys = _RestrictedUnpickler(f, path).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"{path} has a malformed storage key list")
    for key in keys:
        if not isinstance(key, (str, int)):
            raise CheckpointError(f"{path} lists storage key {key!r}, not a str")
        root = storages.get(key)
        if root is None:
            raise CheckpointError(f"{path} lists storage {key!r} that no tensor references")
        if root.data is not None:
            raise CheckpointError(f"{path} lists storage {key!r} twice")
        root.data = _read_legacy_storage(path, f, root)
    return obj, storages


def _read_legacy_storage(path, f, root):
    """Reads one ``int64 numel + raw bytes`` storage record."""
    header = f.read(8)
    if len(header) != 8:
        raise CheckpointError(f"{path} is truncated: storage {root.key!r} header missing")
    (numel,) = struct.unpack("<q", header)
    if numel != root.numel:
        raise CheckpointError(
            f"{path}: storage {root.key!r} holds {numel} elements, the pickle expects {root.numel}")
    left = len(f.getbuffer()) - f.tell()
    if root.nbytes > left:
        raise CheckpointError(
            f"{path} is truncated: storage {root.key!r} needs {root.nbytes} bytes, found {left}")
    return f.read(root.nbytes)


# --------------------------------------------------------------------------
# Turning lazy tensors into arrays.
# --------------------------------------------------------------------------


def _numel(size):
    n = 1
    for d in size:
        n *= d
    return n


def _check_extent(tensor):
    """Refuses a tensor that reads outside its storage or has more elements than it.

    A view with a zero (or overlapping) stride repeats stored elements: a few
    bytes in the file could expand into gigabytes. torch.save keeps such
    views as views, so this reader refuses them rather than expand them.

    Returns:
        The tensor's number of elements.
    """
    dtype = tensor.dtype
    available = tensor.storage.numel * tensor.storage.dtype.itemsize // dtype.itemsize
    numel = _numel(tensor.size)
    if numel == 0:
        return 0
    if numel > available - min(tensor.offset, available):
        raise ValueError(
            f"tensor of size {tensor.size}, stride {tensor.stride} has {numel} elements but its "
            f"storage holds {available - min(tensor.offset, available)} {dtype.name} elements "
            "after its offset; expanded (stride-0) or overlapping views are not expanded "
            "(save tensor.contiguous() instead)")
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= available:
        raise ValueError(
            f"tensor of size {tensor.size}, stride {tensor.stride}, offset {tensor.offset} "
            f"reads past its storage of {available} {dtype.name} elements")
    return numel


def _materialize(tensor, byteorder):
    """Copies a lazy tensor's elements into a C-contiguous native array."""
    dtype = tensor.dtype
    if tensor.storage.root.data is None:
        raise ValueError(f"storage {tensor.storage.root.key!r} has no data in the file")
    _check_extent(tensor)
    raw = tensor.storage.raw_bytes()
    stored = dtype.file_dtype if byteorder == "little" else dtype.file_dtype.newbyteorder(">")
    flat = np.frombuffer(raw, dtype=stored, count=len(raw) // dtype.itemsize)
    if 0 in tensor.size:
        view = np.zeros(tensor.size, stored)
    else:
        view = np.lib.stride_tricks.as_strided(
            flat[tensor.offset:], shape=tensor.size,
            strides=tuple(s * dtype.itemsize for s in tensor.stride), writeable=False)
    # Not np.ascontiguousarray: it would turn 0-d scalars into 1-d arrays.
    array = dtype.to_numpy(view)
    # torch may serialize lazy negation/conjugation views as flags.
    if tensor.metadata.get("neg"):
        array = np.negative(array)
    if tensor.metadata.get("conj"):
        array = np.conjugate(array)
    return array


def _materialize_all(path, state, byteorder):
    """Materializes every tensor of ``state`` within a budget set by the file.

    Identical views (tied weights) come back as one shared array. The arrays
    together may not exceed :data:`_OUTPUT_FACTOR` times the storage bytes
    the file holds, so no crafted view table can make the reader allocate
    more than a small multiple of the file's own size.
    """
    roots = {id(t.storage.root): t.storage.root for t in state.values()}
    stored = sum(len(r.data) for r in roots.values() if r.data is not None)
    budget = _OUTPUT_FACTOR * stored + _OUTPUT_SLACK
    views, total, out = {}, 0, collections.OrderedDict()
    for key, t in state.items():
        view_key = (id(t.storage.root), t.storage.offset, t.offset, t.size, t.stride, t.dtype.name,
                    bool(t.metadata.get("neg")), bool(t.metadata.get("conj")))
        if view_key not in views:
            try:
                numel = _check_extent(t)
            except ValueError as e:
                raise CheckpointError(f"{path}: tensor {key!r}: {e}") from None
            total += numel * t.dtype.out_itemsize
            if total > budget:
                raise CheckpointError(
                    f"{path}: its tensors would need more than {budget} bytes, over "
                    f"{_OUTPUT_FACTOR}x the {stored} storage bytes the file holds (at {key!r})")
            try:
                views[view_key] = _materialize(t, byteorder)
            except ValueError as e:
                raise CheckpointError(f"{path}: tensor {key!r}: {e}") from None
        out[key] = views[view_key]
    return out


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, _LazyTensor) for k, v in obj.items())


def _find_state_dict(path, obj):
    """Picks the flat name -> tensor dict out of the unpickled object."""
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if _is_tensor_dict(obj.get(key)):
                return obj[key]
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise CheckpointError(
            f"{path} holds a dict that is neither a state_dict nor wraps one under "
            f"'state_dict' or 'model' (keys: {keys})")
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def _starts_with_legacy_magic(path):
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head.startswith(b"\x80"):
        return False
    try:
        return _RestrictedUnpickler(io.BytesIO(head), path).load() == _LEGACY_MAGIC
    except Exception:  # any unpickling failure just means "not this format"
        return False


def is_pth(path):
    """Tells whether a file looks like a PyTorch checkpoint, by content.

    Args:
        path: file path (str or os.PathLike).

    Returns:
        True for a zip with an ``<archive>/data.pkl`` member or a legacy torch
        pickle starting with torch's magic number; False otherwise, including
        for unreadable paths.
    """
    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _zip_pickle_name(zf) is not None
        return _starts_with_legacy_magic(path)
    except (OSError, zipfile.BadZipFile):
        return False


def read_pth(path):
    """Reads a PyTorch state_dict checkpoint without torch and without running its code.

    Args:
        path: ``.pth``/``.pt``/``.bin`` file (str or os.PathLike) written by
            ``torch.save`` in the zip or legacy format.

    Returns:
        collections.OrderedDict mapping each key, exactly as stored, to a
        C-contiguous numpy array (bfloat16 widened to float32; 0-d tensors
        become 0-d arrays). A top-level dict that wraps the tensors under
        'state_dict' or 'model' yields that inner dict.

    Raises:
        CheckpointError: the file is not a supported checkpoint, is truncated
            or corrupt, names a global outside the tensor-rebuild allow-list,
            or does not hold a state_dict. The message names the file.
    """
    path = os.fspath(path)
    try:
        return _read(path)
    except CheckpointError:
        raise
    except Exception as e:  # pickle/zip/numpy errors from a corrupt file
        raise CheckpointError(
            f"cannot read PyTorch checkpoint {path}: {type(e).__name__}: {e}") from e


def _read(path):
    byteorder = "little"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            obj, storages, byteorder, read_member = _read_zip(path, zf)
            state = _find_state_dict(path, obj)
            # Only storages that the returned tensors use are read.
            for root in {id(t.storage.root): t.storage.root for t in state.values()}.values():
                try:
                    root.data = read_member(root)
                except KeyError:
                    raise CheckpointError(
                        f"{path} is missing zip member data/{root.key} (truncated or corrupt)") from None
                if len(root.data) != root.nbytes:
                    raise CheckpointError(
                        f"{path}: storage data/{root.key} has {len(root.data)} bytes, "
                        f"expected {root.nbytes}")
            return _materialize_all(path, state, byteorder)
    if _starts_with_legacy_magic(path):
        # The whole file in memory: no pickle opcode or storage record can
        # then ask for more bytes than the file has.
        with open(path, "rb") as f:
            buf = io.BytesIO(f.read())
        obj, storages = _read_legacy(path, buf)
        state = _find_state_dict(path, obj)
        return _materialize_all(path, state, byteorder)
    if tarfile.is_tarfile(path):
        raise CheckpointError(f"{path} is a tar-format checkpoint (torch < 0.1.10), which is not supported")
    raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither zip nor legacy pickle)")
