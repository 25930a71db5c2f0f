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


def scene_image(size, seed=0):
    """A synthetic outdoor scene, uint8 RGB ``(size, size, 3)``, deterministic.

    Sky with a vertical gradient and a sun, distant hills, a grass field
    with texture, a house (walls, roof, door, window) and a tree, and
    camera noise: something a person recognises on a heatmap overlay,
    with edges and textures for the network to respond to (plain noise
    shows nothing).

    Args:
        size: the side in pixels.
        seed: varies the layout and the noise.

    Returns:
        uint8 ``(size, size, 3)``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    img = np.empty((size, size, 3), "float64")
    # sky: light near the horizon, deeper blue above
    horizon = 0.55 + rng.uniform(-0.05, 0.05)
    t = np.clip(yy / horizon, 0, 1)[..., None]
    img[:] = (1 - t) * np.array([70, 120, 210]) + t * np.array([185, 215, 240])
    sx, sy = rng.uniform(0.65, 0.85), rng.uniform(0.12, 0.22)
    sun = (xx - sx) ** 2 + (yy - sy) ** 2 <= 0.06 ** 2
    img[sun] = (255, 230, 120)
    # hills, then grass with stripes of texture
    hills = yy > horizon - 0.08 * (1 + np.sin(7 * xx + rng.uniform(0, 6))) / 2
    img[hills] = np.array([90, 130, 90]) + 15 * np.sin(40 * xx[hills])[:, None]
    field = yy > horizon
    shade = (0.8 + 0.2 * np.sin(60 * yy + 9 * xx))[field][:, None]
    img[field] = np.array([80, 165, 70]) * shade
    # house: walls, roof (a triangle), door and window
    hx, hw = rng.uniform(0.12, 0.3), 0.3
    top, bottom = horizon - 0.08, horizon + 0.2
    walls = (xx >= hx) & (xx <= hx + hw) & (yy >= top) & (yy <= bottom)
    img[walls] = (205, 180, 140)
    u = (yy - (top - 0.16)) / 0.16
    roof = (u >= 0) & (u <= 1) & (np.abs(xx - (hx + hw / 2)) <= u * (hw / 2 + 0.04))
    img[roof] = (150, 50, 40)
    door = (np.abs(xx - (hx + hw * 0.3)) <= 0.035) & (yy >= bottom - 0.11) & (yy <= bottom)
    img[door] = (90, 55, 30)
    window = (np.abs(xx - (hx + hw * 0.72)) <= 0.045) & (np.abs(yy - (top + 0.08)) <= 0.04)
    img[window] = (120, 170, 220)
    # tree: trunk and a round crown
    tx = rng.uniform(0.62, 0.8)
    trunk = (np.abs(xx - tx) <= 0.018) & (yy >= horizon - 0.05) & (yy <= horizon + 0.12)
    img[trunk] = (100, 70, 40)
    crown = (xx - tx) ** 2 + (yy - (horizon - 0.12)) ** 2 <= 0.09 ** 2
    img[crown] = np.array([40, 110, 45]) * (0.85 + 0.15 * np.sin(90 * xx[crown] * yy[crown]))[:, None]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).round().astype("uint8")


def demo_image(size, seed=0):
    """:func:`scene_image` with VGG16's caffe preprocessing (BGR, mean
    subtracted): the model's input, ``(1, size, size, 3)`` float32."""
    rgb = scene_image(size, seed).astype("float32")
    bgr = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32")
    return bgr[None].astype("float32")


def compare(size=384, seed=0, repeat=3, model=None, progress=None):
    """Measures one-pass heatmap vs sliding crops for VGG16 with random weights.

    Args:
        size: square input side (>= 224).
        seed: seed for the weights and the image.
        repeat: timed repetitions (median reported).
        model: optional classify-mode VGG16 whose weights to use.
        progress: called with a one-line message as each phase starts
            (e.g. ``print``); None says nothing.

    Returns:
        A dict with the map shape, the exact-part and sliding-crop
        differences, top-1 agreement, times and the speedup.
    """
    import keras
    import tensorflow as tf

    from zoo.analysis.flops import count_flops

    say = progress or (lambda message: None)
    keras.utils.set_random_seed(seed)
    say("[1/4] building VGG16 (random weights): classifier, heatmap and features modes")
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
    say(f"[2/4] one fully-convolutional pass over the {size}x{size} scene")
    heat_map = one_pass(image).numpy()
    say(f"[3/4] the same scene as {h * w} separate 224x224 crops, and the FC head on pool5 windows")
    crop_scores = per_crop(windows).numpy().reshape(1, h, w, -1)
    exact = head_on_windows(classifier, features(image)["P5"].numpy())

    scale = float(np.abs(heat_map).max())
    say(f"[4/4] timing both ({repeat} repeats each, median)")
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
