"""``zoo evaluate`` / ``zoo.evaluate``: every figure equals an independent numpy
computation from the model's own predictions, on small data made here.

Segmentation: a tiny DRN-D in dense mode on a folder dataset with ignore
pixels and a class absent from both truth and prediction; the confusion
matrix is rebuilt from ``model(image)`` with ``np.bincount`` and the metrics
from their textbook formulas; ``scales``/``flip`` reach the Predictor.
Classification: top-1/top-5 from the model's logits on hand-cropped images
(PIL resize of the shorter side, numpy centre crop). The CLI writes its
files, and its user errors are one line with exit code 2.
"""

import csv
import json
import math
import os
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import zoo
from tests.cases import TINY_DRN
from tests.support.helpers import randomize, write_png
from zoo.apps.evaluate import confusion_matrix, published_table
from zoo.cli import main
from zoo.preprocessing import eval_transform, resize_shorter_center_crop

ROOT = Path(__file__).resolve().parents[1]
SEG_CLASSES = ("sky", "road", "car", "tree", "boat")  # "boat": in neither truth nor prediction
SEG_SIZES = ((32, 40), (32, 40), (40, 32), (32, 40))  # two sizes: batches group same-size images
IGNORE = 255


# ------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory):
    """A folder dataset: 4 random images, masks of classes 0..3 with an
    ignored band; ``classes.txt`` names 5 classes (the last never occurs)."""
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SEG_SIZES):
        write_png(root / "images" / f"{i}.png", rng.integers(0, 256, (h, w, 3)).astype("uint8"))
        mask = rng.integers(0, 4, (h, w)).astype("uint8")
        mask[: 3 + i] = IGNORE
        write_png(root / "masks" / f"{i}.png", mask)
    (root / "classes.txt").write_text("\n".join(SEG_CLASSES) + "\n")
    return root


def _folder_examples(root):
    for i in range(len(SEG_SIZES)):
        yield (np.asarray(Image.open(root / "images" / f"{i}.png")),
               np.asarray(Image.open(root / "masks" / f"{i}.png")))


@pytest.fixture(scope="module")
def dense_model():
    """The tiny DRN-D, dense, 5 classes, pixels in; class 4's bias pushed
    far down so that it is never predicted."""
    keras.utils.set_random_seed(0)
    model = zoo.create_model(TINY_DRN, mode="dense", classes=len(SEG_CLASSES), include_preprocessing=True)
    bilinear = model.get_layer("up").get_weights()
    randomize(model, seed=1)
    model.get_layer("up").set_weights(bilinear)  # a positive upsampling kernel keeps class 4 far down
    seg = model.get_layer("seg")
    kernel, bias = seg.get_weights()
    kernel[..., -1], bias[-1] = 0.0, -1e9
    seg.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """One TFDS folder per worker: the folder dataset is prepared once."""
    return str(tmp_path_factory.mktemp("tfds"))


def _reference_metrics(cm):
    """The textbook definitions, written out again (not the package's code)."""
    cm = cm.astype(float)
    n = cm.shape[0]
    iou, acc = [], []
    for c in range(n):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
        acc.append(tp / (tp + fn) if tp + fn else math.nan)
    seen = [v for v in iou if not math.isnan(v)]
    freq = cm.sum(1) / cm.sum()
    return {"miou": sum(seen) / len(seen), "pixel_accuracy": np.trace(cm) / cm.sum(),
            "mean_accuracy": np.nanmean(acc), "per_class_iou": iou,
            "fw_iou": sum(f * v for f, v in zip(freq, iou) if f > 0)}


def _reference_cm(truths, preds, n):
    cm = np.zeros((n, n), np.int64)
    for t, p in zip(truths, preds):
        keep = t != IGNORE
        cm += np.bincount(t[keep].astype(int) * n + p[keep], minlength=n * n).reshape(n, n)
    return cm


# ---------------------------------------------------------- segmentation


