"""Readers for Keras weight files stored in HDF5.

Two layouts exist:

* Keras 3 ``.weights.h5`` (``model.save_weights``): ``layers/<path>/vars/<i>``,
  where the ``vars`` group carries the layer's real name as an attribute.
* The legacy Keras 1/2 layout used by keras.applications' published files:
  root attribute ``layer_names``, and per layer a ``weight_names`` attribute
  listing its datasets in weight order. Names are often byte strings and carry
  suffixes such as ``:0`` or ``_W_1:0``, so they are used only to find the
  datasets, never to decide which weight is which: order decides that.
"""

import collections
import io
import os
import zipfile

import h5py
import numpy as np

from zoo.weights.readers.errors import CheckpointError
from zoo.weights.readers.limits import read_zip_member

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# Datasets up to this size may be unallocated (HDF5 fill values) or stored
# compressed without further checks.
_SMALL_DATASET = 1 << 16
# A filtered (compressed) dataset may inflate to at most this many times its
# stored bytes. Keras writes weights uncompressed.
_MAX_FILTER_RATIO = 64
# Deeper nesting of Keras 3 ``layers`` groups than this is not a model.
_MAX_DEPTH = 64


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def is_hdf5(path):
    """True when the file starts with the HDF5 signature."""
    with open(path, "rb") as f:
        return f.read(8) == HDF5_MAGIC


def is_keras_archive(path):
    """True for a Keras 3 ``.keras`` zip archive holding ``model.weights.h5``."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "model.weights.h5" in z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


class _Budget:
    """Bytes a file may still hand out: a small multiple of its own size."""

    def __init__(self, file_bytes):
        self.left = _MAX_FILTER_RATIO * file_bytes + _SMALL_DATASET

    def take(self, nbytes, where):
        self.left -= nbytes
        if self.left < 0:
            raise CheckpointError(f"{where}: its datasets add up to far more bytes than the file holds")


def _names(value, where):
    """An attribute that must be a 1-D list of names, as strs."""
    if isinstance(value, (bytes, str)):
        return [_text(value)]
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.size == 0:
        return []  # h5py stores an empty name list as an empty float array
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "SUO":
        items = list(value)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise CheckpointError(f"attribute {where} is {type(value).__name__} {value!r:.60}, not a list of names")
    if not all(isinstance(v, (bytes, str)) for v in items):
        raise CheckpointError(f"attribute {where} holds non-text names")
    return [_text(v) for v in items]


def _weight(obj, where, budget):
    """Reads one weight dataset, refusing non-numbers and sizes the file cannot hold."""
    if not isinstance(obj, h5py.Dataset):
        kind = "nothing" if obj is None else type(obj).__name__
        raise CheckpointError(f"{where}: expected a weight dataset, found {kind}")
    if obj.shape is None:
        raise CheckpointError(f"{where}: empty (null) dataset")
    if obj.dtype.kind not in "biuf":
        raise CheckpointError(f"{where}: dataset of {obj.dtype} is not numeric weights")
    nbytes = int(np.prod(obj.shape, dtype=object)) * obj.dtype.itemsize
    if nbytes > _SMALL_DATASET:
        stored = obj.id.get_storage_size()
        allowed = stored * (_MAX_FILTER_RATIO if obj.compression or obj.id.get_create_plist().get_nfilters() else 1)
        if nbytes > allowed:
            raise CheckpointError(
                f"{where}: dataset of shape {obj.shape} needs {nbytes} bytes but the file "
                f"stores {stored} for it")
    budget.take(nbytes, where)
    return np.asarray(obj[()])


def _group(obj, where):
    if not isinstance(obj, h5py.Group):
        kind = "nothing" if obj is None else type(obj).__name__
        raise CheckpointError(f"{where}: expected a group, found {kind}")
    return obj


def _read_legacy(group, budget):
    layers = collections.OrderedDict()
    for lname in _names(group.attrs["layer_names"], "layer_names"):
        g = _group(group.get(lname), f"layer {lname!r}")
        weight_names = _names(g.attrs.get("weight_names", []), f"{lname}/weight_names")
        layers[lname] = [_weight(g.get(w), f"layer {lname!r} weight {w!r}", budget) for w in weight_names]
    return layers


def _read_keras3(root, budget):
    layers = collections.OrderedDict()
    seen = set()

    def visit(group, depth):
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"'layers' groups nested deeper than {_MAX_DEPTH}")
        if group.id in seen:
            raise CheckpointError(f"group {group.name} is reached twice (a link cycle or shared group)")
        seen.add(group.id)
        for key in group:
            child = group.get(key)
            if not isinstance(child, h5py.Group):
                continue
            if "vars" in child:
                vars_group = _group(child.get("vars"), f"{child.name}/vars")
                arrays = [_weight(vars_group.get(str(i)), f"{vars_group.name}/{i}", budget)
                          for i in range(len(vars_group))]
                if arrays:
                    name = _text(vars_group.attrs.get("name", key))
                    layers[name] = arrays
            if "layers" in child:
                visit(_group(child.get("layers"), f"{child.name}/layers"), depth + 1)

    if "layers" in root:
        visit(_group(root.get("layers"), "/layers"), 0)
    return layers


def _read_file(f, budget):
    if "layer_names" in f.attrs:
        return _read_legacy(f, budget)
    if "model_weights" in f and isinstance(f.get("model_weights"), h5py.Group) \
            and "layer_names" in f["model_weights"].attrs:
        return _read_legacy(f["model_weights"], budget)
    if "layers" in f:
        return _read_keras3(f, budget)
    raise CheckpointError("no Keras weights found (neither 'layer_names' nor 'layers')")


def read_h5(path):
    """Reads a Keras weights file into ``{layer_name: [arrays in weight order]}``.

    Args:
        path: a Keras 3 ``.weights.h5``, a keras.applications legacy ``.h5``,
            or a ``.keras`` archive.

    Returns:
        An ordered dict from layer name to its list of numpy arrays. Layers
        without weights are left out.

    Raises:
        CheckpointError: the file is truncated, corrupt, malformed (a dataset
            where a group belongs, names that are not text, weights that are
            not numbers, sizes the file cannot hold) or holds no weights. The
            message names the file.
    """
    try:
        if is_keras_archive(path):
            with zipfile.ZipFile(path) as z:
                data = read_zip_member(path, z, "model.weights.h5")
            budget = _Budget(len(data))
            with h5py.File(io.BytesIO(data), "r") as f:
                layers = _read_file(f, budget)
        else:
            budget = _Budget(os.path.getsize(path))
            with h5py.File(path, "r") as f:
                layers = _read_file(f, budget)
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None
    except Exception as e:  # h5py/HDF5 and zip errors from a corrupt file
        raise CheckpointError(f"{path}: cannot read Keras weights ({type(e).__name__}: {e})") from e
    return collections.OrderedDict((k, v) for k, v in layers.items() if v)
