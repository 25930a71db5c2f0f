"""Pictures a person can read: the segmentation overlay grid, legends, titles
and the heatmap colour bar (Pillow: ``ImageDraw`` and ``ImageFont.load_default``).

One drawer for every picture the package writes about predictions:

* :func:`segmentation_grid`: rows of *image | truth | prediction* with
  column titles and a legend of class names and colours (``zoo demo`` and
  ``zoo finetune``'s ``overlay.png``);
* :func:`heatmap_figure`: a score map over its image, titled with the class
  and captioned with a colour bar and its scale (``zoo heatmap``, ``zoo demo
  heatmap`` and each map of ``zoo predict --mode heatmap``).

It lives beside :mod:`zoo.apps.imaging` (the one image *reader*) in a module
of its own so that reading and drawing change independently.

The label palette (:data:`SEGMENT_PALETTE`) is a high-contrast qualitative
set chosen to stand out from ``zoo_shapes``' own colours (red circles, green
squares, blue triangles on a grey gradient, see
:func:`zoo.training.data._draw_shapes`): black background, then yellow,
magenta and cyan, each at least 150 RGB units (Euclidean) from every shape
colour the dataset can draw; further classes continue with the rest of
Sasha Trubetskoy's "20 distinct colours" and then
:func:`zoo.labels.palette`. Masks are drawn as solid colours, not blended
with the image, so the truth column can never be mistaken for the input.
The ignore label is drawn hatched grey.
"""

import numpy as np

