"""Dense inference on real images: scales, horizontal flip and sliding tiles.

:class:`Predictor` wraps a dense or heatmap model and returns per-pixel class
logits at each image's own size, averaged over test-time augmentations the
way fyu/drn's ``segment.py --ms`` and mmsegmentation's ``slide`` mode do:

* **scales**: the image is resized (bilinear, half-pixel centres) by each
  factor, run, and its logits resized back to the image size;
* **flip**: each scale also runs on the mirrored image, its logits mirrored
  back;
* **tile**: images larger than the tile are cut into fixed ``tile`` x ``tile``
  crops with stride ``tile * (1 - overlap)``; the last crop of a row/column
  is moved back to end at the border (mmsegmentation's grid), a dimension
  smaller than the tile is zero-padded at the bottom/right, and logits are
  averaged where crops overlap.

The final logits are the plain mean of every (scale, flip) pass. An image
that fits in one tile runs whole, so ``tile >= image size`` is exactly the
model's own output.

**Heatmap models** (one score vector per sliding classifier window, far
coarser than the input) are handled by one rule: a model output whose
spatial size differs from the size of the input it was computed from is
resized bilinearly (half-pixel centres, no antialiasing) to that input's
size — per tile, per scale — before any averaging. A heatmap Predictor thus
returns per-pixel class scores at the image size; the scores near the border
are extrapolated from the outermost windows' centres.

Inputs go to the model as given: build it with ``include_preprocessing=True``
and pass RGB pixels (uint8 or floats in 0..255), or pass what the model
expects (e.g. :func:`zoo.preprocessing.preprocess` output). Resized inputs of
an integer-typed model are rounded back to its dtype.

Compiled path: tiles run through one function compiled for the fixed shape
``(batch_size, tile, tile, 3)`` (a partial last batch is zero-padded), so new
image sizes never retrace it; whole images run through one function compiled
for ``(None, None, None, 3)`` (``tf.function`` on TensorFlow, ``jax.jit`` on
JAX, which traces once per distinct whole-image shape; torch runs eagerly).
:attr:`Predictor.traces` counts the traces.
"""

import keras
import numpy as np


def model_min_size(model):
    """The model's minimum input side (its :class:`zoo.layers.MinSize`
    guard's), or None when it declares none."""
    from zoo.layers import MinSize

    sides = [layer.min_size for layer in getattr(model, "layers", ()) if isinstance(layer, MinSize)]
    return max(sides) if sides else None


def check_min_size(model, size, what="input"):
    """Raises a one-line ValueError when ``size`` ``(H, W)`` is below the
    model's minimum side (:func:`model_min_size`)."""
    low = model_min_size(model)
    if low is not None and min(size) < low:
        raise ValueError(f"{what} of {size[0]}x{size[1]} is below the model's minimum of "
                         f"{low}x{low} pixels")


