"""VGG16: one fully-convolutional pass vs sliding 224 crops; zoo vs keras.applications.

Cases:
* heatmap at 384 and 512: one heatmap-mode pass vs all stride-32 crops in
  one batch through classify mode (the crops' best case), on the default
  ``tf.function`` path and with XLA, with the FLOP ratio beside the speedup;
* zoo.VGG16 vs keras.applications.VGG16 classify at 224, batch 1, on the
  compiled path, with ``model.predict`` beside it.
"""

import keras
import numpy as np

from common import compiled_call, random_images, timeit
from zoo.apps.fc_conv_check import crops
from zoo.analysis.flops import count_flops
from zoo.models.vgg import VGG16


def _heatmap_rows(args, size, classifier, jit):
    heat = VGG16(mode="heatmap", input_shape=(size, size, 3), classifier_activation=None)
    image = random_images(1, size, size)
    windows, (h, w) = crops(image)
    one = compiled_call(heat, jit_compile=jit)
    many = compiled_call(classifier, jit_compile=jit)
    t_one = timeit(lambda: one(image), args.warmup, args.repeat)["median_s"]
    t_many = timeit(lambda: many(windows), args.warmup, args.repeat)["median_s"]
    flop_ratio = h * w * count_flops(classifier) / count_flops(heat)
    path = "xla" if jit else "tf.function"
    return [
        {"case": f"heatmap {size} one pass ({path})", "median_s": t_one, "map": f"{h}x{w}"},
        {"case": f"heatmap {size} {h * w} crops ({path})", "median_s": t_many,
         "peer": "one pass", "speedup": t_many / t_one, "flop_ratio": flop_ratio},
    ]


def run(args):
    rows = []
    classifier = VGG16(classifier_activation=None)
    for size in (384, 512):
        for jit in (False, True):
            rows += _heatmap_rows(args, size, classifier, jit)

    x = random_images(1, 224, 224)
    ours = VGG16()
    theirs = keras.applications.VGG16(weights=None)
    theirs.set_weights(ours.get_weights())
    t_ours = timeit(lambda: _fast(ours)(x), args.warmup, args.repeat)["median_s"]
    t_theirs = timeit(lambda: _fast(theirs)(x), args.warmup, args.repeat)["median_s"]
    p_ours = timeit(lambda: ours.predict(x, verbose=0), args.warmup, args.repeat)["median_s"]
    p_theirs = timeit(lambda: theirs.predict(x, verbose=0), args.warmup, args.repeat)["median_s"]
    np.testing.assert_allclose(_fast(ours)(x).numpy(), _fast(theirs)(x).numpy(), rtol=1e-4, atol=1e-6)
    rows += [
        {"case": "vgg16 classify 224 b1 zoo (tf.function)", "median_s": t_ours,
         "peer": "keras.applications", "ratio": t_ours / t_theirs},
        {"case": "vgg16 classify 224 b1 keras.applications (tf.function)", "median_s": t_theirs},
        {"case": "vgg16 classify 224 b1 zoo (model.predict)", "median_s": p_ours,
         "peer": "keras.applications", "ratio": p_ours / p_theirs},
        {"case": "vgg16 classify 224 b1 keras.applications (model.predict)", "median_s": p_theirs},
    ]
    return rows


_FAST = {}


def _fast(model):
    if id(model) not in _FAST:
        _FAST[id(model)] = compiled_call(model)
    return _FAST[id(model)]
