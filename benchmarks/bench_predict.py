"""zoo.Predictor on a Cityscapes-size frame with DRN-D-22 dense (19 classes).

Cases (batch 1, 1024x2048, random weights; ``--quick``: 128x256, tile 64):

* ``whole``: one pass over the whole image;
* ``tiles512``: 512-px tiles, 1/3 overlap (mmsegmentation slide mode), 4 a batch;
* ``ms3``: scales 0.75, 1.0, 1.25, whole images;
* ``ms3_flip``: the same with horizontal flips (6 passes);
* ``torch_whole`` / ``torch_ms3``: fyu/drn-style inference in PyTorch with
  the same network (tests/support/drn_torch_ref.py, eval, no_grad): per scale,
  bilinear-resize the image, run, bilinear-resize the logits back, average
  (fyu's ``segment.py --ms`` does the same without flips).

Each case runs in its own subprocess so that ``peak_rss_mb`` (ru_maxrss at
exit, the interpreter and framework included) belongs to that case alone.
``median_s`` is the median over ``--repeat`` predictions after one warm-up
(which also pays the tracing).

Usage:
    python benchmarks/bench_predict.py [--quick] [--repeat N]
    python benchmarks/run.py --only predict
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SCALES = (0.75, 1.0, 1.25)
CASES = ("whole", "tiles512", "ms3", "ms3_flip", "torch_whole", "torch_ms3")


def _sizes(quick):
    return ((128, 256), 64) if quick else ((1024, 2048), 512)


def _keras_case(case, size, tile, repeat):
    import keras
    import numpy as np

    import zoo

    keras.utils.set_random_seed(0)
    model = zoo.create_model("drn_d_22", mode="dense", classes=19)
    kwargs = {"whole": {}, "tiles512": {"tile": tile, "overlap": 1 / 3},
              "ms3": {"scales": SCALES}, "ms3_flip": {"scales": SCALES, "flip": True}}[case]
    predictor = zoo.Predictor(model, batch_size=4, **kwargs)
    x = np.random.default_rng(0).normal(0, 1, (1, *size, 3)).astype("float32")
    return _time(lambda: predictor.predict(x), repeat)


def _torch_case(case, size, repeat):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from tests.support import drn_torch_ref as ref

    torch.manual_seed(0)
    net = ref.randomize_(ref.RefDRNSeg("drn_d_22", 19))
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 3, *size)).astype("float32"))
    scales = (1.0,) if case == "torch_whole" else SCALES

    def run():
        with torch.no_grad():
            total = 0
            for s in scales:
                xs = x if s == 1.0 else F.interpolate(
                    x, size=(int(size[0] * s + 0.5), int(size[1] * s + 0.5)), mode="bilinear", align_corners=False)
                y = net(xs)
                if y.shape[-2:] != x.shape[-2:]:
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                total = total + y
            return total / len(scales)

    return _time(run, repeat)


def _time(fn, repeat):
    from zoo.apps.timing import run_times

    return statistics.median(run_times(fn, warmup=1, repeat=repeat))


def _child(case, quick, repeat):
    size, tile = _sizes(quick)
    if case.startswith("torch"):
        seconds = _torch_case(case, size, repeat)
    else:
        seconds = _keras_case(case, size, tile, repeat)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": case, "median_s": seconds, "peak_rss_mb": rss_mb}))


def run(args):
    """Every case, each in its own process.

    Args:
        args: needs ``repeat``; ``quick`` (or env ``ZOO_BENCH_QUICK=1``)
            for the tiny smoke sizes.

    Returns:
        A list of rows.
    """
    quick = bool(getattr(args, "quick", False) or os.environ.get("ZOO_BENCH_QUICK"))
    size, tile = _sizes(quick)
    rows = []
    base = None
    for case in CASES:
        if case.startswith("torch"):
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        cmd = [sys.executable, os.path.abspath(__file__), "--child", case, "--repeat", str(args.repeat)]
        if quick:
            cmd.append("--quick")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["input"] = f"{size[0]}x{size[1]}"
        if case == "tiles512":
            row["tile"] = tile
        if case == "whole":
            base = row["median_s"]
        elif base:
            row.update(peer="whole", ratio=row["median_s"] / base)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", default=None, choices=CASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.quick, args.repeat)
        return
    rows = run(args)
    sys.path.insert(0, HERE)
    from run import print_table

    print_table(rows)


if __name__ == "__main__":
    main()
