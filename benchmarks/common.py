"""Timing helpers shared by the benchmark cases.

Every case warms up, then takes the median of repeated runs, and reports
ratios only against a peer measured in the same process and run.
"""

import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def timeit(fn, warmup=2, repeat=5):
    """Median wall time of ``fn()`` in seconds, after ``warmup`` calls.

    Returns:
        A dict with ``median_s``, ``min_s`` and ``runs``.
    """
    from zoo.apps.timing import run_times

    times = run_times(lambda: _block(fn()), warmup=warmup, repeat=repeat)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeat}


def _block(out):
    # Results may be lazy tensors: touch them so the time includes the work.
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            _block(o)
        return
    if hasattr(out, "numpy"):
        out.numpy()


def compiled_call(model, jit_compile=False):
    """The fast inference path: the model's call wrapped in ``tf.function``."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile, reduce_retracing=True)
    return fn


def random_images(batch, h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, h, w, 3)).astype("float32")


def matmul_peak_gflops(n=2048, repeat=7):
    """This machine's float32 matmul rate in GFLOP/s (2 flops per MAC).

    numpy's BLAS on a 2048^3 product, median of ``repeat``: on the project's
    machines it beats ``tf.matmul`` of the same size (129 vs 100 GFLOP/s on
    the AMD EPYC), and TensorFlow's convolutions can run above the latter.
    """
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / timeit(lambda: a @ b, warmup=1, repeat=repeat)["median_s"] / 1e9
