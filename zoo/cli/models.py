"""``zoo list``, ``zoo info`` and ``zoo convert``: the registry's models.

    zoo list [PATTERN]
    zoo info NAME [--size H W] [--mode M] [--output-stride S] [--json] [--model-kwargs K=V ...]
    zoo convert SRC DST --model NAME [--mode M] [--classes N] [--model-kwargs K=V ...]

``zoo list`` and ``zoo info NAME`` at its defaults answer from
``zoo/cli/index.py``'s index when this process has not imported the package
(the console script) and the index is fresh; otherwise they ask the live
registry. Both paths print the same thing.
"""

import fnmatch
import json

from zoo.cli.common import (add_model_kwargs, check_builder_options, format_table, load_package,
                            merge_model_kwargs, package_deferred)


def _fmt_count(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _index():
    """The fresh index, when this process should use it (package not imported), else None."""
    if not package_deferred():
        return None
    from zoo.cli import index

    return index.load()


# ----------------------------------------------------------------- zoo list


def model_rows(pattern=None):
    """``[(name, family, modes, tags)]`` of the matching models."""
    from zoo import weights as zw

    index = _index()
    if index is not None:
        names = sorted(n for n in index["models"] if not pattern or fnmatch.fnmatch(n, pattern))
        facts = {n: (index["models"][n]["info"]["family"], index["models"][n]["info"]["modes"])
                 for n in names}
    else:
        load_package()
        from zoo.registry import get_entry, list_models

        names = list_models(pattern)
        facts = {n: (get_entry(n).family, list(get_entry(n).modes)) for n in names}
    return [(n, facts[n][0], facts[n][1], zw.available_tags(n)) for n in names]


def cmd_list(args):
    rows = model_rows(args.pattern)
    if not rows:
        raise ValueError(f"no model matches {args.pattern!r}; `zoo list` shows them all")
    print(format_table(["NAME", "FAMILY", "MODES", "WEIGHTS"],
                       [(n, f, ",".join(m), ",".join(t) or "-") for n, f, m, t in rows]))


# ----------------------------------------------------------------- zoo info


def _info_kwargs(args):
    return merge_model_kwargs(
        args.model_kwargs,
        flags={"mode": ("--mode", args.mode), "output_stride": ("--output-stride", args.output_stride)},
        fixed={"weights": "nothing (info builds without weights)", "input_shape": "--size"},
    )


def model_facts(name, size, kwargs):
    """``zoo.model_info`` as plain JSON values, from the index when it can answer."""
    from zoo.cli import index as zindex

    index = _index()
    if index is not None and not kwargs and tuple(size) == zindex.INFO_SIZE:
        record = index["models"].get(name.lower())
        if record is not None:
            return record["info"]
    check_builder_options(name, kwargs)
    load_package()
    from zoo.analysis.info import model_info

    return zindex.plain(model_info(name, tuple(size), **kwargs))


def _cell(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return _fmt_count(v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v)
    return str(v)


def _label(key):
    """A family extra's printed name: model_info's ``flops`` keys count
    multiply-adds (their JSON names stay as they are)."""
    return key.replace("flops", "macs")


def format_info(info):
    """The lines ``zoo info`` prints for a :func:`model_facts` dict."""
    h, w = info["input_size"]
    lines = [
        f"model          {info['name']} ({info['family']})",
        f"input          {h}x{w}",
        f"params         {info['params']:,} ({_fmt_count(info['params'])})",
        f"MACs           {info['flops']:,} ({_fmt_count(info['flops'])})",
        f"output stride  {info['output_stride']}",
        f"counted in     {info['mode']} mode at {h}x{w} (params and MACs)",
        f"modes          {', '.join(info['modes'])}",
        f"weights        {', '.join(info['weights']) or '-'}",
    ]
    if "min_input" in info:
        lines.append("min input      " + ", ".join(f"{m} {s}" for m, s in info["min_input"].items()))
    if "features" in info:
        lines.append("features       " + ", ".join(f"{k} {v['channels']}ch/{v['stride']}"
                                                   for k, v in info["features"].items()))
    known = {"name", "family", "params", "flops", "input_size", "output_stride", "mode", "modes",
             "weights", "min_input", "features"}
    for key, value in info.items():
        if key in known:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            cols = list(value[0])
            lines.append(f"\n{_label(key)}:")
            lines.append("  " + "  ".join(f"{_label(c):>14s}" for c in cols))
            for row in value:
                lines.append("  " + "  ".join(f"{_cell(row.get(c)):>14s}" for c in cols))
        else:
            lines.append(f"{_label(key):14s} {_cell(value)}")
    return lines


def cmd_info(args):
    info = model_facts(args.name, args.size, _info_kwargs(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print("\n".join(format_info(info)))


# -------------------------------------------------------------- zoo convert


def cmd_convert(args):
    if args.from_smp:
        if args.model or args.mode:
            raise ValueError("--from-smp ARCH ENCODER builds the model: drop --model/--mode")
        from zoo.smp import from_smp

        smp_kwargs = merge_model_kwargs(args.model_kwargs, flags={}, fixed={"weights": "SRC"})
        model = from_smp(*args.from_smp, classes=args.classes or 1, weights=args.src, **smp_kwargs)
    else:
        if not args.model:
            raise ValueError("zoo convert needs --model NAME (or --from-smp ARCH ENCODER)")
        model = _convert_model(args)
    dst = args.dst if args.dst.endswith(".weights.h5") else args.dst + ".weights.h5"
    model.save_weights(dst)
    print(f"wrote {dst} ({model.count_params():,} parameters)")
    if args.from_smp:
        from zoo.smp import smp_cli_args

        print("zoo export/predict build it again with: "
              + smp_cli_args(*args.from_smp, classes=args.classes or 1, **smp_kwargs))


def _convert_model(args):
    kwargs = merge_model_kwargs(
        args.model_kwargs,
        flags={"mode": ("--mode", args.mode), "classes": ("--classes", args.classes)},
        fixed={"weights": "SRC"},
    )
    check_builder_options(args.model, kwargs)
    from zoo.registry import create_model

    return create_model(args.model, weights=args.src, **kwargs)


def add_parsers(subparsers):
    """Adds ``list``, ``info`` and ``convert``."""
    s = subparsers.add_parser("list", help="registered models: family, modes, published weights")
    s.add_argument("pattern", nargs="?", default=None, help="shell-style pattern, e.g. 'drn_d_*'")
    s.set_defaults(func=cmd_list)

    s = subparsers.add_parser("info", help="params, MACs, output stride and minimum inputs of a model")
    s.add_argument("name")
    s.add_argument("--size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    s.add_argument("--mode", default=None, help="the mode to count (default: the model's info mode)")
    s.add_argument("--output-stride", type=int, default=None)
    s.add_argument("--json", action="store_true")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_info)

    s = subparsers.add_parser("convert", help="any supported checkpoint -> .weights.h5")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--model", default=None)
    s.add_argument("--mode", default=None)
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--from-smp", nargs=2, default=None, metavar=("ARCH", "ENCODER"),
                   help="SRC is a segmentation_models_pytorch state_dict of smp.ARCH(ENCODER, ...); "
                        "--model-kwargs take SMP's constructor arguments (zoo.from_smp)")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_convert)
