"""``zoo heatmap`` and ``zoo demo heatmap``: class score maps as PNG overlays."""

import os

import numpy as np

from zoo.preprocessing import preprocess, preprocessing_for


def colorize(scores):
    """Maps a 2-D array to RGB uint8 with a blue-to-red ramp (no matplotlib)."""
    s = np.asarray(scores, dtype="float64")
    s = (s - s.min()) / max(s.max() - s.min(), 1e-12)
    r = np.clip(1.5 - np.abs(4 * s - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * s - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * s - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype("uint8")


def overlay(image, scores, alpha=0.5):
    """Blends a score map, resized to the image, over an RGB uint8 image."""
    import tensorflow as tf

    h, w = image.shape[:2]
    heat = tf.image.resize(np.asarray(scores, "float32")[..., None], (h, w), method="bilinear")
    colored = colorize(heat.numpy()[..., 0]).astype("float32")
    return ((1 - alpha) * image.astype("float32") + alpha * colored).astype("uint8")


def write_png(path, rgb):
    """Writes a uint8 (H, W, 3) array as PNG (``tf.io``: no imaging dependency)."""
    import tensorflow as tf

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(np.asarray(rgb, dtype="uint8")))


def read_image(path, max_pixels=None):
    """An image as uint8 RGB (:func:`zoo.apps.imaging.read_rgb`: the pixel limit applies)."""
    from zoo.apps.imaging import read_rgb

    return read_rgb(path, max_pixels)[0]


def run_heatmap(model_name, weights, image_path, out, classes=None, **model_kwargs):
    """One heatmap-mode pass over an image; writes the top class's map as PNG.

    The top class is the one with the highest score anywhere on the map.

    Args:
        model_name: registry name.
        weights: a published tag or a checkpoint path.
        image_path: the input image.
        out: where the PNG goes.
        classes: the checkpoint's class count; None keeps the builder's.
        **model_kwargs: further builder arguments (``zoo heatmap
            --model-kwargs``).

    Returns:
        A dict with ``class``, ``name`` (None when the weights have no label
        set of that size), ``score`` and ``map_shape``.
    """
    import tensorflow as tf

    from zoo.labels import label_set_for_weights, load_labels
    from zoo.registry import create_model

    image = read_image(image_path)
    kwargs = dict(model_kwargs, **({"classes": classes} if classes else {}))
    model = create_model(model_name, weights=weights, mode="heatmap", **kwargs)
    from zoo.apps.predictor import check_min_size

    check_min_size(model, image.shape[:2], f"{image_path}: image")
    x = preprocess(image[None], preprocessing_for(model_name, weights))
    scores = tf.function(lambda t: model(t, training=False))(x).numpy()[0]
    cls = int(np.unravel_index(scores.argmax(), scores.shape)[-1])
    write_png(out, overlay(image, scores[..., cls]))
    label_set = label_set_for_weights(model_name, weights, scores.shape[-1])
    name = load_labels(label_set)[cls] if label_set else None
    return {"class": cls, "name": name, "score": float(scores[..., cls].max()), "map_shape": scores.shape[:2]}


def heatmap_demo(out_dir="zoo_demo", size=384):
    """The seed's check on random weights: prints the exact and padding parts
    and the speedup, and writes the heatmap PNG.

    Returns:
        The :func:`zoo.apps.fc_conv_check.compare` result.
    """
    from zoo.apps import fc_conv_check as demo

    result = demo.compare(size)
    for line in demo.report(result):
        print(line)
    heat = result["heatmap"][0]
    cls = int(np.unravel_index(heat.argmax(), heat.shape)[-1])
    img = demo.demo_image(size)[0]
    img = ((img - img.min()) / (img.max() - img.min()) * 255).astype("uint8")
    path = os.path.join(out_dir, "heatmap.png")
    write_png(path, overlay(img, heat[..., cls]))
    print(f"wrote {path} (class {cls})")
    return result
