"""``zoo.model_info``: parameters, multiply-adds and output stride of a model."""

import math

import keras

from zoo.analysis.flops import count_flops
from zoo.assembler import min_input_table
from zoo.registry import get_entry
from zoo.weights import available_tags


def count_parameters(model):
    """Learned parameters, the count papers and torchvision report.

    BatchNorm's moving mean and variance are running statistics (PyTorch
    buffers), not parameters, so they are left out; Keras's
    ``count_params()`` includes them. Frozen layers still count.

    Args:
        model: a Keras model, or an iterable of built layers (a part of a
            model, e.g. its head's layers).

    Returns:
        The count, an int.
    """
    if isinstance(model, keras.Model):
        layers, total = model.layers, model.count_params()
    else:
        layers = list(model)
        total = sum(layer.count_params() for layer in layers)
    stats = sum(
        math.prod(w.shape)
        for layer in layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    )
    return int(total - stats)


def model_info(name, input_size=(224, 224), **kwargs):
    """Facts about a registered model at one input size.

    Args:
        name: a registry name.
        input_size: ``(H, W)`` at which to count multiply-adds.
        **kwargs: builder arguments (e.g. ``output_stride=8``, ``mode``).

    Returns:
        A dict with ``name``, ``family``, ``params`` (learned parameters,
        without BatchNorm's running statistics), ``keras_params`` (Keras's
        ``count_params()``, with them), ``flops`` (multiply-adds,
        batch 1, counted analytically), ``input_size``, ``output_stride``,
        ``modes``, ``weights`` (published tags) and, where the family adds
        them, more keys (e.g. Inception's per-block savings).
    """
    entry = get_entry(name)
    kwargs.setdefault("mode", entry.info_mode)
    h, w = input_size
    model = entry.builder(weights=None, input_shape=(h, w, 3), **kwargs)
    flops, per_layer = count_flops(model, per_layer=True)
    info = {
        "name": entry.name,
        "family": entry.family,
        "params": count_parameters(model),
        "keras_params": int(model.count_params()),
        "flops": int(flops),
        "input_size": (h, w),
        "output_stride": model.zoo["output_stride"],
        "mode": kwargs["mode"],
        "modes": list(entry.modes),
        "weights": available_tags(entry.name),
    }
    # The pyramid of the same configuration: the dense-only options do not apply.
    dense_only = ("head", "head_options", "aux_head")
    features_kwargs = {k: v for k, v in kwargs.items() if k not in dense_only}
    features = entry.builder(weights=None, input_shape=(h, w, 3),
                             **{**features_kwargs, "mode": "features"}) if "features" in entry.modes else None
    if features is not None:
        info["features"] = {k: {"stride": 2 ** int(k[1:]), "channels": int(t.shape[-1])}
                            for k, t in features.output.items()}
    info["min_input"] = min_input_table(entry.name, kwargs.get("output_stride"))
    if entry.info_hook is not None:
        info.update(entry.info_hook(model, (h, w), per_layer))
    return info
