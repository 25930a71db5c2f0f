"""Dense training-step speed against the equivalent PyTorch step, in one run.

Cases (``--cases``, default all): DRN-D-22 dense at 64x64 batch 8, 256x256
batch 4 and 512x512 batch 2, and ResNet-50 at output stride 8 (dense, FCN
head) at 256x256 batch 2, with the same ResNet-50 at output stride 32 (no
dilation anywhere) as the control for TensorFlow's own convolution speed.
Every step is float32, random weights, random labels over 21 classes, SGD
with momentum 0.9, BatchNorm in training mode.

The PyTorch peers are the test suite's independent references
(``tests/support/drn_torch_ref.py``: fyu/drn's DRNSeg layer for layer with its frozen
bilinear ``up``; ``tests/support/resnet_torch_ref.py``: torchvision's ResNet-50 with
``replace_stride_with_dilation`` and the FCN head, without the aux head that
the Keras model does not build either).

Each (engine, case) runs in its own subprocess, so peak RSS is that step's
own, and Keras runs on every backend installed (TensorFlow, JAX, torch). A
figure is the median of ``--steps`` step times after ``--warmup`` steps; the
headline is the ratio to the torch step measured in the same run. GFLOP/s
counts 3x the forward multiply-adds x 2 (forward, input and weight
gradients) and is set against this machine's measured float32 matmul rate.

Usage:
    python benchmarks/bench_train.py                    # every case, every backend
    python benchmarks/bench_train.py --quick            # smoke run at tiny sizes
    python benchmarks/bench_train.py --cases drn_d_22_64 --backends tensorflow
    python benchmarks/bench_train.py --baseline         # + TF and JAX with plain Conv2D dilation
    python benchmarks/bench_train.py --ablate-bn        # + every engine without BatchNorm
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import matmul_peak_gflops  # noqa: E402

CLASSES = 21
LR = 1e-3
# name: (model, size, batch, builder kwargs)
CASES = {
    "drn_d_22_64": ("drn_d_22", 64, 8, {}),
    "drn_d_22_256": ("drn_d_22", 256, 4, {}),
    "drn_d_22_512": ("drn_d_22", 512, 2, {}),
    "resnet50_os8_256": ("resnet50", 256, 2, {"output_stride": 8}),
    # The undilated control: what TensorFlow's own convolution backward costs
    # against PyTorch's, with no dilation anywhere.
    "resnet50_os32_256": ("resnet50", 256, 2, {"output_stride": 32}),
}
# --quick: the same graphs at sizes that take seconds.
QUICK = {"drn_d_22_64": (32, 2), "drn_d_22_256": (64, 2), "drn_d_22_512": (64, 1),
         "resnet50_os8_256": (64, 1), "resnet50_os32_256": (64, 1)}
BACKENDS = ("tensorflow", "jax", "torch")


def cpu_info():
    """CPU model name and vector ISA (AVX-512 or AVX2) from /proc/cpuinfo."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return {"cpu": model or platform.processor() or "unknown", "isa": isa, "cores": os.cpu_count()}


def _data(size, batch):
    import numpy as np

    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, CLASSES, (batch, size, size)).astype("int32")
    return x, y


def _timed_steps(step, warmup, steps):
    sys.path.insert(0, ROOT)
    from zoo.apps.timing import run_times

    return run_times(step, warmup=warmup, repeat=steps)


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def keras_worker(case, size, batch, warmup, steps, conv_schedule=None, no_bn=False):
    """One Keras case on the backend in ``KERAS_BACKEND``; returns a result dict."""
    import keras
    import numpy as np

    from zoo.training import train
    from zoo.analysis.flops import count_flops
    from zoo.layers import DilatedConv2D

    if conv_schedule:
        DilatedConv2D.force_schedule = conv_schedule
    if no_bn:  # the --ablate-bn measurement only: every BatchNorm an identity
        keras.layers.BatchNormalization.call = lambda self, inputs, training=None, mask=None: inputs
    model_name, _, _, kwargs = CASES[case]
    keras.utils.set_random_seed(0)
    model = train.prepare(model_name, classes=CLASSES, input_shape=(size, size, 3), freeze_bn=False,
                          optimizer="sgd", learning_rate=LR, total_steps=10**6, **kwargs)
    dilated = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)
               and max(la.dilation_rate) > 1]
    x, y = _data(size, batch)
    times = _timed_steps(lambda: model.train_on_batch(x, y), warmup, steps)
    return {"median_s": statistics.median(times), "min_s": min(times), "steps": len(times),
            "macs_per_image": count_flops(model), "peak_rss_mib": _peak_rss_mib(),
            "dilated_convs": len(dilated),
            "dilated_convs_fast": sum(isinstance(la, DilatedConv2D) for la in dilated),
            "finite": bool(np.isfinite(model.evaluate(x, y, verbose=0)[0]))}


