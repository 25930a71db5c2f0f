"""Drawing for ``zoo predict``: a 5x7 bitmap font, legends, palette PNGs, image reading.

Images are read with ``tf.io`` (JPEG, PNG; grey and RGBA are converted to RGB
with a note) and PNGs are written with ``tf.io`` or, for the palette PNG of
class ids, with ``zlib``: no imaging dependency. Legends use the built-in
font.
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

def read_rgb(path, max_pixels=None):
    """Reads an image as uint8 RGB: :func:`zoo.apps.imaging.read_rgb` (the
    one reader, with its pixel limit).

    Returns:
        ``(rgb, note)``: the ``(H, W, 3)`` array and a conversion note or None.
    """
    from zoo.apps.imaging import read_rgb as read

    return read(path, max_pixels)


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


class Progress:
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