def test_segmentation_equals_numpy_from_the_models_predictions(dense_model, seg_folder, tfds_dir):
    got = zoo.evaluate(dense_model, f"folder:{seg_folder}", data_dir=tfds_dir, batch_size=2, verbose=0)
    truths, preds = [], []
    for image, mask in _folder_examples(seg_folder):
        preds.append(np.asarray(dense_model(image[None], training=False))[0].argmax(-1))
        truths.append(mask)
    cm = _reference_cm(truths, preds, len(SEG_CLASSES))
    np.testing.assert_array_equal(got["confusion"], cm)
    assert got["pixels"] == sum(int((t != IGNORE).sum()) for t in truths)
    want = _reference_metrics(cm)
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    ious = [got["per_class_iou"][name] for name in SEG_CLASSES]
    assert ious[-1] is None and got["absent_classes"] == ["boat"] and "absent" in got["note"]
    np.testing.assert_allclose(ious[:-1], want["per_class_iou"][:-1], rtol=1e-12)
    assert got["class_names"] == list(SEG_CLASSES) and got["images"] == len(SEG_SIZES)


def test_scales_flip_and_tile_reach_the_predictor(dense_model, seg_folder, tfds_dir):
    options = {"scales": (0.75, 1.25), "flip": True, "tile": 24}
    got = zoo.evaluate(dense_model, f"folder:{seg_folder}", data_dir=tfds_dir, verbose=0, **options)
    predictor = zoo.Predictor(dense_model, **options)
    examples = list(_folder_examples(seg_folder))
    cm = _reference_cm([m for _, m in examples], [predictor.labels(i) for i, _ in examples], len(SEG_CLASSES))
    np.testing.assert_array_equal(got["confusion"], cm)
    plain = _reference_cm([m for _, m in examples],
                          [np.asarray(dense_model(i[None]))[0].argmax(-1) for i, _ in examples], len(SEG_CLASSES))
    assert not np.array_equal(cm, plain)  # the options changed the predictions: not vacuous
    assert got["scales"] == [0.75, 1.25] and got["flip"] is True and got["tile"] == 24
    assert predictor.num_tiles(40, 50) > 1  # the tiles are cut: not vacuous either


def test_confusion_refuses_labels_outside_the_classes():
    truth = np.array([[0, 1], [IGNORE, 3]])
    pred = np.zeros((2, 2), int)
    with pytest.raises(ValueError, match=r"1 labelled pixels have class ids outside 0\.\.2 .*e\.g\. 3"):
        confusion_matrix(truth, pred, 3)
    # the ignore label itself is never an error, and counts nowhere
    assert confusion_matrix(np.array([0, IGNORE]), np.array([1, 2]), 3).sum() == 1


# -------------------------------------------------------- classification


def _hand_crop(image, size, crop_pct, resample):
    """The timm/torchvision rule written out: shorter side to
    floor(size / crop_pct) (the longer one truncated to keep the ratio), PIL
    resize, centre crop with torchvision's rounding."""
    h, w = image.shape[:2]
    short = int(size / crop_pct + 1e-6)
    nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), resample))
    top, left = int(round((nh - size) / 2)), int(round((nw - size) / 2))
    return resized[top:top + size, left:left + size]


def test_transform_is_resize_shorter_side_then_centre_crop():
    image = np.random.default_rng(5).integers(0, 256, (45, 70, 3)).astype("uint8")
    for size, pct, how, resample in ((32, 0.875, "bicubic", Image.BICUBIC), (24, 1.0, "bilinear", Image.BILINEAR),
                                     (20, 224 / 232, "bilinear", Image.BILINEAR)):
        got = resize_shorter_center_crop(image, size, pct, how)
        np.testing.assert_array_equal(got, _hand_crop(image, size, pct, resample))
    assert resize_shorter_center_crop(image.transpose(1, 0, 2), 32, 0.875).shape == (32, 32, 3)


