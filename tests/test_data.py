"""zoo.training.data: the synthetic and folder TFDS builders, the real datasets'
loaders on tfds.testing.mock_data (no network), preprocessing and
augmentation."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.support.helpers import write_png
from zoo.training import data


def test_zoo_shapes_deterministic_and_exact(shapes_dir, tmp_path):
    a_img, a_mask = data.shapes_arrays("validation", shapes_dir, limit=8)
    b_img, b_mask = data.shapes_arrays("validation", str(tmp_path), limit=8)  # prepared afresh
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert a_img.shape == (8, 96, 96, 3) and a_mask.shape == (8, 96, 96)
    assert set(np.unique(a_mask)) <= {0, 1, 2, 3} and len(np.unique(a_mask)) > 1
    # Regenerating with the builder's own generator gives the same pixels.
    rng = np.random.default_rng(data.ZooShapes.SPLITS["validation"][1])
    img0, mask0 = data._draw_shapes(rng, 96)
    ds = tfds.builder("zoo_shapes", data_dir=shapes_dir).as_dataset(split="validation")
    found = [ex for ex in ds.as_numpy_iterator() if np.array_equal(ex["segmentation_mask"], mask0)]
    assert found and np.array_equal(found[0]["image"], img0)
    # Circles are painted red: class-1 pixels are red-dominant.
    red = a_img[a_mask == 1].astype(int)
    assert (red[:, 0] > red[:, 2]).mean() > 0.9


def test_preprocess_matches_manifest_formulas():
    img = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3)).astype("uint8")
    caffe = data.preprocessing_for("vgg16", "imagenet")
    assert caffe["type"] == "caffe"
    want = img[..., ::-1].astype("float32") - np.array(caffe["mean"], "float32")
    np.testing.assert_allclose(data.preprocess(img, caffe).numpy(), want, rtol=1e-6)
    torch = data.preprocessing_for("drn_a_18", None)  # no published weights: the torch default
    want = (img / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(data.preprocess(img, torch).numpy(), want, rtol=1e-5, atol=1e-5)
    for spec in (caffe, torch):
        np.testing.assert_array_equal(data.unpreprocess(data.preprocess(img, spec), spec).numpy(), img)


def test_augment_pads_with_ignore_and_flips():
    image = tf.random.uniform((20, 30, 3))
    mask = tf.cast(tf.random.uniform((20, 30, 1), 0, 4, tf.int32), tf.uint8)
    # Fixed scale 0.5 to 10x15, then a 16x24 crop: the padding is 0 / 255.
    img, m = data.augment(image, mask, (16, 24), scale_range=(0.5, 0.5), flip=False, seed=1)
    assert img.shape == (16, 24, 3) and m.shape == (16, 24, 1)
    m = m.numpy()[..., 0]
    assert np.all(m[10:] == 255) and np.all(m[:, 15:] == 255) and np.all(m[:10, :15] < 4)
    assert np.all(img.numpy()[10:] == 0)
    # No scale, full-size crop: identity or an exact horizontal flip.
    img, m = data.augment(image, mask, (20, 30), scale_range=None, flip=True)
    ok = [np.allclose(img.numpy(), image.numpy()) and np.array_equal(m, mask),
          np.allclose(img.numpy(), image.numpy()[:, ::-1]) and np.array_equal(m, mask.numpy()[:, ::-1])]
    assert any(ok)


def test_pipeline_batches(shapes_dir):
    src = data.load("zoo_shapes", "train", shapes_dir)
    assert src.num_classes == 4 and src.class_names[1] == "circle"
    x, y = next(iter(data.make_pipeline(src.dataset, 40, 3, True, seed=0)))
    assert x.shape == (3, 40, 40, 3) and x.dtype == tf.float32
    assert y.shape == (3, 40, 40) and y.dtype == tf.int32
    assert set(np.unique(y)) <= {0, 1, 2, 3, 255}


def test_folder_builder(tmp_path, shapes_dir):
    root = tmp_path / "mydata"
    rng = np.random.default_rng(0)
    want = {}
    for split in ("train", "val"):
        os.makedirs(root / split / "images")
        os.makedirs(root / split / "masks")
        for i in range(2):
            img = rng.integers(0, 256, (12, 10, 3)).astype("uint8")
            mask = rng.choice([0, 1, 2, 255], (12, 10, 1)).astype("uint8")
            write_png(str(root / split / "images" / f"{split}{i}.png"), img)
            write_png(str(root / split / "masks" / f"{split}{i}.png"), mask)
            want[f"{split}{i}"] = (img, mask)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    src = data.load(f"folder:{root}", "validation", shapes_dir)
    assert src.num_classes == 3 and src.class_names == ("sky", "road", "car")
    got = list(src.dataset.as_numpy_iterator())
    assert len(got) == 2
    for ex in got:
        match = [k for k, (img, _) in want.items() if np.array_equal(img, ex["image"])]
        assert match and match[0].startswith("val"), match
        np.testing.assert_array_equal(ex["mask"], want[match[0]][1])


def test_folder_missing_mask_is_named(tmp_path, shapes_dir):
    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    write_png(str(tmp_path / "images" / "a.png"), np.zeros((4, 4, 3), "uint8"))
    with pytest.raises(Exception, match="a.png"):
        data.load(f"folder:{tmp_path}", "train", shapes_dir)


def test_label_maps():
    np.testing.assert_array_equal(data._pet_mask(tf.constant([1, 2, 3, 0], tf.uint8)).numpy(), [1, 0, 255, 255])
    np.testing.assert_array_equal(
        data._cityscapes_mask(tf.constant([7, 26, 33, 0, 6, 34], tf.uint8)).numpy(), [0, 13, 18, 255, 255, 255])
    ade = tf.constant([[[0, 9, 9], [1, 0, 0], [150, 3, 3], [151, 0, 0]]], tf.uint8)
    np.testing.assert_array_equal(data._ade_mask(ade).numpy()[..., 0], [[255, 0, 149, 255]])


@pytest.mark.parametrize("name,valid", [
    ("oxford_iiit_pet", {0, 1, 255}),
    ("cityscapes", set(range(19)) | {255}),
    ("scene_parse150", set(range(150)) | {255}),
])
def test_real_dataset_loaders_on_mock_data(name, valid):
    with tfds.testing.mock_data(num_examples=3):
        src = data.load(name, "train")
        x, y = next(iter(data.make_pipeline(src.dataset, 32, 3, True, seed=0)))
    assert x.shape == (3, 32, 32, 3) and y.shape == (3, 32, 32)
    assert set(np.unique(y.numpy())) <= valid, np.unique(y.numpy())
    assert src.num_classes == max(valid - {255}) + 1


def test_preprocessing_prefers_the_layout_files_own_record():
    from zoo.preprocessing import preprocessing_for

    # resnet50 'imagenet' has keras (caffe) and torchvision (mean/std) files.
    assert preprocessing_for("resnet50", "imagenet", file_key="torch")["type"] == "torch"
    assert preprocessing_for("resnet50", "imagenet", file_key="keras_top")["type"] == "caffe"
    # A path that cannot be read (the load will report it) takes the build
    # layout's record, as weights=None does; readable files: test_preprocessing_layer.
    assert preprocessing_for("resnet50", "/a/fine-tuned.weights.h5") == preprocessing_for("resnet50", None)
    assert preprocessing_for("resnet50", "/a/fine-tuned.weights.h5", file_key="torch")["type"] == "torch"
