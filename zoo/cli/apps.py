"""``zoo predict``, ``zoo export`` and ``zoo heatmap``: the application commands.

    zoo predict --model NAME [--weights TAG|PATH] [--classes N]
                [--mode dense|heatmap|classify] IMAGE... --out DIR
                [--scales S...] [--flip] [--tile N] [--model-kwargs K=V ...]
    zoo export  --model NAME [--weights TAG|PATH] [--mode M] [--classes N]
                [--size H W] --format savedmodel|tflite|onnx --out PATH
                [--include-preprocessing] [--model-kwargs K=V ...]
    zoo heatmap IMAGE [--model vgg16] [--weights imagenet] [--out heat.png]
                [--classes N] [--model-kwargs K=V ...]

Dense mode writes ``DIR/<stem>.png``, an indexed-colour PNG whose pixel
values are the class ids (a 16-bit grey PNG of ids beyond 256 classes), and
``DIR/<stem>_overlay.png`` with a legend (:mod:`zoo.cli.render`).
"""

import os
import sys

from zoo.cli.common import add_model_kwargs, check_builder_options, merge_model_kwargs


# --- models -----------------------------------------------------------------------

def app_builder_kwargs(model_name, mode, classes, include_preprocessing, model_kwargs):
    """The builder arguments of ``predict``/``export``: their flags and
    ``--model-kwargs``, checked against the builder (a ValueError otherwise)."""
    kwargs = merge_model_kwargs(
        model_kwargs, flags={"mode": ("--mode", mode), "classes": ("--classes", classes or None)},
        fixed={"weights": "--weights",
               "include_preprocessing": "the command (predict: always; export: --include-preprocessing)"},
    )
    if include_preprocessing:
        kwargs["include_preprocessing"] = True
    check_builder_options(model_name, kwargs)
    return kwargs


def build_app_model(model_name, weights=None, mode="classify", classes=None, include_preprocessing=True,
                    model_kwargs=None):
    """A model for an application: with its preprocessing inside.

    Every builder takes ``include_preprocessing=True``: its first layer is
    then the weights' :class:`zoo.preprocessing.Preprocess`.

    Args:
        model_name: registry name.
        weights: tag, path or None.
        mode: builder mode.
        classes: class count or None (the weights' own).
        include_preprocessing: put the weights' preprocessing inside.
        model_kwargs: further builder arguments (``--model-kwargs``).

    Returns:
        ``(model, names)``: the ``keras.Model`` and its class names.
    """
    from zoo.labels import checkpoint_record, names_for_weights
    from zoo.registry import create_model

    # A fine-tuned run's checkpoint.keras records its class count, names and
    # the preprocessing it was trained with (zoo finetune): those, not
    # another tag's, are used.
    record = checkpoint_record(weights) if weights is not None else None
    if classes is None and record and isinstance(record.get("class_names"), list) \
            and isinstance(record.get("classes"), int) and not isinstance(record.get("classes"), bool) \
            and record.get("mode") == mode and "classes" not in (model_kwargs or {}):
        classes = record["classes"]
    kwargs = app_builder_kwargs(model_name, mode, classes, include_preprocessing, model_kwargs)
    if include_preprocessing and record and isinstance(record.get("preprocessing"), dict) \
            and "preprocessing" not in kwargs:
        kwargs["preprocessing"] = record["preprocessing"]
    model = create_model(model_name, weights=weights, **kwargs)
    n = int(model.outputs[0].shape[-1])
    return model, names_for_weights(model_name, weights, n)


# --- zoo predict ----------------------------------------------------------------

def _overlay(image, ids, palette, alpha=0.5):
    colours = palette[ids].astype("float32")
    return ((1 - alpha) * image.astype("float32") + alpha * colours).round().astype("uint8")