class Predictor:
    """Test-time-augmented dense inference for a dense or heatmap model.

    Args:
        model: a ``keras.Model`` mapping ``(N, H, W, K)`` images to
            ``(N, h, w, C)`` logits (dense: ``h, w == H, W``; heatmap:
            coarser). ``K`` is read from the model's input (3 for RGB, 1
            for an ``in_channels=1`` model, ...). A multi-output model's
            first output is used. Images (at any scale) and tiles below
            the model's minimum side (its ``MinSize`` guard) are a
            ValueError naming the size.
        scales: resize factors; each runs once (twice with ``flip``).
        flip: also run each scale on the horizontally mirrored image.
        tile: crop size (an int, or ``(th, tw)``) for sliding inference;
            None runs whole images.
        overlap: the fraction of a tile shared with its neighbour, in
            ``[0, 1)``; stride = ``tile * (1 - overlap)``, at least 1 px.
        batch_size: tiles (or whole same-size images) per model call.
    """

    def __init__(self, model, scales=(1.0,), flip=False, tile=None, overlap=1 / 3, batch_size=4):
        if not scales or any(not np.isfinite(float(s)) or float(s) <= 0 for s in scales):
            raise ValueError(f"scales must be positive numbers; got {scales!r}")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1); got {overlap!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
        if tile is not None:
            tile = (int(tile), int(tile)) if np.isscalar(tile) else tuple(int(t) for t in tile)
            if len(tile) != 2 or min(tile) < 1:
                raise ValueError(f"tile must be a positive int or (height, width); got {tile!r}")
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.tile = tile
        self.overlap = float(overlap)
        self.batch_size = int(batch_size)
        self.stride = None if tile is None else tuple(max(1, int(t * (1 - self.overlap))) for t in tile)
        self.input_dtype = keras.backend.standardize_dtype(model.inputs[0].dtype) if model.inputs else "float32"
        # the model's own channel count (1 grey, 3 RGB, 4 ...): nothing assumes RGB
        channels = model.inputs[0].shape[-1] if model.inputs else None
        self.channels = int(channels) if channels is not None else 3
        self.min_size = model_min_size(model)
        if tile is not None and self.min_size is not None and min(tile) < self.min_size:
            raise ValueError(f"tile {tile[0]}x{tile[1]} is below the model's minimum of "
                             f"{self.min_size}x{self.min_size} pixels")
        self.traces = 0
        self._tile_fn = None
        self._whole_fn = None

    # --- compiled functions --------------------------------------------------

    def _forward(self, x, size=None):
        # runs at trace time only under tf.function / jax.jit: the counter
        # is what the no-retrace test reads (torch runs eagerly: no traces).
        if keras.backend.backend() in ("tensorflow", "jax"):
            self.traces += 1
        y = self.model(x, training=False)
        if isinstance(y, (list, tuple)):
            y = y[0]
        elif isinstance(y, dict):
            y = next(iter(y.values()))
        y = keras.ops.cast(y, "float32")
        if size is not None and tuple(y.shape[1:3]) != tuple(size):
            y = keras.ops.image.resize(y, size, interpolation="bilinear")
        return y

    def _compile(self, fn, shape):
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.function(fn, input_signature=[tf.TensorSpec(shape, self.input_dtype)])
        if backend == "jax":
            import jax

            return jax.jit(fn)
        return fn  # torch / numpy: eager

    def _run_tiles(self, batch):
        if self._tile_fn is None:
            shape = (self.batch_size, *self.tile, self.channels)
            self._tile_fn = self._compile(lambda x: self._forward(x, self.tile), shape)
        return keras.ops.convert_to_numpy(self._tile_fn(batch))

    def _run_whole(self, batch):
        if self._whole_fn is None:
            self._whole_fn = self._compile(lambda x: self._forward(x), (None, None, None, self.channels))
        return keras.ops.convert_to_numpy(self._whole_fn(batch))

    # --- passes ------------------------------------------------------------

    def _cast(self, x):
        if np.issubdtype(np.dtype(self.input_dtype), np.integer):
            info = np.iinfo(np.dtype(self.input_dtype))
            x = np.clip(np.round(x), info.min, info.max)
        return np.asarray(x).astype(self.input_dtype, copy=False)

    def _resize(self, x, size):
        """Bilinear resize of (N, H, W, C) to ``size`` (float32, numpy)."""
        if tuple(x.shape[1:3]) == tuple(size):
            return x
        out = keras.ops.image.resize(np.asarray(x, "float32"), size, interpolation="bilinear")
        return keras.ops.convert_to_numpy(out)

    def _whole(self, images):
        """(N, H, W, 3) -> (N, H, W, C) logits, ``batch_size`` images a call."""
        h, w = images.shape[1:3]
        outs = [self._run_whole(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return self._resize(np.concatenate(outs), (h, w))

    def _grid(self, size, crop, stride):
        n = max(size - crop + stride - 1, 0) // stride + 1
        starts = []
        for i in range(n):
            end = min(i * stride + crop, size)
            starts.append(max(end - crop, 0))
        return starts

    def _tiled(self, image):
        """(H, W, 3) -> (H, W, C) logits by sliding tiles."""
        h, w = image.shape[:2]
        th, tw = self.tile
        boxes = [(y, x) for y in self._grid(h, th, self.stride[0]) for x in self._grid(w, tw, self.stride[1])]
        total = count = None
        for start in range(0, len(boxes), self.batch_size):
            chunk = boxes[start:start + self.batch_size]
            batch = np.zeros((self.batch_size, th, tw, self.channels), self.input_dtype)
            for k, (y, x) in enumerate(chunk):
                crop = image[y:y + th, x:x + tw]
                batch[k, :crop.shape[0], :crop.shape[1]] = crop
            logits = self._run_tiles(batch)
            if total is None:
                total = np.zeros((h, w, logits.shape[-1]), "float32")
                count = np.zeros((h, w, 1), "float32")
            for k, (y, x) in enumerate(chunk):
                ch, cw = min(th, h - y), min(tw, w - x)
                total[y:y + ch, x:x + cw] += logits[k, :ch, :cw]
                count[y:y + ch, x:x + cw] += 1
        return total / count

    def _one_pass(self, images):
        """(N, H, W, 3) model inputs at one scale/flip -> (N, H, W, C)."""
        h, w = images.shape[1:3]
        if self.tile is None or (h <= self.tile[0] and w <= self.tile[1]):
            return self._whole(images)
        return np.stack([self._tiled(img) for img in images])

    def _predict_same_size(self, images):
        h, w = images.shape[1:3]
        total = None
        passes = 0
        for scale in self.scales:
            size = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
            if self.min_size is not None and min(size) < self.min_size:
                what = f"image of {h}x{w}" + (f" at scale {scale:g} ({size[0]}x{size[1]})" if scale != 1 else "")
                raise ValueError(f"{what} is below the model's minimum of "
                                 f"{self.min_size}x{self.min_size} pixels")
            scaled = images if size == (h, w) else self._cast(self._resize(images, size))
            for mirrored in ((False, True) if self.flip else (False,)):
                x = scaled[:, :, ::-1] if mirrored else scaled
                logits = self._one_pass(np.ascontiguousarray(x))
                if mirrored:
                    logits = logits[:, :, ::-1]
                logits = self._resize(logits, (h, w))
                total = logits.astype("float32") if total is None else total + logits
                passes += 1
        return total / np.float32(passes)

    # --- public API ----------------------------------------------------------

    def predict(self, images):
        """Per-pixel logits at each image's size.

        Args:
            images: one ``(H, W, 3)`` image, a ``(N, H, W, 3)`` batch, or a
                list of ``(H, W, 3)`` images of any sizes.

        Returns:
            float32 logits ``(H, W, C)``, ``(N, H, W, C)`` or a list of
            ``(H, W, C)``, matching ``images``.
        """
        if isinstance(images, (list, tuple)):
            return [self.predict(np.asarray(img)) for img in images]
        images = keras.ops.convert_to_numpy(images) if not isinstance(images, np.ndarray) else images
        if images.ndim == 3:
            return self.predict(images[None])[0]
        c = self.channels
        if images.ndim != 4 or images.shape[-1] != c:
            raise ValueError(f"images must be (H, W, {c}) or (N, H, W, {c}) (the model takes {c} "
                             f"channels); got shape {images.shape}")
        return self._predict_same_size(self._cast(images))

    def labels(self, images):
        """The argmax class id per pixel of :meth:`predict`.

        Args:
            images: as for :meth:`predict`.

        Returns:
            int32 class ids ``(H, W)``, ``(N, H, W)`` or a list of ``(H, W)``.
        """
        logits = self.predict(images)
        if isinstance(logits, list):
            return [np.argmax(x, -1).astype("int32") for x in logits]
        return np.argmax(logits, -1).astype("int32")

    def num_tiles(self, height, width):
        """How many tiles one pass over a ``height`` x ``width`` image runs.

        Args:
            height: image height at that scale.
            width: image width at that scale.

        Returns:
            The tile count (1 when the image runs whole).
        """
        if self.tile is None or (height <= self.tile[0] and width <= self.tile[1]):
            return 1
        return len(self._grid(height, self.tile[0], self.stride[0])) * \
            len(self._grid(width, self.tile[1], self.stride[1]))
