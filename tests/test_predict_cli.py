"""`zoo predict`: palette PNG of class ids, overlay with legend, classify top-5
with names, heatmap overlays, grey/RGBA inputs, clean errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.cli.render import legend, read_rgb, text_mask, write_palette_png
from zoo.cli import main
from zoo.labels import load_labels, palette
from zoo.preprocessing import preprocess, preprocessing_for


def _write(path, array):
    data = tf.io.encode_png(array) if path.endswith(".png") else tf.io.encode_jpeg(array, quality=95)
    tf.io.write_file(path, data)
    return path


def _decode(path):
    return tf.io.decode_png(tf.io.read_file(path), channels=3).numpy()


@pytest.fixture(scope="module")
def dense_weights(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("resnet18", mode="dense", classes=3)
    path = str(tmp_path_factory.mktemp("w") / "r18_dense.weights.h5")
    model.save_weights(path)
    return model, path


def test_palette_png_round_trip(tmp_path):
    ids = np.random.default_rng(0).integers(0, 21, (13, 17))
    colours = palette(21)
    path = write_palette_png(str(tmp_path / "ids.png"), ids, colours)
    # tf's decoder expands the palette: the colours come back per pixel
    np.testing.assert_array_equal(_decode(path), colours[ids])
    image = pytest.importorskip("PIL.Image")
    with image.open(path) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), ids)


def test_dense_outputs_beyond_256_classes_are_16_bit_ids(tmp_path):
    import argparse

    from zoo.cli.apps import _dense_outputs

    ids = np.random.default_rng(5).integers(0, 300, (12, 14))
    image = np.zeros((12, 14, 3), "uint8")
    names = [f"c{i}" for i in range(300)]
    ids_path, over_path = _dense_outputs(argparse.Namespace(out=str(tmp_path)), "x", image, ids, names,
                                         palette(300))
    back = tf.io.decode_png(tf.io.read_file(ids_path), dtype=tf.uint16).numpy()[..., 0]
    np.testing.assert_array_equal(back, ids)
    assert _decode(over_path).shape[0] > 12


def test_read_rgb_converts_grey_and_rgba(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (9, 11, 1)).astype("uint8")
    rgba = rng.integers(0, 256, (9, 11, 4)).astype("uint8")
    img, note = read_rgb(_write(str(tmp_path / "g.png"), grey))
    assert img.shape == (9, 11, 3) and "greyscale" in note
    np.testing.assert_array_equal(img, np.repeat(grey, 3, -1))
    img, note = read_rgb(_write(str(tmp_path / "a.png"), rgba))
    assert "alpha" in note
    np.testing.assert_array_equal(img, rgba[..., :3])
    img, note = read_rgb(_write(str(tmp_path / "c.jpg"), rgba[..., :3]))
    assert img.shape == (9, 11, 3) and note is None
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        read_rgb(str(bad))


def test_font_and_legend():
    mask = text_mask("AB", scale=1)
    assert mask.shape == (7, 12)
    assert mask[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 1]  # 'A': left stroke below the apex
    panel = legend([((255, 0, 0), "car"), ((0, 0, 255), "road")], 50)
    assert panel.shape[0] > 2 * 7 and (panel == [255, 0, 0]).all(-1).any()
    assert (panel == 0).all(-1).sum() > 20  # ink


def test_predict_dense(tmp_path, dense_weights, capsys):
    model, weights = dense_weights
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 56, 3)).astype("uint8")
    grey = rng.integers(0, 256, (33, 45, 1)).astype("uint8")
    a = _write(str(tmp_path / "street.png"), rgb)
    b = _write(str(tmp_path / "grey.png"), grey)
    out = str(tmp_path / "out")
    assert main(["predict", "--model", "resnet18", "--weights", weights, "--classes", "3", "--mode", "dense",
                 a, b, "--out", out]) == 0
    captured = capsys.readouterr()
    assert "greyscale converted" in captured.err and "2/2" in captured.err
    for stem, image in (("street", rgb), ("grey", np.repeat(grey, 3, -1))):
        ids_rgb = _decode(os.path.join(out, f"{stem}.png"))
        assert ids_rgb.shape[:2] == image.shape[:2]
        # the reference: preprocessing outside, the bare model
        spec = preprocessing_for("resnet18", weights)
        want = np.asarray(model(preprocess(image[None], spec)))[0].argmax(-1)
        agree = (ids_rgb == palette(3)[want]).all(-1).mean()
        assert agree > 0.999
        overlay = _decode(os.path.join(out, f"{stem}_overlay.png"))
        assert overlay.shape[0] > image.shape[0] and overlay.shape[1] >= image.shape[1]  # legend below


@pytest.mark.slow
def test_predict_classify_prints_index_names_for_an_unpublished_file(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("resnet18", mode="classify")
    weights = str(tmp_path / "r18.weights.h5")
    model.save_weights(weights)
    # at the classifier's 224x224 the CLI's resize is the identity
    img = np.random.default_rng(3).integers(0, 256, (224, 224, 3)).astype("uint8")
    path = _write(str(tmp_path / "dog.png"), img)
    assert main(["predict", "--model", "resnet18", "--weights", weights, "--mode", "classify", path]) == 0
    out = capsys.readouterr().out
    probs = np.asarray(model(preprocess(img[None], preprocessing_for("resnet18", weights))))[0]
    lines = [ln for ln in out.splitlines() if ln.strip()[:2] in {f"{k}." for k in range(1, 6)}]
    assert len(lines) == 5
    best = int(np.argmax(probs))
    # A file that is not a published one gets no guessed label set (its 1000
    # classes need not be ImageNet's): index names only.
    assert f"1. class_{best} ({best})" in lines[0]
    assert not any(name in out for name in load_labels("imagenet")[:1000:50])


@pytest.mark.slow
def test_predict_heatmap(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("resnet18", mode="heatmap", classes=4)
    weights = str(tmp_path / "r18h.weights.h5")
    model.save_weights(weights)
    img = np.random.default_rng(4).integers(0, 256, (240, 260, 4)).astype("uint8")  # RGBA
    path = _write(str(tmp_path / "cat.png"), img)
    out = str(tmp_path / "out")
    assert main(["predict", "--model", "resnet18", "--weights", weights, "--classes", "4", "--mode", "heatmap",
                 path, "--out", out, "--top-maps", "2"]) == 0
    captured = capsys.readouterr()
    assert "alpha channel dropped" in captured.err
    assert "class_" in captured.out  # 4 classes: no published label set of that size
    heat = _decode(os.path.join(out, "cat_heatmap.png"))
    assert heat.shape[1] == 2 * 260 and heat.shape[0] > 240


def test_predict_errors(tmp_path, capsys):
    assert main(["predict", "--model", "resnet18", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    assert "missing.png" in capsys.readouterr().err
    img = _write(str(tmp_path / "x.png"), np.zeros((8, 8, 3), "uint8"))
    assert main(["predict", "--model", "resnet18", img]) == 2
    assert "--out" in capsys.readouterr().err


def test_predict_and_export_model_kwargs_clashes_are_one_line_errors(tmp_path, capsys):
    img = _write(str(tmp_path / "x.png"), np.zeros((8, 8, 3), "uint8"))
    for argv in (["predict", "--model", "resnet18", img, "--out", str(tmp_path), "--classes", "3",
                  "--model-kwargs", "classes=4"],
                 ["predict", "--model", "resnet18", img, "--out", str(tmp_path),
                  "--model-kwargs", "include_preprocessing=False"],
                 ["export", "--model", "resnet18", "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                  "--model-kwargs", "no_such_option=1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "classes" in err or "include_preprocessing" in err or "no_such_option" in err
