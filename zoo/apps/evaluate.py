"""Measure a model on a labelled dataset: ``zoo evaluate`` and ``zoo.evaluate``.

What fyu/drn's ``segment.py test``, timm's ``validate.py`` and
mmsegmentation's ``tools/test.py`` do, for every zoo model:

* **Segmentation** (a dense or heatmap model): each validation image at
  full size through :class:`zoo.Predictor` (``scales``, ``flip``,
  ``tile``), its argmax per pixel counted against the mask in one confusion
  matrix (rows: truth, columns: prediction; ignore-label pixels left out).
  From it: mIoU, per-class IoU, pixel accuracy, mean class accuracy and
  frequency-weighted IoU. A class absent from both the truth and the
  predictions has no IoU (NaN, ``null`` in JSON, listed in
  ``absent_classes``) and the mean skips it, as Keras's ``MeanIoU`` and
  fyu/drn's ``per_class_iu`` do. A label outside ``[0, classes)`` that is
  not the ignore label is an error.
* **Classification** (a classify model): top-1 and top-5 accuracy, each
  image through the weights' own evaluation transform
  (:func:`zoo.preprocessing.eval_transform`: the shorter side resized to
  ``size / crop_pct`` with the manifest's interpolation, then the centre
  ``size`` crop, as timm and torchvision evaluate).

Data (``data``):

* segmentation: ``folder:PATH`` (``images/`` + ``masks/``, its ``val/`` or
  ``validation/`` split when present), TFDS ``cityscapes``,
  ``scene_parse150``, ``oxford_iiit_pet`` (and the offline ``zoo_shapes``),
  all through :func:`zoo.training.data.load`'s validation split, without
  augmentation;
* classification: ``folder:PATH`` with one sub-folder per class (its
  ``val/`` or ``validation/`` sub-folder when present), or TFDS
  ``imagenet2012`` / ``imagenette`` when prepared locally. Sub-folder names
  map to class indices by :func:`folder_class_indices`.

Outputs (``out``): ``summary.json``; for segmentation also
``confusion.csv`` and ``confusion.png`` (Pillow only), both with class names.
"""

import json
import math
import os

import numpy as np

SEGMENTATION_TFDS = ("cityscapes", "scene_parse150", "oxford_iiit_pet", "zoo_shapes")
CLASSIFICATION_TFDS = ("imagenet2012", "imagenette")
TASKS = ("segmentation", "classification")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ABSENT_NOTE = ("per-class IoU is null (NaN) for a class absent from both the truth and the predictions; "
               "the mean IoU skips those classes")


# ----------------------------------------------------------------- metrics


def confusion_matrix(truth, pred, classes, ignore_label=255, where="the data"):
    """Counts ``(truth, prediction)`` pixel pairs, the ignore label left out.

    Args:
        truth: integer class ids, any shape.
        pred: predicted class ids, the same shape.
        classes: the number of classes (the matrix side).
        ignore_label: truth value that counts nowhere.
        where: names the data in the error message.

    Returns:
        int64 ``(classes, classes)``: rows truth, columns prediction.

    Raises:
        ValueError: a truth label outside ``[0, classes)`` that is not the
            ignore label (never dropped silently), or shapes that differ.
    """
    truth = np.asarray(truth).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"{where}: {truth.size} truth pixels but {pred.size} predicted")
    keep = truth != ignore_label
    bad = keep & ((truth < 0) | (truth >= classes))
    if bad.any():
        raise ValueError(
            f"{where}: {int(bad.sum())} labelled pixels have class ids outside 0..{classes - 1} "
            f"(e.g. {int(truth[bad][0])}) and are not the ignore label {ignore_label}; the data does not "
            f"match the model's {classes} classes")
    t, p = truth[keep], pred[keep]
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def segmentation_metrics(cm):
    """mIoU and friends from a confusion matrix (rows truth, columns prediction).

    Args:
        cm: ``(C, C)`` pixel counts.

    Returns:
        A dict: ``per_class_iou`` (NaN where a class is in neither truth
        nor prediction), ``miou`` (their NaN-skipping mean),
        ``pixel_accuracy``, ``per_class_accuracy`` (NaN where a class has
        no truth pixel), ``mean_accuracy``, ``fw_iou`` (IoU weighted by
        each class's share of the truth pixels) and ``pixels``.

    Raises:
        ValueError: the matrix is empty (every pixel was ignored).
    """
    cm = np.asarray(cm, np.float64)
    total = cm.sum()
    if total == 0:
        raise ValueError("the evaluation data has no labelled pixels (every mask pixel is the ignore label), "
                         "so there is nothing to measure")
    tp = np.diag(cm)
    truth, pred = cm.sum(1), cm.sum(0)
    union = truth + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(truth > 0, tp / truth, np.nan)
    freq = truth / total
    return {
        "per_class_iou": iou,
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total),
        "per_class_accuracy": acc,
        "mean_accuracy": float(np.nanmean(acc)),
        "fw_iou": float((freq[freq > 0] * iou[freq > 0]).sum()),
        "pixels": int(total),
    }