# background, then colours far from zoo_shapes' red / green / blue shapes
# (tests/test_pictures.py checks the margin), then more distinct colours.
SEGMENT_PALETTE = (
    (0, 0, 0), (255, 225, 25), (240, 50, 230), (70, 240, 240), (245, 130, 48),
    (255, 255, 255), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (255, 215, 180), (0, 0, 128), (128, 128, 128), (145, 30, 180), (60, 180, 75),
)
# The ignore label's hatching: light and dark grey diagonal stripes.
IGNORE_COLOURS = ((200, 200, 200), (120, 120, 120))
MIN_PANEL = 160
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def font(size=13):
    """Pillow's built-in font at ``size`` px (its bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def segment_palette(num_classes):
    """``(max(num_classes, 256), 3)`` uint8 colours: :data:`SEGMENT_PALETTE`
    first, :func:`zoo.labels.palette` for the classes beyond it.

    Args:
        num_classes: classes that need a colour.

    Returns:
        A uint8 array indexable by any class id below 256.
    """
    from zoo.labels import palette

    out = np.array(palette(max(num_classes, 256)), "uint8")
    out[:len(SEGMENT_PALETTE)] = SEGMENT_PALETTE
    return out


def _hatch(h, w, period=6):
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((yy + xx) // (period // 2)) % 2 == 0
    out = np.empty((h, w, 3), "uint8")
    out[stripes] = IGNORE_COLOURS[0]
    out[~stripes] = IGNORE_COLOURS[1]
    return out


def colour_labels(labels, colours, ignore_label=255):
    """Class ids ``(H, W)`` -> solid colours ``(H, W, 3)`` uint8, the ignore label hatched."""
    labels = np.asarray(labels)
    out = colours[np.clip(labels, 0, len(colours) - 1)].astype("uint8")
    ignored = labels == ignore_label
    if ignored.any():
        out[ignored] = _hatch(*labels.shape)[ignored]
    return out


def upscale(array, factor, nearest=True):
    """``array`` (H, W, 3) uint8 scaled by an integer ``factor`` (nearest
    for label pictures, bilinear for photographs)."""
    from PIL import Image

    if factor == 1:
        return np.asarray(array, "uint8")
    im = Image.fromarray(np.asarray(array, "uint8"))
    size = (im.width * factor, im.height * factor)
    return np.asarray(im.resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def text_size(text, fnt):
    """``(width, height)`` of ``text`` in ``fnt``."""
    left, top, right, bottom = fnt.getbbox(text)
    return right - left, bottom


def legend_entries(class_names, colours, present=None, ignore=False):
    """``[(rgb or "hatch", name), ...]`` for the legend: every class (or those in ``present``)."""
    ids = range(len(class_names)) if present is None else sorted(int(i) for i in present)
    entries = [(tuple(int(c) for c in colours[i]), str(class_names[i])) for i in ids
               if i < len(class_names)]
    if ignore:
        entries.append(("hatch", "ignored"))
    return entries


def wrap(text, width, fnt):
    """``text`` split into lines no wider than ``width`` pixels (at word breaks)."""
    lines = []
    for word in text.split():
        if lines and text_size(lines[-1] + " " + word, fnt)[0] <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def draw_legend(width, entries, fnt=None, swatch=14, pad=6):
    """A white legend panel ``(h, width, 3)``: a swatch and its text per entry,
    wrapped over as many lines as ``width`` needs.

    Args:
        width: panel width in pixels.
        entries: ``[(rgb or "hatch", text), ...]``.
        fnt: a Pillow font (default :func:`font`).
        swatch: swatch side in pixels.
        pad: spacing in pixels.

    Returns:
        A uint8 array.
    """
    from PIL import Image, ImageDraw

    fnt = fnt or font()
    items, x, y, line_h = [], pad, pad, max(swatch, text_size("Ag", fnt)[1]) + pad
    for colour, text in entries:
        w = swatch + 4 + text_size(text, fnt)[0] + 2 * pad
        if x > pad and x + w > width:
            x, y = pad, y + line_h
        items.append((x, y, colour, text))
        x += w
    im = Image.new("RGB", (width, y + line_h + pad // 2), BACKGROUND)
    draw = ImageDraw.Draw(im)
    for x, y, colour, text in items:
        if colour == "hatch":
            im.paste(Image.fromarray(_hatch(swatch, swatch)), (x, y))
        else:
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=tuple(colour))
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], outline=(90, 90, 90))
        draw.text((x + swatch + 4, y + swatch // 2), text, fill=INK, font=fnt, anchor="lm")
    return np.asarray(im)


def draw_title(width, text, fnt=None, pad=4):
    """A white strip ``(h, width, 3)`` with ``text`` centred, wrapped to ``width``."""
    from PIL import Image, ImageDraw

    fnt = fnt or font()
    line_h = text_size("Ag", fnt)[1] + 2
    lines = wrap(text, width - 2 * pad, fnt) or [""]
    im = Image.new("RGB", (width, len(lines) * line_h + 2 * pad), BACKGROUND)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((width // 2, pad + i * line_h + line_h // 2), line, fill=INK, font=fnt, anchor="mm")
    return np.asarray(im)


def stack(parts, axis=0, gap=0):
    """Concatenates uint8 pictures along ``axis``, white-padding the other side."""
    parts = [np.asarray(p, "uint8") for p in parts]
    other = 1 - axis
    size = max(p.shape[other] for p in parts)
    padded = []
    for i, p in enumerate(parts):
        if p.shape[other] < size:
            shape = list(p.shape)
            shape[other] = size - p.shape[other]
            p = np.concatenate([p, np.full(shape, 255, "uint8")], axis=other)
        padded.append(p)
        if gap and i < len(parts) - 1:
            shape = list(p.shape)
            shape[axis] = gap
            padded.append(np.full(shape, 255, "uint8"))
    return np.concatenate(padded, axis=axis)


def segmentation_grid(images, truths, preds, class_names, ignore_label=255, min_panel=MIN_PANEL,
                      titles=("image", "truth", "prediction")):
    """Rows of *image | truth | prediction* with column titles and a legend.

    Each panel is scaled up by a whole factor to at least ``min_panel``
    pixels on its shorter side (nearest for masks, bilinear for images);
    masks are solid :func:`segment_palette` colours with the ignore label
    hatched grey; the legend names every class and its colour (and the
    hatching, when a truth mask has ignored pixels).

    Args:
        images: uint8 RGB ``(N, H, W, 3)``.
        truths, preds: class ids ``(N, H, W)``.
        class_names: one name per class.
        ignore_label: the truth label drawn hatched.
        min_panel: the smallest panel side in pixels.
        titles: the three column titles.

    Returns:
        The picture, uint8 ``(H', W', 3)``.
    """
    images = np.asarray(images)
    h, w = images.shape[1:3]
    factor = max(1, -(-min_panel // min(h, w)))
    colours = segment_palette(len(class_names))
    gap = 4
    rows = []
    ignored = False
    for img, gt, pr in zip(images, truths, preds):
        ignored = ignored or bool(np.any(np.asarray(gt) == ignore_label))
        panels = [upscale(np.clip(img, 0, 255).astype("uint8"), factor, nearest=False),
                  upscale(colour_labels(gt, colours, ignore_label), factor),
                  upscale(colour_labels(pr, colours, ignore_label), factor)]
        rows.append(stack(panels, axis=1, gap=gap))
    fnt = font(max(13, min(18, factor * w // 12)))
    panel_w = w * factor
    header = stack([draw_title(panel_w, t, fnt) for t in titles], axis=1, gap=gap)
    body = stack(rows, axis=0, gap=gap)
    legend = draw_legend(body.shape[1], legend_entries(class_names, colours, ignore=ignored), fnt)
    return stack([header, body, legend], axis=0)


# --------------------------------------------------------------- heatmaps


def colorize(scores, low=None, high=None):
    """A 2-D array -> RGB uint8 on a blue-cyan-yellow-red ramp, scaled
    linearly from ``low`` (blue) to ``high`` (red); default: its own min and max."""
    s = np.asarray(scores, dtype="float64")
    low = float(s.min()) if low is None else low
    high = float(s.max()) if high is None else high
    s = (s - low) / max(high - low, 1e-12)
    s = np.clip(s, 0, 1)
    r = np.clip(1.5 - np.abs(4 * s - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * s - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * s - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype("uint8")


def colour_bar(width, low, high, label="", fnt=None, height=12, ticks=5, pad=6):
    """A horizontal colour bar of :func:`colorize`'s ramp with tick values.

    Args:
        width: panel width in pixels.
        low, high: the values at the bar's two ends.
        label: a line under the ticks (what the values are, how they are scaled).
        fnt: a Pillow font (default :func:`font`).
        height: the bar's height in pixels.
        ticks: tick values printed (ends included).
        pad: margin in pixels.

    Returns:
        A uint8 ``(h, width, 3)`` panel.
    """
    from PIL import Image, ImageDraw

    fnt = fnt or font()
    text_h = text_size("Ag", fnt)[1]
    lines = wrap(label, width - 2 * pad, fnt) if label else []
    total_h = pad + height + 3 + text_h + pad + len(lines) * (text_h + 4)
    im = Image.new("RGB", (width, total_h), BACKGROUND)
    bar_w = width - 2 * pad - 20
    x0 = pad + 10
    ramp = colorize(np.linspace(0, 1, max(bar_w, 2))[None].repeat(height, 0), 0, 1)
    im.paste(Image.fromarray(ramp), (x0, pad))
    draw = ImageDraw.Draw(im)
    draw.rectangle([x0 - 1, pad - 1, x0 + bar_w, pad + height], outline=(90, 90, 90))
    # fewer ticks where their labels would run into each other
    while ticks > 2:
        labels = [f"{low + (high - low) * i / (ticks - 1):.3g}" for i in range(ticks)]
        if sum(text_size(t, fnt)[0] + 8 for t in labels) * 1.5 <= bar_w:
            break
        ticks = 3 if ticks > 3 else 2
    for i in range(ticks):
        x = x0 + round(i * (bar_w - 1) / max(ticks - 1, 1))
        value = low + (high - low) * i / max(ticks - 1, 1)
        draw.line([x, pad + height, x, pad + height + 3], fill=INK)
        anchor = "la" if i == 0 else "ra" if i == ticks - 1 else "ma"
        draw.text((x, pad + height + 4), f"{value:.3g}", fill=INK, font=fnt, anchor=anchor)
    y = pad + height + 4 + text_h + pad
    for line in lines:
        draw.text((pad, y), line, fill=INK, font=fnt)
        y += text_h + 4
    return np.asarray(im)


def heat_overlay(image, scores, alpha=0.5, low=None, high=None):
    """Blends a score map, resized (bilinear) to the image, over an RGB uint8 image.

    Args:
        image: uint8 ``(H, W, 3)``.
        scores: ``(h, w)`` scores.
        alpha: the map's weight.
        low, high: the ramp's ends (default: the map's min and max).

    Returns:
        uint8 ``(H, W, 3)``.
    """
    from PIL import Image

    h, w = image.shape[:2]
    s = np.asarray(scores, "float32")
    low = float(s.min()) if low is None else low
    high = float(s.max()) if high is None else high
    resized = np.asarray(Image.fromarray(s, mode="F").resize((w, h), Image.BILINEAR))
    coloured = colorize(resized, low, high).astype("float32")
    return ((1 - alpha) * image.astype("float32") + alpha * coloured).round().astype("uint8")


def heatmap_figure(image, scores, title, what="score", min_panel=MIN_PANEL, alpha=0.5):
    """A score map over its image, titled, with a colour bar and its scale.

    The colours run linearly from the map's minimum (blue) to its maximum
    (red), both printed on the colour bar with the ticks between.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        scores: the ``(h, w)`` map (any size: resized to the image).
        title: the line above (e.g. the class id and name).
        what: what the values are (``"logit"``, ``"score"``).
        min_panel: the smallest panel side in pixels (small images are scaled up).
        alpha: the map's weight in the blend.

    Returns:
        uint8 ``(H', W', 3)``.
    """
    image = np.asarray(image, "uint8")
    s = np.asarray(scores, "float32")
    low, high = float(s.min()), float(s.max())
    factor = max(1, -(-min_panel // min(image.shape[:2])))
    panel = upscale(heat_overlay(image, s, alpha, low, high), factor, nearest=False)
    width = max(panel.shape[1], 220)
    fnt = font(13)
    bar = colour_bar(width, low, high, f"{what}, {s.shape[0]}x{s.shape[1]} map; colours linear "
                     f"from its min to its max", fnt)
    return stack([draw_title(width, title, font(15)), panel, bar], axis=0)
