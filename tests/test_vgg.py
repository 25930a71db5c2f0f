"""VGG16/19 and FCN: parity with keras.applications and a PyTorch forward,
and the FC-as-conv identity."""

import keras
import numpy as np
import pytest

import zoo
from tests.cases import CLASSIFY_SIZE, PARITY_SIZE, TINY_VGG
from tests.support.helpers import assert_close, images, randomize, save_legacy_h5, save_torch, torch_forward
from zoo.layers import bilinear_kernel

# Deep random VGGs against an independent float32 reference: 1e-4 of the
# largest reference value (no absolute floor).
VGG = {"rtol": 1e-4, "atol": 0.0}


def _images(n, h, w, seed=0):
    return images(n, h, w, seed, preprocess=keras.applications.vgg16.preprocess_input)


@pytest.mark.xdist_group("vgg16_reference")
def test_classify_matches_keras_applications(vgg16_reference):
    ref, top, _ = vgg16_reference
    x = _images(2, *CLASSIFY_SIZE)
    want = np.asarray(ref(x, training=False))  # the model the file was written from
    # Softmax by default, as keras.applications; the logits under it are
    # keras.applications' logits.
    model = zoo.VGG16(weights=top)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    fc2 = np.asarray(keras.Model(model.input, model.get_layer("fc2").output)(x, training=False))
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = fc2 @ kernel + bias
    assert_close(logits, want, **VGG, what="VGG16 logits vs keras.applications")


def test_heatmap_is_classify_at_224_and_the_fc_head_on_every_pool5_window_tiny(tiny_vgg_top):
    """The FC-as-conv identity through a Keras top file (fc1 becomes a 7x7
    conv, fc2 and predictions 1x1) on the tiny VGG; VGG16 itself against
    keras.applications below (slow)."""
    ref, top = tiny_vgg_top
    heatmap = zoo.create_model(TINY_VGG, weights=top, mode="heatmap", classifier_activation=None)
    x = _images(2, *CLASSIFY_SIZE, seed=3)
    heat = np.asarray(heatmap(x, training=False))
    assert heat.shape[:3] == (2, 1, 1)
    assert_close(heat[:, 0, 0], ref(x, training=False), **VGG, what="tiny VGG heatmap at 224")
    x = _images(1, 256, 256, seed=4)
    heat = np.asarray(heatmap(x, training=False))
    assert heat.shape[:3] == (1, 2, 2)
    pool5 = np.asarray(zoo.create_model(TINY_VGG, weights=top, mode="features")(x, training=False)["P5"])
    assert pool5.shape[1:3] == (8, 8)
    _assert_cells_are_the_fc_head_on_windows(heat, pool5, ref, "tiny VGG")


def _assert_cells_are_the_fc_head_on_windows(heat, pool5, ref, what):
    """Each heatmap cell (i, j) equals ``ref``'s fc1, fc2 and predictions
    Dense layers on the flattened 7x7 pool5 window at (i, j)."""
    for i in range(heat.shape[1]):
        for j in range(heat.shape[2]):
            v = pool5[:, i : i + 7, j : j + 7, :].reshape(len(pool5), -1)
            for name in ("fc1", "fc2", "predictions"):
                v = np.asarray(ref.get_layer(name)(v))
            assert_close(heat[:, i, j], v, **VGG, what=f"{what} heatmap cell {i},{j}")


@pytest.mark.slow
def test_heatmap_is_classify_at_224_and_the_fc_head_on_every_pool5_window(vgg16_reference):
    ref, top, _ = vgg16_reference
    heatmap = zoo.VGG16(weights=top, mode="heatmap", classifier_activation=None)
    # At 224 the map is one cell: keras.applications' classifier.
    x = _images(2, *CLASSIFY_SIZE, seed=3)
    heat = np.asarray(heatmap(x, training=False))
    assert heat.shape == (2, 1, 1, 1000)
    assert_close(heat[:, 0, 0], ref(x, training=False), **VGG, what="VGG16 heatmap at 224")
    # Larger: pool5 8x8 -> a 2x2 heatmap whose cells slide in both directions.
    size = 256
    x = _images(1, size, size, seed=4)
    heat = np.asarray(heatmap(x, training=False))
    assert heat.shape == (1, 2, 2, 1000)
    # Independent reference: keras.applications' own conv base and Dense layers.
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    pool5 = np.asarray(base(x, training=False))
    assert pool5.shape == (1, 8, 8, 512)
    _assert_cells_are_the_fc_head_on_windows(heat, pool5, ref, "VGG16")


