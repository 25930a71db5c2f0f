"""Exported artifacts run in their own runtimes (tf.saved_model, the LiteRT
Interpreter, onnxruntime) and match the Keras model to <= 1e-4 relative."""

import keras
import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.apps.export import FORMATS, export_model, input_spec, load_artifact, with_preprocessing
from zoo.preprocessing import Preprocess, preprocessing_for

PATHS = {"savedmodel": "artifact", "tflite": "model.tflite", "onnx": "model.onnx"}
RTOL = 1e-4


def _runtime_available(fmt):
    mods = {"savedmodel": ["tensorflow"], "tflite": ["ai_edge_litert"], "onnx": ["onnxruntime", "tf2onnx"]}[fmt]
    for mod in mods:
        pytest.importorskip(mod)


def _rel_err(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


@pytest.fixture(scope="module")
def small_model():
    """Preprocess (uint8 in) -> dilated conv -> BN -> transposed conv: a dense
    model with the zoo's custom first layer, light enough for the default suite."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3), dtype="uint8")
    x = Preprocess(preprocessing_for("drn_d_22", "cityscapes"))(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same", name="up")(x)
    model = keras.Model(inp, x)
    bn = model.get_layer("bn")
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape).astype("float32")
                    for w in bn.get_weights()])
    return model


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_small_model_artifact_matches_keras_at_two_sizes(tmp_path, small_model, fmt):
    _runtime_available(fmt)
    path = export_model(small_model, str(tmp_path / PATHS[fmt]), fmt)
    run = load_artifact(path, fmt)
    rng = np.random.default_rng(2)
    for shape in ((1, 24, 40, 3), (2, 33, 17, 3)):  # dynamic H/W (and batch)
        x = rng.integers(0, 256, shape).astype("uint8")
        want = np.asarray(small_model(x))
        got = run(x)
        assert got.shape == want.shape
        assert _rel_err(got, want) <= RTOL


def test_size_fixes_the_signature(small_model):
    spec = input_spec(small_model, (64, 80))[0]
    assert spec.shape == (None, 64, 80, 3) and spec.dtype == "uint8"
    assert input_spec(small_model)[0].shape == (None, None, None, 3)


def test_unknown_format_is_a_clean_cli_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", "resnet18", "--format", "caffe", "--out", "x"])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="valid choices"):
        export_model(None, "x", "caffe")


@pytest.mark.slow
def test_cli_export_savedmodel_with_preprocessing(tmp_path, capsys):
    """`zoo export` of a zoo model: the artifact takes uint8 pixels and equals
    the Keras model on preprocess(x)."""
    keras.utils.set_random_seed(0)
    model = zoo.create_model("resnet18", mode="dense", classes=3)
    weights = str(tmp_path / "r18.weights.h5")
    model.save_weights(weights)
    out = str(tmp_path / "sm")
    assert main(["export", "--model", "resnet18", "--weights", weights, "--mode", "dense", "--classes", "3",
                 "--format", "savedmodel", "--out", out, "--include-preprocessing"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(3).integers(0, 256, (1, 48, 64, 3)).astype("uint8")
    from zoo.preprocessing import preprocess

    want = np.asarray(model(preprocess(x, preprocessing_for("resnet18", weights))))
    got = load_artifact(out, "savedmodel")(x)
    assert _rel_err(got, want) <= RTOL


# --- zoo models in every format (slow: each conversion takes 10-60 s) ---

@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name,kwargs,size", [
    ("resnet18", dict(mode="dense", classes=5), (64, 96)),
    ("drn_d_22", dict(mode="dense", classes=19), (64, 96)),
    ("resnet18", dict(mode="classify", classes=10, input_shape=(64, 64, 3)), (64, 64)),
])
def test_zoo_model_artifacts(tmp_path, fmt, name, kwargs, size):
    _runtime_available(fmt)
    keras.utils.set_random_seed(0)
    model = with_preprocessing(zoo.create_model(name, **kwargs), preprocessing_for(name, None))
    run = load_artifact(export_model(model, str(tmp_path / PATHS[fmt]), fmt), fmt)
    x = np.random.default_rng(4).integers(0, 256, (1, *size, 3)).astype("uint8")
    want = np.asarray(model(x))
    assert _rel_err(run(x), want) <= RTOL


@pytest.mark.slow
def test_cli_export_fixed_size_tflite(tmp_path):
    _runtime_available("tflite")
    out = str(tmp_path / "m.tflite")
    assert main(["export", "--model", "drn_d_22", "--mode", "dense", "--classes", "4", "--size", "64", "96",
                 "--format", "tflite", "--out", out]) == 0
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=out).get_input_details()[0]
    assert list(detail["shape_signature"][1:]) == [64, 96, 3]
