"""zoo.Predictor: exact identities with the model's own output, shapes, the
tile grid and the no-retrace compiled path."""

import keras
import numpy as np
import pytest

import zoo
from tests.cases import FAMILY, LIGHT_RESNET, PARITY_SIZE, min_side
from tests.support.helpers import normal
from zoo.apps.predictor import Predictor
from zoo.preprocessing import Preprocess


@pytest.fixture(scope="module")
def dense():
    """A small dense model (output at the input size, 9-px receptive field):
    the Predictor only sees a model's input/output contract, and a small one
    keeps these tests fast. A zoo model is checked in test_zoo_dense_model."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu")(inp)
    x = keras.layers.Conv2D(5, 3, padding="same")(x)
    return keras.Model(inp, x)


@pytest.fixture(scope="module")
def heatmap():
    """A small heatmap-like model: one score per 16-px window, stride 8."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(16, strides=8)(x)
    return keras.Model(inp, keras.layers.Conv2D(4, 1)(x))


def _model(m, x):
    return np.asarray(m(x, training=False))


def assert_identity(got, want):
    """Identities hold exactly in arithmetic; the compiled graph may fuse a
    float op differently from eager (seen: 1 ulp), hence 1e-6 and not 0."""
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_defaults_equal_model(dense):
    x = normal((2, 64, 96, 3))
    got = Predictor(dense).predict(x)
    assert_identity(got, _model(dense, x))


def test_flip_equals_mean_of_model_and_mirrored(dense):
    x = normal((1, 48, 80, 3), seed=1)
    got = Predictor(dense, flip=True).predict(x)
    want = (_model(dense, x) + _model(dense, x[:, :, ::-1])[:, :, ::-1]) / 2
    assert_identity(got, want)
    # and the flip changes something: the test above is not vacuous
    assert np.abs(want - _model(dense, x)).max() > 1e-3


@pytest.mark.parametrize("tile", [96, 200, (64, 96)])
def test_tile_at_least_image_equals_model(dense, tile):
    x = normal((1, 64, 96, 3), seed=2)
    assert_identity(Predictor(dense, tile=tile).predict(x), _model(dense, x))


def test_tiles_against_manual_slide(dense):
    """mmsegmentation's slide grid, recomputed by hand: 96x128 in 64-px tiles,
    stride 32 -> rows start 0, 32; columns 0, 32, 64."""
    x = normal((1, 96, 128, 3), seed=3)
    p = Predictor(dense, tile=64, overlap=0.5, batch_size=4)
    got = p.predict(x)
    assert p.num_tiles(96, 128) == 6
    total = np.zeros((96, 128, 5), "float32")
    count = np.zeros((96, 128, 1), "float32")
    for y in (0, 32):
        for x0 in (0, 32, 64):
            total[y:y + 64, x0:x0 + 64] += _model(dense, x[:, y:y + 64, x0:x0 + 64])[0]
            count[y:y + 64, x0:x0 + 64] += 1
    np.testing.assert_allclose(got[0], total / count, rtol=1e-5, atol=1e-5)
    # tiles differ from the whole image (their borders see zero padding)
    assert np.abs(got - _model(dense, x)).max() > 1e-4


def test_tile_shapes_and_padding(dense):
    # 50 rows < tile 64: padded at the bottom; 150 columns > tile: several tiles.
    p = Predictor(dense, tile=64, batch_size=2)
    out = p.predict(normal((50, 150, 3), seed=4))
    assert out.shape == (50, 150, 5) and np.isfinite(out).all()
    # stride int(64 * 2/3) = 42: columns start 0, 42, 84 and 86 (moved back to end at 150)
    assert p.num_tiles(50, 150) == 4
    assert p.labels(normal((50, 150, 3), seed=4)).shape == (50, 150)


def test_multiscale_flip_odd_sizes(dense):
    p = Predictor(dense, scales=(0.5, 0.75, 1.25), flip=True)
    images = [normal((37, 53, 3), seed=5), normal((61, 45, 3), seed=6)]
    outs = p.predict(images)
    assert [o.shape for o in outs] == [(37, 53, 5), (61, 45, 5)]
    labels = p.labels(images)
    assert [lab.shape for lab in labels] == [(37, 53), (61, 45)]
    np.testing.assert_array_equal(labels[0], outs[0].argmax(-1))