def test_eval_transform_reads_the_manifest():
    v2 = eval_transform("resnet50", "imagenet_v2")
    assert (v2["size"], v2["interpolation"], int(v2["size"] / v2["crop_pct"] + 1e-6)) == (224, "bilinear", 232)
    torch_file = eval_transform("resnet50", "imagenet", "torch")
    keras_file = eval_transform("resnet50", "imagenet", "keras_top")
    assert (torch_file["crop_pct"], torch_file["interpolation"]) == (0.875, "bilinear")
    assert keras_file["interpolation"] == "bicubic"
    assert eval_transform("inception_v3", "imagenet")["size"] == 299
    timm = eval_transform("resnet50", "a1_in1k")  # timm's pretrained_cfg test size
    assert (timm["size"], timm["crop_pct"], timm["interpolation"]) == (288, 1.0, "bicubic")
    assert eval_transform("resnet50", None)["size"] is None


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    rng = np.random.default_rng(3)
    shapes = ((40, 56), (52, 44), (36, 36))
    for k, folder in enumerate(("class_4", "class_1", "class_2")):
        for i, (h, w) in enumerate(shapes):
            write_png(root / folder / f"{k}{i}.png", rng.integers(0, 256, (h + k, w, 3)).astype("uint8"))
    return root


@pytest.fixture(scope="module")
def classify_model():
    keras.utils.set_random_seed(0)
    return randomize(zoo.create_model(TINY_DRN, mode="classify", classes=7, include_preprocessing=True), seed=2)


def test_classification_top1_top5_equal_numpy(class_folder, classify_model):
    model = classify_model
    transform = {"size": 32, "crop_pct": 0.875, "interpolation": "bicubic"}
    got = zoo.evaluate(model, f"folder:{class_folder}", transform=transform, batch_size=4, verbose=0)
    # default rule: folder names are the model's class names (class_<i> here)
    assert got["class_map"] == {"class_1": 1, "class_2": 2, "class_4": 4}
    crops, labels = [], []
    for folder in sorted(os.listdir(class_folder)):
        for fname in sorted(os.listdir(class_folder / folder)):
            image = np.asarray(Image.open(class_folder / folder / fname))
            crops.append(_hand_crop(image, 32, 0.875, Image.BICUBIC))
            labels.append(int(folder.split("_")[1]))
    logits = np.asarray(model(np.stack(crops), training=False))
    order = np.argsort(-logits, axis=1)
    top1 = np.mean(order[:, 0] == labels)
    top5 = np.mean([y in row[:5] for y, row in zip(labels, order)])
    assert (got["top1"], got["top5"], got["images"]) == (pytest.approx(top1), pytest.approx(top5), 9)
    assert 0 < top5 < 1 or 0 < top1 < 1  # neither figure is trivially 0 or 1 both
    # sorted folder names instead: classes 0, 1, 2
    by_sort = zoo.evaluate(model, f"folder:{class_folder}", transform=transform, class_map="sorted", verbose=0)
    assert by_sort["class_map"] == {"class_1": 0, "class_2": 1, "class_4": 2}


def test_class_folder_rule(tmp_path):
    from zoo.apps.evaluate import folder_class_indices
    from zoo.labels import load_labels

    imagenet = load_labels("imagenet")
    # names (case, "_" for a space) and ImageNet wnids, for a 1000-class model
    assert folder_class_indices(["n01443537", "Great_white_shark", "tench"], imagenet) == \
        {"n01443537": 1, "Great_white_shark": 2, "tench": 0}
    order = tmp_path / "classes.txt"
    order.write_text("dog\ncat\n")
    assert folder_class_indices(["cat", "dog"], ["a", "b", "c"], str(order)) == {"dog": 0, "cat": 1}
    assert folder_class_indices(["cat", "dog"], ["a", "b"], "sorted") == {"cat": 0, "dog": 1}
    with pytest.raises(ValueError, match="maps to class 2 but the model predicts 2"):
        folder_class_indices(["x", "y", "z"], ["a", "b"], "sorted")


