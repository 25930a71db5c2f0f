"""Class names as package data and offline top-k decoding."""

import ast
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import zoo
from zoo.labels import LABEL_SETS, load_labels, palette, resolve_names
from zoo.weights import load_manifest

TORCHVISION_META = os.path.join(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                                "site-packages", "torchvision", "models", "_meta.py")


def _torchvision_list(name):
    """A category list from torchvision's metadata, read as data (torchvision
    itself does not import beside this torch)."""
    if not os.path.exists(TORCHVISION_META):
        pytest.skip("torchvision's _meta.py is not installed")
    tree = ast.parse(open(TORCHVISION_META, encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(name)


def test_imagenet_names_match_torchvision():
    names = load_labels("imagenet")
    assert len(names) == 1000
    assert list(names) == _torchvision_list("_IMAGENET_CATEGORIES")
    assert names[0] == "tench" and names[207] == "golden retriever" and names[999] == "toilet tissue"


def test_voc_and_cityscapes():
    voc = load_labels("voc")
    assert len(voc) == 21 and voc[0] == "background"
    assert list(voc[1:]) == _torchvision_list("_VOC_CATEGORIES")[1:]
    city = load_labels("cityscapes")
    assert len(city) == 19 and city[0] == "road" and city[13] == "car" and city[18] == "bicycle"
    from zoo.training.data import CITYSCAPES_CLASSES

    assert list(city) == list(CITYSCAPES_CLASSES)


def test_every_manifest_entry_names_a_label_set_of_its_class_count():
    for model, tags in load_manifest().items():
        for tag, entry in tags.items():
            assert entry.get("labels") in LABEL_SETS, (model, tag)
            assert len(load_labels(entry["labels"])) == entry["classes"], (model, tag)


def test_class_names():
    assert zoo.class_names("resnet50", "imagenet")[1] == "goldfish"
    assert zoo.class_names("resnet50", "coco_voc")[15] == "person"
    assert zoo.class_names("drn_d_22", "cityscapes")[11] == "person"
    assert len(zoo.class_names("drn_d_22", "imagenet")) == 1000
    assert len(zoo.class_names("vgg16")) == 1000  # its only tag
    assert zoo.class_names("voc") == load_labels("voc")
    with pytest.raises(ValueError, match="unknown label set"):
        load_labels("coco")
    with pytest.raises(ValueError, match="valid names"):
        zoo.class_names("vgg17", "imagenet")


def test_decode_predictions_against_hand_computation():
    rng = np.random.default_rng(0)
    probs = rng.random((3, 1000)).astype("float32")
    probs[0, 207] = 2.0
    probs[1, [1, 2]] = 5.0  # tie: lower index first
    out = zoo.decode_predictions(probs, top=5)
    assert len(out) == 3 and all(len(r) == 5 for r in out)
    assert out[0][0] == (207, "golden retriever", 2.0)
    assert [r[0] for r in out[1][:2]] == [1, 2]
    for row, p in zip(out, probs):
        idx = [i for i, _, _ in row]
        assert idx == list(np.argsort(-p, kind="stable")[:5])
        assert [s for _, _, s in row] == sorted((s for _, _, s in row), reverse=True)
        assert all(np.float32(s) == p[i] for i, _, s in row)


def test_decode_predictions_custom_names_and_errors():
    out = zoo.decode_predictions([[0.1, 0.7, 0.2]], top=10, labels=["a", "b", "c"])
    assert out == [[(1, "b", pytest.approx(0.7)), (2, "c", pytest.approx(0.2)), (0, "a", pytest.approx(0.1))]]
    with pytest.raises(ValueError, match="1000 names"):
        zoo.decode_predictions(np.zeros((1, 19)))
    with pytest.raises(ValueError, match="shape"):
        zoo.decode_predictions(np.zeros(1000))


def test_resolve_names_pads_and_palette_is_distinct():
    assert resolve_names("cityscapes", 21)[19:] == ["class_19", "class_20"]
    assert resolve_names(None, 2) == ["class_0", "class_1"]
    for n in (19, 21, 1000):
        p = palette(n)
        assert p.shape == (n, 3) and len({tuple(c) for c in p}) == n


@pytest.mark.slow
def test_wheel_ships_label_files(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), root], check=True, cwd=str(tmp_path))
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    for label_set in LABEL_SETS:
        assert f"zoo/labels/{label_set}.txt" in names
