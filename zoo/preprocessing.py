"""Input preprocessing, as recorded per weights tag in ``weights/manifest.json``.

One home for the data pipelines (tf.data), the heatmap CLI and users: the
functions take numpy arrays or tensors and return float32 tensors.
"""

import tensorflow as tf

from zoo import weights as zw

# The preprocessing of a model without published weights (random init).
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
        origin's preprocessing); :data:`DEFAULT_PREPROCESSING` without weights.
    """
    tags = zw.available_tags(model_name)
    if weights is None:
        return dict(DEFAULT_PREPROCESSING)
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
