"""One residual-block module serves ResNet and DRN: guards against the two
families drifting apart again."""

import keras
import numpy as np
import pytest

import zoo
from tests.support.helpers import randomize
from zoo.models import drn, residual, resnet


def _weighted(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights]
            for layer in model.layers if layer.weights}


def _dilations(model):
    return {layer.name: layer.dilation_rate[0] for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)}


def test_families_hold_no_block_copies():
    for module in (resnet, drn):
        for name in ("Layout", "LAYOUTS", "conv_bn", "basic_block", "bottleneck_block", "BLOCKS"):
            assert getattr(module, name, None) in (None, getattr(residual, name)), (module.__name__, name)


def test_drn_a_18_at_stride_32_is_the_torchvision_resnet18():
    net = zoo.create_model("resnet18", mode="features", output_stride=32)
    dn = zoo.create_model("drn_a_18", mode="features", output_stride=32)
    assert _weighted(dn) == _weighted(net)
    # (Their model.layers orders differ by design: Layout.torch_graph.)
    randomize(net)
    for layer in dn.layers:
        if layer.weights:
            layer.set_weights(net.get_layer(layer.name).get_weights())
    x = np.random.default_rng(1).normal(size=(2, 64, 80, 3)).astype("float32")
    want, got = net.predict_on_batch(x), dn.predict_on_batch(x)
    # ResNet's pyramid also has the stem (P1); DRN's starts at layer1.
    assert set(want) - set(got) == {"P1"} and set(got) == {"P2", "P3", "P4", "P5"}
    for key in got:
        # Same convolutions, BNs and ReLUs; only the add's operand order differs.
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=key)


def test_drn_a_dilation_plan_is_resnets_with_every_first_block_undilated():
    net = resnet.ResNet18(mode="features", output_stride=8)
    dn = drn.DRN_A_18(mode="features", output_stride=8)
    assert _weighted(dn) == _weighted(net)
    want, got = _dilations(net), _dilations(dn)
    assert set(got) == set(want)
    differ = {name: (want[name], got[name]) for name in got if got[name] != want[name]}
    # torchvision keeps the previous dilation then the stage's; fyu/drn's
    # DRN_A gives each stage's first block dilation (1, 1).
    assert differ == {"layer3_0_conv2": (2, 1), "layer4_0_conv1": (2, 1), "layer4_0_conv2": (4, 1)}
    assert got["layer4_1_conv1"] == got["layer4_1_conv2"] == 4
    assert drn.drn_a_plan(8) == [(1, (1, 1), 1), (2, (1, 1), 1), (1, (1, 1), 2), (1, (1, 1), 4)]
    assert resnet.stage_plan(8) == [(1, (1, 1), 1), (2, (1, 1), 1), (1, (1, 2), 2), (1, (2, 4), 4)]


@pytest.mark.parametrize("name,kwargs,epsilon,momentum", [
    # keras.applications: BatchNormalization(epsilon=1.001e-5), default momentum 0.99.
    ("resnet50", {}, 1.001e-5, 0.99),
    # torchvision / fyu: nn.BatchNorm2d(eps=1e-5, momentum=0.1), Keras's 0.9.
    ("resnet18", {}, 1e-5, 0.9),
    ("drn_a_18", {}, 1e-5, 0.9),
    ("drn_c_26", {}, 1e-5, 0.9),
])
def test_batchnorm_numerics_per_layout(name, kwargs, epsilon, momentum):
    model = zoo.create_model(name, mode="features", **kwargs)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns
    assert {(l.epsilon, l.momentum) for l in bns} == {(epsilon, momentum)}


def test_layout_data_is_upstreams():
    keras_, tv, dl = residual.LAYOUTS["keras"], residual.LAYOUTS["torchvision"], residual.DRN_LAYOUT
    assert (keras_.epsilon, keras_.momentum, keras_.use_bias, keras_.stride_in_1x1) == (
        1.001e-5, 0.99, True, True)
    assert (tv.epsilon, tv.momentum, tv.use_bias, tv.stride_in_1x1) == (1e-5, 0.9, False, False)
    # DRN: torchvision's names, its own (equal) numerics, torch's graph order.
    assert (dl.epsilon, dl.momentum, dl.use_bias, dl.stride_in_1x1) == (1e-5, 0.9, False, False)
    assert (dl.block, dl.conv, dl.bn, dl.shortcut) == (tv.block, tv.conv, tv.bn, tv.shortcut)


def _block_model(fn, filters, stride, residual_flag, channels=8):
    inp = keras.Input((9, 9, channels))
    out = fn(inp, filters, stride, (1, 1), residual.DRN_LAYOUT, "b", residual=residual_flag)
    return keras.Model(inp, out)


def test_basic_block_without_residual_is_a_plain_stack():
    model = _block_model(residual.basic_block, 16, 1, False)
    names = [l.name for l in model.layers]
    assert "b_add" not in names and not any("downsample" in n for n in names)
    randomize(model)
    x = np.random.default_rng(2).normal(size=(1, 9, 9, 8)).astype("float32")
    y = model.get_layer("b_bn1")(model.get_layer("b_conv1")(x))
    y = model.get_layer("b_bn2")(model.get_layer("b_conv2")(np.maximum(y, 0)))
    np.testing.assert_allclose(model.predict_on_batch(x), np.maximum(y, 0), rtol=0, atol=1e-5)


def test_bottleneck_block_ignores_residual_false_as_fyu_drn():
    # fyu/drn's Bottleneck always adds its shortcut (drn_c_58's layer7).
    names = [l.name for l in _block_model(residual.bottleneck_block, 4, 1, False).layers]
    assert {"b_add", "b_downsample_0", "b_downsample_1"} <= set(names)
