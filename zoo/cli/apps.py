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
    from zoo.labels import label_set_for_weights, resolve_names
    from zoo.registry import create_model

    kwargs = app_builder_kwargs(model_name, mode, classes, include_preprocessing, model_kwargs)
    model = create_model(model_name, weights=weights, **kwargs)
    n = int(model.outputs[0].shape[-1])
    label_set = label_set_for_weights(model_name, weights, n)
    return model, resolve_names(label_set, n)


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
    import numpy as np

    from zoo.apps.heatmap import overlay
    from zoo.cli.render import legend, stack_below

    peak = scores.reshape(-1, scores.shape[-1]).max(0)
    top = np.argsort(-peak, kind="stable")[:args.top_maps]
    panels = []
    for c in top:
        panel = overlay(image, scores[..., c])
        caption = legend([((255, 0, 0), f"{c} {names[c]} max {peak[c]:.3g}")], panel.shape[1])
        panels.append(stack_below(panel, caption))
    h = max(p.shape[0] for p in panels)
    panels = [np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 255, "uint8")]) for p in panels]
    path = os.path.join(args.out, f"{stem}_heatmap.png")
    _write_png(path, np.concatenate(panels, axis=1))
    return [path], [(int(c), names[c], float(peak[c])) for c in top]


def _write_png(path, rgb):
    from zoo.apps.heatmap import write_png

    write_png(path, rgb)


def _classify_input(model, image):
    import numpy as np
    import tensorflow as tf

    h, w = model.inputs[0].shape[1:3]
    size = (h or 224, w or 224)
    x = tf.image.resize(image[None].astype("float32"), size, method="bilinear", antialias=True)
    return np.clip(np.round(x.numpy()), 0, 255).astype("uint8")


def cmd_predict(args):
    """``zoo predict``: class ids + overlay (dense), top-k (classify) or
    top-class heatmaps (heatmap) per image."""
    import numpy as np

    from zoo.apps.predictor import Predictor
    from zoo.cli.render import Progress, read_rgb
    from zoo.labels import decode_predictions, palette

    for path in args.images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
    if args.mode != "classify" and not args.out:
        raise ValueError(f"--out DIR is required with --mode {args.mode}")
    app_builder_kwargs(args.model, args.mode, args.classes, True, args.model_kwargs)  # fail before the note
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    model, names = build_app_model(args.model, args.weights, args.mode, args.classes,
                                   model_kwargs=args.model_kwargs)
    predictor = None
    if args.mode != "classify":
        predictor = Predictor(model, scales=args.scales, flip=args.flip, tile=args.tile,
                              overlap=args.overlap, batch_size=args.batch_size)
    colours = palette(len(names))
    bar = Progress(len(args.images))
    results = []
    for path in args.images:
        image, note = read_rgb(path)
        if note:
            sys.stderr.write(f"\rnote: {note}\n")
        stem = os.path.splitext(os.path.basename(path))[0]
        if args.mode == "classify":
            probs = np.asarray(model(_classify_input(model, image), training=False), "float32")
            results.append((path, decode_predictions(probs, top=5, labels=names)[0]))
        elif args.mode == "dense":
            labels = predictor.labels(image)
            results.append((path, _dense_outputs(args, stem, image, labels, names, colours)))
        else:
            scores = predictor.predict(image)
            written, top = _heatmap_outputs(args, stem, image, scores, names)
            results.append((path, (written, top)))
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

    app_builder_kwargs(args.model, args.mode, args.classes, args.include_preprocessing,
                       args.model_kwargs)  # fail before the note
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    model, _ = build_app_model(args.model, args.weights, args.mode, args.classes,
                               include_preprocessing=args.include_preprocessing,
                               model_kwargs=args.model_kwargs)
    try:
        # pixels: the artifact takes uint8 (its Preprocess layer casts)
        export_model(model, args.out, args.format, size=args.size,
                     dtype="uint8" if args.include_preprocessing else None)
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
    """Fails early, in one line, on an image path that is missing or not an image."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    import tensorflow as tf

    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        raise ValueError(f"{path} is not an image (JPEG, PNG, GIF, BMP or WebP)") from None


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
