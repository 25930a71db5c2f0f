"""``zoo demo`` at its defaults, on several seeds: accuracy, wall time and disk use.

Each seed runs ``python -m zoo demo --seed S --out DIR`` in its own process
(so the wall time includes imports, data preparation and tracing, as a user
sees it), with ``taskset`` pinning it to ``--cores`` CPUs when available, and
reads the figures back from its output. The issue-20 targets: every seed's
final validation mIoU >= 0.6 with every class >= 0.4, <= 120 s wall on two
idle cores, <= 100 MB written.

Usage:
    python benchmarks/bench_demo.py                      # seeds 0 1 2, 2 cores
    python benchmarks/bench_demo.py --seeds 0 --cores 0  # no pinning
    python benchmarks/bench_demo.py -- --epochs 6        # extra zoo demo options

Writes ``benchmarks/results/demo.json`` (``--out`` to change): per seed the
mIoU before and after, per-class IoU, wall seconds, bytes written and the
demo's own phase breakdown; plus the CPU and whether every target was met.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGETS = {"miou": 0.6, "class_iou": 0.4, "seconds": 120.0, "bytes": 100 * 10 ** 6}


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def folder_bytes(path):
    """Bytes of every file under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def parse(out):
    """The demo's printed figures: mIoU before/after, per-class IoU, start, phases."""
    result = {}
    m = re.search(r"^mIoU ([\d.]+) -> ([\d.]+) in (\d+) s \((.*)\)$", out, re.M)
    if m:
        result.update(miou_before=float(m.group(1)), miou=float(m.group(2)), demo_seconds=float(m.group(3)),
                      start=m.group(4))
    block = out.split("validation IoU per class after fine-tuning", 1)[-1]
    result["per_class"] = {name: (None if v == "-" else float(v))
                           for name, v in re.findall(r"^  (\S+)\s+([\d.]+|-)$", block, re.M)}
    m = re.search(r"^time (.*)$", out, re.M)
    result["phases"] = m.group(1) if m else None
    m = re.search(r"(\d+) epochs x (\d+) steps, batch (\d+), (\d+)x\d+", out)
    if m:
        epochs, steps, batch, size = map(int, m.groups())
        result.update(steps=epochs * steps, batch=batch, size=size)
    return result


def run_seed(seed, cores, extra, keep):
    """One ``zoo demo`` process; returns its figures."""
    out_dir = tempfile.mkdtemp(prefix=f"zoo_demo_seed{seed}_")
    shutil.rmtree(out_dir)
    cmd = [sys.executable, "-m", "zoo", "demo", "--seed", str(seed), "--out", out_dir, "--verbose", "0", *extra]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(cores))] + cmd
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"seed {seed}: zoo demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = {"seed": seed, "wall_seconds": round(wall, 1), "bytes_written": folder_bytes(out_dir),
              "files": sorted(os.listdir(out_dir)), **parse(proc.stdout)}
    if keep:
        result["out"] = out_dir
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def meets(r):
    """Whether one seed's result meets every issue-20 target."""
    ious = [v for v in r.get("per_class", {}).values() if v is not None]
    return {"miou": r.get("miou", 0) >= TARGETS["miou"],
            "every_class": bool(ious) and min(ious) >= TARGETS["class_iou"],
            "seconds": r["wall_seconds"] <= TARGETS["seconds"],
            "bytes": r["bytes_written"] <= TARGETS["bytes"]}


def main(argv=None):
    """Runs the seeds, prints one line each, writes the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cores", type=int, default=2, help="pin to CPUs 0..N-1 (0: no pinning)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "demo.json"))
    p.add_argument("--keep", action="store_true", help="keep each seed's output folder")
    p.add_argument("extra", nargs="*", help="further zoo demo options (after --)")
    args = p.parse_args(argv)
    runs = []
    for seed in args.seeds:
        r = run_seed(seed, args.cores, args.extra, args.keep)
        r["meets"] = meets(r)
        runs.append(r)
        classes = " ".join(f"{k} {v:.3f}" for k, v in r["per_class"].items() if v is not None)
        print(f"seed {seed}: mIoU {r.get('miou_before', float('nan')):.3f} -> {r.get('miou', float('nan')):.3f} "
              f"({classes}); {r['wall_seconds']:.0f} s wall; {r['bytes_written'] / 1e6:.1f} MB; "
              f"{r.get('steps')} steps at {r.get('size')} px, batch {r.get('batch')}; {r.get('start')}",
              flush=True)
    record = {"cpu": cpu_name(), "cores": args.cores or os.cpu_count(), "targets": TARGETS,
              "extra_options": args.extra, "runs": runs,
              "all_met": all(all(r["meets"].values()) for r in runs)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"{'every target met' if record['all_met'] else 'targets NOT all met'}; wrote {args.out}")
    return 0 if record["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