def _strip_batchnorm(module):
    """Replaces every BatchNorm2d below ``module`` with an identity (--ablate-bn)."""
    import torch

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, torch.nn.Identity())
        else:
            _strip_batchnorm(child)


def torch_worker(case, size, batch, warmup, steps, no_bn=False):
    """The equivalent PyTorch step (test-suite reference model)."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, ROOT)
    model_name = CASES[case][0]
    torch.manual_seed(0)
    if model_name == "drn_d_22":
        from tests.support.drn_torch_ref import RefDRNSeg, randomize_

        net = randomize_(RefDRNSeg("drn_d_22", classes=CLASSES))
        net.up.weight.requires_grad_(False)  # fyu/drn freezes the bilinear up
        forward = net
    else:
        from tests.support import resnet_torch_ref as ref

        net = ref.randomize(ref.FCN(ref.build("resnet50", output_stride=CASES[case][3]["output_stride"]),
                                    classes=CLASSES))

        def forward(t):
            _, c5 = net.backbone.features(t)
            return F.interpolate(net.classifier(c5), t.shape[-2:], mode="bilinear", align_corners=False)

    if no_bn:
        _strip_batchnorm(net)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR, momentum=0.9)
    x, y = _data(size, batch)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = torch.from_numpy(y).long()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(xt), yt, ignore_index=255)
        loss.backward()
        opt.step()

    times = _timed_steps(step, warmup, steps)
    return {"median_s": statistics.median(times), "min_s": min(times), "steps": len(times),
            "peak_rss_mib": _peak_rss_mib(), "threads": torch.get_num_threads()}


def _spawn(engine, case, size, batch, args, schedule=None, no_bn=False):
    """Runs one worker in a subprocess; returns its result dict or an error."""
    backend = engine.split(":")[-1]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if engine.startswith("keras"):
        env["KERAS_BACKEND"] = backend
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--cases", case,
           "--size", str(size), "--batch", str(batch), "--warmup", str(args.warmup),
           "--steps", str(args.steps)]
    if schedule:
        cmd += ["--schedule", schedule]
    if no_bn:
        cmd.append("--no-bn")
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def run_cases(args):
    """Measures every selected case; returns (meta, rows)."""
    meta = {**cpu_info(), "matmul_peak_gflops": matmul_peak_gflops(), "python": platform.python_version(),
            "quick": bool(args.quick), "warmup": args.warmup, "steps": args.steps}
    for mod in ("keras", "tensorflow", "jax", "torch"):
        if importlib.util.find_spec(mod):
            meta[mod] = importlib.import_module(mod).__version__
    backends = [b for b in args.backends.split(",") if b and importlib.util.find_spec(b)]
    rows = []
    for case in args.cases.split(","):
        model_name, size, batch, _ = CASES[case]
        if args.quick:
            size, batch = QUICK[case]
        stride = CASES[case][3].get("output_stride")
        label = f"{model_name}{f'_os{stride}' if stride else ''} dense {size}x{size} b{batch}"
        has_torch = importlib.util.find_spec("torch") is not None
        ref = _spawn("torch", case, size, batch, args) if has_torch else None
        ref_no_bn = _spawn("torch", case, size, batch, args, no_bn=True) if has_torch and args.ablate_bn else None
        engines = [(f"keras:{b}", None, False) for b in backends]
        if args.baseline:
            # torch's DilatedConv2D already runs Conv2D's own call.
            engines += [(f"keras:{b}", "conv", False) for b in backends if b != "torch"]
        if args.ablate_bn:
            engines += [("torch", None, True)] + [(f"keras:{b}", None, True) for b in backends]
        for engine, schedule, no_bn in [("torch", None, False)] + engines:
            peer = ref_no_bn if no_bn else ref  # like against like
            res = peer if engine == "torch" else _spawn(engine, case, size, batch, args, schedule, no_bn)
            if res is None:
                continue
            row = {"case": label, "engine": engine + (" (plain Conv2D dilation)" if schedule else "")
                   + (" (no BatchNorm)" if no_bn else "")}
            if "error" in res:
                rows.append({**row, "error": res["error"]})
                continue
            row.update(median_s=res["median_s"], images_per_s=batch / res["median_s"])
            if engine != "torch" and peer and "median_s" in peer:
                row["ratio_to_torch"] = res["median_s"] / peer["median_s"]
            if "macs_per_image" in res:
                gflops = 6 * res["macs_per_image"] * batch / res["median_s"] / 1e9
                row.update(gflop_s=gflops, pct_of_matmul_peak=100 * gflops / meta["matmul_peak_gflops"])
            row["peak_rss_mib"] = res["peak_rss_mib"]
            for k in ("dilated_convs", "dilated_convs_fast", "finite", "min_s", "threads"):
                if k in res:
                    row[k] = res[k]
            rows.append(row)
            print(_line(row), flush=True)
            if getattr(args, "out", None):
                _write(args.out, meta, rows)  # partial results survive a timeout
    return meta, rows


def _write(path, meta, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)


def _line(row):
    if "error" in row:
        return f"{row['case']:<28} {row['engine']:<40} ERROR {row['error']}"
    ratio = f"{row['ratio_to_torch']:.2f}x" if "ratio_to_torch" in row else "-"
    gf = f"{row['gflop_s']:.0f} ({row['pct_of_matmul_peak']:.0f}%)" if "gflop_s" in row else "-"
    return (f"{row['case']:<28} {row['engine']:<40} {row['median_s']:9.3f} {row['images_per_s']:8.2f} "
            f"{ratio:>8} {gf:>12} {row['peak_rss_mib']:8.0f}")


def run(args):
    """``benchmarks/run.py`` entry: every case on every installed backend."""
    ns = parse_args(["--steps", str(max(3, getattr(args, "repeat", 5))),
                     "--warmup", str(max(1, getattr(args, "warmup", 2)))])
    meta, rows = run_cases(ns)
    for r in rows:
        r.update(cpu=meta["cpu"], isa=meta["isa"])
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--backends", default=",".join(BACKENDS), help="Keras backends to run (where installed)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 warmup, 2 steps")
    p.add_argument("--baseline", action="store_true",
                   help="also time TensorFlow and JAX with dilated convs as plain keras Conv2D")
    p.add_argument("--ablate-bn", action="store_true",
                   help="also run torch and every backend with each BatchNorm an identity")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=7, help="timed steps per case (median reported)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per (engine, case) subprocess")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train[_quick].json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--schedule", help=argparse.SUPPRESS)
    p.add_argument("--no-bn", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    if args.quick:
        args.warmup, args.steps = 1, 2
    if args.out is None:
        args.out = os.path.join(HERE, "results", "train_quick.json" if args.quick else "train.json")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        if args.worker == "torch":
            res = torch_worker(args.cases, args.size, args.batch, args.warmup, args.steps, args.no_bn)
        else:
            res = keras_worker(args.cases, args.size, args.batch, args.warmup, args.steps, args.schedule,
                               args.no_bn)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    info = cpu_info()
    print(f"CPU: {info['cpu']} ({info['isa']}, {info['cores']} cores)", flush=True)
    print(f"{'case':<28} {'engine':<40} {'step s':>9} {'img/s':>8} {'vs torch':>8} "
          f"{'GFLOP/s (%pk)':>12} {'RSS MiB':>8}", flush=True)
    meta, rows = run_cases(args)
    print(f"matmul peak (numpy float32 2048^3): {meta['matmul_peak_gflops']:.0f} GFLOP/s")
    _write(args.out, meta, rows)
    slow = [r for r in rows if r.get("dilated_convs_fast", 0) < r.get("dilated_convs", 0)]
    if slow:
        print("note: some dilated convolutions are plain keras Conv2D (the family does not build "
              "through zoo.layers.conv2d), so they were not accelerated")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