# zoo.apps.fc_conv_check (`zoo demo heatmap`): builds, saves and reloads a
# 500 MB VGG16 and times both paths; the exact part is the identity
# test_heatmap_cell_is_fc_head_on_pool5_window checks in the default suite.
@pytest.mark.slow
def test_sliding_crops_differ_only_through_padding():
    from zoo.apps import fc_conv_check as demo

    r = demo.compare(size=256, repeat=1)
    assert r["map"] == (2, 2)
    assert r["exact_max_abs_diff"] <= 1e-4 * r["logit_scale"]
    # A lone crop is zero-padded where the big image has neighbours: the
    # difference is real, and it is reported rather than hidden.
    assert r["crops_max_abs_diff"] > 10 * r["exact_max_abs_diff"]
    print(demo.report(r))


def test_heatmap_refuses_small_inputs():
    with pytest.raises(ValueError, match="at least 224"):
        zoo.VGG16(mode="heatmap", input_shape=(200, 200, 3))
    model = zoo.VGG16(mode="heatmap")
    with pytest.raises(ValueError, match="smaller than the 224x224"):
        model(np.zeros((1, 200, 240, 3), "float32"))


def test_features_and_dense_modes(vgg16_notop):
    _, notop = vgg16_notop
    feats = zoo.VGG16(weights=notop, mode="features")
    h, w = PARITY_SIZE
    out = feats(_images(1, h, w), training=False)
    assert list(out) == ["P1", "P2", "P3", "P4", "P5"]
    for i, key in enumerate(sorted(out)):
        stride = 2 ** (i + 1)
        assert out[key].shape[1:3] == (h // stride, w // stride)
    dense = zoo.VGG16(weights=notop, mode="dense", classes=5)
    y = dense(_images(2, 70, 90), training=False)
    assert y.shape == (2, 70, 90, 5)


def test_vgg16_features_match_keras_applications(vgg16_notop):
    ref, path = vgg16_notop
    x = _images(1, *PARITY_SIZE, seed=1)
    ours = zoo.VGG16(weights=path, mode="features")(x, training=False)["P5"]
    assert_close(ours, ref(x, training=False), **VGG, what="VGG16 P5 vs keras.applications")


@pytest.mark.slow
def test_vgg19_matches_keras_applications(tmp_path):
    ref = randomize(keras.applications.VGG19(weights=None, include_top=False), seed=2)
    path = save_legacy_h5(ref, str(tmp_path / "vgg19_notop.h5"))
    x = _images(1, *PARITY_SIZE)
    ours = zoo.VGG19(weights=path, mode="features")(x, training=False)["P5"]
    assert_close(ours, ref(x, training=False), **VGG, what="VGG19 P5 vs keras.applications")


# Odd sizes: the crops after the transposed convolutions must land exactly.
FCN_SIZES = [(37, 53), (101, 75)]  # odd, either side the larger


@pytest.mark.xdist_group("vgg16_reference")
def test_fcn8s_loads_vgg16_imagenet_layout_at_any_size(vgg16_reference):
    ref, top, _ = vgg16_reference
    model = zoo.FCN8s(weights=top, classes=4)
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").get_weights()[0], ref.get_layer("block3_conv2").get_weights()[0]
    )
    fc6 = model.get_layer("fc6").get_weights()[0]
    assert fc6.shape == (7, 7, 512, 4096)
    np.testing.assert_array_equal(fc6.reshape(-1, 4096), ref.get_layer("fc1").get_weights()[0])
    # Score layers start at zero, as in the reference FCN: logits are zero.
    for h, w in FCN_SIZES:
        y = model(_images(1, h, w), training=False)
        assert y.shape == (1, h, w, 4)
        np.testing.assert_allclose(y, 0, atol=1e-6)