def topk_correct(logits, labels, k):
    """How many rows have their label among their ``k`` highest scores.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class ids.
        k: clipped to ``C``.

    Returns:
        An int.
    """
    logits = np.asarray(logits)
    k = min(int(k), logits.shape[1])
    # stable on the negated scores: ties rank the lower index first
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((top == np.asarray(labels)[:, None]).any(1).sum())


# ------------------------------------------------------------------- data


def data_task(data):
    """The task a ``data`` string's dataset is labelled for.

    A ``folder:`` with ``images/`` (or ``train|val|validation/images``) is a
    segmentation folder; any other folder holds class sub-folders.

    Raises:
        ValueError: an unknown dataset name.
        FileNotFoundError: a ``folder:`` that does not exist.
    """
    if data in SEGMENTATION_TFDS:
        return "segmentation"
    if data in CLASSIFICATION_TFDS:
        return "classification"
    if data.startswith("folder:"):
        root = data[len("folder:"):]
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset folder not found: {root}")
        for sub in ("", "train", "val", "validation"):
            if os.path.isdir(os.path.join(root, sub, "images")):
                return "segmentation"
        return "classification"
    raise ValueError(f"unknown dataset {data!r}; valid choices: {', '.join(SEGMENTATION_TFDS + CLASSIFICATION_TFDS)}, "
                     "folder:PATH")


def imagenet_wnids():
    """The 1000 ImageNet-1k WordNet ids in class-index order (TFDS's
    ``imagenet2012`` label names: sorted wnids, the order every published
    classifier here uses)."""
    import tensorflow_datasets as tfds

    path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
    with open(path, encoding="utf8") as f:
        return tuple(line.strip() for line in f if line.strip())


def _class_folder_root(root):
    for sub in ("val", "validation"):
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
    return root


def folder_class_indices(folders, class_names, class_map=None):
    """Which class index each class sub-folder holds: one documented rule.

    1. ``class_map="sorted"``: the folder names in sorted order are classes
       ``0 .. N-1`` (torchvision's ``ImageFolder`` rule: ImageNet's 1000
       wnid folders sorted are the standard class order).
    2. ``class_map`` a file path: one folder name a line, line i = class i.
    3. Otherwise every folder name must be one of the model's class names
       (case-insensitive, ``_`` read as a space), or, for a 1000-class
       ImageNet model, an ImageNet wnid (``n01440764`` = 0, tench).

    Args:
        folders: the sub-folder names.
        class_names: the model's class names (index = class id).
        class_map: None, ``"sorted"`` or a file path.

    Returns:
        ``{folder: index}``.

    Raises:
        ValueError: a folder no rule maps, or an index beyond the model's
            classes; the message says which ``--class-map`` to use.
        FileNotFoundError: a class-map file that is not there.
    """
    classes = len(class_names)
    if class_map == "sorted":
        mapping = {name: i for i, name in enumerate(sorted(folders))}
    elif class_map is not None:
        if not os.path.isfile(class_map):
            raise FileNotFoundError(f"class map file not found: {class_map} (give a file, or 'sorted')")
        with open(class_map, encoding="utf8") as f:
            order = [line.strip() for line in f if line.strip()]
        missing = [name for name in folders if name not in order]
        if missing:
            raise ValueError(f"class map {class_map} does not list the folder {missing[0]!r}")
        mapping = {name: order.index(name) for name in folders}
    else:
        def key(name):
            return name.replace("_", " ").strip().lower()

        by_name = {}
        for i, name in enumerate(class_names):
            by_name.setdefault(key(name), i)
        wnids = {}
        if classes == 1000:
            try:
                wnids = {w: i for i, w in enumerate(imagenet_wnids())}
            except OSError:
                wnids = {}
        mapping = {}
        for name in folders:
            if key(name) in by_name:
                mapping[name] = by_name[key(name)]
            elif name in wnids:
                mapping[name] = wnids[name]
            else:
                raise ValueError(
                    f"class folder {name!r} is neither one of the model's class names nor an ImageNet wnid; "
                    "pass --class-map sorted (sorted folder names are classes 0..N-1) or --class-map FILE "
                    "(one folder name a line, line i = class i)")
    beyond = [name for name, i in mapping.items() if i >= classes]
    if beyond:
        raise ValueError(f"class folder {beyond[0]!r} maps to class {mapping[beyond[0]]} but the model "
                         f"predicts {classes} classes (0..{classes - 1})")
    return mapping


def _folder_samples(root, class_names, class_map):
    """``[(path, label)]`` of a classification folder and its folder map."""
    root = _class_folder_root(root)
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not folders:
        raise FileNotFoundError(f"{root}: no class sub-folders (expected ROOT/<class>/<image>.jpg)")
    mapping = folder_class_indices(folders, class_names, class_map)
    samples = []
    for name in folders:
        folder = os.path.join(root, name)
        for fname in sorted(os.listdir(folder)):
            if os.path.splitext(fname)[1].lower() in IMAGE_SUFFIXES:
                samples.append((os.path.join(folder, fname), mapping[name]))
    if not samples:
        raise FileNotFoundError(f"{root}: no .png/.jpg images in its class sub-folders")
    return samples, mapping


def _tfds_classification(data, data_dir, classes, download=False):
    """``(dataset of (image, label) numpy pairs, count)`` of a prepared TFDS
    classification set, labels as the model's class indices."""
    from zoo.training.data import tfds_split

    builder, ds = tfds_split(data, "validation", data_dir, download)
    names = builder.info.features["label"].names
    if data == "imagenet2012" or classes == len(names):
        lut = np.arange(len(names))
    elif classes == 1000:
        # imagenette's labels are ImageNet wnids: their ImageNet-1k indices
        index = {w: i for i, w in enumerate(imagenet_wnids())}
        lut = np.asarray([index[w] for w in names])
    else:
        raise ValueError(f"{data} has {len(names)} classes; the model predicts {classes} (neither the same "
                         "nor ImageNet's 1000)")
    count = builder.info.splits["validation"].num_examples
    return ((ex["image"], int(lut[ex["label"]])) for ex in ds.as_numpy_iterator()), count


# ---------------------------------------------------------------- models


def file_key_of_build(model_name, weights, mode, builder_kwargs=None):
    """The tag's file a build of ``model_name`` loads (ResNet's ``keras_top``
    or ``torch`` by its layout option), or None."""
    import inspect

    from zoo.assembler import file_key_for
    from zoo.registry import get_entry

    record = get_entry(model_name)
    kwargs = builder_kwargs or {}
    options = {opt.name: kwargs[opt.name] for opt in record.options if opt.name in kwargs}
    if "weights" in inspect.signature(record.spec).parameters:
        options["weights"] = weights
    try:
        backbone = record.spec(**options) if options else record.backbone()
        return file_key_for(backbone, weights, mode)
    except ValueError:
        return None


def classify_transform(model, model_name=None, weights=None, builder_kwargs=None, override=None):
    """The evaluation transform for a classify model, with its size settled.

    The weights' transform (:func:`zoo.preprocessing.eval_transform`, for
    the file the build loads); ``size`` is the model's own input size when
    its input is fixed, else the transform's, else 224.

    Args:
        model: the built classify ``keras.Model``.
        model_name: registry name (None: no published transform).
        weights: the tag or path it was built from.
        builder_kwargs: its builder options (a layout option picks the file).
        override: keys of the transform to replace (``crop_pct``, ...).

    Returns:
        ``{"size": [h, w], "crop_pct", "interpolation", "source"}``.
    """
    from zoo.preprocessing import UNKNOWN_EVAL_TRANSFORM, eval_transform

    if model_name is not None:
        key = file_key_of_build(model_name, weights, "classify", builder_kwargs)
        transform = eval_transform(model_name, weights, key)
    else:
        transform = dict(UNKNOWN_EVAL_TRANSFORM)
    transform.update(override or {})
    h, w = model.inputs[0].shape[1:3]
    if h and w:
        size = [int(h), int(w)]
    else:
        side = transform.get("size") or 224
        size = [int(side), int(side)] if np.isscalar(side) else [int(s) for s in side]
    transform["size"] = size
    return transform


def apply_transform(image, transform):
    """One uint8 image through a :func:`classify_transform` record."""
    from zoo.preprocessing import resize_shorter_center_crop

    return resize_shorter_center_crop(image, tuple(transform["size"]), transform["crop_pct"],
                                      transform["interpolation"])


def _build(model_or_name, weights, task, model_kwargs):
    """``(model, registry name or None, class names)`` for a model or a registry name."""
    from zoo.labels import names_for_weights, resolve_names

    if isinstance(model_or_name, str):
        from zoo.registry import create_model

        mode = "dense" if task == "segmentation" else "classify"
        fixed = sorted({"weights", "mode", "include_preprocessing"} & set(model_kwargs or {}))
        if fixed:
            raise ValueError(f"model_kwargs cannot set {fixed[0]!r}: evaluate sets it (weights=, the task)")
        model = create_model(model_or_name, weights=weights, mode=mode, include_preprocessing=True,
                             **(model_kwargs or {}))
        name = model_or_name
    else:
        model = model_or_name
        name = (getattr(model, "zoo", None) or {}).get("model")
    classes = int(model.outputs[0].shape[-1])
    # the names the weights' own record or manifest entry give, else class_<i>
    names = names_for_weights(name, weights, classes) if name else resolve_names(None, classes)
    return model, name, names


def _model_task(model):
    rank = len(model.outputs[0].shape)
    return "segmentation" if rank == 4 else "classification" if rank == 2 else None


# -------------------------------------------------------------- the loops


def _progbar(target, verbose):
    import keras

    return keras.utils.Progbar(target, verbose=verbose, unit_name="image")


def _to_channels(image, channels):
    """An RGB uint8 image as the model's channel count (grey: ITU-R 601 luma)."""
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        from PIL import Image

        # Pillow's "L", as zoo.apps.imaging.read_image makes grey for files
        return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("L"))[..., None]
    raise ValueError(f"the model takes {channels} channels; the data's images have {image.shape[-1]}")


def _segment(model, names, data, *, data_dir, download, scales, flip, tile, overlap, ignore_label,
             batch_size, limit, verbose):
    from zoo.apps.predictor import Predictor
    from zoo.training import data as data_mod

    classes = len(names)
    source = data_mod.load(data, "validation", data_dir, download=download)
    if source.num_classes > classes:
        raise ValueError(f"{data} has {source.num_classes} classes but the model predicts {classes}")
    if all(n == f"class_{i}" for i, n in enumerate(names)) and len(source.class_names) <= classes:
        # a model without its own names takes the dataset's
        names = list(source.class_names) + list(names[len(source.class_names):])
    ds = source.dataset.take(limit) if limit else source.dataset
    count = int(ds.cardinality())
    predictor = Predictor(model, scales=scales, flip=flip, tile=tile, overlap=overlap, batch_size=batch_size)
    bar = _progbar(count if count >= 0 else None, verbose)
    cm = np.zeros((classes, classes), np.int64)
    seen = 0
    group = []

    def flush():
        nonlocal cm, seen
        if not group:
            return
        labels = predictor.labels(np.stack([g[0] for g in group]))
        for (_, mask, index), pred in zip(group, labels):
            cm += confusion_matrix(mask, pred, classes, ignore_label, where=f"{data} image {index}")
        seen += len(group)
        group.clear()
        bar.update(seen)

    # consecutive images of one size go through the model together
    for index, ex in enumerate(ds.as_numpy_iterator()):
        image = _to_channels(ex["image"], predictor.channels)
        if group and group[0][0].shape != image.shape:
            flush()
        group.append((image, ex["mask"][..., 0], index))
        if len(group) == batch_size:
            flush()
    flush()
    if seen == 0:
        raise ValueError(f"{data}: no images in its validation split")
    metrics = segmentation_metrics(cm)
    iou = metrics.pop("per_class_iou")
    acc = metrics.pop("per_class_accuracy")
    absent = [names[i] for i in range(classes) if np.isnan(iou[i])]
    return {
        "task": "segmentation", "images": seen, "classes": classes, "class_names": list(names),
        **metrics,
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "per_class_accuracy": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, acc)},
        "absent_classes": absent, "note": ABSENT_NOTE,
        "ignore_label": int(ignore_label), "scales": [float(s) for s in scales], "flip": bool(flip),
        "tile": tile, "confusion": cm,
    }


def _classify(model, names, data, *, data_dir, download, transform, class_map, batch_size, limit, verbose):
    from zoo.apps.imaging import read_image

    classes = len(names)
    channels = int(model.inputs[0].shape[-1] or 3)
    if data.startswith("folder:"):
        samples, mapping = _folder_samples(data[len("folder:"):], names, class_map)
        if limit:
            samples = samples[:limit]

        def items():
            for path, label in samples:
                image, _ = read_image(path, channels)
                yield image, label

        stream, count = items(), len(samples)
    else:
        if class_map is not None:
            raise ValueError(f"--class-map applies to folder data; {data} has its own labels")
        stream, count = _tfds_classification(data, data_dir, classes, download)
        mapping = None
        if limit:
            stream, count = (x for _, x in zip(range(limit), stream)), min(limit, count)
    bar = _progbar(count, verbose)
    top1 = top5 = seen = 0
    batch, labels = [], []

    def flush():
        nonlocal top1, top5, seen
        if not batch:
            return
        logits = np.asarray(model(np.stack(batch), training=False), np.float32)
        y = np.asarray(labels)
        top1 += topk_correct(logits, y, 1)
        top5 += topk_correct(logits, y, 5)
        seen += len(batch)
        batch.clear()
        labels.clear()
        bar.update(seen)

    for image, label in stream:
        batch.append(apply_transform(_to_channels(image, channels), transform))
        labels.append(label)
        if len(batch) == batch_size:
            flush()
    flush()
    if seen == 0:
        raise ValueError(f"{data}: no images to evaluate")
    result = {"task": "classification", "images": seen, "classes": classes,
              "top1": top1 / seen, "top5": top5 / seen, "top5_k": min(5, classes),
              "transform": transform}
    if mapping is not None:
        result["class_map"] = {k: int(v) for k, v in sorted(mapping.items())}
    return result


