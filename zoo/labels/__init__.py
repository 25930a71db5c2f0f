"""Class names shipped as package data, and ImageNet-style top-k decoding.

Label sets (one name a line, line i = class i):

* ``imagenet``: the 1000 ImageNet-1k classes in the order every published
  classifier here uses (torchvision's ``_IMAGENET_CATEGORIES`` wording);
* ``cityscapes``: the 19 Cityscapes train ids (cityscapesScripts order);
* ``voc``: the 21 Pascal VOC classes, ``background`` first.

A manifest entry names its set in its ``labels`` field.
"""

import functools
import os

import numpy as np

LABEL_SETS = ("imagenet", "cityscapes", "voc")

# Cityscapes' official train-id colours (cityscapesScripts labels.py).
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


@functools.lru_cache(maxsize=None)
def load_labels(label_set):
    """The class names of a shipped label set.

    Args:
        label_set: one of :data:`LABEL_SETS`.

    Returns:
        A tuple of names, index = class id.

    Raises:
        ValueError: unknown label set.
    """
    if label_set not in LABEL_SETS:
        raise ValueError(f"unknown label set {label_set!r}; valid choices: {', '.join(LABEL_SETS)}")
    path = os.path.join(os.path.dirname(__file__), f"{label_set}.txt")
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f if line.strip())


def label_set_for(model_name, tag=None):
    """The label set a model's published weights predict, from the manifest.

    Args:
        model_name: registry name.
        tag: a published tag; None takes the model's first tag.

    Returns:
        A label-set name, or None if the model has no published weights
        (or the tag records no labels).
    """
    from zoo import weights as zw
    from zoo.registry import get_entry

    get_entry(model_name)  # an unknown name fails with the list of valid ones
    tags = zw.available_tags(model_name)
    if tag is None:
        if not tags:
            return None
        tag = tags[0]
    return zw.manifest_entry(model_name, tag).get("labels")


def class_names(model_name, tag=None):
    """The class names a model's published weights predict.

    Args:
        model_name: registry name, e.g. ``"resnet50"``; or a label-set name
            (``"imagenet"``, ``"cityscapes"``, ``"voc"``).
        tag: a published tag (``"imagenet"``, ``"cityscapes"``,
            ``"coco_voc"``); None takes the model's first tag.

    Returns:
        A tuple of names, index = class id.

    Raises:
        ValueError: unknown model/tag, or weights without a label set.
    """
    if model_name in LABEL_SETS and tag is None:
        return load_labels(model_name)
    label_set = label_set_for(model_name, tag)
    if label_set is None:
        raise ValueError(f"{model_name} (weights {tag!r}) names no label set in the manifest")
    return load_labels(label_set)


def manifest_tag_for_path(model_name, path):
    """The published tag whose manifest file has ``path``'s file name, or None.

    A file given by path is matched to its own manifest entry by name only;
    a file that matches none (a fine-tune, a renamed copy) has no entry, and
    nothing is guessed from its class count.
    """
    from zoo import weights as zw

    base = os.path.basename(str(path))
    for tag in zw.available_tags(model_name):
        entry = zw.manifest_entry(model_name, tag)
        files = [entry] + list((entry.get("files") or {}).values())
        if any(f.get("file") == base for f in files if isinstance(f, dict)):
            return tag
    return None


def label_set_for_weights(model_name, weights, classes):
    """The label set of a model built from ``weights``, if it has one.

    Names come only from the weights' own manifest entry: a published tag's,
    or the entry whose file name a path matches
    (:func:`manifest_tag_for_path`). A fine-tuned file that matches no entry
    gets no label set, even when its class count equals a published set's
    (a 19-class fine-tune is not Cityscapes); the caller then uses its own
    record (:func:`checkpoint_record`) or ``class_<i>``.

    Args:
        model_name: registry name.
        weights: a published tag, a checkpoint path, or None (random).
        classes: the number of classes the built model predicts.

    Returns:
        A label-set name whose size is ``classes``, or None.
    """
    from zoo import weights as zw

    if weights is None:
        return None
    if isinstance(weights, str) and weights in zw.available_tags(model_name):
        tag = weights
    else:
        tag = manifest_tag_for_path(model_name, weights)
    if tag is None:
        return None
    label_set = label_set_for(model_name, tag)
    return label_set if label_set and len(load_labels(label_set)) == classes else None


