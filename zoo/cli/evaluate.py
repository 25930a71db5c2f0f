"""``zoo evaluate``: a model's accuracy on a labelled dataset.

    zoo evaluate --model NAME [--weights TAG|PATH] --data DATA [--data-dir DIR]
                 [--download] [--task segmentation|classification] [--scales S...] [--flip]
                 [--tile N] [--ignore-label 255] [--batch-size N] [--limit N]
                 [--class-map sorted|FILE] [--out DIR] [--model-kwargs K=V ...]

Segmentation prints mIoU, pixel accuracy, frequency-weighted IoU and the
per-class IoU; classification prints top-1 and top-5. ``--out`` receives
``summary.json`` (and ``confusion.csv``, ``confusion.png``). The work is
:func:`zoo.apps.evaluate.evaluate`'s.
"""

import sys

from zoo.cli.common import add_model_kwargs, check_builder_options, merge_model_kwargs


def _check_options(args):
    """One-line errors for option values the parser lets through."""
    import math

    bad = [s for s in args.scales if not math.isfinite(s) or s <= 0]
    if bad:
        raise ValueError(f"--scales: every scale must be a finite number > 0; got {bad[0]}")
    if args.tile is not None and args.tile < 1:
        raise ValueError(f"--tile must be >= 1; got {args.tile}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1; got {args.limit}")
    if not 0 <= args.ignore_label <= 255:
        raise ValueError(f"--ignore-label must be in 0..255 (masks are 8-bit); got {args.ignore_label}")


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def cmd_evaluate(args):
    """``zoo evaluate``: the metrics printed, and written under ``--out``."""
    from zoo.apps.evaluate import data_task, evaluate

    _check_options(args)
    task = args.task or data_task(args.data)
    mode = "dense" if task == "segmentation" else "classify"
    kwargs = merge_model_kwargs(args.model_kwargs, flags={},
                                fixed={"weights": "--weights", "mode": f"the data ({task}: {mode} mode)",
                                       "include_preprocessing": "the command (always)"})
    check_builder_options(args.model, {**kwargs, "mode": mode})
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    from zoo.cli.apps import build_app_model

    # predict's builder: a fine-tuned checkpoint.keras brings its class count and preprocessing
    model, _ = build_app_model(args.model, args.weights, mode, model_kwargs=kwargs)
    result = evaluate(model, args.data, weights=args.weights, task=task, scales=args.scales,
                      flip=args.flip, tile=args.tile, ignore_label=args.ignore_label,
                      batch_size=args.batch_size, limit=args.limit, out=args.out, data_dir=args.data_dir,
                      download=args.download,
                      class_map=args.class_map, model_kwargs=kwargs)
    print(f"{args.model} ({args.weights or 'random init'}) on {args.data}: {result['images']} images")
    if task == "segmentation":
        print(f"  mIoU {_pct(result['miou'])}  pixel accuracy {_pct(result['pixel_accuracy'])}  "
              f"mean accuracy {_pct(result['mean_accuracy'])}  frequency-weighted IoU {_pct(result['fw_iou'])}")
        width = max(len(n) for n in result["class_names"])
        for name in result["class_names"]:
            iou = result["per_class_iou"][name]
            print(f"  {name:{width}s}  {_pct(iou) if iou is not None else '- (absent from truth and prediction)'}")
    else:
        t = result["transform"]
        print(f"  top-1 {_pct(result['top1'])}  top-{result['top5_k']} {_pct(result['top5'])}  "
              f"(shorter side {int(max(t['size']) / t['crop_pct'] + 1e-6)}, centre crop "
              f"{t['size'][0]}x{t['size'][1]}, {t['interpolation']})")
    if result["files"]:
        print(f"wrote {', '.join(result['files'])}")
    return 0


def add_parsers(subparsers):
    """Adds ``evaluate``."""
    s = subparsers.add_parser(
        "evaluate", help="accuracy on a labelled dataset (mIoU, top-1/top-5)",
        description="Measure a model on a dataset: segmentation (mIoU, per-class IoU, pixel accuracy, "
                    "frequency-weighted IoU, a confusion matrix) through the Predictor's scales/flip/tiles, "
                    "or classification (top-1/top-5) through the weights' own evaluation transform "
                    "(shorter side to size/crop_pct, centre crop). See docs/evaluate.md.",
    )
    s.add_argument("--model", required=True)
    s.add_argument("--weights", default=None, help="published tag or checkpoint path (default: random init)")
    s.add_argument("--data", required=True,
                   help="folder:PATH, cityscapes, scene_parse150, oxford_iiit_pet, zoo_shapes, imagenet2012 "
                        "or imagenette")
    s.add_argument("--data-dir", default=None, help="TFDS data folder (default ~/tensorflow_datasets)")
    s.add_argument("--download", action="store_true",
                   help="let TFDS download a dataset that is not prepared (Cityscapes, ImageNet: manual archives)")
    s.add_argument("--task", default=None, choices=("segmentation", "classification"),
                   help="default: the data's")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0], help="segmentation: test scales")
    s.add_argument("--flip", action="store_true", help="segmentation: also average the mirrored image")
    s.add_argument("--tile", type=int, default=None, help="segmentation: sliding-tile size in pixels")
    s.add_argument("--ignore-label", type=int, default=255, help="segmentation: mask value left out (255)")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--limit", type=int, default=None, help="only the first N images")
    s.add_argument("--class-map", default=None, metavar="sorted|FILE",
                   help="classification folders: 'sorted' (sorted folder names = classes 0..N-1) or a file "
                        "(one folder name a line); default: folder names are class names or ImageNet wnids")
    s.add_argument("--out", default=None, help="folder for summary.json, confusion.csv, confusion.png")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_evaluate)
