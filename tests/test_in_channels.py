"""Pretrained RGB weights into models with N input channels: the first conv
follows timm's ``adapt_input_conv`` rule, and nothing else is adapted."""

import keras
import numpy as np
import pytest
import torch

import zoo
from tests.support import resnet_torch_ref as tref
from tests.support.helpers import save_torch
from zoo import weights as zw
from zoo.weights.convert import adapt_input_kernel, input_fed_layers
from zoo.weights.readers.errors import CheckpointError

H, W = 48, 56


def _build(builder, channels, weights=None, **kw):
    return builder(weights=weights, input_shape=(H, W, 3), in_channels=channels, **kw)


@pytest.fixture(scope="module")
def rgb_model(resnet18_file):
    return _build(zoo.ResNet18, 3, resnet18_file[0], classifier_activation=None)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    net = tref.randomize(tref.build("resnet18"), seed=11)
    path = tmp_path_factory.mktemp("in_ch") / "r18.pth"
    save_torch(net.state_dict(), path)
    # Keras layout (kh, kw, in, out) of the stem, to check the rule against.
    rgb = net.conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    return str(path), rgb


def test_rule_one_channel_sums_rgb():
    k = np.random.default_rng(0).standard_normal((7, 7, 3, 8)).astype("float32")
    out = adapt_input_kernel(k, 1)
    assert out.shape == (7, 7, 1, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], k[:, :, 0] + k[:, :, 1] + k[:, :, 2], rtol=1e-6)


@pytest.mark.parametrize("n,order", [(2, [0, 1]), (4, [0, 1, 2, 0]), (5, [0, 1, 2, 0, 1]), (6, [0, 1, 2] * 2)])
def test_rule_repeats_rgb_cyclically_and_scales_by_3_over_n(n, order):
    k = np.random.default_rng(n).standard_normal((3, 3, 3, 4)).astype("float32")
    out = adapt_input_kernel(k, n)
    assert out.shape == (3, 3, n, 4)
    np.testing.assert_allclose(out, k[:, :, order] * (3.0 / n), rtol=1e-6)


@pytest.mark.parametrize("n", [1, 4, 5])
def test_loaded_stem_follows_the_rule_and_the_rest_is_unchanged(resnet18_file, rgb_model, n):
    path, rgb = resnet18_file
    ref = rgb_model
    model = _build(zoo.ResNet18, n, path)
    assert model.input_shape[-1] == n
    np.testing.assert_allclose(model.get_layer("conv1").get_weights()[0], adapt_input_kernel(rgb, n), rtol=1e-6)
    if n == 1:
        np.testing.assert_allclose(model.get_layer("conv1").get_weights()[0][:, :, 0], rgb.sum(axis=2), rtol=1e-5)
    for layer in model.layers:
        if layer.weights and layer.name != "conv1":
            for a, b in zip(layer.get_weights(), ref.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_grey_model_equals_rgb_model_on_repeated_grey(resnet18_file, rgb_model):
    path, _ = resnet18_file
    grey_model = _build(zoo.ResNet18, 1, path, classifier_activation=None)
    grey = np.random.default_rng(2).standard_normal((2, H, W, 1)).astype("float32")
    want = rgb_model.predict_on_batch(np.repeat(grey, 3, axis=-1))
    got = grey_model.predict_on_batch(grey)
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_keras_h5_first_conv_is_adapted_too(vgg16_notop):
    _, notop = vgg16_notop
    ref = zoo.VGG16(weights=notop, mode="features", input_shape=(H, W, 3))
    model = zoo.VGG16(weights=notop, mode="features", input_shape=(H, W, 3), in_channels=4)
    assert model.input_shape[-1] == 4
    k = ref.get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_allclose(model.get_layer("block1_conv1").get_weights()[0],
                               k[:, :, [0, 1, 2, 0]] * 0.75, rtol=1e-6)


def test_a_deeper_conv_is_never_adapted(resnet18_file, tmp_path):
    path, _ = resnet18_file
    state = torch.load(path)
    # layer1.0.conv1 with 3 input channels instead of 64: still an error.
    state["layer1.0.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    save_torch(state, bad)
    model = _build(zoo.ResNet18, 3)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(CheckpointError, match=r"layer1_0_conv1.*\(3, 3, 3, 64\).*\(3, 3, 64, 64\)"):
        zw.load_weights(model, str(bad), "resnet18")
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_stem_found_through_weightless_layers():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.ZeroPadding2D(1)(x)
    first = keras.layers.Conv2D(4, 3, name="stem")(x)
    y = keras.layers.Conv2D(4, 1, name="second")(first)
    side = keras.layers.Conv2D(4, 1, name="side")(inputs)
    model = keras.Model(inputs, keras.layers.Add()([y, side]))
    assert input_fed_layers(model) == {"stem", "side"}
