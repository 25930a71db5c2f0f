"""Command line: ``zoo`` or ``python -m zoo``.

    zoo list [PATTERN]
    zoo info NAME [--size H W] [--mode M] [--output-stride S]
    zoo convert SRC DST --model NAME [--mode M]
    zoo heatmap --model vgg16 --weights PATH IMAGE --out heat.png
    zoo demo [heatmap]
    zoo predict --model NAME [--weights TAG|PATH] IMAGE... --out DIR   (zoo/apps_cli.py)
    zoo export --model NAME --format savedmodel|tflite|onnx --out PATH
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fmt_count(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def cmd_list(args):
    import zoo

    for name in zoo.list_models(args.pattern):
        entry = zoo.registry.get_entry(name)
        tags = zoo.weights.available_tags(name)
        print(f"{name:16s} {entry.family:10s} modes={','.join(entry.modes):34s} weights={','.join(tags) or '-'}")


def _builder_kwargs(args):
    kwargs = {}
    if getattr(args, "mode", None):
        kwargs["mode"] = args.mode
    if getattr(args, "output_stride", None):
        kwargs["output_stride"] = args.output_stride
    return kwargs


def cmd_info(args):
    import zoo

    info = zoo.model_info(args.name, tuple(args.size), **_builder_kwargs(args))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    h, w = info["input_size"]
    print(f"model          {info['name']} ({info['family']})")
    print(f"input          {h}x{w}")
    print(f"params         {info['params']:,} ({_fmt_count(info['params'])})")
    print(f"flops (MACs)   {info['flops']:,} ({_fmt_count(info['flops'])})")
    print(f"output stride  {info['output_stride']}")
    print(f"modes          {', '.join(info['modes'])}")
    print(f"weights        {', '.join(info['weights']) or '-'}")
    known = {"name", "family", "params", "flops", "input_size", "output_stride", "modes", "weights"}
    for key, value in info.items():
        if key in known:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            cols = list(value[0])
            print(f"\n{key}:")
            print("  " + "  ".join(f"{c:>14s}" for c in cols))
            for row in value:
                print("  " + "  ".join(f"{_cell(row.get(c)):>14s}" for c in cols))
        else:
            print(f"{key:14s} {_cell(value)}")


def _cell(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return _fmt_count(v)
    return str(v)


def cmd_convert(args):
    import zoo

    kwargs = _builder_kwargs(args)
    if args.classes:
        kwargs["classes"] = args.classes
    model = zoo.create_model(args.model, weights=args.src, **kwargs)
    dst = args.dst if args.dst.endswith(".weights.h5") else args.dst + ".weights.h5"
    model.save_weights(dst)
    print(f"wrote {dst} ({model.count_params():,} parameters)")


def _check_image(path):
    """Fails early, in one line, on an image path that is missing or not an image."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    import tensorflow as tf

    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        raise ValueError(f"{path} is not an image (JPEG, PNG, GIF, BMP or WebP)") from None


def cmd_heatmap(args):
    from zoo.apps.heatmap import run_heatmap

    _check_image(args.image)

    result = run_heatmap(args.model, args.weights, args.image, args.out, classes=args.classes)
    named = f" {result['name']!r}" if result["name"] is not None else ""
    print(f"top class {result['class']}{named} (score {result['score']:.3g}); "
          f"map {result['map_shape'][0]}x{result['map_shape'][1]}; wrote {args.out}")


def cmd_demo(args):
    if args.which == "heatmap" or _segmentation_demo() is None:
        from zoo.apps.heatmap import heatmap_demo

        heatmap_demo(args.out, size=args.heatmap_size)
    else:
        _segmentation_demo()(args)


def _segmentation_demo():
    try:
        from zoo.training import finetune
    except ImportError:
        return None
    return getattr(finetune, "demo", None)


def build_parser():
    p = argparse.ArgumentParser(prog="zoo", description="keras-zoo command line")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models")
    s.add_argument("pattern", nargs="?", default=None)
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("info", help="params, FLOPs and output stride of a model")
    s.add_argument("name")
    s.add_argument("--size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    s.add_argument("--mode", default=None)
    s.add_argument("--output-stride", type=int, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="any supported checkpoint -> .weights.h5")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--model", required=True)
    s.add_argument("--mode", default=None)
    s.add_argument("--classes", type=int, default=None)
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("heatmap", help="class heatmap PNG of an image in one pass")
    s.add_argument("image")
    s.add_argument("--model", default="vgg16")
    s.add_argument("--weights", default="imagenet")
    s.add_argument("--out", default="heat.png")
    s.add_argument("--classes", type=int, default=None, help="class count of a fine-tuned checkpoint")
    s.set_defaults(func=cmd_heatmap)

    from zoo.cli import weights as weights_cli  # zoo weights list|fetch|verify

    weights_cli.add_parser(sub)

    s = sub.add_parser("demo", help="the offline demo on built-in defaults")
    s.add_argument("which", nargs="?", default="segment", choices=("segment", "heatmap"),
                   help="segment: fine-tune on zoo_shapes (default); heatmap: the FC-as-conv check")
    s.add_argument("--heatmap-size", type=int, default=384, help="input size of `zoo demo heatmap`")
    finetune = _finetune_module()
    if finetune is not None and hasattr(finetune, "add_demo_arguments"):
        finetune.add_demo_arguments(s)
    else:
        s.add_argument("--out", default="zoo_demo")
    s.set_defaults(func=cmd_demo)

    if finetune is not None and hasattr(finetune, "add_parser"):
        finetune.add_parser(sub)
    from zoo.cli import apps as apps_cli

    apps_cli.add_parsers(sub)
    return p


def _finetune_module():
    try:
        from zoo.training import finetune
    except ImportError:
        return None
    return finetune


def _user_error(e):
    """The one-line message for an exception caused by the user's input, else None.

    ValueError (CheckpointError is one), missing or unreadable files, and a
    builder refusing an option the model does not take are the user's to
    fix; anything else is a bug and keeps its traceback.
    """
    if isinstance(e, (ValueError, OSError)):
        return str(e) or type(e).__name__
    if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
        return f"{e} (this model does not take that option)"
    return None


def main(argv=None):
    """Runs the ``zoo`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 for a user error, reported as one line on
        stderr without a traceback (argparse's own usage errors also exit 2).
    """
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except Exception as e:  # noqa: BLE001 - user errors become one line, the rest re-raise
        message = _user_error(e)
        if message is None:
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
