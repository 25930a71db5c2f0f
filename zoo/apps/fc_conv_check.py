"""The seed's check: one fully-convolutional pass vs the sliding 224 crops.

VGG16's FC head, rewritten as convolutions, slides over a larger image in one
pass. On the pool5 map that is exact: cell (i, j) *is* the Dense head on the
7x7 window at (i, j). Against true sliding crops it is not exact: a crop run
alone sees zero padding at its borders where the big image has real
neighbours, so its conv features differ near the crop's edges. This module
measures both parts and the speedup.
"""

import os
import tempfile

import numpy as np

from zoo.apps.timing import run_times
from zoo.models.vgg import VGG16, TRAIN_CROP

STRIDE = 32


def crops(images, crop=TRAIN_CROP, stride=STRIDE):
    """All ``crop``-sized windows at ``stride``, row-major: (N*h*w, crop, crop, C)."""
    n, H, W, c = images.shape
    h, w = (H - crop) // stride + 1, (W - crop) // stride + 1
    out = [
        images[:, i * stride : i * stride + crop, j * stride : j * stride + crop]
        for i in range(h)
        for j in range(w)
    ]
    return np.stack(out, axis=1).reshape(n * h * w, crop, crop, c), (h, w)


def head_on_windows(classifier, pool5, window=7):
    """Applies a classify-mode model's Dense head to every 7x7 pool5 window.

    Args:
        classifier: a VGG classify-mode model (its ``fc1``, ``fc2`` and
            ``predictions`` layers are used as Dense layers).
        pool5: (N, h5, w5, 512) features of the whole image.

    Returns:
        (N, h5 - 6, w5 - 6, classes) scores.
    """
    n, h5, w5, c = pool5.shape
    h, w = h5 - window + 1, w5 - window + 1
    wins = np.stack(
        [pool5[:, i : i + window, j : j + window].reshape(n, -1) for i in range(h) for j in range(w)],
        axis=1,
    ).reshape(n * h * w, window * window * c)
    x = wins
    for name in ("fc1", "fc2", "predictions"):
        x = np.asarray(classifier.get_layer(name)(x))
    return x.reshape(n, h, w, -1)


def _timed(fn, repeat):
    return float(np.median(run_times(fn, warmup=1, repeat=repeat)))


def demo_image(size, seed=0):
    """A smooth, deterministic test image in caffe-preprocessed range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 60
    img += rng.normal(0, 10, img.shape)
    return img[None].astype("float32")


def compare(size=384, seed=0, repeat=3, model=None):
    """Measures one-pass heatmap vs sliding crops for VGG16 with random weights.

    Args:
        size: square input side (>= 224).
        seed: seed for the weights and the image.
        repeat: timed repetitions (median reported).
        model: optional classify-mode VGG16 whose weights to use.

    Returns:
        A dict with the map shape, the exact-part and sliding-crop
        differences, top-1 agreement, times and the speedup.
    """
    import keras
    import tensorflow as tf

    from zoo.analysis.flops import count_flops

    keras.utils.set_random_seed(seed)
    classifier = model or VGG16(classifier_activation=None)
    with tempfile.TemporaryDirectory() as tmp:
        # Through a checkpoint, as users do: the loader reshapes fc1/fc2.
        path = os.path.join(tmp, "vgg16.weights.h5")
        classifier.save_weights(path)
        heat = VGG16(path, mode="heatmap", input_shape=(size, size, 3), classifier_activation=None)
        features = VGG16(path, mode="features", input_shape=(size, size, 3))
    image = demo_image(size, seed)
    windows, (h, w) = crops(image)

    one_pass = tf.function(lambda x: heat(x, training=False))
    per_crop = tf.function(lambda x: classifier(x, training=False))
    heat_map = one_pass(image).numpy()
    crop_scores = per_crop(windows).numpy().reshape(1, h, w, -1)
    exact = head_on_windows(classifier, features(image)["P5"].numpy())

    scale = float(np.abs(heat_map).max())
    t_one = _timed(lambda: one_pass(image).numpy(), repeat)
    t_crops = _timed(lambda: per_crop(windows).numpy(), repeat)
    return {
        "size": size,
        "map": (h, w),
        "logit_scale": scale,
        "exact_max_abs_diff": float(np.abs(heat_map - exact).max()),
        "crops_max_abs_diff": float(np.abs(heat_map - crop_scores).max()),
        "crops_top1_agreement": float((heat_map.argmax(-1) == crop_scores.argmax(-1)).mean()),
        "one_pass_s": t_one,
        "crops_s": t_crops,
        "speedup": t_crops / t_one,
        "flop_ratio": h * w * count_flops(classifier) / count_flops(heat),
        "heatmap": heat_map,
    }


def report(result):
    """Human-readable lines for :func:`compare`'s result."""
    r = result
    return [
        f"VGG16, random weights, {r['size']}x{r['size']} input -> {r['map'][0]}x{r['map'][1]} map "
        f"(logit scale {r['logit_scale']:.3g})",
        f"exact part   : heatmap vs FC head on pool5 windows  max|diff| = {r['exact_max_abs_diff']:.3g}",
        f"padding part : heatmap vs {r['map'][0] * r['map'][1]} separate 224 crops  "
        f"max|diff| = {r['crops_max_abs_diff']:.3g}, top-1 agreement = {100 * r['crops_top1_agreement']:.0f}%",
        "  (a crop run alone is zero-padded at its borders where the big image has real "
        "neighbours, so its conv features near the edges differ)",
        f"speed        : one pass {r['one_pass_s'] * 1e3:.0f} ms vs crops {r['crops_s'] * 1e3:.0f} ms "
        f"= {r['speedup']:.1f}x (FLOP ratio {r['flop_ratio']:.1f}x)",
    ]