def test_predict_classify_input_is_the_eval_transform(classify_model, tmp_path):
    """``zoo predict --mode classify``'s input (the slow test below runs
    the command): the weights' transform, here a file no manifest entry
    publishes: shorter side to the input size (224 for a size-free
    classifier), centre crop, bilinear; no stretch."""
    from zoo.apps.evaluate import classify_transform
    from zoo.cli.apps import _classify_input

    image = np.random.default_rng(6).integers(0, 256, (60, 90, 3)).astype("uint8")
    transform = classify_transform(classify_model, TINY_DRN, str(tmp_path / "mine.weights.h5"))
    np.testing.assert_array_equal(_classify_input(image, transform)[0], _hand_crop(image, 224, 1.0, Image.BILINEAR))
    tagged = classify_transform(classify_model, "resnet50", "imagenet_v2")
    assert (tagged["size"], tagged["crop_pct"]) == ([224, 224], 224 / 232)


@pytest.mark.slow
def test_predict_classify_uses_the_eval_transform(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = randomize(zoo.create_model(TINY_DRN, mode="classify", classes=6, include_preprocessing=True), seed=4)
    weights = str(tmp_path / "tiny.weights.h5")
    model.save_weights(weights)
    image = np.random.default_rng(6).integers(0, 256, (60, 90, 3)).astype("uint8")
    path = str(tmp_path / "wide.png")
    write_png(path, image)
    assert main(["predict", "--model", TINY_DRN, "--weights", weights, "--classes", "6", "--mode", "classify",
                 path]) == 0
    out = capsys.readouterr().out
    # a file no manifest entry publishes: shorter side to the input size
    # (224 for a size-free classifier), centre crop, bilinear; no stretch
    logits = np.asarray(model(_hand_crop(image, 224, 1.0, Image.BILINEAR)[None], training=False))[0]
    best = int(np.argmax(logits))
    assert f"1. class_{best} ({best})" in out


# ------------------------------------------------------------------- CLI


def test_cli_writes_json_csv_png(seg_folder, tfds_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", "--model", TINY_DRN, "--data", f"folder:{seg_folder}", "--data-dir", tfds_dir,
                 "--limit", "3", "--out", str(out), "--model-kwargs", "classes=5"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["task"] == "segmentation"
    assert f"mIoU {100 * summary['miou']:.2f}%" in printed
    cm = np.asarray(summary["confusion"])
    with open(out / "confusion.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == list(SEG_CLASSES) and [r[0] for r in rows[1:]] == list(SEG_CLASSES)
    np.testing.assert_array_equal(np.asarray([r[1:] for r in rows[1:]], int), cm)
    with Image.open(out / "confusion.png") as png:
        assert png.width > 5 * 12 and png.height > 5 * 12
    assert sorted(summary["files"]) == sorted(str(out / f) for f in ("summary.json", "confusion.csv",
                                                                     "confusion.png"))


@pytest.mark.parametrize("argv, message", [
    (["--data", "nosuch"], "unknown dataset 'nosuch'"),
    (["--data", "folder:/no/such/folder"], "dataset folder not found"),
    (["--data", "zoo_shapes", "--limit", "0"], "--limit must be >= 1"),
    (["--data", "zoo_shapes", "--model-kwargs", "mode=dense"], "cannot set 'mode'"),
    (["--data", "zoo_shapes", "--task", "classification"], "holds segmentation data"),
])
def test_cli_user_errors_are_one_line(argv, message, capsys):
    assert main(["evaluate", "--model", TINY_DRN, *argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0]


def test_cli_class_folder_without_a_rule_is_one_line(class_folder, tmp_path, capsys):
    (tmp_path / "val" / "cats").mkdir(parents=True)
    write_png(tmp_path / "val" / "cats" / "a.png", np.zeros((8, 8, 3), "uint8"))
    assert main(["evaluate", "--model", TINY_DRN, "--data", f"folder:{tmp_path}", "--model-kwargs",
                 "classes=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: class folder 'cats'") and "--class-map sorted" in err


# ------------------------------------------------------------ the README


def test_readme_published_table_is_the_manifests():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- published-figures:start -->\n(.*?)<!-- published-figures:end -->", text, re.S)
    assert block, "README.md lost its published-figures markers"
    assert block.group(1).strip().splitlines() == published_table()
