"""Segmentation input pipelines on tensorflow-datasets.

Every source yields examples ``{"image": uint8 (H, W, 3), "mask": uint8
(H, W, 1)}`` with class ids ``0 .. num_classes-1`` and ``IGNORE_LABEL`` (255)
for pixels that count nowhere (borders, void, padding):

* ``zoo_shapes``: a synthetic, deterministic, offline TFDS dataset of
  coloured shapes with exact masks (the demo's and the tests' data);
* ``folder:PATH``: a user's folder of image/mask PNG pairs, prepared by the
  :class:`SegmentationFolder` TFDS builder;
* TFDS ``oxford_iiit_pet`` (trimap -> background / pet / ignored border),
  ``cityscapes`` (manual download; label ids -> the 19 train ids) and
  ``scene_parse150`` (ADE20K's 150 classes; 0 "other" -> ignored).

:func:`make_pipeline` turns a source into batches for ``model.fit``: the
weights' own preprocessing (:func:`preprocessing_for`, from the manifest),
random scale 0.5-2.0, crop padded with the ignore label, horizontal flip,
batching and prefetch. Nothing here downloads unless ``download=True`` is
passed for a real dataset.
"""

import collections
import hashlib
import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Re-exported: pipelines and users reach preprocessing through zoo.training.data too.
from zoo.preprocessing import (  # noqa: F401
    DEFAULT_PREPROCESSING,
    preprocess,
    preprocessing_for,
    unpreprocess,
)
# The ignore label is the loss's and metric's (one value, one place).
from zoo.training.train import IGNORE_LABEL


SHAPES_CLASSES = ("background", "circle", "square", "triangle")

Source = collections.namedtuple("Source", "dataset num_classes class_names")


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of this module's builders: TFDS's default ``code_path`` needs the
    optional ``importlib_resources`` package for an installed module; the
    file path is all it is for."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(inspect.getfile(cls))

    # TFDS's own lines say "Downloading and preparing dataset"; these builders
    # download nothing: they convert local files (or draw zoo_shapes) once.
    def _log_download_bytes(self):
        print(f"preparing {self.name} from local files into {self.data_dir} (once; nothing is "
              "downloaded) ...", flush=True)

    def _log_download_done(self):
        print(f"prepared {self.name} in {self.data_dir}", flush=True)

# ------------------------------------------------------------ zoo_shapes


def _draw_shapes(rng, size):
    """One ``zoo_shapes`` example: image (size, size, 3) and its exact mask.

    The background is a smooth low-saturation gradient with noise; one to
    three shapes (circle, axis-aligned square, upright triangle) of random
    size and position are painted in turn, later ones on top. Each class has
    its own hue band with random brightness, so both colour and outline
    carry the class.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    base = rng.uniform(60, 190, 3)
    grad = rng.uniform(-40, 40, (2, 3))
    image = base + (yy[..., None] / size - 0.5) * grad[0] + (xx[..., None] / size - 0.5) * grad[1]
    mask = np.zeros((size, size), "uint8")
    hues = {1: (230, 40, 40), 2: (40, 200, 60), 3: (50, 80, 230)}
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(1, 4))
        r = rng.uniform(0.12, 0.28) * size
        cy, cx = rng.uniform(r, size - r, 2)
        if cls == 1:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif cls == 2:
            inside = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
        else:
            # Apex at the top, base at the bottom.
            t = (yy - (cy - r)) / (2 * r)
            inside = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * r)
        colour = np.clip(np.array(hues[cls]) * rng.uniform(0.6, 1.1) + rng.normal(0, 12, 3), 0, 255)
        image[inside] = colour
        mask[inside] = cls
    image = image + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype("uint8"), mask[..., None]


class ZooShapes(_LocalBuilder):
    """Synthetic coloured shapes with exact segmentation masks.

    Generated locally (no download) from a fixed seed, so every machine
    prepares byte-identical data. Classes: background, circle, square,
    triangle. Splits: train (512 images) and validation (96), 96x96.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    SIZE = 96
    SPLITS = {"train": (512, 1), "validation": (96, 2)}

    def _info(self):
        return self.dataset_info_from_configs(
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(self.SIZE, self.SIZE, 3)),
                "segmentation_mask": tfds.features.Image(shape=(self.SIZE, self.SIZE, 1)),
            }),
            supervised_keys=("image", "segmentation_mask"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(n, seed) for split, (n, seed) in self.SPLITS.items()}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            image, mask = _draw_shapes(rng, self.SIZE)
            yield i, {"image": image, "segmentation_mask": mask}