# fcn8s's skips include fcn16s's; the shallower heads build in the slow step.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn32s", "fcn16s"])
def test_fcn_output_matches_input_size(name):
    model = zoo.create_model(name, classes=3)
    for h, w in FCN_SIZES:
        y = model(np.zeros((1, h, w, 3), "float32"), training=False)
        assert y.shape == (1, h, w, 3)


def test_bilinear_upsampling_reproduces_a_ramp():
    # A transposed conv with the bilinear kernel upsamples a linear ramp into
    # a linear ramp: away from the borders each output step is 1/stride.
    k = bilinear_kernel(4)
    np.testing.assert_allclose(k[1:3, 1:3], [[0.5625, 0.5625], [0.5625, 0.5625]])
    layer = keras.layers.Conv2DTranspose(
        1, 4, strides=2, use_bias=False, kernel_initializer=zoo.layers.BilinearInitializer()
    )
    ramp = np.tile(np.arange(8, dtype="float32"), (8, 1))[None, ..., None]
    y = np.asarray(layer(ramp))[0, 4:-4, 4:-4, 0]
    np.testing.assert_allclose(np.diff(y, axis=1), 0.5, atol=1e-5)
    np.testing.assert_allclose(np.diff(y, axis=0), 0.0, atol=1e-5)


def _torchvision_vgg(convs=(2, 2, 3, 3, 3), widths=(64, 128, 256, 512, 512), hidden=(4096, 4096),
                     classes=1000):
    """torchvision's VGG layout (features / avgpool / classifier), written
    here, with random He-scaled weights."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    feats, cin = [], 3
    for count, width in zip(convs, widths):
        for _ in range(count):
            feats += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        feats.append(nn.MaxPool2d(2, 2))

    class TorchVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*feats)
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(cin * 49, hidden[0]), nn.ReLU(True), nn.Dropout(),
                nn.Linear(hidden[0], hidden[1]), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden[1], classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    net = TorchVGG().eval()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0, (2.0 / m.weight[0].numel()) ** 0.5)
            nn.init.normal_(m.bias, 0, 0.1)
    return net


def test_torchvision_pth_matches_a_torch_forward_tiny(tmp_path):
    """torchvision's layout (features.N -> blockB_convC, classifier.0/3/6,
    fc1's (C, H, W) flatten) on the tiny test config: the name table and the
    flatten follow the config's widths, so the full-size VGG16 (slow, below)
    adds only size."""
    from tests.tiny_models import TINY

    config = TINY[TINY_VGG][2]
    net = _torchvision_vgg(config["config"], config["widths"], config["hidden"], classes=10)
    path = save_torch(net.state_dict(), str(tmp_path / "tiny_vgg.pth"))
    x = images(1, *CLASSIFY_SIZE, seed=5)
    want = torch_forward(net, x)
    got = zoo.create_model(TINY_VGG, weights=path, classes=10, classifier_activation=None)(x, training=False)
    assert_close(got, want, **VGG, what="tiny VGG classify vs torch")
    heat = zoo.create_model(TINY_VGG, weights=path, mode="heatmap", classes=10, classifier_activation=None)
    assert_close(np.asarray(heat(x, training=False))[:, 0, 0], want, **VGG, what="tiny VGG heatmap vs torch")


@pytest.mark.slow
def test_torchvision_pth_matches_a_torch_forward(tmp_path):
    net = _torchvision_vgg()
    path = save_torch(net.state_dict(), str(tmp_path / "vgg16-torchvision.pth"))
    x = images(1, *CLASSIFY_SIZE, seed=5)
    want = torch_forward(net, x)
    # fc1's Linear reads a (C, H, W) flatten; Keras's Dense a (H, W, C) one.
    got = zoo.VGG16(weights=path, classifier_activation=None)(x, training=False)
    assert_close(got, want, **VGG, what="VGG16 classify vs torch")
    # The same file as a sliding classifier: fc1's Linear becomes a 7x7 conv.
    heat = zoo.VGG16(weights=path, mode="heatmap", classifier_activation=None)(x, training=False)
    assert_close(np.asarray(heat)[:, 0, 0], want, **VGG, what="VGG16 heatmap vs torch")