def _dense_outputs(args, stem, image, labels, names, palette):
    import numpy as np

    from zoo.cli.render import legend, stack_below, write_palette_png

    ids_path = os.path.join(args.out, f"{stem}.png")
    if len(palette) <= 256:
        write_palette_png(ids_path, labels, palette)
    else:
        # a palette holds 256 entries: more classes go out as 16-bit grey ids
        import tensorflow as tf

        tf.io.write_file(ids_path, tf.io.encode_png(labels.astype("uint16")[..., None]))
    present, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts)[:12]
    entries = [(tuple(int(c) for c in palette[present[i]]),
                f"{present[i]} {names[present[i]]} {100 * counts[i] / labels.size:.1f}%") for i in order]
    over = stack_below(_overlay(image, labels, palette), legend(entries, image.shape[1]))
    over_path = os.path.join(args.out, f"{stem}_overlay.png")
    _write_png(over_path, over)
    return [ids_path, over_path]


def _heatmap_outputs(args, stem, image, scores, names):
    """One panel per top class, side by side: each map over the image, titled
    with its class and captioned with its own colour bar, scaled linearly
    from that map's minimum to its maximum (:func:`zoo.apps.drawing.heatmap_figure`)."""
    import numpy as np

    from zoo.apps.drawing import heatmap_figure, stack

    peak = scores.reshape(-1, scores.shape[-1]).max(0)
    top = np.argsort(-peak, kind="stable")[:args.top_maps]
    panels = [heatmap_figure(image, scores[..., c], f"{c} {names[c]} (peak {peak[c]:.3g})", "score")
              for c in top]
    path = os.path.join(args.out, f"{stem}_heatmap.png")
    _write_png(path, stack(panels, axis=1))
    return [path], [(int(c), names[c], float(peak[c])) for c in top]


def _write_png(path, rgb):
    from zoo.apps.heatmap import write_png

    write_png(path, rgb)


def _classify_input(image, transform):
    # the weights' own evaluation transform (zoo evaluate's): shorter side to
    # size / crop_pct, centre crop; never a stretch of the whole image
    from zoo.apps.evaluate import apply_transform

    return apply_transform(image, transform)[None]


def _check_predict_options(args):
    """One-line errors for option values the parser lets through."""
    import math

    bad = [s for s in args.scales if not math.isfinite(s) or s <= 0]
    if bad:
        raise ValueError(f"--scales: every scale must be a finite number > 0; got {bad[0]}")
    if args.top_maps < 1:
        raise ValueError(f"--top-maps must be >= 1; got {args.top_maps}")
    if args.tile is not None and args.tile < 1:
        raise ValueError(f"--tile must be >= 1; got {args.tile}")
    if not (math.isfinite(args.overlap) and 0 <= args.overlap < 1):
        raise ValueError(f"--overlap must be in [0, 1); got {args.overlap}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")


def _same_file(a, b):
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def planned_outputs(images, out, mode):
    """Each input's output files in ``out``, refusing any plan that writes
    over an input or writes one file twice.

    Names are the input's stem plus a suffix (dense: ``<stem>.png`` and
    ``<stem>_overlay.png``; heatmap: ``<stem>_heatmap.png``), compared
    case-insensitively (a case-insensitive file system would merge them).

    Returns:
        ``{image: [paths]}`` (classify mode writes nothing: empty lists).

    Raises:
        ValueError: two inputs would write one file (``a/x.png`` and
            ``b/x.jpg``), or an output is one of the inputs.
    """
    suffixes = {"dense": (".png", "_overlay.png"), "heatmap": ("_heatmap.png",)}.get(mode, ())
    plan, owner = {}, {}
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        paths = [os.path.join(out, stem + suffix) for suffix in suffixes]
        for path in paths:
            key = os.path.normcase(os.path.abspath(path)).lower()
            if key in owner and owner[key] != image:
                raise ValueError(f"{owner[key]} and {image} would both write {path}: rename one, "
                                 "or run them with different --out folders")
            owner[key] = image
            for other in images:
                if _same_file(path, other):
                    raise ValueError(f"{image}: its output {path} would overwrite the input {other}: "
                                     "choose another --out folder")
        plan[image] = paths
    return plan


