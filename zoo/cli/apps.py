"""``zoo predict`` and ``zoo export``: the application commands.

    zoo predict --model NAME [--weights TAG|PATH] [--classes N]
                [--mode dense|heatmap|classify] IMAGE... --out DIR
                [--scales S...] [--flip] [--tile N]
    zoo export  --model NAME [--weights TAG|PATH] [--mode M] [--classes N]
                [--size H W] --format savedmodel|tflite|onnx --out PATH
                [--include-preprocessing]

Dense mode writes ``DIR/<stem>.png``, an indexed-colour PNG whose pixel
values are the class ids (a 16-bit grey PNG of ids beyond 256 classes), and
``DIR/<stem>_overlay.png`` with a legend. Images are read with ``tf.io`` (JPEG, PNG; grey and RGBA are converted to RGB
with a note) and PNGs are written with ``tf.io`` or, for the palette PNG of
class ids, with ``zlib``: no imaging dependency. Legends use a built-in 5x7
bitmap font.
"""

import os
import struct
import sys
import zlib

import numpy as np

# --- a 5x7 bitmap font (rows top to bottom, 5 bits each, MSB = left) ----------
# Lower case is drawn in capitals; unknown characters as '?'.
_GLYPHS = {
    "A": "0E11111F111111", "B": "1E11111E11111E", "C": "0E11101010110E", "D": "1C12111111121C",
    "E": "1F10101E10101F", "F": "1F10101E101010", "G": "0E11101711110F", "H": "1111111F111111",
    "I": "0E04040404040E", "J": "0702020202120C", "K": "11121418141211", "L": "1010101010101F",
    "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E", "P": "1E11111E101010",
    "Q": "0E11111115120D", "R": "1E11111E141211", "S": "0F10100E01011E", "T": "1F040404040404",
    "U": "1111111111110E", "V": "11111111110A04", "W": "1111111515150A", "X": "11110A040A1111",
    "Y": "11110A04040404", "Z": "1F01020408101F",
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F", "3": "1F02040201110E",
    "4": "02060A121F0202", "5": "1F101E0101110E", "6": "0608101E11110E", "7": "1F010204080808",
    "8": "0E11110E11110E", "9": "0E11110F01020C",
    " ": "00000000000000", "-": "0000001F000000", "_": "0000000000001F", ".": "00000000000C0C",
    ",": "000000000C0408", "'": "0C040800000000", "(": "02040808080402", ")": "08040202020408",
    "/": "00010204081000", ":": "000C0C000C0C00", "%": "18190204081303", "?": "0E110102040004",
    "=": "00001F001F0000", "+": "0004041F040400",
}
assert all(len(code) == 14 for code in _GLYPHS.values())
_FONT = {ch: [int(code.replace(" ", "")[2 * i:2 * i + 2], 16) for i in range(7)] for ch, code in _GLYPHS.items()}


def text_mask(text, scale=2):
    """Renders ``text`` with the built-in 5x7 font.

    Args:
        text: the string (one line).
        scale: pixel size of one font dot.

    Returns:
        A bool array ``(7 * scale, 6 * len(text) * scale)``, True on ink.
    """
    cols = []
    for ch in text:
        rows = _FONT.get(ch.upper(), _FONT["?"])
        glyph = np.array([[(r >> (4 - b)) & 1 for b in range(5)] + [0] for r in rows], bool)
        cols.append(glyph)
    mask = np.concatenate(cols, axis=1) if cols else np.zeros((7, 0), bool)
    return np.kron(mask, np.ones((scale, scale), bool))


def legend(entries, width, scale=2):
    """A white legend panel: one row per ``(rgb, text)`` entry.

    Args:
        entries: list of ``((r, g, b), text)``.
        width: minimum panel width in pixels.
        scale: font scale.

    Returns:
        A uint8 ``(h, w, 3)`` image.
    """
    row_h = 7 * scale + 6
    texts = [text_mask(t, scale) for _, t in entries]
    w = max([width] + [m.shape[1] + row_h + 8 for m in texts])
    panel = np.full((row_h * len(entries) + 4, w, 3), 255, "uint8")
    for i, ((color, _), mask) in enumerate(zip(entries, texts)):
        y = 4 + i * row_h
        panel[y:y + row_h - 4, 4:4 + row_h - 4] = color
        region = panel[y + 1:y + 1 + mask.shape[0], row_h + 4:row_h + 4 + mask.shape[1]]
        region[mask[:region.shape[0], :region.shape[1]]] = 0
    return panel


def stack_below(image, panel):
    """``image`` with ``panel`` under it (white-padded to a common width)."""
    w = max(image.shape[1], panel.shape[1])

    def pad(a):
        out = np.full((a.shape[0], w, 3), 255, "uint8")
        out[:, :a.shape[1]] = a
        return out

    return np.concatenate([pad(image), pad(panel)], axis=0)