# The largest config.json read from a .keras archive for its zoo record.
MAX_RECORD_BYTES = 64 << 20


def checkpoint_record(path):
    """The ``model.zoo`` record saved inside a ``.keras`` archive (a
    fine-tuned run's ``checkpoint.keras`` records its ``class_names`` and
    ``preprocessing`` there), or None for any other file.

    The archive's config.json is read through the zip-bomb guard
    (:func:`zoo.weights.readers.limits.read_zip_member`).
    """
    import json
    import zipfile

    from zoo.weights.readers.limits import read_zip_member

    path = str(path)
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            if z.getinfo("config.json").file_size > MAX_RECORD_BYTES:
                return None
            config = json.loads(read_zip_member(path, z, "config.json").decode("utf8"))
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, ValueError):
        return None
    record = config.get("config", {}).get("zoo") if isinstance(config, dict) else None
    return dict(record) if isinstance(record, dict) else None


def names_for_weights(model_name, weights, classes):
    """Class names for a model of ``classes`` outputs built from ``weights``.

    In order: the names a ``.keras`` checkpoint records (a fine-tuned run's
    own, when their count is ``classes``); the label set of the weights'
    own manifest entry; else ``class_0 .. class_<classes-1>``. Never a label
    set guessed from the class count.
    """
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        record = checkpoint_record(weights) or {}
        names = record.get("class_names")
        if isinstance(names, list) and len(names) == classes:
            return resolve_names(names, classes)
    return resolve_names(label_set_for_weights(model_name, weights, classes), classes)


def resolve_names(labels, classes=None):
    """Names for ``classes`` class ids from a label set, a sequence or None.

    Args:
        labels: a label-set name, a sequence of names, or None.
        classes: the number of classes the model predicts; when the names do
            not cover them, the missing ones are called ``class_<i>``.

    Returns:
        A list of names.
    """
    if labels is None:
        names = []
    elif isinstance(labels, str):
        names = list(load_labels(labels))
    else:
        names = [str(n) for n in labels]
    if classes is not None:
        if len(names) > classes:
            names = names[:classes]
        names += [f"class_{i}" for i in range(len(names), classes)]
    return names


def decode_predictions(probs, top=5, labels="imagenet"):
    """The top-k classes of each sample, with names (offline).

    Like ``keras.applications.imagenet_utils.decode_predictions``, but the
    names ship with the package and each entry leads with the class index.

    Args:
        probs: (N, C) scores (probabilities or logits: only the order is used).
        top: how many classes per sample.
        labels: a label-set name or a sequence of C names.

    Returns:
        Per sample a list of ``(index, name, score)``, highest score first.

    Raises:
        ValueError: ``probs`` is not 2-D or its class count differs from the
            label set's.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"decode_predictions expects (samples, classes) scores; got shape {probs.shape}")
    names = resolve_names(labels)
    if probs.shape[1] != len(names):
        what = labels if isinstance(labels, str) else "the given names"
        raise ValueError(f"scores have {probs.shape[1]} classes but {what} has {len(names)} names")
    top = min(int(top), probs.shape[1])
    # stable sort on the negated scores: ties keep the lower index first.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [[(int(i), names[i], float(row[i])) for i in idx] for row, idx in zip(probs, order)]


def palette(n):
    """``n`` distinct RGB colours (uint8): Cityscapes' for 19 classes, else
    Pascal VOC's bit-interleaved colour map (background black)."""
    if n == len(CITYSCAPES_PALETTE):
        return np.asarray(CITYSCAPES_PALETTE, "uint8")
    colours = np.zeros((n, 3), "uint8")
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours
