"""Inception benchmarks.

* One inception block at 28x28x192 (inception 3a's input, the paper's
  configuration with 5x5 kernels), with and without the 1x1 reductions: the
  counted MAC ratio beside the measured time ratio.
* GoogLeNet and InceptionV3 inference beside keras.applications'
  InceptionV3, all in this run (random weights, compiled with tf.function).
"""

import keras

from common import compiled_call, random_images, timeit

import zoo
from zoo.analysis.flops import count_flops
from zoo.models.inception import GOOGLENET_BLOCKS

BLOCK_BATCH = 8
NET_BATCH = 4


def _block_model(reduce):
    inp = keras.Input((28, 28, 192))
    out = zoo.layers.inception_block(inp, *GOOGLENET_BLOCKS["inception3a"], name="inception3a",
                                     reduce=reduce)
    return keras.Model(inp, out)


def _time(model, x, args):
    return timeit(lambda f=compiled_call(model): f(x), warmup=args.warmup, repeat=args.repeat)


def run(args):
    import numpy as np

    rows = []
    x = np.random.default_rng(0).uniform(0, 1, (BLOCK_BATCH, 28, 28, 192)).astype("float32")
    block = {}
    for reduce in (True, False):
        model = _block_model(reduce)
        block[reduce] = (count_flops(model), _time(model, x, args)["median_s"], model.count_params())
    (f_red, t_red, p_red), (f_naive, t_naive, p_naive) = block[True], block[False]
    rows.append({"case": f"inception3a block 28x28x192 reduced, batch {BLOCK_BATCH}",
                 "median_s": t_red, "flops": f_red, "params": p_red})
    rows.append({"case": f"inception3a block 28x28x192 naive, batch {BLOCK_BATCH}",
                 "median_s": t_naive, "flops": f_naive, "params": p_naive,
                 "peer": "reduced", "flops_ratio": f_naive / f_red, "ratio": t_naive / t_red})

    nets = (
        ("keras.applications InceptionV3", 299,
         lambda: keras.applications.InceptionV3(weights=None, input_shape=(299, 299, 3))),
        ("zoo InceptionV3", 299, lambda: zoo.InceptionV3(input_shape=(299, 299, 3))),
        ("zoo GoogLeNet", 224, lambda: zoo.GoogLeNet(input_shape=(224, 224, 3))),
    )
    peer_t = None
    for case, size, build in nets:
        model = build()
        t = _time(model, random_images(NET_BATCH, size, size), args)["median_s"]
        row = {"case": f"{case} {size}px, batch {NET_BATCH}", "median_s": t,
               "flops": count_flops(model), "params": model.count_params()}
        if peer_t is None:
            peer_t = t
        else:
            row.update(peer="keras.applications InceptionV3", ratio=t / peer_t)
        rows.append(row)
        del model
        keras.backend.clear_session()
    return rows
