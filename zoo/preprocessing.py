"""Input preprocessing, as recorded per weights tag in ``zoo/weights/manifest.json``.

One home for the data pipelines (tf.data), the heatmap CLI and users: the
functions take numpy arrays or tensors and return float32 tensors.
:func:`preprocess`/:func:`unpreprocess` are tf.data ops (TensorFlow is
imported when they run, so ``import zoo`` on JAX or torch does not load it);
the layer uses ``keras.ops`` on every backend.
"""

import keras
from keras import ops

from zoo import weights as zw

# The preprocessing of a model with no published weights at all (random init).
DEFAULT_PREPROCESSING = {"type": "torch", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def preprocessing_for(model_name, weights=None, file_key=None):
    """The input preprocessing a model's weights expect, from the manifest.

    Args:
        model_name: registry name.
        weights: a published tag, a file path, or None.
        file_key: for tags with several files (ResNet's ``keras_top`` /
            ``torch``), the file whose own ``preprocessing`` wins.

    Returns:
        The manifest's ``preprocessing`` dict for the tag (or its file); for a
        path, the model's first published tag's (a fine-tuned file keeps its
        origin's preprocessing); without weights, :func:`family_default`'s,
        the record a builder's ``include_preprocessing=True`` puts inside.
    """
    if weights is None:
        return family_default(model_name, file_key)
    tags = zw.available_tags(model_name)
    candidates = [weights] if weights in tags else tags
    for tag in candidates:
        entry = zw.manifest_entry(model_name, tag)
        per_file = entry.get("files", {}).get(file_key, {}).get("preprocessing")
        pre = per_file or entry.get("preprocessing")
        if pre:
            return pre
    return dict(DEFAULT_PREPROCESSING)


def preprocess(image, spec=None):
    """uint8 RGB images -> the float32 input a model's weights expect.

    Args:
        image: (..., H, W, 3) RGB in 0..255.
        spec: ``{"type": "caffe", "channels": "BGR", "mean": [B, G, R]}``
            (0..255 scale), ``{"type": "torch", "mean": [...], "std": [...]}``
            (0..1 scale, RGB), ``{"type": "tf"}`` (-1..1) or None (default).

    Returns:
        A float32 tensor.
    """
    import tensorflow as tf

    spec = spec or DEFAULT_PREPROCESSING
    x = tf.cast(image, tf.float32)
    kind = spec.get("type", "torch")
    if kind == "caffe":
        if spec.get("channels", "BGR") == "BGR":
            x = x[..., ::-1]
        return x - tf.constant(spec["mean"], tf.float32)
    if kind == "torch":
        return (x / 255.0 - tf.constant(spec["mean"], tf.float32)) / tf.constant(spec["std"], tf.float32)
    if kind == "tf":
        return x / 127.5 - 1.0
    raise ValueError(f"unknown preprocessing type {kind!r}; valid choices: caffe, torch, tf")


def unpreprocess(x, spec=None):
    """Inverse of :func:`preprocess` back to uint8 RGB (for overlays)."""
    import tensorflow as tf

    spec = spec or DEFAULT_PREPROCESSING
    x = tf.cast(x, tf.float32)
    kind = spec.get("type", "torch")
    if kind == "caffe":
        x = x + tf.constant(spec["mean"], tf.float32)
        if spec.get("channels", "BGR") == "BGR":
            x = x[..., ::-1]
    elif kind == "torch":
        x = (x * tf.constant(spec["std"], tf.float32) + tf.constant(spec["mean"], tf.float32)) * 255.0
    else:
        x = (x + 1.0) * 127.5
    return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)


@keras.saving.register_keras_serializable(package="zoo")
class Preprocess(keras.layers.Layer):
    """A model's first layer: RGB images (uint8, or floats in 0..255) in, the
    input its weights expect out, so that an exported model takes raw pixels.

    Args:
        spec: a manifest ``preprocessing`` record (see :func:`preprocess`).
    """

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        check_spec(self.spec)

    def call(self, x):
        # uint8 (or any int) pixels are cast here, inside the graph, so that an
        # exported model can be fed decoded images without a float copy.
        dtype = self.compute_dtype
        x = ops.cast(x, dtype)
        kind = self.spec.get("type", "torch")
        if kind == "caffe":
            if self.spec.get("channels", "BGR") == "BGR":
                x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(self.spec["mean"], dtype)
        if kind == "torch":
            mean = ops.convert_to_tensor(self.spec["mean"], dtype)
            std = ops.convert_to_tensor(self.spec["std"], dtype)
            return (x / 255.0 - mean) / std
        return x / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "spec": self.spec}


