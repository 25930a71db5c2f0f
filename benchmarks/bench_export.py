"""Exported artifacts against the Keras compiled call: latency at batch 1.

Cases (224x224, random weights; ``--quick``: 64x64 and ResNet-18 for both
rows, a smoke test only):

* ``resnet50_classify``: 1000-way classifier;
* ``drn_d_22_dense``: DRNSeg, 19 classes.

For each model: ``keras`` (``tf.function`` of the call, as in
benchmarks/common.py), then ``savedmodel`` (``tf.saved_model.load``),
``tflite`` (ai-edge-litert Interpreter, XNNPACK) and ``onnx``
(onnxruntime, CPU provider), timed in turn in the same process; ``ratio`` is
the artifact's median over the Keras median, ``max_rel_err`` its largest
deviation from the Keras output relative to the output's largest magnitude.
A format whose converter or runtime is missing is skipped.

Usage:
    python benchmarks/bench_export.py [--quick] [--repeat N]
    python benchmarks/run.py --only export
"""

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

FILES = {"savedmodel": "sm", "tflite": "model.tflite", "onnx": "model.onnx"}


def _cases(quick):
    if quick:
        return [("resnet18_classify", "resnet18", "classify", 1000, 64),
                ("resnet18_dense", "resnet18", "dense", 19, 64)]
    return [("resnet50_classify", "resnet50", "classify", 1000, 224),
            ("drn_d_22_dense", "drn_d_22", "dense", 19, 224)]


def run(args):
    """Export each case in every available format and time the runtimes.

    Args:
        args: needs ``repeat`` and ``warmup``; ``quick`` (or env
            ``ZOO_BENCH_QUICK=1``) for the smoke sizes.

    Returns:
        A list of rows.
    """
    import keras
    import numpy as np

    import zoo
    from common import compiled_call
    from zoo.apps.timing import run_times
    from zoo.apps.export import export_model, load_artifact

    quick = bool(getattr(args, "quick", False) or os.environ.get("ZOO_BENCH_QUICK"))
    warmup = max(1, getattr(args, "warmup", 2))
    rows = []
    for case, name, mode, classes, size in _cases(quick):
        keras.utils.set_random_seed(0)
        model = zoo.create_model(name, mode=mode, classes=classes, input_shape=(size, size, 3))
        x = np.random.default_rng(0).normal(0, 1, (1, size, size, 3)).astype("float32")
        f = compiled_call(model)
        want = np.asarray(f(x))
        runners = {"keras": lambda: f(x).numpy()}
        errors = {}
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, file in FILES.items():
                try:
                    run_fn = load_artifact(export_model(model, os.path.join(tmp, file), fmt, size=(size, size)), fmt)
                except ImportError as e:
                    print(f"{case}: {fmt} skipped ({e})", file=sys.stderr)
                    continue
                got = run_fn(x)
                errors[fmt] = float(np.abs(got - want).max() / np.abs(want).max())
                runners[fmt] = (lambda r: lambda: r(x))(run_fn)
            names = list(runners)
            times = {n: [] for n in names}
            for n in names:
                for _ in range(warmup):
                    runners[n]()
            # in turn, so that load from other processes hits every runtime alike
            for _ in range(args.repeat):
                for n in names:
                    times[n] += run_times(runners[n], warmup=0, repeat=1)
        base = statistics.median(times["keras"])
        for n in names:
            t = statistics.median(times[n])
            row = {"case": f"{case}_{n}", "median_s": t, "input": f"1x{size}x{size}"}
            if n != "keras":
                row.update(peer="keras", ratio=t / base, max_rel_err=errors[n])
            rows.append(row)
        del model
        keras.backend.clear_session()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    from run import print_table

    print_table(run(args))


if __name__ == "__main__":
    main()
