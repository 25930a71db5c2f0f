"""Issue 19's application items: in_channels (8), portable ONNX artifacts of
dilated models (9), predict never overwrites inputs or its own outputs (11),
the image pixel limit (13), and the one-line errors of predict/export/heatmap."""

import os
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.apps.imaging import ENV, image_size, read_image
from zoo.apps.predictor import Predictor, model_min_size
from zoo.cli import main
from zoo.cli.render import read_rgb


def _write(path, array):
    tf.io.write_file(str(path), tf.io.encode_png(np.asarray(array, "uint8")))
    return str(path)


def _one_line_error(capsys, *names):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err and "\x1b[" not in err, err
    for name in names:
        assert name in lines[-1], (name, lines[-1])
    return lines[-1]


def _bomb_png(path, side=12000):
    """A small PNG whose IHDR declares side x side grey pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * side
    idat = zlib.compress(row * 64, 9)  # a few rows: the header is what counts
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return str(path)


# --- 8: in_channels ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_in_channels_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        zoo.create_model("test_resnet", mode="dense", classes=3, in_channels=bad)


@pytest.mark.parametrize("n", [1, 4])
def test_in_channels_with_rgb_preprocessing_is_refused_at_build(n):
    with pytest.raises(ValueError, match=f"in_channels={n}"):
        zoo.create_model("test_resnet", mode="dense", classes=3, in_channels=n, include_preprocessing=True)


def test_predictor_follows_the_model_channels():
    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_resnet", mode="dense", classes=3, in_channels=1)
    image = np.random.default_rng(0).uniform(-1, 1, (40, 44, 1)).astype("float32")
    got = Predictor(model).predict(image)
    want = np.asarray(model(image[None], training=False))[0]
    assert got.shape == (40, 44, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    tiled = Predictor(model, tile=32).predict(image)
    assert tiled.shape == (40, 44, 3)
    with pytest.raises(ValueError, match="1 channels"):
        Predictor(model).predict(np.zeros((40, 44, 3), "float32"))


def test_read_image_converts_to_the_model_channels(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3)).astype("uint8")
    path = _write(tmp_path / "c.png", rgb)
    grey, note = read_image(path, 1)
    assert grey.shape == (9, 11, 1) and "greyscale" in note
    want = np.round(rgb.astype("float32") @ np.array([0.299, 0.587, 0.114], "float32"))
    np.testing.assert_array_equal(grey[..., 0], want.astype("uint8"))
    with pytest.raises(ValueError, match="4-channel"):
        read_image(path, 4)
    rgba = np.concatenate([rgb, np.full((9, 11, 1), 7, "uint8")], -1)
    img, note = read_image(_write(tmp_path / "a.png", rgba), 4)
    np.testing.assert_array_equal(img, rgba)


# --- 9: ONNX artifacts of dilated models at every size --------------------------------

@pytest.mark.parametrize("name", ["test_drn_d", "test_resnet"])
def test_onnx_dilated_models_run_at_odd_sizes(tmp_path, name):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from zoo.apps.export import export_model, load_artifact
    from zoo.layers import DilatedConv2D

    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, mode="dense", classes=3)
    assert any(isinstance(layer, DilatedConv2D) and max(layer.dilation_rate) > 1 for layer in model.layers)
    low = model_min_size(model) or 1
    run = load_artifact(export_model(model, str(tmp_path / "m.onnx"), "onnx"), "onnx")
    assert DilatedConv2D.force_schedule is None  # export restores the layers' own schedule
    rng = np.random.default_rng(0)
    for h, w in [(97, 131), (72, 80), (max(low, 9), max(low, 9) + 1)]:
        x = rng.uniform(-1, 1, (1, h, w, 3)).astype("float32")
        want = np.asarray(model(x, training=False))
        got = run(x)
        assert got.shape == want.shape, (h, w)
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{h}x{w}")


# --- 11: outputs never overwrite inputs, never collide --------------------------------

def test_predict_refuses_to_write_over_its_input(tmp_path, capsys):
    img = np.random.default_rng(2).integers(0, 256, (40, 40, 3)).astype("uint8")
    frame = _write(tmp_path / "frame.png", img)
    before = open(frame, "rb").read()
    assert main(["predict", "--model", "test_resnet", "--mode", "dense", frame, "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "frame.png", "overwrite")
    assert open(frame, "rb").read() == before


def test_predict_refuses_colliding_outputs(tmp_path, capsys):
    img = np.zeros((40, 40, 3), "uint8")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _write(tmp_path / "a" / "x.png", img)
    b = str(tmp_path / "b" / "x.jpg")
    tf.io.write_file(b, tf.io.encode_jpeg(img))
    out = tmp_path / "out"
    assert main(["predict", "--model", "test_resnet", "--mode", "dense", a, b, "--out", str(out)]) == 2
    _one_line_error(capsys, a, b)
    assert not out.exists()
    # an input named like another's overlay output collides too
    c = _write(tmp_path / "x_overlay.png", img)
    assert main(["predict", "--model", "test_resnet", "--mode", "dense", a, c, "--out", str(out)]) == 2
    _one_line_error(capsys, "x_overlay.png")


# --- 13: the pixel limit ----------------------------------------------------------------

def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, capsys):
    bomb = _bomb_png(tmp_path / "bomb.png")
    assert os.path.getsize(bomb) < 200_000
    with pytest.raises(ValueError, match="12000x12000.*limit"):
        read_rgb(bomb)
    with pytest.raises(ValueError, match="limit"):
        read_image(bomb, 1)
    out = str(tmp_path / "out")
    assert main(["predict", "--model", "test_resnet", "--mode", "dense", bomb, "--out", out]) == 2
    _one_line_error(capsys, "bomb.png", "12000x12000", ENV)
    assert main(["heatmap", bomb, "--model", "test_resnet", "--out", out + ".png"]) == 2
    _one_line_error(capsys, "bomb.png", "12000x12000")


def test_beyond_pillows_own_guard_the_limit_still_decides(tmp_path, monkeypatch):
    bomb = _bomb_png(tmp_path / "huge.png", side=20000)  # 400 Mpx: over twice Pillow's limit
    with pytest.raises(ValueError, match="huge.png.*limit"):
        image_size(bomb)
    monkeypatch.setenv(ENV, "0")
    assert image_size(bomb) == (20000, 20000)  # the header only: nothing decoded
    monkeypatch.setenv(ENV, str(10 ** 9))
    assert image_size(bomb) == (20000, 20000)
    with pytest.raises(ValueError, match="huge.png.*limit"):
        image_size(bomb, max_pixels=10 ** 6)


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = _write(tmp_path / "small.png", np.zeros((20, 30, 3), "uint8"))
    assert image_size(path) == (20, 30)
    monkeypatch.setenv(ENV, "100")
    with pytest.raises(ValueError, match="100-pixel limit"):
        read_rgb(path)
    assert read_rgb(path, max_pixels=600)[0].shape == (20, 30, 3)
    monkeypatch.setenv(ENV, "0")
    assert read_rgb(path)[0].shape == (20, 30, 3)
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ValueError, match=ENV):
        read_rgb(path)


# --- clear errors ------------------------------------------------------------------------

@pytest.fixture
def small_image(tmp_path):
    (tmp_path / "in").mkdir()
    return _write(tmp_path / "in" / "img.png", np.zeros((40, 40, 3), "uint8"))


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_predict_scales_must_be_finite_and_positive(tmp_path, small_image, capsys, value):
    argv = ["predict", "--model", "test_resnet", "--mode", "dense", small_image, "--out", str(tmp_path / "o"),
            "--scales", "1", value]
    assert main(argv) == 2
    _one_line_error(capsys, "--scales")


def test_predict_top_maps_zero(tmp_path, small_image, capsys):
    argv = ["predict", "--model", "test_resnet", "--mode", "heatmap", small_image, "--out", str(tmp_path / "o"),
            "--top-maps", "0"]
    assert main(argv) == 2
    _one_line_error(capsys, "--top-maps")


def test_predict_below_the_minimum_is_one_line(tmp_path, capsys):
    model = zoo.create_model("test_vgg", mode="dense", classes=3)
    low = model_min_size(model)
    assert low and low > 2
    tiny = _write(tmp_path / "tiny.png", np.zeros((low - 1, low + 5, 3), "uint8"))
    assert main(["predict", "--model", "test_vgg", "--mode", "dense", "--classes", "3", tiny,
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "tiny.png", "minimum")
    big = _write(tmp_path / "big.png", np.zeros((low + 8, low + 8, 3), "uint8"))
    assert main(["predict", "--model", "test_vgg", "--mode", "dense", "--classes", "3", big,
                 "--scales", "0.05", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "big.png", "minimum", "scale")


def test_heatmap_below_the_minimum_is_one_line(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_resnet", mode="heatmap", classes=3)
    weights = str(tmp_path / "h.weights.h5")
    model.save_weights(weights)
    low = model_min_size(model)
    tiny = _write(tmp_path / "tiny.png", np.zeros((low - 1, low - 1, 3), "uint8"))
    assert main(["heatmap", tiny, "--model", "test_resnet", "--weights", weights, "--classes", "3",
                 "--out", str(tmp_path / "h.png")]) == 2
    _one_line_error(capsys, "tiny.png", "minimum")
    assert not (tmp_path / "h.png").exists()


def test_export_size_zero(tmp_path, capsys):
    assert main(["export", "--model", "test_resnet", "--format", "savedmodel", "--size", "0", "0",
                 "--out", str(tmp_path / "sm")]) == 2
    _one_line_error(capsys, "--size")


def test_export_never_writes_over_an_existing_savedmodel(tmp_path, capsys):
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"mine")
    assert main(["export", "--model", "test_resnet", "--format", "savedmodel", "--out", str(sm)]) == 2
    _one_line_error(capsys, str(sm), "SavedModel")
    assert (sm / "saved_model.pb").read_bytes() == b"mine"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"mine")
    assert main(["export", "--model", "test_resnet", "--format", "onnx", "--out", str(onnx)]) == 2
    _one_line_error(capsys, "m.onnx")
    assert onnx.read_bytes() == b"mine"


def test_folder_data_refuses_a_bomb_image_or_mask_before_decoding(tmp_path, monkeypatch):
    from tests.support.helpers import write_png
    from zoo.training import data

    for kind in ("images", "masks"):
        root = tmp_path / kind
        write_png(str(root / "images" / "a.png"), np.zeros((8, 6, 3), "uint8"))
        write_png(str(root / "masks" / "a.png"), np.zeros((8, 6), "uint8"))
        _bomb_png(root / kind / "a.png")
        with pytest.raises(ValueError, match=r"a\.png.*12000x12000.*limit"):
            data.read_mask(str(root / "masks" / "a.png"), str(root / "images" / "a.png"))
    monkeypatch.setenv(ENV, "0")  # lifted: the image's header is read, sizes then differ
    with pytest.raises(ValueError, match="masks are not resized"):
        data.read_mask(str(tmp_path / "images" / "masks" / "a.png"),
                       str(tmp_path / "images" / "images" / "a.png"))
