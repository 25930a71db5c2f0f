"""VGG16/19 and FCN: parity with keras.applications and the FC-as-conv identity."""

import keras
import numpy as np
import pytest

import zoo
from tests.helpers import assert_close, save_torch
from zoo.layers import bilinear_kernel


def _images(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return keras.applications.vgg16.preprocess_input(rng.uniform(0, 255, (n, h, w, 3)).astype("float32"))


def _close(a, b, rel=1e-4):
    assert_close(a, b, rtol=rel, atol=0.0, what="VGG vs reference")


def test_classify_matches_keras_applications(vgg16_reference):
    ref, top, _ = vgg16_reference
    x = _images(2, 224, 224)
    ours = zoo.VGG16(weights=top, classifier_activation=None).predict_on_batch(x)
    theirs = keras.applications.VGG16(weights=top, classifier_activation=None).predict_on_batch(x)
    assert ours.shape == (2, 1000)
    _close(ours, theirs)
    # Softmax by default, as keras.applications.
    probs = zoo.VGG16(weights=top).predict_on_batch(x)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_heatmap_at_224_is_classify(vgg16_reference):
    ref, top, _ = vgg16_reference
    x = _images(2, 224, 224, seed=3)
    heat = zoo.VGG16(weights=top, mode="heatmap", classifier_activation=None).predict_on_batch(x)
    assert heat.shape == (2, 1, 1, 1000)
    _close(heat[:, 0, 0], ref.predict_on_batch(x))


def test_heatmap_cell_is_fc_head_on_pool5_window(vgg16_reference):
    ref, top, _ = vgg16_reference
    size = 384
    x = _images(1, size, size, seed=4)
    heat = zoo.VGG16(weights=top, mode="heatmap", classifier_activation=None).predict_on_batch(x)
    assert heat.shape == (1, 6, 6, 1000)
    # Independent reference: keras.applications' own conv base and Dense layers.
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    pool5 = base.predict_on_batch(x)
    assert pool5.shape == (1, 12, 12, 512)
    for i in range(6):
        for j in range(6):
            v = pool5[:, i : i + 7, j : j + 7, :].reshape(1, -1)
            for name in ("fc1", "fc2", "predictions"):
                v = np.asarray(ref.get_layer(name)(v))
            _close(heat[:, i, j], v)


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


def test_features_and_dense_modes(vgg16_reference):
    _, _, notop = vgg16_reference
    feats = zoo.VGG16(weights=notop, mode="features")
    out = feats.predict_on_batch(_images(1, 96, 128))
    assert list(out) == ["P1", "P2", "P3", "P4", "P5"]
    for i, key in enumerate(sorted(out)):
        stride = 2 ** (i + 1)
        assert out[key].shape[1:3] == (96 // stride, 128 // stride)
    dense = zoo.VGG16(weights=notop, mode="dense", classes=5)
    y = dense.predict_on_batch(_images(2, 70, 90))
    assert y.shape == (2, 70, 90, 5)


def test_vgg19_matches_keras_applications(tmp_path):
    from tests.helpers import randomize, save_legacy_h5

    ref = randomize(keras.applications.VGG19(weights=None, include_top=False), seed=2)
    path = save_legacy_h5(ref, str(tmp_path / "vgg19_notop.h5"))
    x = _images(1, 64, 96)
    ours = zoo.VGG19(weights=path, mode="features").predict_on_batch(x)["P5"]
    _close(ours, ref.predict_on_batch(x))


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_fcn_output_matches_input_size(name):
    model = zoo.create_model(name, classes=3)
    for h, w in [(37, 53), (64, 64), (101, 75)]:
        y = model.predict_on_batch(np.zeros((1, h, w, 3), "float32"))
        assert y.shape == (1, h, w, 3)


def test_fcn_loads_vgg16_imagenet_layout(vgg16_reference):
    ref, top, _ = vgg16_reference
    model = zoo.FCN8s(weights=top, classes=4)
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").get_weights()[0], ref.get_layer("block3_conv2").get_weights()[0]
    )
    fc6 = model.get_layer("fc6").get_weights()[0]
    assert fc6.shape == (7, 7, 512, 4096)
    np.testing.assert_array_equal(fc6.reshape(-1, 4096), ref.get_layer("fc1").get_weights()[0])
    # Score layers start at zero, as in the reference FCN: logits are zero.
    y = model.predict_on_batch(_images(1, 40, 60))
    assert y.shape == (1, 40, 60, 4)
    np.testing.assert_allclose(y, 0, atol=1e-6)


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


def test_torchvision_pth_matches_a_torch_forward(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    # torchvision's VGG16 layout, written here: features / avgpool / classifier.
    feats, cin = [], 3
    for convs, width in zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)):
        for _ in range(convs):
            feats += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        feats.append(nn.MaxPool2d(2, 2))

    class TorchVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*feats)
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    net = TorchVGG().eval()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0, (2.0 / m.weight[0].numel()) ** 0.5)
            nn.init.normal_(m.bias, 0, 0.1)
    path = str(tmp_path / "vgg16-torchvision.pth")
    save_torch(net.state_dict(), path)
    x = np.random.default_rng(5).normal(size=(2, 224, 224, 3)).astype("float32")
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = zoo.VGG16(weights=path, classifier_activation=None).predict_on_batch(x)
    _close(got, want)
    # The same file as a sliding classifier: fc1's Linear becomes a 7x7 conv.
    heat = zoo.VGG16(weights=path, mode="heatmap", classifier_activation=None).predict_on_batch(x)
    _close(heat[:, 0, 0], want)