# --- images ---------------------------------------------------------------------

def read_rgb(path):
    """Reads a JPEG/PNG as uint8 RGB.

    Args:
        path: image file.

    Returns:
        ``(rgb, note)``: the ``(H, W, 3)`` array and a conversion note or None.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a decodable JPEG/PNG/GIF/BMP.
    """
    import tensorflow as tf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JPEG/PNG image ({str(e).splitlines()[0][:80]})") from None
    if img.dtype != np.uint8:  # 16-bit PNG
        img = (img.astype("float64") / 257.0).round().astype("uint8")
    channels = img.shape[-1]
    note = None
    if channels in (2, 4):
        img = img[..., :channels - 1]
        note = f"{path}: alpha channel dropped"
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
        note = f"{path}: greyscale converted to RGB" + (" (alpha dropped)" if channels == 2 else "")
    return img, note


def write_palette_png(path, ids, palette):
    """Writes class ids as an indexed-colour (palette) PNG.

    Pixel values are the class ids; viewers show ``palette[id]``.

    Args:
        path: output file.
        ids: ``(H, W)`` integer class ids in ``[0, 256)``.
        palette: ``(n, 3)`` uint8 colours, ``n <= 256``.

    Returns:
        ``path``.
    """
    ids = np.asarray(ids)
    if ids.min() < 0 or ids.max() > 255 or len(palette) > 256:
        raise ValueError("a palette PNG holds at most 256 classes")
    h, w = ids.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.tobytes() for row in ids.astype("uint8"))  # filter type 0 per row
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", np.asarray(palette, "uint8").tobytes())
           + chunk(b"IDAT", zlib.compress(raw, 6))
           + chunk(b"IEND", b""))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png)
    return path


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, width=24):
        self.total, self.width, self.done = total, width, 0

    def step(self, label):
        self.done += 1
        filled = int(self.width * self.done / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label[:40]:40s}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# --- models -----------------------------------------------------------------------

def build_app_model(model_name, weights=None, mode="classify", classes=None, include_preprocessing=True):
    """A model for an application: with its preprocessing inside.

    Every builder takes ``include_preprocessing=True``: its first layer is
    then the weights' :class:`zoo.preprocessing.Preprocess`.

    Args:
        model_name: registry name.
        weights: tag, path or None.
        mode: builder mode.
        classes: class count or None (the weights' own).
        include_preprocessing: put the weights' preprocessing inside.

    Returns:
        ``(model, names)``: the ``keras.Model`` and its class names.
    """
    import zoo
    from zoo.labels import label_set_for_weights, resolve_names

    kwargs = {"weights": weights, "mode": mode}
    if classes:
        kwargs["classes"] = classes
    if include_preprocessing:
        kwargs["include_preprocessing"] = True
    model = zoo.create_model(model_name, **kwargs)
    n = int(model.outputs[0].shape[-1])
    label_set = label_set_for_weights(model_name, weights, n)
    return model, resolve_names(label_set, n)


# --- zoo predict ----------------------------------------------------------------

def _overlay(image, ids, palette, alpha=0.5):
    colours = palette[ids].astype("float32")
    return ((1 - alpha) * image.astype("float32") + alpha * colours).round().astype("uint8")


def _dense_outputs(args, stem, image, labels, names, palette):
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
    from zoo.apps.heatmap import overlay

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
    import tensorflow as tf

    h, w = model.inputs[0].shape[1:3]
    size = (h or 224, w or 224)
    x = tf.image.resize(image[None].astype("float32"), size, method="bilinear", antialias=True)
    return np.clip(np.round(x.numpy()), 0, 255).astype("uint8")


def cmd_predict(args):
    """``zoo predict``: class ids + overlay (dense), top-k (classify) or
    top-class heatmaps (heatmap) per image."""
    from zoo.labels import decode_predictions, palette
    from zoo.apps.predictor import Predictor

    for path in args.images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
    if args.mode != "classify" and not args.out:
        raise ValueError(f"--out DIR is required with --mode {args.mode}")
    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    model, names = build_app_model(args.model, args.weights, args.mode, args.classes)
    predictor = None
    if args.mode != "classify":
        predictor = Predictor(model, scales=args.scales, flip=args.flip, tile=args.tile,
                              overlap=args.overlap, batch_size=args.batch_size)
    colours = palette(len(names))
    bar = _Progress(len(args.images))
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

    if args.weights is None:
        print("note: no --weights given: random initial weights", file=sys.stderr)
    model, _ = build_app_model(args.model, args.weights, args.mode, args.classes,
                               include_preprocessing=args.include_preprocessing)
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


def add_parsers(subparsers):
    """Adds ``predict`` and ``export`` to the ``zoo`` command line.

    Args:
        subparsers: the ``add_subparsers()`` object of ``zoo``'s parser.
    """
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
    s.set_defaults(func=cmd_export)
