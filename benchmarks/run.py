"""One benchmark runner for every case in ``benchmarks/bench_*.py``.

Usage:
    python benchmarks/run.py                 # every case
    python benchmarks/run.py --only vgg      # cases whose module name matches
    python benchmarks/run.py --repeat 7 --out benchmarks/results/all.json

Each ``bench_*.py`` module defines ``run(args) -> list[dict]``; a row has at
least ``case`` and ``median_s`` and may carry ``peer``, ``ratio``,
``flops`` and any other figures. The runner prints one table and writes the
rows, with the machine's description, to JSON.
"""

import argparse
import glob
import importlib
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(rows):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    widths = {k: max(len(k), *(len(_fmt(r.get(k, ""))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r.get(k, "")).ljust(widths[k]) for k in keys))


def _timing_args(p):
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    return p


def run_standalone(run, argv=None):
    """``python benchmarks/bench_X.py [--repeat N] [--warmup N]``: one module's
    ``run(args)``, its table printed (no JSON; :func:`main` writes that)."""
    print_table(run(_timing_args(argparse.ArgumentParser()).parse_args(argv)))


def main(argv=None):
    p = _timing_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--only", default="", help="substring of the bench module names to run")
    p.add_argument("--out", default=os.path.join(HERE, "results", "results.json"))
    args = p.parse_args(argv)
    modules = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    rows = []
    for path in modules:
        mod_name = os.path.splitext(os.path.basename(path))[0]
        if args.only and args.only not in mod_name:
            continue
        print(f"== {mod_name}", flush=True)
        mod_rows = importlib.import_module(mod_name).run(args)
        for r in mod_rows:
            r.setdefault("module", mod_name)
        print_table(mod_rows)
        rows.extend(mod_rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    import tensorflow as tf

    from bench_train import cpu_info

    meta = {
        **cpu_info(),  # absolute times differ ~2x between AVX2 and AVX-512 machines
        "machine": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
