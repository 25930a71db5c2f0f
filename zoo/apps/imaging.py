"""The one image reader of ``zoo predict``, ``zoo heatmap`` and :class:`~zoo.apps.predictor.Predictor` users.

Every image is opened lazily first (Pillow reads only the header: PNG IHDR,
JPEG SOF, GIF, BMP, WebP), and an image that declares more pixels than the
limit is refused *before* anything is decoded: a 140 KB PNG declaring
12000x12000 pixels would otherwise take gigabytes.

The limit is :data:`DEFAULT_MAX_PIXELS` (100 megapixels), or the
``ZOO_MAX_IMAGE_PIXELS`` environment variable (a positive integer; ``0``
turns the limit off), or the ``max_pixels`` argument, in that order of
precedence from last to first.

Pixels are then decoded with ``tf.io`` (JPEG, PNG, GIF's first frame, BMP,
WebP). 16-bit PNGs are scaled to 8 bits. The channel count follows the
model: 3 (RGB: grey is repeated, alpha dropped, each with a note), 1 (grey:
RGB is converted with the ITU-R 601 luma weights, as Pillow's ``"L"``), or 4
(the image must have 4 channels; nothing is invented).
"""

import os

import numpy as np

ENV = "ZOO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000


def max_image_pixels(max_pixels=None):
    """The pixel limit in force: ``max_pixels``, else ``$ZOO_MAX_IMAGE_PIXELS``,
    else :data:`DEFAULT_MAX_PIXELS`; 0 means no limit (returns None).

    Raises:
        ValueError: a limit that is not a non-negative integer.
    """
    source = "max_pixels"
    if max_pixels is None:
        raw = os.environ.get(ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        source = ENV
        try:
            max_pixels = int(raw)
        except ValueError:
            raise ValueError(f"{ENV}={raw!r}: expected a pixel count (an integer; 0 = no limit)") from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 0:
        raise ValueError(f"{source}={max_pixels!r}: expected a pixel count (an integer >= 0; 0 = no limit)")
    return int(max_pixels) or None


def image_size(path, max_pixels=None):
    """``(height, width)`` from the file's header, refusing images over the limit.

    Nothing but the header is decoded.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an image, or more pixels than the limit.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file")
    limit = max_image_pixels(max_pixels)

    def header_size():
        try:
            with Image.open(path) as im:
                return im.size
        except FileNotFoundError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ValueError(f"{path}: not a readable image (JPEG, PNG, GIF, BMP or WebP)") from None

    try:
        w, h = header_size()
    except Image.DecompressionBombError:
        # over twice Pillow's own limit; refused unless our limit is higher
        pillow = 2 * Image.MAX_IMAGE_PIXELS
        if limit is not None and limit <= pillow:
            raise ValueError(f"{path}: declares more than {pillow} pixels, over the {limit}-pixel "
                             f"limit (set {ENV} to raise it, 0 for none)") from None
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # this header read only
        try:
            w, h = header_size()
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if limit is not None and w * h > limit:
        raise ValueError(f"{path}: declares {w}x{h} = {w * h} pixels, over the {limit}-pixel limit "
                         f"(set {ENV} to raise it, 0 for none)")
    return h, w


def read_image(path, channels=3, max_pixels=None):
    """Reads an image as uint8 with ``channels`` channels.

    Args:
        path: image file.
        channels: 1 (grey), 3 (RGB) or 4 (the file must have 4 channels).
        max_pixels: the pixel limit (see :func:`max_image_pixels`).

    Returns:
        ``(image, note)``: the ``(H, W, channels)`` uint8 array and a
        conversion note or None.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an image, over the pixel limit, or a channel count
            that cannot be made from the file.
    """
    import tensorflow as tf

    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4; got {channels!r}")
    size = image_size(path, max_pixels)
    try:
        img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JPEG/PNG image ({str(e).splitlines()[0][:80]})") from None
    if tuple(img.shape[:2]) != tuple(size):  # the header that was checked is not what decoded
        raise ValueError(f"{path}: decodes to {img.shape[0]}x{img.shape[1]} but its header says "
                         f"{size[0]}x{size[1]}: a damaged or disguised file")
    if img.dtype != np.uint8:  # 16-bit PNG
        img = (img.astype("float64") / 257.0).round().astype("uint8")
    have = img.shape[-1]
    note = None
    if channels == 4:
        if have != 4:
            raise ValueError(f"{path}: the model takes 4-channel images and this file has {have} "
                             "(give a 4-channel PNG)")
        return img, None
    if have in (2, 4):
        img = img[..., :have - 1]
        note = f"{path}: alpha channel dropped"
    if channels == 3 and img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
        note = f"{path}: greyscale converted to RGB" + (" (alpha dropped)" if have == 2 else "")
    elif channels == 1 and img.shape[-1] == 3:
        luma = img.astype("float32") @ np.array([0.299, 0.587, 0.114], "float32")
        img = np.clip(np.round(luma), 0, 255).astype("uint8")[..., None]
        note = f"{path}: RGB converted to greyscale (the model takes 1 channel)" + \
            (" (alpha dropped)" if have == 4 else "")
    return img, note


def read_rgb(path, max_pixels=None):
    """:func:`read_image` with 3 channels: ``(rgb, note)``."""
    return read_image(path, 3, max_pixels)
