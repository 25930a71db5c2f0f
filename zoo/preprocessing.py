"""Input preprocessing as recorded per weights tag in ``weights/manifest.json``."""

import numpy as np

from zoo.weights import manifest_entry

CAFFE = {"type": "caffe", "channels": "BGR", "mean": [103.939, 116.779, 123.68]}


def preprocessing_spec(model_name, tag="imagenet"):
    """The manifest's preprocessing record for ``(model_name, tag)``; caffe if unknown."""
    try:
        return manifest_entry(model_name, tag).get("preprocessing", CAFFE)
    except ValueError:
        return CAFFE


def preprocess(images, spec):
    """Maps RGB images in [0, 255] to what the weights were trained on.

    Args:
        images: float array (..., H, W, 3), RGB, 0-255.
        spec: ``{"type": "caffe", "mean": [B, G, R]}`` (RGB->BGR, minus mean) or
            ``{"type": "torch", "mean": [...], "std": [...]}`` (0-1, then
            standardised per RGB channel), or ``{"type": "tf"}`` ([-1, 1]).

    Returns:
        A float32 numpy array.
    """
    x = np.asarray(images, dtype="float32")
    kind = spec.get("type", "caffe")
    if kind == "caffe":
        return x[..., ::-1] - np.asarray(spec["mean"], dtype="float32")
    if kind == "torch":
        return (x / 255.0 - np.asarray(spec["mean"], "float32")) / np.asarray(spec["std"], "float32")
    if kind == "tf":
        return x / 127.5 - 1.0
    raise ValueError(f"unknown preprocessing type {kind!r}; valid choices: caffe, torch, tf")
