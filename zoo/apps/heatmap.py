"""``zoo heatmap`` and ``zoo demo heatmap``: class score maps as PNG overlays."""

import os

import numpy as np

from zoo.apps.drawing import heatmap_figure
from zoo.preprocessing import preprocess, preprocessing_for


def colorize(scores):
    """Maps a 2-D array to RGB uint8 with a blue-to-red ramp from its min to
    its max (:func:`zoo.apps.drawing.colorize`)."""
    from zoo.apps.drawing import colorize as ramp

    return ramp(scores)


def overlay(image, scores, alpha=0.5):
    """Blends a score map, resized to the image, over an RGB uint8 image
    (:func:`zoo.apps.drawing.heat_overlay`)."""
    from zoo.apps.drawing import heat_overlay

    return heat_overlay(np.asarray(image, "uint8"), scores, alpha)


def score_kind(model_kwargs):
    """What a heatmap model's values are: softmax probabilities unless
    ``classifier_activation`` says otherwise."""
    act = (model_kwargs or {}).get("classifier_activation", "default")
    if act in ("default", "softmax"):
        return "softmax probability"
    return "logit" if act is None else f"{act} score"


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
    The PNG has the class id and name above the overlay and a colour bar
    with its scale below (:func:`zoo.apps.drawing.heatmap_figure`).

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
    label_set = label_set_for_weights(model_name, weights, scores.shape[-1])
    name = load_labels(label_set)[cls] if label_set else None
    title = f"class {cls}" + (f" {name}" if name else "") + f" (peak {scores[..., cls].max():.3g})"
    write_png(out, heatmap_figure(image, scores[..., cls], title, score_kind(kwargs)))
    return {"class": cls, "name": name, "score": float(scores[..., cls].max()), "map_shape": scores.shape[:2]}


def heatmap_demo(out_dir="zoo_demo", size=384):
    """The seed's check on random weights over a synthetic scene: prints
    each phase as it starts, the exact and padding parts and the speedup,
    and writes the heatmap PNG (titled, with a colour bar).

    Args:
        out_dir: where ``heatmap.png`` goes.
        size: the scene's side (>= 224).

    Returns:
        The :func:`zoo.apps.fc_conv_check.compare` result.
    """
    from zoo.apps import fc_conv_check as demo

    result = demo.compare(size, progress=lambda line: print(line, flush=True))
    for line in demo.report(result):
        print(line)
    heat = result["heatmap"][0]
    cls = int(np.unravel_index(heat.argmax(), heat.shape)[-1])
    path = os.path.join(out_dir, "heatmap.png")
    title = f"class {cls}, peak {heat[..., cls].max():.3g} (random weights: the class means nothing)"
    write_png(path, heatmap_figure(demo.scene_image(size), heat[..., cls], title, "logit"))
    print(f"wrote {path} (class {cls})")
    return result
