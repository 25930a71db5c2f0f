"""Conversion of checkpoint contents into per-layer Keras weight lists.

A converter is a name table plus a transpose rule:

* names: a family gives a ``WeightMap`` whose ``torch`` function maps a
  PyTorch module path (``layer3.0.conv1``) to a Keras layer name
  (``layer3_0_conv1``) and whose ``h5`` dict renames Keras layers (``fc1`` ->
  ``fc6`` when a classifier's Dense head becomes FCN's conv head);
* transposes: chosen by the *target* Keras layer's class, never by branching
  on the model (OIHW -> HWIO, Linear (out, in) -> Dense (in, out), and Dense or
  Linear kernels reshaped into 1x1 or 7x7 conv kernels).
"""

import collections
import dataclasses
from typing import Callable, Mapping, Optional, Tuple

import keras
import numpy as np

# PyTorch parameter names, in Keras weight order, per target layer type.
_TORCH_ORDER = (
    (keras.layers.BatchNormalization, ("weight", "bias", "running_mean", "running_var")),
    (keras.layers.Conv2DTranspose, ("weight", "bias")),
    (keras.layers.DepthwiseConv2D, ("weight", "bias")),
    (keras.layers.Conv2D, ("weight", "bias")),
    (keras.layers.Dense, ("weight", "bias")),
)

TORCH_SKIP = ("num_batches_tracked",)


def default_torch_name(path):
    """``layer3.0.conv1`` -> ``layer3_0_conv1``."""
    return path.replace(".", "_")


@dataclasses.dataclass(frozen=True)
class WeightMap:
    """How a checkpoint's names meet a model's layer names.

    Attributes:
        torch: maps a PyTorch module path to a Keras layer name, or to None for
            modules the model deliberately does not have.
        h5: renames layers of Keras files (file name -> model name): a dict,
            or a callable from the file's weighted layer names, in file
            order, to such a dict (keras.applications' InceptionV3 files
            carry automatic names that pair with the model's by position).
        optional: fnmatch patterns of model layers that may be absent from the
            file and keep their initial values (e.g. a new segmentation head).
        ignore: fnmatch patterns of file layers (after renaming) that the model
            does not use (e.g. the classifier when building a feature
            extractor, or weights upstream stores but never runs).
        torch_flatten: ``{keras Dense layer: (h, w, c)}`` for PyTorch Linear
            layers fed by ``torch.flatten`` of a (c, h, w) map: their input
            rows are reordered from C, H, W to Keras Flatten's H, W, C.
        layout: the published layout the model was built in, or None.
        layouts: ``{layout: (name regex, builder option)}``: when a file does
            not fit, the loader recognises another layout's names in what it
            already read and names the option that builds it.
    """

    torch: Callable[[str], Optional[str]] = default_torch_name
    h5: object = dataclasses.field(default_factory=dict)
    optional: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()
    torch_flatten: Mapping[str, Tuple[int, int, int]] = dataclasses.field(default_factory=dict)
    layout: Optional[str] = None
    layouts: Mapping[str, Tuple[str, str]] = dataclasses.field(default_factory=dict)


def torch_to_keras_kernel(array, target_shape, layer):
    """Re-lays one PyTorch weight tensor for the Keras layer that receives it.

    Args:
        array: the PyTorch tensor as numpy.
        target_shape: the shape of the Keras variable it becomes.
        layer: the receiving Keras layer (its class picks the rule).

    Returns:
        The array in Keras layout. Shape checks happen later, in the loader.
    """
    if array.ndim <= 1:
        return array
    if hasattr(layer, "from_torch"):
        return layer.from_torch(array)
    if isinstance(layer, keras.layers.DepthwiseConv2D) and array.ndim == 4:
        # (C*m, 1, kh, kw) -> (kh, kw, C, m)
        channels, mult = target_shape[2], target_shape[3] if len(target_shape) == 4 else 1
        return array.reshape(channels, mult, *array.shape[2:]).transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D) and len(target_shape) == 4:
        if array.ndim not in (2, 4):
            return array  # wrong rank: the loader reports it with file and layer
        if array.ndim == 2:
            # Linear (out, in) with `in` flattened in PyTorch's C, H, W order.
            kh, kw, cin, _ = target_shape
            array = array.reshape(array.shape[0], cin, kh, kw)
        # Conv2d (O, I, kh, kw) and ConvTranspose2d (I, O, kh, kw) both land on
        # Keras's (kh, kw, I, O) and (kh, kw, O, I) with the same permutation.
        return array.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense) and array.ndim == 2:
        return array.T
    return array