def cmd_predict(args):
    """``zoo predict``: class ids + overlay (dense), top-k (classify) or
    top-class heatmaps (heatmap) per image."""
    import numpy as np

    from zoo.apps.imaging import image_size, read_image
    from zoo.apps.predictor import Predictor
    from zoo.cli.render import Progress
    from zoo.labels import decode_predictions, palette

    _check_predict_options(args)
    for path in args.images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
    if args.mode != "classify" and not args.out:
        raise ValueError(f"--out DIR is required with --mode {args.mode}")
    app_builder_kwargs(args.model, args.mode, args.classes, True, args.model_kwargs)  # fail before the note
    if args.out:
        planned_outputs(args.images, args.out, args.mode)
    for path in args.images:
        image_size(path)  # the header only: not an image, or over the pixel limit, before any work
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    model, names = build_app_model(args.model, args.weights, args.mode, args.classes,
                                   model_kwargs=args.model_kwargs)
    predictor = transform = None
    if args.mode == "classify":
        from zoo.apps.evaluate import classify_transform

        transform = classify_transform(model, args.model, args.weights, args.model_kwargs)
    else:
        predictor = Predictor(model, scales=args.scales, flip=args.flip, tile=args.tile,
                              overlap=args.overlap, batch_size=args.batch_size)
    channels = model.inputs[0].shape[-1] or 3
    colours = palette(len(names))
    bar = Progress(len(args.images))
    results = []
    for path in args.images:
        image, note = read_image(path, channels)
        if note:
            sys.stderr.write(f"\rnote: {note}\n")
        rgb = image if channels == 3 else np.repeat(image[..., :1], 3, -1) if channels == 1 else image[..., :3]
        stem = os.path.splitext(os.path.basename(path))[0]  # planned_outputs checked the names
        try:
            if args.mode == "classify":
                probs = np.asarray(model(_classify_input(image, transform), training=False), "float32")
                results.append((path, decode_predictions(probs, top=5, labels=names)[0]))
            elif args.mode == "dense":
                labels = predictor.labels(image)
                results.append((path, _dense_outputs(args, stem, rgb, labels, names, colours)))
            else:
                scores = predictor.predict(image)
                written, top = _heatmap_outputs(args, stem, rgb, scores, names)
                results.append((path, (written, top)))
        except ValueError as e:
            if "minimum" in str(e):
                raise ValueError(f"{path}: {e}") from None
            raise
        bar.step(os.path.basename(path))
    for path, result in results:
        if args.mode == "classify":
            print(f"{path}:")
            for rank, (i, name, score) in enumerate(result, 1):
                print(f"  {rank}. {name} ({i}) {score:.4f}")
        elif args.mode == "dense":
            print(f"{path}: wrote {', '.join(result)}")
        else:
            written, top = result
            tops = "; ".join(f"{name} ({i}) {score:.3g}" for i, name, score in top)
            print(f"{path}: top {tops}; wrote {', '.join(written)}")
    return results


# --- zoo export -------------------------------------------------------------------