# -------------------------------------------------------- user folders


def _folder_fingerprint(root):
    """Hash of every file that makes up a folder dataset: path, size, mtime.

    It names the TFDS config, so a folder whose images, masks or
    ``classes.txt`` change is prepared anew instead of served from a stale
    cache.
    """
    digest = hashlib.sha1(os.fsencode(root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            path = os.path.join(dirpath, fname)
            try:
                st = os.stat(path)
            except OSError:
                continue
            # fsencode: a file name need not be UTF-8 (it is refused later, named)
            digest.update(os.fsencode(os.path.relpath(path, root)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class SegmentationFolderConfig(tfds.core.BuilderConfig):
    """One user folder in one state; the config name hashes its absolute
    path and every file's path, size and modification time."""

    def __init__(self, *, root, **kwargs):
        root = os.path.abspath(root)
        name = "f" + _folder_fingerprint(root)
        super().__init__(name=name, description=f"images and masks under {root}", **kwargs)
        self.root = root


class SegmentationFolder(_LocalBuilder):
    """A user's folder of image / mask pairs as a TFDS dataset.

    Layout: ``ROOT/images/<stem>.{png,jpg,jpeg}`` with ``ROOT/masks/<stem>.png``,
    the mask an 8-bit greyscale or palette PNG of class ids (255 = ignore),
    the same size as its image (see :func:`read_mask`). With
    ``ROOT/train/`` and ``ROOT/val/`` (or ``validation/``) sub-folders in that
    layout, each becomes a split; otherwise everything is ``train``. An
    optional ``ROOT/classes.txt`` names the classes, one a line; without
    it the class count is the largest id found plus one. A mask id beyond
    ``classes.txt`` is an error naming the mask. Any change to the folder's
    files (path, size or modification time) prepares it anew.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self):
        return self.dataset_info_from_configs(
            description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "segmentation_mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "segmentation_mask"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        root = self.builder_config.root
        splits = {}
        for split, subdirs in (("train", ("train",)), ("validation", ("val", "validation"))):
            for sub in subdirs:
                if os.path.isdir(os.path.join(root, sub, "images")):
                    splits[split] = self._generate_examples(os.path.join(root, sub))
                    break
        if not splits:
            splits["train"] = self._generate_examples(root)
        return splits

    def _generate_examples(self, folder):
        from zoo.apps.imaging import read_image

        pairs = folder_pairs(folder)
        for stem, image, mask in pairs:
            example = {"image": image, "segmentation_mask": read_mask(mask, image), "file_name": stem}
            # TFDS stores the file's bytes as they are; decoding them here, as
            # training will, names a damaged image now instead of surfacing as
            # a TF error on the first pass over the data.
            read_image(image, 3)
            yield stem, example


def read_mask(mask_path, image_path=None):
    """Reads a mask PNG as class ids, uint8 (H, W, 1), checking it against its image.

    Accepted masks: 8-bit greyscale; palette PNGs (the palette *indices*
    are the class ids, as in PASCAL VOC); 1-bit; 16-bit greyscale with
    values up to 255; and RGB(A) whose three channels are equal everywhere
    (greyscale saved as RGB). A colour RGB mask is refused: its colours
    cannot be told apart from class ids without a colour table.

    Args:
        mask_path: the mask file.
        image_path: its image; when given, sizes must match exactly (a mask
            is never stretched onto its image).

    Raises:
        ValueError: naming the file, for any mask that cannot be read as
            class ids or whose size differs from its image's.
    """
    from PIL import Image

    from zoo.apps.imaging import image_size

    # Header first: a small file declaring a huge image is refused before any
    # decode (the pixel limit, ZOO_MAX_IMAGE_PIXELS).
    image_size(mask_path)
    try:
        with Image.open(mask_path) as im:
            mode = im.mode
            mask = np.asarray(im)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        # Pillow reports some damaged PNG chunks as SyntaxError ("broken PNG file")
        raise ValueError(f"mask {mask_path} cannot be read as an image ({e})") from None
    if mode in ("RGB", "RGBA", "LA"):
        channels = mask[..., :3] if mode != "LA" else mask[..., :1]
        if mode != "LA" and not (np.array_equal(channels[..., 0], channels[..., 1])
                                 and np.array_equal(channels[..., 0], channels[..., 2])):
            raise ValueError(
                f"mask {mask_path} is a colour ({mode}) image; masks hold class ids: save it as "
                "8-bit greyscale or as a palette PNG (indices = class ids)")
        mask = channels[..., 0]
    elif mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
        raise ValueError(f"mask {mask_path} has unsupported image mode {mode!r}")
    if mask.ndim != 2:
        raise ValueError(f"mask {mask_path} has shape {mask.shape}, expected (H, W)")
    if mask.size and mask.max() > 255:
        raise ValueError(f"mask {mask_path} has values up to {mask.max()}; class ids must be 0..254 (255 = ignore)")
    mask = mask.astype("uint8")
    if image_path is not None:
        height, width = image_size(image_path)
        if (height, width) != mask.shape:
            raise ValueError(
                f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {image_path} "
                f"is {height}x{width}; masks are not resized, they must match their image")
    return mask[..., None]


def folder_pairs(folder):
    """The sorted ``(stem, image_path, mask_path)`` triples of a folder.

    Raises:
        FileNotFoundError: no ``images/`` folder, no pairs, or an image
            without its mask (named).
    """
    images_dir, masks_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"{folder}: expected an images/ folder (and masks/) inside")
    pairs, seen = [], {}
    for fname in sorted(os.listdir(images_dir)):
        stem, ext = os.path.splitext(fname)
        if ext.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        try:
            stem.encode("utf8")  # the example's name: TFDS text is UTF-8
        except UnicodeEncodeError:
            raise ValueError(f"{os.path.join(images_dir, fname)!r}: the file name is not valid UTF-8; "
                             "rename it") from None
        mask = os.path.join(masks_dir, stem + ".png")
        if stem in seen:
            raise ValueError(
                f"{images_dir}: {seen[stem]} and {fname} share the stem {stem!r} and so "
                f"the one mask {mask}; keep one of them, or rename one (with its own mask)")
        if not os.path.isfile(mask):
            raise FileNotFoundError(f"image {fname} has no mask {mask}")
        seen[stem] = fname
        pairs.append((stem, os.path.join(images_dir, fname), mask))
    if not pairs:
        raise FileNotFoundError(f"{images_dir}: no .png/.jpg images")
    return pairs


# ------------------------------------------------- real TFDS datasets

# Cityscapes label id -> train id (the 19 evaluated classes), as
# cityscapesScripts' labels.py; everything else is ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)


def _lookup(table, size=256):
    """A uint8 lookup array: ``table`` entries, IGNORE_LABEL elsewhere."""
    lut = np.full(size, IGNORE_LABEL, "uint8")
    for k, v in table.items():
        lut[k] = v
    return tf.constant(lut)


def _pet_mask(mask):
    # Trimap: 1 pet, 2 background, 3 border (ambiguous) -> ignored.
    return tf.gather(_lookup({1: 1, 2: 0}), tf.cast(mask, tf.int32))


def _cityscapes_mask(mask):
    return tf.gather(_lookup(CITYSCAPES_TRAIN_IDS), tf.cast(mask, tf.int32))


def _ade_mask(mask):
    # Channel 0 holds the class: 0 is "other" (ignored), 1..150 -> 0..149.
    # Values above 150 are not classes: ignored too.
    cls = tf.cast(mask[..., :1], tf.int32)
    return tf.cast(tf.where((cls == 0) | (cls > 150), IGNORE_LABEL, cls - 1), tf.uint8)


# name -> (tfds name, image key, mask key, mask map, classes, class names,
#          train split, validation split)
TFDS_SOURCES = {
    "oxford_iiit_pet": ("oxford_iiit_pet", "image", "segmentation_mask", _pet_mask, 2,
                        ("background", "pet"), "train", "test"),
    "cityscapes": ("cityscapes/semantic_segmentation", "image_left", "segmentation_label",
                   _cityscapes_mask, 19, CITYSCAPES_CLASSES, "train", "validation"),
    "scene_parse150": ("scene_parse150", "image", "annotation", _ade_mask, 150, None,
                       "train", "test"),
    "zoo_shapes": ("zoo_shapes", "image", "segmentation_mask", None, 4, SHAPES_CLASSES,
                   "train", "validation"),
}


def _to_example(image_key, mask_key, mask_map):
    def fn(ex):
        mask = ex[mask_key]
        if mask_map is not None:
            mask = mask_map(mask)
        image = ex[image_key]
        return {"image": image, "mask": tf.cast(mask[..., :1], tf.uint8)}

    return fn


def _prepare(builder, download, manual_dir=None):
    if download or isinstance(builder, (ZooShapes, SegmentationFolder)):
        config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        builder.download_and_prepare(download_config=config)


def _as_dataset(builder, split, shuffle_files):
    try:
        return builder.as_dataset(split=split, shuffle_files=shuffle_files)
    except (AssertionError, FileNotFoundError) as e:
        raise FileNotFoundError(
            f"TFDS dataset {builder.name!r} is not prepared in {builder.data_dir} ({e}); "
            "pass download=True (--download) to fetch it, or --data-dir to point at it"
        ) from None


def tfds_split(name, split, data_dir=None, download=False, manual_dir=None, shuffle_files=False):
    """One split of a TFDS dataset, prepared first when allowed.

    Args:
        name: the TFDS name (``"oxford_iiit_pet"``, ``"imagenette"``, ...).
        split: the TFDS split string.
        data_dir: TFDS data folder (default ``~/tensorflow_datasets``).
        download: let TFDS download and prepare it when it is not prepared.
        manual_dir: the manual-download folder (Cityscapes' zips).
        shuffle_files: passed to TFDS.

    Returns:
        ``(builder, dataset)``: the builder (its ``info`` holds the features
        and split sizes) and the split as a ``tf.data.Dataset``.

    Raises:
        FileNotFoundError: the dataset is not prepared and ``download`` is
            False; the message says how to prepare it.
    """
    builder = tfds.builder(name, data_dir=data_dir)
    _prepare(builder, download, manual_dir)
    return builder, _as_dataset(builder, split, shuffle_files)


def load(name, split="train", data_dir=None, download=False, manual_dir=None, shuffle_files=False):
    """Loads a segmentation source as uint8 image/mask examples.

    Args:
        name: ``"zoo_shapes"``, ``"folder:PATH"``, or a key of
            :data:`TFDS_SOURCES` (``oxford_iiit_pet``, ``cityscapes``,
            ``scene_parse150``).
        split: ``"train"`` or ``"validation"`` (mapped to the dataset's own
            evaluation split), or any TFDS split string.
        data_dir: TFDS data folder (default ``~/tensorflow_datasets``; for
            ``folder:`` datasets :func:`folder_cache_dir`).
        download: let TFDS download a real dataset that is not prepared yet.
            ``zoo_shapes`` and folders are always generated locally.
        manual_dir: the manual-download folder (Cityscapes' zips).
        shuffle_files: passed to TFDS.

    Returns:
        A :data:`Source` ``(dataset, num_classes, class_names)``.
    """
    if name.startswith("folder:"):
        root = name[len("folder:"):]
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset folder not found: {root}")
        builder = SegmentationFolder(config=SegmentationFolderConfig(root=root),
                                     data_dir=data_dir or folder_cache_dir())
        _prepare_folder(builder)
        names = _folder_class_names(root)
        if split == "validation" and "validation" not in builder.info.splits:
            split = "train"
        raw = builder.as_dataset(split=split, shuffle_files=False)
        # Checked before any training, over every split, so that both splits
        # agree on the class count: a class id beyond classes.txt, or (without
        # it) a validation id beyond the training split's, would otherwise
        # surface as a raw TF error after the first epoch.
        top, where, where_split = -1, None, None
        for each in builder.info.splits:
            key = (builder.builder_config.name, builder.data_dir, each)
            if key not in _SPLIT_LABELS:
                _SPLIT_LABELS[key] = _max_label(builder.as_dataset(split=each, shuffle_files=False))
            each_top, each_where, labelled = _SPLIT_LABELS[key]
            if labelled == 0:
                raise ValueError(
                    f"{root}: every mask pixel of the {each} split is the ignore label {IGNORE_LABEL}; "
                    "there is nothing to train on or to measure: label some pixels with class ids")
            if each_top > top:
                top, where, where_split = each_top, each_where, each
        if names is not None and top >= len(names):
            raise ValueError(
                f"{root}: mask {where}.png has class id {top} but classes.txt names {len(names)} "
                f"classes (ids 0..{len(names) - 1}; 255 = ignore), in the {where_split} split")
        if shuffle_files:
            raw = builder.as_dataset(split=split, shuffle_files=True)
        ds = raw.map(_to_example("image", "segmentation_mask", None))
        num = len(names) if names else top + 1
        return Source(ds, num, names or tuple(f"class_{i}" for i in range(num)))
    if name not in TFDS_SOURCES:
        raise ValueError(
            f"unknown dataset {name!r}; valid choices: {', '.join(TFDS_SOURCES)}, folder:PATH"
        )
    tfds_name, image_key, mask_key, mask_map, num, names, train, val = TFDS_SOURCES[name]
    split = {"train": train, "validation": val}.get(split, split)
    _, ds = tfds_split(tfds_name, split, data_dir, download, manual_dir, shuffle_files)
    ds = ds.map(_to_example(image_key, mask_key, mask_map), num_parallel_calls=tf.data.AUTOTUNE)
    return Source(ds, num, tuple(names) if names else tuple(f"class_{i}" for i in range(num)))


def folder_cache_dir():
    """Where ``folder:`` datasets are prepared when no ``data_dir`` is given:
    ``$KERAS_HOME/zoo_datasets`` (default ``~/.keras/zoo_datasets``), beside
    Keras's own caches rather than among TFDS downloads in
    ``~/tensorflow_datasets``: they are the user's files, converted, and
    deleting the folder only costs a new conversion."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "zoo_datasets")


def _folder_class_names(root):
    path = os.path.join(root, "classes.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf8") as f:
        return tuple(line.strip() for line in f if line.strip())


# (config name, data dir, split) -> _max_label's answer; the config name
# hashes every file of the folder, so a changed folder is scanned anew.
_SPLIT_LABELS = {}


def _max_label(ds):
    """The largest class id (ignoring 255) over a folder split, the stem of
    the first example holding it, and the number of labelled (not ignored)
    pixels."""
    def example_max(e):
        mask = e["segmentation_mask"]
        labelled = tf.reduce_sum(tf.cast(mask != IGNORE_LABEL, tf.int64))
        return (e["file_name"], tf.reduce_max(tf.where(mask == IGNORE_LABEL, tf.zeros_like(mask), mask)),
                labelled)

    top, where, count = 0, None, 0
    for name, value, labelled in ds.map(example_max).as_numpy_iterator():
        count += int(labelled)
        if where is None or int(value) > top:
            top, where = int(value), name.decode("utf8")
    return top, where, count


def _prepare_folder(builder):
    """Prepares a folder dataset, surfacing our own errors (naming the file)
    rather than TFDS's wrappers around them."""
    try:
        _prepare(builder, True)
    except Exception as e:  # noqa: BLE001 - re-raised unless it wraps ours
        cause = e
        while cause is not None and not isinstance(cause, (ValueError, FileNotFoundError)):
            cause = cause.__cause__ or cause.__context__
        if cause is None or cause is e:
            raise
        raise cause from None


# --------------------------------------------------------- pipelines


def augment(image, mask, size, scale_range=(0.5, 2.0), ignore_label=IGNORE_LABEL, flip=True, seed=None):
    """Random scale, crop (padding with zeros / the ignore label), flip.

    Args:
        image: float32 (H, W, 3), already preprocessed (so zero padding is
            the dataset mean).
        mask: uint8 (H, W, 1).
        size: ``(h, w)`` of the crop.
        scale_range: the random scale's bounds; ``None`` for none.
        ignore_label: the mask's padding value.
        flip: random horizontal flip.
        seed: op seed, for a repeatable stream.

    Returns:
        ``(image (h, w, 3) float32, mask (h, w, 1) uint8)``.
    """
    ch, cw = size
    shape = tf.shape(image)
    if scale_range is not None:
        s = tf.random.uniform([], scale_range[0], scale_range[1], seed=seed)
        new = tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * s), tf.int32)
        new = tf.maximum(new, 1)
        image = tf.image.resize(image, new, method="bilinear")
        mask = tf.image.resize(mask, new, method="nearest")
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ph, pw = tf.maximum(ch - h, 0), tf.maximum(cw - w, 0)
    image = tf.pad(image, [[0, ph], [0, pw], [0, 0]])
    mask = tf.pad(tf.cast(mask, tf.int32), [[0, ph], [0, pw], [0, 0]], constant_values=ignore_label)
    both = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    both = tf.image.random_crop(both, [ch, cw, 4], seed=seed)
    if flip:
        both = tf.image.random_flip_left_right(both, seed=seed)
    return both[..., :3], tf.cast(both[..., 3:], tf.uint8)


def resize_pair(image, mask, size):
    """Deterministic evaluation sizing: bilinear image, nearest mask."""
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask, size, method="nearest")
    return image, tf.cast(mask, tf.uint8)


def make_pipeline(ds, size, batch_size, training, preprocessing=None, scale_range=(0.5, 2.0),
                  flip=True, ignore_label=IGNORE_LABEL, shuffle=256, repeat=False, seed=None,
                  drop_remainder=None):
    """Examples -> ``(images float32 (B, h, w, 3), masks int32 (B, h, w))`` batches.

    Args:
        ds: a dataset of ``{"image", "mask"}`` examples (:func:`load`).
        size: crop side (int) or ``(h, w)``.
        batch_size: global batch size.
        training: augment and shuffle when True; else resize to ``size``.
        preprocessing: the weights' preprocessing dict (:func:`preprocessing_for`).
        scale_range, flip, ignore_label: augmentation settings.
        shuffle: shuffle buffer (training only); 0 for none.
        repeat: repeat forever (then give ``steps_per_epoch`` to fit).
        seed: shuffle and augmentation seed.
        drop_remainder: defaults to ``training``.

    Returns:
        A prefetched ``tf.data.Dataset``.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)

    def fn(ex):
        image = preprocess(ex["image"], preprocessing)
        mask = ex["mask"]
        if training:
            image, mask = augment(image, mask, size, scale_range, ignore_label, flip, seed)
        else:
            image, mask = resize_pair(image, mask, size)
        image = tf.ensure_shape(image, size + (3,))
        return image, tf.cast(tf.ensure_shape(mask, size + (1,))[..., 0], tf.int32)

    if training and shuffle:
        ds = ds.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None or None)
    drop = training if drop_remainder is None else drop_remainder
    return ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)


def shapes_arrays(split="validation", data_dir=None, limit=None):
    """``zoo_shapes`` as numpy ``(images uint8, masks uint8 (N, H, W))``."""
    ds = load("zoo_shapes", split, data_dir).dataset
    if limit:
        ds = ds.take(limit)
    images, masks = [], []
    for ex in ds.as_numpy_iterator():
        images.append(ex["image"])
        masks.append(ex["mask"][..., 0])
    return np.stack(images), np.stack(masks)
