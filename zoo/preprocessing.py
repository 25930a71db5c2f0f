"""Input preprocessing, as recorded per weights tag in ``zoo/weights/manifest.json``.

One home for the data pipelines (tf.data), the heatmap CLI and users: the
functions take numpy arrays or tensors and return float32 tensors.
:func:`preprocess`/:func:`unpreprocess` are tf.data ops (TensorFlow is
imported when they run, so ``import zoo`` on JAX or torch does not load it);
the layer uses ``keras.ops`` on every backend.
"""

import os

import keras
from keras import ops

from zoo import weights as zw

# The preprocessing of a model with no published weights at all (random init).
DEFAULT_PREPROCESSING = {"type": "torch", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _file_records(model_name):
    """``[(tag, file_key, file record, preprocessing)]`` of every published
    file of ``model_name`` (the file's own record wins over its tag's)."""
    out = []
    for tag in zw.available_tags(model_name):
        entry = zw.manifest_entry(model_name, tag)
        files = entry.get("files") or {None: entry}
        for key, record in files.items():
            pre = record.get("preprocessing") or entry.get("preprocessing")
            if pre:
                out.append((tag, key, record, pre))
    return out


def match_manifest_file(model_name, path):
    """The published file a weights path is, or None.

    Matched by file name (the manifest's ``file``), then, when cheap, by
    hash: the verified-files cache already records which manifest hash a
    local file matched at its current size and mtime (no file is hashed
    here). An ``hf://owner/repo`` URI matches the file whose URL is in that
    hub repo.

    Returns:
        ``(tag, file_key, preprocessing)`` or None.
    """
    text = str(path)
    records = _file_records(model_name)
    if text.startswith(zw.HF_PREFIX):
        try:
            repo, fname = zw.parse_hf(text)
        except ValueError:
            return None
        for tag, key, record, pre in records:
            if f"huggingface.co/{repo}/resolve/main/{fname}" in record.get("url", ""):
                return tag, key, pre
        return None
    base = os.path.basename(text)
    for tag, key, record, pre in records:
        if record.get("file") == base:
            return tag, key, pre
    if os.path.isfile(text):
        for tag, key, record, pre in records:
            if record.get("hash") and zw.is_verified(text, record["hash"]):
                return tag, key, pre
    return None


def published_preprocessing(model_name, weights):
    """The manifest preprocessing record of a published tag, or of the
    published file a path is (:func:`match_manifest_file`); ``{}`` for None,
    an unknown file or a tag without a record. Never warns: builder options
    that follow the published file (GoogLeNet's ``transform_input``) read it.
    """
    if weights is None:
        return {}
    if isinstance(weights, str) and weights in zw.available_tags(model_name):
        return dict(zw.manifest_entry(model_name, weights).get("preprocessing") or {})
    found = match_manifest_file(model_name, weights)
    return dict(found[2]) if found else {}


def _file_kind(path):
    """``"keras_legacy"`` (keras.applications ``.h5``), ``"keras"`` (a
    Keras ``.weights.h5``/``.keras``), ``"torch"`` (``.pth``/``.safetensors``)
    or None (unreadable, missing)."""
    from zoo.weights.readers import h5 as h5_io
    from zoo.weights.readers import pth as pth_io
    from zoo.weights.readers import safetensors as st_io

    try:
        if str(path).startswith(zw.HF_PREFIX):
            return "torch"
        if not os.path.isfile(path):
            return None
        if h5_io.is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as f:
                return "keras_legacy" if "layer_names" in f.attrs else "keras"
        if h5_io.is_keras_archive(path):
            return "keras"
        if pth_io.is_pth(path) or st_io.is_safetensors(path):
            return "torch"
    except Exception:  # an unreadable file: the loader names the problem
        return None
    return None


def preprocessing_for_path(model_name, path, file_key=None):
    """The preprocessing of weights given by path (issue 19, item 3).

    1. The published file it is (:func:`match_manifest_file`): that file's
       record, silently.
    2. Otherwise the file's own layout, with a warning saying so:
       keras.applications' legacy ``.h5`` takes the model's published
       legacy-``.h5`` record (caffe for VGG and keras-layout ResNet, tf for
       InceptionV3); a PyTorch ``.pth``/``.safetensors`` (torchvision,
       fyu, timm) takes ImageNet torch normalisation; a Keras
       ``.weights.h5``/``.keras`` (a zoo save) takes the record of the
       build's own layout (:func:`family_default`).
    3. A legacy ``.h5`` for a model with no legacy record is refused:
       pass ``preprocessing=`` (a record) to the builder.

    A file that does not exist or cannot be read gets :func:`family_default`
    (the load reports the file).

    Raises:
        ValueError: the file's preprocessing cannot be told.
    """
    import warnings

    found = match_manifest_file(model_name, path)
    if found is not None:
        return dict(found[2])
    kind = _file_kind(path)
    if kind is None:
        return family_default(model_name, file_key)
    if kind == "torch":
        pre = dict(DEFAULT_PREPROCESSING)
        how = "a PyTorch file (torchvision/fyu/timm layout): ImageNet torch normalisation"
    elif kind == "keras_legacy":
        legacy = [pre for _, _, record, pre in _file_records(model_name)
                  if str(record.get("file", "")).endswith(".h5")]
        if not legacy:
            raise ValueError(
                f"{path}: a keras.applications-style .h5 file, but {model_name} publishes no such "
                f"file, so its preprocessing cannot be told; pass preprocessing= (e.g. "
                f"{{'type': 'caffe', 'mean': [103.939, 116.779, 123.68]}}) to the builder")
        pre = dict(legacy[0])
        how = f"a keras.applications legacy .h5: {pre.get('type')} preprocessing"
    else:
        pre = family_default(model_name, file_key)
        how = f"a Keras weights file: the {pre.get('type')} preprocessing of the build's layout"
    warnings.warn(
        f"{path} is not a published {model_name} file; using the preprocessing of its layout, "
        f"{how}. Pass preprocessing= to choose another.", stacklevel=3)
    return pre


def preprocessing_for(model_name, weights=None, file_key=None):
    """The input preprocessing a model's weights expect, from the manifest.

    Args:
        model_name: registry name.
        weights: a published tag, a file path, or None.
        file_key: for tags with several files (ResNet's ``keras_top`` /
            ``torch``), the file whose own ``preprocessing`` wins.

    Returns:
        The manifest's ``preprocessing`` dict for the tag (or its file); for a
        path, :func:`preprocessing_for_path` (the published file it is, else
        its layout's, said in a warning); without weights,
        :func:`family_default`'s, the record a builder's
        ``include_preprocessing=True`` puts inside.
    """
    if weights is None:
        return family_default(model_name, file_key)
    tags = zw.available_tags(model_name)
    if weights not in tags:
        return preprocessing_for_path(model_name, weights, file_key)
    entry = zw.manifest_entry(model_name, weights)
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


# ------------------------------------------------- evaluation transform

# Weights whose evaluation transform nobody published (random init, a file
# that is no published one): the shorter side goes to the input size and
# the centre is cropped, so nothing is cut beyond the aspect ratio and
# nothing is guessed.
UNKNOWN_EVAL_TRANSFORM = {"size": None, "crop_pct": 1.0, "interpolation": "bilinear",
                          "source": "none published for these weights: shorter side to the input "
                                    "size, centre crop"}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def eval_transform(model_name, weights=None, file_key=None):
    """The classification evaluation transform of a model's weights: one fact, one place.

    Read from ``zoo/weights/manifest.json``: a file record's
    ``eval_transform`` wins over its tag's; a tag that records timm's
    ``pretrained_cfg`` in its ``preprocessing`` (``test_input_size``,
    ``test_crop_pct``, ``interpolation``) uses those, as timm's
    ``validate.py`` does by default. The transform is timm's and
    torchvision's: resize the shorter side to ``floor(size / crop_pct)``,
    then centre-crop ``size`` x ``size`` (:func:`resize_shorter_center_crop`).

    Args:
        model_name: registry name.
        weights: a published tag, a path (the published file it is, by
            :func:`match_manifest_file`), or None.
        file_key: the tag's file the build loads (ResNet's ``keras_top`` /
            ``torch``), see :func:`zoo.assembler.file_key_for`.

    Returns:
        ``{"size": int or None, "crop_pct": float, "interpolation":
        "bilinear"|"bicubic"|"nearest", "source": str}``;
        :data:`UNKNOWN_EVAL_TRANSFORM` (size None: the model's input size)
        for weights without a published transform.
    """
    tag = None
    if weights is not None:
        if isinstance(weights, str) and weights in zw.available_tags(model_name):
            tag = weights
        else:
            found = match_manifest_file(model_name, weights)
            if found is not None:
                tag, file_key = found[0], found[1]
    if tag is None:
        return dict(UNKNOWN_EVAL_TRANSFORM)
    entry = zw.manifest_entry(model_name, tag)
    record = (entry.get("files") or {}).get(file_key, {}).get("eval_transform") or entry.get("eval_transform")
    if record:
        return {"size": int(record["size"]), "crop_pct": float(record["crop_pct"]),
                "interpolation": record["interpolation"], "source": record.get("source", "")}
    pre = entry.get("preprocessing") or {}
    if "crop_pct" in pre:
        return {"size": int(pre.get("test_input_size", pre.get("input_size", 224))),
                "crop_pct": float(pre.get("test_crop_pct", pre["crop_pct"])),
                "interpolation": pre.get("interpolation", "bilinear"),
                "source": "timm pretrained_cfg (test_input_size, test_crop_pct), as timm's validate.py"}
    return dict(UNKNOWN_EVAL_TRANSFORM)


def resize_shorter_center_crop(image, size, crop_pct=1.0, interpolation="bilinear"):
    """timm's and torchvision's evaluation transform on one uint8 image.

    The shorter side goes to ``floor(max(size) / crop_pct)`` (the longer
    side keeps the aspect ratio, truncated, as torchvision's ``Resize``),
    with Pillow's resampling (antialiased when shrinking, as torchvision on
    PIL images); then the centre ``size`` crop, offsets rounded as
    torchvision's ``CenterCrop``.

    Args:
        image: uint8 ``(H, W, C)``, C of 1, 3 or 4.
        size: crop side (int) or ``(h, w)``.
        crop_pct: crop side over resized shorter side, in (0, 1].
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.

    Returns:
        uint8 ``(h, w, C)``.

    Raises:
        ValueError: a bad crop_pct or interpolation, or a crop larger than
            the resized image (a non-square crop at crop_pct 1.0).
    """
    import math

    import numpy as np
    from PIL import Image

    ch, cw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if not 0 < float(crop_pct) <= 1:
        raise ValueError(f"crop_pct must be in (0, 1]; got {crop_pct!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid choices: {', '.join(INTERPOLATIONS)}")
    image = np.asarray(image)
    h, w = image.shape[:2]
    # the epsilon keeps 224 / (224 / 232) at 232, not 231.99999
    short = int(math.floor(max(ch, cw) / float(crop_pct) + 1e-6))
    if h <= w:
        new_h, new_w = short, int(short * w / h)
    else:
        new_h, new_w = int(short * h / w), short
    if (new_h, new_w) != (h, w):
        resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
        # one channel at a time: Pillow resizes every band alike, and this
        # takes grey, RGB and RGBA the same way (no alpha premultiplying)
        bands = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((new_w, new_h), resample))
                 for c in range(image.shape[2])]
        image = np.stack(bands, axis=-1)
    if ch > new_h or cw > new_w:
        raise ValueError(f"a {ch}x{cw} crop does not fit the resized {new_h}x{new_w} image")
    top = int(round((new_h - ch) / 2.0))
    left = int(round((new_w - cw) / 2.0))
    return image[top:top + ch, left:left + cw]