def cmd_export(args):
    """``zoo export``: a SavedModel, LiteRT or ONNX artifact via ``model.export``."""
    from zoo.apps.export import export_model
    from zoo.apps.predictor import check_min_size

    if args.size is not None and min(args.size) < 1:
        raise ValueError(f"--size {args.size[0]} {args.size[1]}: height and width must be >= 1")
    if os.path.lexists(args.out):
        kind = "a SavedModel" if os.path.isfile(os.path.join(args.out, "saved_model.pb")) else "a file or folder"
        raise ValueError(f"--out {args.out}: {kind} is already there; zoo export never writes over one "
                         "(remove it or choose another path)")
    app_builder_kwargs(args.model, args.mode, args.classes, args.include_preprocessing,
                       args.model_kwargs)  # fail before the note
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    print(f"building {args.model} ({args.mode} mode"
          + (f", weights {args.weights}" if args.weights else "") + ") ...", flush=True)
    model, _ = build_app_model(args.model, args.weights, args.mode, args.classes,
                               include_preprocessing=args.include_preprocessing,
                               model_kwargs=args.model_kwargs)
    if args.size is not None:
        check_min_size(model, args.size, f"--size {args.size[0]} {args.size[1]}: input")
    try:
        # pixels: the artifact takes uint8 (its Preprocess layer casts)
        export_model(model, args.out, args.format, size=args.size,
                     dtype="uint8" if args.include_preprocessing else None,
                     progress=lambda line: print(line, flush=True))
    except ImportError as e:
        raise ValueError(str(e)) from None
    shape = list(model.inputs[0].shape)
    if args.size:
        shape[1:3] = args.size
    dims = "x".join("?" if d is None else str(d) for d in shape[1:])
    print(f"wrote {args.out} ({args.format}, input batch x {dims} "
          f"{'uint8 RGB pixels' if args.include_preprocessing else 'preprocessed float32'})")


# --- zoo heatmap ------------------------------------------------------------------

def _check_image(path):
    """Fails early, in one line, on an image path that is missing, not an
    image or over the pixel limit (:mod:`zoo.apps.imaging`: header only)."""
    from zoo.apps.imaging import image_size

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    image_size(path)


def cmd_heatmap(args):
    """``zoo heatmap``: one heatmap-mode pass; the top class's map as a PNG."""
    kwargs = merge_model_kwargs(args.model_kwargs, flags={"classes": ("--classes", args.classes)},
                                fixed={"weights": "--weights", "mode": "the command (heatmap mode)"})
    check_builder_options(args.model, kwargs)
    _check_image(args.image)
    from zoo.apps.heatmap import run_heatmap

    result = run_heatmap(args.model, args.weights, args.image, args.out, **kwargs)
    named = f" {result['name']!r}" if result["name"] is not None else ""
    print(f"top class {result['class']}{named} (score {result['score']:.3g}); "
          f"map {result['map_shape'][0]}x{result['map_shape'][1]}; wrote {args.out}")


def add_parsers(subparsers):
    """Adds ``predict``, ``export`` and ``heatmap``."""
    s = subparsers.add_parser("predict", help="segment, classify or heatmap images (PNG outputs with legends)")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files")
    s.add_argument("--model", required=True)
    s.add_argument("--weights", default=None, help="published tag or checkpoint path (default: random init)")
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--mode", default="dense", choices=("dense", "heatmap", "classify"))
    s.add_argument("--out", default=None, help="output folder (dense, heatmap)")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0])
    s.add_argument("--flip", action="store_true", help="also average the mirrored image's logits")
    s.add_argument("--tile", type=int, default=None, help="sliding-tile size in pixels")
    s.add_argument("--overlap", type=float, default=1 / 3)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--top-maps", type=int, default=3, help="heatmap mode: how many classes to draw")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_predict)

    s = subparsers.add_parser("export", help="SavedModel / LiteRT / ONNX artifact through keras model.export")
    s.add_argument("--model", required=True)
    s.add_argument("--weights", default=None)
    s.add_argument("--mode", default="classify", choices=("classify", "heatmap", "dense", "features"))
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="fix the input size (default: dynamic where the model allows)")
    s.add_argument("--format", required=True, choices=("savedmodel", "tflite", "onnx"))
    s.add_argument("--out", required=True)
    s.add_argument("--include-preprocessing", action="store_true",
                   help="the artifact takes RGB pixels (uint8 or 0..255 floats)")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_export)

    s = subparsers.add_parser("heatmap", help="class heatmap PNG of an image in one pass")
    s.add_argument("image")
    s.add_argument("--model", default="vgg16")
    s.add_argument("--weights", default="imagenet")
    s.add_argument("--out", default="heat.png")
    s.add_argument("--classes", type=int, default=None, help="class count of a fine-tuned checkpoint")
    add_model_kwargs(s)
    s.set_defaults(func=cmd_heatmap)