# ---------------------------------------------------------------- outputs


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def write_confusion_csv(path, cm, names):
    """The confusion matrix as CSV: a header of predicted class names, one
    row per truth class (its name first), pixel counts."""
    import csv

    with open(path, "w", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        writer.writerow(["truth \\ prediction", *names])
        for name, row in zip(names, np.asarray(cm)):
            writer.writerow([name, *(int(v) for v in row)])
    return path


def write_confusion_png(path, cm, names, title="confusion matrix"):
    """The confusion matrix as a PNG with class names (Pillow only).

    Each row is normalised by its truth pixels (a row sums to 100%), drawn
    white to dark blue; the cells hold the percentage when they are large
    enough to read; a class absent from the truth gets ``(absent)``.
    """
    from PIL import Image, ImageDraw, ImageFont

    cm = np.asarray(cm, np.float64)
    n = len(names)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    truth = cm.sum(1)
    labels = [f"{name} (absent)" if truth[i] == 0 else name for i, name in enumerate(names)]
    cell = max(12, min(36, 720 // max(n, 1)))
    label_w = max(text_size(t)[0] for t in labels) + 10
    col_h = max(text_size(t)[0] for t in names) + 10
    head = 36
    width, height = label_w + n * cell + 10, head + col_h + n * cell + 10
    image = Image.new("RGB", (max(width, text_size(title)[0] + 20), height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 4), title, fill="black", font=font)
    draw.text((8, 18), "rows: truth; columns: prediction; % of each truth row", fill=(90, 90, 90), font=font)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(truth[:, None] > 0, cm / truth[:, None], 0.0)
    x0, y0 = label_w, head + col_h
    for i in range(n):
        _, th = text_size(labels[i])
        draw.text((4, y0 + i * cell + (cell - th) // 2), labels[i], fill="black", font=font)
        for j in range(n):
            v = float(share[i, j])
            colour = (int(255 - 225 * v), int(255 - 180 * v), int(255 - 90 * v))
            box = (x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell - 1, y0 + (i + 1) * cell - 1)
            draw.rectangle(box, fill=colour, outline=(220, 220, 220))
            if cell >= 28 and cm[i, j] > 0:
                text = f"{100 * v:.0f}"
                tw, th = text_size(text)
                draw.text((box[0] + (cell - tw) // 2, box[1] + (cell - th) // 2), text,
                          fill="white" if v > 0.5 else "black", font=font)
    for j, name in enumerate(names):
        # column names run upwards, one per column
        tw, th = text_size(name)
        strip = Image.new("RGB", (tw + 4, th + 4), "white")
        ImageDraw.Draw(strip).text((2, 0), name, fill="black", font=font)
        strip = strip.rotate(90, expand=True)
        image.paste(strip, (x0 + j * cell + (cell - strip.width) // 2, y0 - strip.height - 4))
    image.save(path)
    return path


def _write_outputs(out, result):
    os.makedirs(out, exist_ok=True)
    files = []
    if result["task"] == "segmentation":
        names = result["class_names"]
        files.append(write_confusion_csv(os.path.join(out, "confusion.csv"), result["confusion"], names))
        files.append(write_confusion_png(os.path.join(out, "confusion.png"), result["confusion"], names,
                                         title=f"{result.get('model') or 'model'} on {result['data']}: "
                                               f"mIoU {100 * result['miou']:.1f}%"))
    summary = os.path.join(out, "summary.json")
    files.insert(0, summary)
    with open(summary, "w", encoding="utf8") as f:
        json.dump(_json_ready({**result, "files": files}), f, indent=1)
        f.write("\n")
    return files


# ------------------------------------------------------------------ public


def evaluate(model_or_name, data, *, weights=None, task=None, scales=(1.0,), flip=False, tile=None,
             overlap=1 / 3, ignore_label=255, batch_size=4, limit=None, out=None, data_dir=None, download=False,
             class_map=None, model_kwargs=None, transform=None, verbose=1):
    """Measures a model on a labelled dataset (``zoo evaluate``).

    Args:
        model_or_name: a registry name (built with its preprocessing inside,
            dense mode for segmentation, classify mode for classification)
            or a built ``keras.Model`` that takes RGB pixels (its
            preprocessing inside); for a built zoo model, ``weights`` and
            ``model_kwargs`` say what it was built from (its class names and
            evaluation transform follow them).
        data: ``folder:PATH``, a TFDS segmentation set (``cityscapes``,
            ``scene_parse150``, ``oxford_iiit_pet``, ``zoo_shapes``) or a
            TFDS classification set (``imagenet2012``, ``imagenette``).
        weights: a published tag or a path (builds the model; for a built
            model, names its class names and evaluation transform).
        task: ``"segmentation"`` or ``"classification"``; default: the
            data's (a ``folder:`` with ``images/`` is segmentation).
        scales: segmentation: the Predictor's scales.
        flip: segmentation: also average the mirrored image.
        tile: segmentation: sliding-tile size (None: whole images).
        overlap: segmentation: tile overlap.
        ignore_label: segmentation: the mask value that counts nowhere.
        batch_size: images (or tiles) per model call.
        limit: evaluate only the first ``limit`` images.
        out: a folder for ``summary.json`` (and, for segmentation,
            ``confusion.csv`` and ``confusion.png``); None writes nothing.
        data_dir: the TFDS data folder (also where folder data is prepared).
        download: let TFDS download (and prepare) a dataset that is not
            prepared yet; Cityscapes and ImageNet need their archives placed
            by hand in TFDS's manual folder either way.
        class_map: classification folders: ``"sorted"`` or a file (see
            :func:`folder_class_indices`).
        model_kwargs: further builder arguments for a registry name.
        transform: classification: keys overriding the evaluation
            transform (``size``, ``crop_pct``, ``interpolation``).
        verbose: 1 shows a progress bar, 0 none.

    Returns:
        A dict. Segmentation: ``miou``, ``per_class_iou`` (``{name: IoU or
        None}``; None for a class absent from truth and prediction, listed
        in ``absent_classes``), ``pixel_accuracy``, ``mean_accuracy``,
        ``per_class_accuracy``, ``fw_iou``, ``confusion`` (int64 ``(C, C)``,
        rows truth), ``pixels``, ``images``, ``class_names``.
        Classification: ``top1``, ``top5`` (fractions), ``images``,
        ``transform``, ``class_map``. Both: ``model``, ``weights``,
        ``data``, ``files`` (what ``out`` received).

    Raises:
        ValueError: a bad option, a task the model cannot do, labels outside
            the model's classes, or data with nothing to measure.
    """
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1; got {limit!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid choices: {', '.join(TASKS)}")
    wanted = data_task(data)
    task = task or wanted
    if task != wanted:
        raise ValueError(f"{data} holds {wanted} data; it cannot measure {task}")
    model, name, names = _build(model_or_name, weights, task, model_kwargs)
    if _model_task(model) != task:
        raise ValueError(f"{task} needs a {'dense' if task == 'segmentation' else 'classify'}-mode model; "
                         f"this one outputs shape {tuple(model.outputs[0].shape)}")
    if task == "segmentation":
        result = _segment(model, names, data, data_dir=data_dir, download=download, scales=scales, flip=flip, tile=tile,
                          overlap=overlap, ignore_label=ignore_label, batch_size=int(batch_size), limit=limit,
                          verbose=verbose)
    else:
        settled = classify_transform(model, name, weights, model_kwargs, transform)
        result = _classify(model, names, data, data_dir=data_dir, download=download, transform=settled,
                           class_map=class_map, batch_size=int(batch_size), limit=limit, verbose=verbose)
    result = {"model": name, "weights": None if weights is None else str(weights), "data": data, **result}
    result["files"] = _write_outputs(out, result) if out else []
    return result


# --------------------------------------------------- the published figures


def published_figures():
    """Every published figure the manifest records, with the command that
    reproduces it.

    Returns:
        A list of dicts: ``model``, ``tag``, the manifest's figure fields
        (``task``, ``dataset``, ``metric``, ``value``, ``source``, optional
        ``layout``) and ``command``.
    """
    from zoo import weights as zw

    layout_kwargs = {"torchvision": "stride_in_1x1=False"}
    data_arg = {"imagenet2012": "imagenet2012", "cityscapes": "cityscapes",
                "coco_voc": "folder:COCO_VOC_VAL"}
    rows = []
    for model, tags in zw.load_manifest().items():
        for tag, entry in tags.items():
            for figure in entry.get("published", ()):
                command = f"zoo evaluate --model {model} --weights {tag} --data {data_arg[figure['dataset']]}"
                kwargs = layout_kwargs.get(figure.get("layout"))
                # the torchvision layout is the only one of ResNet-18/34: no option needed there
                if kwargs and any(f.get("layout") == "keras" for f in (entry.get("files") or {}).values()):
                    command += f" --model-kwargs {kwargs}"
                rows.append({"model": model, "tag": tag, **figure, "command": command})
    return rows


def published_table():
    """The README's "Published figures" table, as Markdown lines, from
    :func:`published_figures` (a test keeps the README equal to it)."""
    names = {"top1": "top-1 %", "top1_error": "top-1 error %", "miou": "mIoU %"}
    data = {"imagenet2012": "ImageNet val", "cityscapes": "Cityscapes val", "coco_voc": "COCO-VOC val"}
    lines = ["| model / weights | figure | published | source | reproduce (not run here: no dataset offline) |",
             "|---|---|---|---|---|"]
    for row in published_figures():
        layout = f" ({row['layout']} layout)" if row.get("layout") else ""
        lines.append(f"| {row['model']} / {row['tag']}{layout} | {data[row['dataset']]} {names[row['metric']]} "
                     f"| {row['value']} | {row['source'].split(' (')[0]} | `{row['command']}` |")
    return lines