def adapt_input_kernel(kernel, in_channels):
    """Adapts a pretrained RGB first-conv kernel to ``in_channels`` inputs.

    timm's ``adapt_input_conv`` rule, on a Keras ``(kh, kw, 3, out)`` kernel:
    one channel sums the RGB kernels (so a grey image gives what the RGB
    model gives on that image repeated three times); any other count repeats
    R, G, B cyclically up to ``in_channels`` and scales by ``3 / in_channels``
    (keeping the expected activation scale when every channel carries a
    similar signal). Two channels follow the same repeat rule (R, G, x1.5).

    Args:
        kernel: the file's kernel, ``(kh, kw, 3, out)``.
        in_channels: the model's input channels.

    Returns:
        A ``(kh, kw, in_channels, out)`` kernel in the input's dtype.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected a (kh, kw, 3, out) kernel, got {kernel.shape}")
    work = kernel.astype(np.float32)
    if in_channels == 1:
        out = work.sum(axis=2, keepdims=True)
    else:
        repeats = -(-in_channels // 3)
        out = np.tile(work, (1, 1, repeats, 1))[:, :, :in_channels] * np.float32(3.0 / in_channels)
    return out.astype(kernel.dtype)


def input_fed_layers(model):
    """Names of weighted layers fed by a model input through weightless layers only.

    These are the first convolutions whose kernels :func:`adapt_input_kernel`
    may adapt; a deeper layer with a wrong channel count stays an error.
    """
    inputs = {id(t) for t in model.inputs}
    names = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            tensor = layer.input
        except (AttributeError, ValueError):  # shared or never-called layers
            continue
        for _ in range(64):
            if isinstance(tensor, (list, tuple, dict)):
                break  # a merge: not the stem
            if id(tensor) in inputs:
                names.add(layer.name)
                break
            history = getattr(tensor, "_keras_history", None)
            op = history[0] if history else None
            if op is None or getattr(op, "weights", None):
                break
            try:
                tensor = op.input
            except (AttributeError, ValueError):
                break
    return names


def _torch_order(layer):
    custom = getattr(layer, "torch_param_names", None)
    if custom is not None:
        return tuple(custom)
    for cls, names in _TORCH_ORDER:
        if isinstance(layer, cls):
            return names
    return ("weight", "bias")


def strip_module_prefix(state):
    """Removes DataParallel's ``module.`` prefix when every key carries it."""
    if state and all(k.startswith("module.") for k in state):
        return collections.OrderedDict((k[len("module."):], v) for k, v in state.items())
    return state


def torch_layers(state, model, weight_map):
    """Groups a flat state_dict into ``{keras_layer_name: [arrays]}``.

    Args:
        state: ``{"layer3.0.conv1.weight": array, ...}``.
        model: the receiving ``keras.Model`` (layer classes pick the layouts).
        weight_map: a :class:`WeightMap`.

    Returns:
        ``(layers, origin)``: the ordered per-layer weight lists, and a dict
        from Keras layer name to the PyTorch module path it came from (for
        error messages).
    """
    state = strip_module_prefix(state)
    groups = collections.OrderedDict()
    for key, value in state.items():
        path, _, param = key.rpartition(".")
        if param in TORCH_SKIP:
            continue
        groups.setdefault(path, {})[param] = value
    by_name = {layer.name: layer for layer in model.layers}
    layers, origin = collections.OrderedDict(), {}
    for path, params in groups.items():
        name = weight_map.torch(path)
        if name is None:
            continue
        layer = by_name.get(name)
        if layer is None:
            # Keep the raw tensors: the loader reports it as unexpected.
            layers[name] = list(params.values())
            origin[name] = path
            continue
        order = [p for p in _torch_order(layer) if p in params]
        extra = sorted(set(params) - set(order))
        raw = [params[p] for p in order + extra]
        if extra:
            layers[name] = raw
        else:
            try:
                if name in weight_map.torch_flatten and isinstance(layer, keras.layers.Dense):
                    h, w, c = weight_map.torch_flatten[name]
                    weight = params["weight"]
                    params = dict(params, weight=weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
                                  .reshape(weight.shape))
                targets = [tuple(w.shape) for w in layer.weights]
                layers[name] = [
                    torch_to_keras_kernel(params[p], t, layer)
                    for p, t in zip(order, targets + [()] * len(order))
                ]
            except (ValueError, TypeError, IndexError, KeyError):
                # A tensor of the wrong rank or size cannot be re-laid: keep
                # it as stored, so that the loader's shape check names the
                # file, the layer and both shapes.
                layers[name] = raw
        origin[name] = path
    return layers, origin


def h5_layers(layers, model, weight_map):
    """Renames a Keras file's layers and reshapes Dense kernels bound for convs.

    Returns:
        ``(layers, origin)`` like :func:`torch_layers`.
    """
    by_name = {layer.name: layer for layer in model.layers}
    out, origin = collections.OrderedDict(), {}
    renames = weight_map.h5(list(layers)) if callable(weight_map.h5) else weight_map.h5
    for file_name, arrays in layers.items():
        name = renames.get(file_name, file_name)
        layer = by_name.get(name)
        if isinstance(layer, keras.layers.Conv2D) and layer.weights:
            kernel_shape = tuple(layer.weights[0].shape)
            if arrays and arrays[0].ndim == 2 and arrays[0].size == np.prod(kernel_shape):
                # Keras's Flatten over (h, w, c) is row-major, exactly the
                # (kh, kw, cin) order of a conv kernel: a plain reshape.
                arrays = [arrays[0].reshape(kernel_shape)] + list(arrays[1:])
        out[name] = list(arrays)
        origin[name] = file_name
    return out, origin
