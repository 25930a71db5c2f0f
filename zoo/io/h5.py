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
import zipfile

import h5py
import numpy as np

from zoo.io.errors import CheckpointError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


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
    with zipfile.ZipFile(path) as z:
        return "model.weights.h5" in z.namelist()


def _read_legacy(group):
    layers = collections.OrderedDict()
    for lname in group.attrs["layer_names"]:
        lname = _text(lname)
        g = group[lname]
        layers[lname] = [np.asarray(g[_text(w)]) for w in g.attrs.get("weight_names", [])]
    return layers


def _read_keras3(root):
    layers = collections.OrderedDict()

    def visit(group):
        for key in group:
            child = group[key]
            if not isinstance(child, h5py.Group):
                continue
            if "vars" in child:
                vars_group = child["vars"]
                arrays = [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]
                if arrays:
                    name = _text(vars_group.attrs.get("name", key))
                    layers[name] = arrays
            if "layers" in child:
                visit(child["layers"])

    if "layers" in root:
        visit(root["layers"])
    return layers


def _read_file(f):
    if "layer_names" in f.attrs:
        return _read_legacy(f)
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return _read_legacy(f["model_weights"])
    if "layers" in f:
        return _read_keras3(f)
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
        CheckpointError: the file is truncated, corrupt or holds no weights.
    """
    try:
        if is_keras_archive(path):
            with zipfile.ZipFile(path) as z:
                data = z.read("model.weights.h5")
            with h5py.File(io.BytesIO(data), "r") as f:
                layers = _read_file(f)
        else:
            with h5py.File(path, "r") as f:
                layers = _read_file(f)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: cannot read Keras weights ({e})") from e
    return collections.OrderedDict((k, v) for k, v in layers.items() if v)


def describe_layout(path):
    """Returns ``"keras3"``, ``"legacy"`` or ``"keras_archive"`` for a Keras file."""
    if is_keras_archive(path):
        return "keras_archive"
    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs or "model_weights" in f:
            return "legacy"
        return "keras3"