# Sane ranges: caffe means are on the 0..255 scale, torch means and stds on
# the 0..1 scale (a little slack either way for unusual datasets).
_RANGES = {
    ("caffe", "mean"): (-255.0, 510.0),
    ("torch", "mean"): (-1.0, 2.0),
    ("torch", "std"): (1e-3, 10.0),
    ("caffe", "std"): (1e-3, 1000.0),
}


def check_spec(spec):
    """Checks a preprocessing record, field by field.

    Args:
        spec: a manifest ``preprocessing`` record (a dict).

    Returns:
        ``spec`` unchanged.

    Raises:
        ValueError: naming the bad field: not a dict; unknown ``type``; a
            caffe/torch record without a 3-value ``mean`` (and ``std``); a
            value that is not a real number (strings and bools included),
            not finite, or outside the sane range (caffe mean in
            [-255, 510] on the 0..255 scale; torch mean in [-1, 2] and std
            in [0.001, 10] on the 0..1 scale; a std must be > 0).
    """
    import math
    import numbers

    if not isinstance(spec, dict):
        raise ValueError(f"a preprocessing record must be a dict; got {type(spec).__name__}")
    kind = spec.get("type", "torch")
    if kind not in ("caffe", "torch", "tf"):
        raise ValueError(f"unknown preprocessing type {kind!r}; valid choices: caffe, torch, tf")
    needed = {"caffe": ("mean",), "torch": ("mean", "std"), "tf": ()}[kind]
    for key in needed:
        value = spec.get(key)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
            raise ValueError(f"{kind} preprocessing needs a 3-value {key!r} (per RGB/BGR channel); got {value!r}")
    for key in ("mean", "std"):
        if key not in spec or kind == "tf":
            continue
        value = spec[key]
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
            raise ValueError(f"preprocessing {key!r} must be 3 numbers; got {value!r}")
        lo, hi = _RANGES[(kind, key)]
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"preprocessing {key}[{i}] must be a number; got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"preprocessing {key}[{i}] must be finite; got {v!r}")
            if key == "std" and float(v) <= 0:
                raise ValueError(f"preprocessing std[{i}] must be > 0; got {v!r}")
            if not lo <= float(v) <= hi:
                raise ValueError(f"preprocessing {key}[{i}] = {v!r} is outside the sane range "
                                 f"[{lo:g}, {hi:g}] for {kind} preprocessing")
    if kind == "caffe" and spec.get("channels", "BGR") not in ("BGR", "RGB"):
        raise ValueError(f"caffe preprocessing channels must be 'BGR' or 'RGB'; got {spec['channels']!r}")
    return spec


def preprocessing_layer(model_name, weights=None, preprocessing=None, file_key=None):
    """The :class:`Preprocess` layer a builder puts first with ``include_preprocessing=True``.

    Args:
        model_name: registry name.
        weights: the builder's ``weights`` (tag, path or None: the
            family's ImageNet record, see :func:`family_default`).
        preprocessing: an explicit record that overrides the manifest's.
        file_key: see :func:`preprocessing_for`.

    Returns:
        A :class:`Preprocess` layer named ``"preprocess"``.
    """
    spec = preprocessing if preprocessing is not None else preprocessing_for(model_name, weights, file_key)
    return Preprocess(spec, name="preprocess")


def family_default(model_name, file_key=None):
    """The preprocessing of a model's ImageNet weights, for ``weights=None``.

    A model built without weights but with its preprocessing inside gets
    the record its family's ImageNet file uses (caffe for VGG and the
    keras.applications ResNet layout, torch for the torchvision layout,
    tf for InceptionV3), so that loading those weights later needs no
    other input.

    Args:
        model_name: registry name.
        file_key: the file the builder would load (ResNet's layouts).

    Returns:
        The ``imagenet`` tag's record, else the first published tag's, else
        :data:`DEFAULT_PREPROCESSING`.
    """
    tags = zw.available_tags(model_name)
    if not tags:
        return dict(DEFAULT_PREPROCESSING)
    return preprocessing_for(model_name, "imagenet" if "imagenet" in tags else tags[0], file_key)