def test_scale_is_resize_run_resize_back(dense):
    x = normal((1, 40, 56, 3), seed=7)
    got = Predictor(dense, scales=(0.5,)).predict(x)
    small = keras.ops.image.resize(x, (20, 28), interpolation="bilinear")
    want = keras.ops.image.resize(dense(small), (40, 56), interpolation="bilinear")
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_no_retrace_over_image_sizes_with_tiles(dense):
    p = Predictor(dense, tile=64, overlap=1 / 3, batch_size=2)
    for h, w in ((70, 90), (100, 65), (129, 131), (66, 200)):
        assert p.predict(normal((h, w, 3), seed=h)).shape == (h, w, 5)
    assert p.traces == 1


def test_whole_image_path_traces_once(dense):
    p = Predictor(dense)
    for h, w in ((32, 32), (40, 72), (64, 48)):
        p.predict(normal((1, h, w, 3), seed=w))
    assert p.traces == 1


def test_heatmap_logits_resized_to_input(heatmap):
    """Heatmap models: logits at the heatmap resolution, resized (bilinear)
    to the input size."""
    x = normal((1, 56, 72, 3), seed=8)
    got = Predictor(heatmap).predict(x)
    raw = _model(heatmap, x)
    assert raw.shape[1:3] == (6, 8)
    want = keras.ops.image.resize(raw, (56, 72), interpolation="bilinear")
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)
    # tiles: each tile's map is resized to the tile before averaging
    p = Predictor(heatmap, tile=(56, 48), overlap=0.5)
    tiled = p.predict(x)
    left = keras.ops.image.resize(heatmap(x[:, :, :48]), (56, 48), interpolation="bilinear")
    right = keras.ops.image.resize(heatmap(x[:, :, 24:]), (56, 48), interpolation="bilinear")
    want = np.zeros((56, 72, 4), "float32")
    want[:, :48] += np.asarray(left)[0]
    want[:, 24:] += np.asarray(right)[0]
    want[:, 24:48] /= 2
    np.testing.assert_allclose(tiled[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,mode,size", [
    (LIGHT_RESNET, "dense", PARITY_SIZE),
    pytest.param(LIGHT_RESNET, "heatmap", (224, 256), marks=pytest.mark.slow),
])
def test_zoo_model(name, mode, size):
    """A zoo model through the default and flipped paths."""
    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, mode=mode, classes=3)
    x = normal((1, *size, 3), seed=10)
    raw = _model(model, x)
    want = raw if mode == "dense" else np.asarray(keras.ops.image.resize(raw, size, interpolation="bilinear"))
    np.testing.assert_allclose(Predictor(model).predict(x), want, rtol=1e-5, atol=1e-5)


def test_uint8_model_input_gets_rounded_resize():
    inp = keras.Input((None, None, 3), dtype="uint8")
    x = Preprocess({"type": "tf"})(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1, name="score")(x))
    img = np.random.default_rng(9).integers(0, 256, (33, 47, 3)).astype("uint8")
    p = Predictor(model, scales=(1.0, 0.5), flip=True)
    out = p.predict(img)
    assert out.shape == (33, 47, 2)
    assert_identity(Predictor(model).predict(img), _model(model, img[None])[0])


@pytest.mark.parametrize("kwargs,msg", [
    (dict(scales=()), "scales"), (dict(scales=(0,)), "scales"),
    (dict(overlap=1.0), "overlap"), (dict(tile=0), "tile"), (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments(dense, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Predictor(dense, **kwargs)


def test_bad_image_shape(dense):
    with pytest.raises(ValueError, match="images must be"):
        Predictor(dense).predict(np.zeros((4, 4)))


# One model per family and head, dense and heatmap: the Predictor's contract
# holds for every model the zoo builds (slow: each builds a full network).
FAMILY_CASES = [(name, mode) for name in FAMILY for mode in ("dense", "heatmap")
                if mode in zoo.registry.get_entry(name).modes]


@pytest.mark.slow
@pytest.mark.parametrize("name,mode", FAMILY_CASES, ids=[f"{n}-{m}" for n, m in FAMILY_CASES])
def test_every_family(name, mode):
    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, mode=mode, classes=3)
    side = max(min_side(name, mode), 64)
    h, w = side + 3, side + side // 2 + 5  # odd sizes, wider than a tile
    x = normal((1, h, w, 3), seed=11)
    raw = _model(model, x)
    want = raw if raw.shape[1:3] == (h, w) else np.asarray(
        keras.ops.image.resize(raw, (h, w), interpolation="bilinear"))
    np.testing.assert_allclose(Predictor(model).predict(x), want, rtol=1e-5, atol=1e-5)
    p = Predictor(model, tile=side, flip=True, batch_size=2)
    out = p.predict(x)
    assert out.shape == (1, h, w, 3) and np.isfinite(out).all()
    assert p.traces == 1
