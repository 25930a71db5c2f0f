"""Analytic multiply-add counts for Keras models built at a fixed input size.

Each weighted layer's count follows from its config and its input/output
shapes; pooling, activations and additions are not counted (the usual MAC
convention in the papers and in torchvision's tables). A custom layer can
define ``flops(input_shape, output_shape)`` to report its own cost.
"""

import math

import keras


def _shape(tensor):
    if isinstance(tensor, (list, tuple)):
        return [tuple(t.shape) for t in tensor]
    return tuple(tensor.shape)


def layer_flops(layer, in_shape, out_shape):
    """Multiply-adds of one layer call, batch size 1.

    Args:
        layer: a Keras layer.
        in_shape: its input shape including the batch axis.
        out_shape: its output shape including the batch axis.

    Returns:
        An int.
    """
    custom = getattr(layer, "flops", None)
    if callable(custom):
        return int(custom(in_shape, out_shape))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return math.prod(out_shape[1:]) * kh * kw
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        return math.prod(in_shape[1:]) * kh * kw * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = in_shape[-1] // layer.groups
        return math.prod(out_shape[1:]) * kh * kw * cin
    if isinstance(layer, keras.layers.Dense):
        return math.prod(out_shape[1:]) * in_shape[-1]
    return 0


def count_flops(model, per_layer=False):
    """Multiply-adds of one forward pass of a model with a static input size.

    Args:
        model: a functional ``keras.Model`` whose input shape is fully known.
        per_layer: also return ``{layer_name: macs}``.

    Returns:
        Total MACs (an int), or ``(total, per_layer_dict)``.
    """
    table = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        in_shape, out_shape = _shape(layer.input), _shape(layer.output)
        if isinstance(in_shape, list):
            in_shape = in_shape[0]
        if isinstance(out_shape, list):
            out_shape = out_shape[0]
        if any(d is None for d in in_shape[1:] + out_shape[1:]):
            raise ValueError(
                f"count_flops needs a static input size; layer {layer.name} has {in_shape}"
            )
        macs = layer_flops(layer, in_shape, out_shape)
        if macs:
            table[layer.name] = macs
    total = sum(table.values())
    return (total, table) if per_layer else total
