"""ResNet: keras.applications parity, torchvision-layout parity against a
PyTorch reference, output_stride, heatmap identity, FCN head and errors."""

import warnings

import keras
import numpy as np
import pytest

import zoo
from tests.cases import LIGHT_RESNET, PARITY_SIZE
from tests.support.helpers import (REFERENCE, assert_close, images, nchw, nhwc, randomize, save_legacy_h5,
                                   save_torch, torch_forward, torch_kernel)
from zoo.weights.readers.errors import CheckpointError

# Module-scoped reference models and files are built once: one pytest-xdist
# worker runs this file (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("resnet")

H, W = PARITY_SIZE


def _images(n, h, w, seed=0):
    return images(n, h, w, seed, preprocess=keras.applications.resnet.preprocess_input)


# ------------------------------------------------------------ keras layout


@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    """keras.applications' ResNet50 (224x224, logits) with random weights and
    its legacy top and notop files: ``(model, top path, notop path)``."""
    folder = tmp_path_factory.mktemp("resnet50_keras")
    ref = randomize(keras.applications.ResNet50(weights=None, classifier_activation=None), seed=8)
    top = save_legacy_h5(ref, str(folder / "top.h5"))
    notop = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(H, W, 3))
    for layer in notop.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    return ref, top, save_legacy_h5(notop, str(folder / "notop.h5")), notop


def _keras_parity(tmp_path, builder, app):
    ref = randomize(app(weights=None, input_shape=(H, W, 3), classifier_activation=None))
    f = save_legacy_h5(ref, str(tmp_path / f"{ref.name}.h5"))
    x = _images(2, H, W)
    theirs = np.asarray(ref(x, training=False))
    ours = builder(weights=f, input_shape=(H, W, 3), classifier_activation=None)(x, training=False)
    assert ours.shape == (2, 1000)
    assert np.abs(theirs).max() > 1e-2  # a meaningful comparison
    assert_close(ours, theirs, rtol=0.0, atol=1e-4, what="ResNet vs keras.applications")


def test_keras_top_file_in_classify_and_heatmap_notop_file_in_features(keras_resnet50):
    ref, top, notop_file, notop = keras_resnet50
    x = _images(2, 224, 224, seed=9)
    want = np.asarray(ref(x, training=False))
    assert np.abs(want).max() > 1e-2  # a meaningful comparison
    got = zoo.ResNet50(weights=top, classifier_activation=None)(x, training=False)
    assert_close(got, want, rtol=0.0, atol=1e-4, what="ResNet-50 classify vs keras.applications")
    # Heatmap at 224 is one cell: the Dense head reshaped into a 1x1 conv.
    heat = np.asarray(zoo.ResNet50(weights=top, mode="heatmap", classifier_activation=None)(x, training=False))
    assert heat.shape == (2, 1, 1, 1000)
    assert_close(heat[:, 0, 0], want, **REFERENCE, what="ResNet-50 heatmap vs keras.applications")
    # keras.applications' notop layout (no predictions) into features mode.
    x = _images(1, H, W, seed=10)
    feats = zoo.ResNet50(weights=notop_file, mode="features")(x, training=False)
    assert_close(feats["P5"], notop(x, training=False), **REFERENCE, what="ResNet-50 P5 vs keras.applications")


@pytest.mark.slow
def test_resnet50_matches_keras_applications_at_the_parity_size(tmp_path):
    _keras_parity(tmp_path, zoo.ResNet50, keras.applications.ResNet50)


@pytest.mark.slow
def test_resnet101_matches_keras_applications(tmp_path):
    _keras_parity(tmp_path, zoo.ResNet101, keras.applications.ResNet101)


@pytest.mark.slow
def test_resnet152_matches_keras_applications(tmp_path):
    _keras_parity(tmp_path, zoo.ResNet152, keras.applications.ResNet152)


def test_keras_layout_names_and_epsilon(keras_resnet50):
    ref = keras_resnet50[0]
    m = zoo.ResNet50()
    assert {l.name for l in m.layers if l.weights} == {l.name for l in ref.layers if l.weights}
    assert m.get_layer("conv2_block1_1_bn").epsilon == pytest.approx(1.001e-5)
    # Caffe layout: the stride is in the first 1x1 conv and the shortcut.
    assert m.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert m.get_layer("conv3_block1_2_conv").strides == (1, 1)


# ------------------------------------------------------ torchvision layout


def _tref():
    """The torch reference module (skips the test without torch)."""
    pytest.importorskip("torch")
    from tests.support import resnet_torch_ref

    return resnet_torch_ref


def _assert_conv_loaded(model, layer_name, conv):
    """The Keras conv ``layer_name`` holds torch ``conv``'s kernel exactly."""
    np.testing.assert_array_equal(model.get_layer(layer_name).get_weights()[0], torch_kernel(conv))


def _torch_checkpoint(tmp_path, model, legacy, name="ref.pth"):
    pytest.importorskip("torch")
    return save_torch(model.state_dict(), tmp_path / name, legacy=legacy)


@pytest.mark.parametrize("config, output_stride, legacy", [
    ("resnet18", 32, False),
    ("resnet18", 8, True),
    pytest.param("resnet50", 32, True, marks=pytest.mark.slow),
    ("resnet50", 16, False),
])
def test_torchvision_layout_matches_torch_reference(tmp_path, config, output_stride, legacy):
    tref = _tref()

    ref = tref.randomize(tref.build(config, output_stride), seed=1)
    f = _torch_checkpoint(tmp_path, ref, legacy)
    x = _images(2, H, W, seed=2)
    kwargs = {} if config == "resnet18" else {"stride_in_1x1": False}
    ours = zoo.create_model(config, weights=f, input_shape=(H, W, 3), output_stride=output_stride,
                            classifier_activation=None, **kwargs)
    assert ours.get_layer("layer1_0_bn1").epsilon == pytest.approx(1e-5)
    got = ours(x, training=False)
    want = torch_forward(ref, x)
    assert np.abs(want).max() > 1e-2
    assert_close(got, want, **REFERENCE, what="ResNet vs reference")


def test_imagenet_pth_into_features_and_dense(tmp_path):
    tref = _tref()
    import torch

    ref = tref.randomize(tref.build("resnet18", output_stride=8), seed=11)
    f = _torch_checkpoint(tmp_path, ref, legacy=False)
    x = _images(1, H, W, seed=12)
    model = zoo.ResNet18(weights=f, mode="features", output_stride=8)
    feats = model(x, training=False)
    # c3, c4 and c5 all have stride 8: the pyramid's P3 is the deepest, c5.
    assert sorted(feats) == ["P1", "P2", "P3"]
    c4_model = keras.Model(model.input, model.get_layer("layer3_1_out").output)
    with torch.no_grad():
        c4, c5 = ref.features(nchw(x))
    assert_close(feats["P3"], nhwc(c5), **REFERENCE, what="ResNet-18 P3 vs torch c5")
    assert_close(c4_model(x, training=False), nhwc(c4), **REFERENCE, what="ResNet-18 c4 vs torch")
    # Dense mode: fc is not used, the new FCN head keeps its initial values.
    dense = zoo.ResNet18(weights=f, mode="dense", classes=4)
    _assert_conv_loaded(dense, "layer4_1_conv2", ref.layer4[1].conv2)


# The FCN head (torchvision's classifier.* / aux_classifier.* keys) on the
# light backbone; on ResNet-50 (fcn_resnet50's own layout) in the slow step.
@pytest.mark.parametrize("config", [LIGHT_RESNET, pytest.param("resnet50", marks=pytest.mark.slow)])
def test_fcn_dense_matches_torch_reference(tmp_path, config):
    tref = _tref()

    ref = tref.randomize(tref.FCN(tref.build(config, 8), classes=21), seed=3)
    f = _torch_checkpoint(tmp_path, ref, legacy=False, name="fcn.pth")
    x = _images(1, H, W, seed=4)
    want = torch_forward(ref, x)
    kwargs = {} if config == LIGHT_RESNET else {"stride_in_1x1": False}
    model = zoo.create_model(config, weights=f, mode="dense", classes=21, aux_head=True,
                             input_shape=(H, W, 3), **kwargs)
    got = model(x, training=False)
    assert got["out"].shape == (1, H, W, 21)
    assert_close(got["out"], want["out"], **REFERENCE, what=f"{config} FCN out vs torch")
    assert_close(got["aux"], want["aux"], **REFERENCE, what=f"{config} FCN aux vs torch")
    # Without the aux head the published aux_classifier.* keys are ignored.
    plain = zoo.create_model(config, weights=f, mode="dense", classes=21, input_shape=(H, W, 3), **kwargs)
    assert not any(l.name.startswith("aux_") for l in plain.layers)
    assert_close(plain(x, training=False), want["out"], **REFERENCE, what=f"{config} FCN vs torch")


# ---------------------------------------------------------------- heatmap


def _randomized_heatmap(size):
    hm = zoo.create_model(LIGHT_RESNET, mode="heatmap", input_shape=(*size, 3), classifier_activation=None)
    return randomize(hm, seed=5), _images(1, *size, seed=6)


def test_heatmap_cell_is_head_on_c5_window():
    hm, x = _randomized_heatmap((256, 288))  # c5 8x9 -> heatmap 2x3
    heat = np.asarray(hm(x, training=False))
    assert heat.shape == (1, 2, 3, 1000)
    c5 = np.asarray(keras.Model(hm.input, hm.get_layer("layer4_1_out").output)(x, training=False))
    assert c5.shape == (1, 8, 9, 512)
    kernel, bias = hm.get_layer("fc").get_weights()
    kernel = kernel.reshape(512, 1000)
    for i in range(2):
        for j in range(3):
            want = c5[:, i:i + 7, j:j + 7].mean(axis=(1, 2)) @ kernel + bias
            assert_close(heat[:, i, j], want, **REFERENCE, what=f"ResNet-18 heatmap cell {i},{j}")


@pytest.mark.slow
def test_heatmap_vs_true_sliding_crops_is_reported():
    """True sliding 224 crops see zero padding at the crop border instead of
    the neighbouring pixels: report the difference, never assert it."""
    hm, x = _randomized_heatmap((288, 320))  # c5 9x10 -> heatmap 3x4
    heat = np.asarray(hm(x, training=False))
    cl = zoo.create_model(LIGHT_RESNET, input_shape=(224, 224, 3), classifier_activation=None)
    for layer in cl.layers:
        if layer.weights:
            src = hm.get_layer(layer.name).get_weights()
            layer.set_weights([w.reshape(t.shape) for w, t in zip(src, layer.weights)])
    crops = np.concatenate([x[:, 32 * i:32 * i + 224, 32 * j:32 * j + 224]
                            for i in range(3) for j in range(4)])
    crop_logits = np.asarray(cl(crops, training=False)).reshape(3, 4, 1000)
    gap = np.abs(crop_logits - heat[0]).max()
    print(f"\nheatmap vs true sliding 224 crops: max abs diff {gap:.4g}, "
          f"{gap / np.abs(heat).max():.1%} of the largest logit")


# ------------------------------------------------------------------ shapes


def _feature_cases():
    # Every output stride on the light backbone; the bottleneck layouts at
    # stride 8 (both dilated stages) by default, the other strides slow.
    for config, kwargs in (("resnet18", {}), ("resnet50", {}), ("resnet50", {"stride_in_1x1": False})):
        for output_stride in (8, 16, 32):
            slow = config != LIGHT_RESNET and output_stride != 8
            yield pytest.param(config, kwargs, output_stride, marks=[pytest.mark.slow] if slow else [],
                               id=f"{config}-{'tv' if kwargs else 'default'}-{output_stride}")


@pytest.mark.parametrize("config, kwargs, output_stride", list(_feature_cases()))
def test_feature_shapes_for_every_output_stride(config, kwargs, output_stride):
    m = zoo.create_model(config, mode="features", output_stride=output_stride,
                         input_shape=(H, W, 3), **kwargs)
    out = m(np.zeros((1, H, W, 3), "float32"), training=False)
    exp = 1 if config == "resnet18" else 4
    stages = [(2, 64), (4, 64 * exp), (8, 128 * exp), (min(16, output_stride), 256 * exp),
              (output_stride, 512 * exp)]
    want = {f"P{s.bit_length() - 1}": (s, width) for s, width in stages}  # deepest per stride
    assert sorted(out) == sorted(want)
    for key, (s, width) in want.items():
        assert out[key].shape == (1, -(-H // s), -(-W // s), width), key
    # Dilation only where strides were removed.
    rates = {l.dilation_rate[0] for l in m.layers if isinstance(l, keras.layers.Conv2D)}
    assert rates == {1: {1}, 2: {1, 2}, 4: {1, 2, 4}}[32 // output_stride]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dense_and_heatmap_shapes(output_stride):
    dense = zoo.ResNet18(mode="dense", output_stride=output_stride, classes=5)
    assert dense(np.zeros((1, 40, 56, 3), "float32"), training=False).shape == (1, 40, 56, 5)
    side = 8 * output_stride  # c5 8 cells -> 2 heatmap cells
    heat = zoo.ResNet18(mode="heatmap", output_stride=output_stride, classes=3)
    out = np.asarray(heat(np.zeros((1, side, side - output_stride, 3), "float32"), training=False))
    assert out.shape == (1, 2, 1, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_dense_defaults_to_output_stride_8():
    m = zoo.ResNet18(mode="dense", classes=2, input_shape=(H, W, 3))
    assert m.get_layer("layer4_1_conv2").dilation_rate == (4, 4)
    assert m.get_layer("layer3_0_conv1").dilation_rate == (1, 1)  # previous dilation
    assert m.get_layer("layer3_0_conv2").dilation_rate == (2, 2)


def test_model_info_flops_of_the_dilated_stages():
    """Dilation keeps the weights and runs the dilated stages at more cells:
    from output stride 32 to 8, c5 at 16x the cells and c4 at 4x."""
    infos = {s: zoo.model_info(LIGHT_RESNET, (224, 224), output_stride=s) for s in (32, 8)}
    assert infos[8]["flops"] > infos[32]["flops"] and infos[8]["dilations"] == [1, 2, 4]
    assert infos[8]["params"] == infos[32]["params"]
    assert infos[8]["stage_flops"]["c5"] == 16 * infos[32]["stage_flops"]["c5"]
    assert infos[8]["stage_flops"]["c4"] == 4 * infos[32]["stage_flops"]["c4"]
    for key in ("stem", "c2", "c3"):
        assert infos[8]["stage_flops"][key] == infos[32]["stage_flops"][key]


@pytest.mark.slow
def test_model_info_flops_grow_with_lower_output_stride():
    infos = {s: zoo.model_info("resnet50", (512, 512), output_stride=s) for s in (32, 16, 8)}
    flops = [infos[s]["flops"] for s in (32, 16, 8)]
    assert flops[0] < flops[1] < flops[2]
    assert infos[8]["output_stride"] == 8 and infos[8]["dilations"] == [1, 2, 4]
    assert len({infos[s]["params"] for s in infos}) == 1  # dilation adds no weights
    # Keras layout: every conv of c5 runs at c5's resolution, 16x the cells
    # at stride 8. The stem, c2 and c3 do not change.
    assert infos[8]["stage_flops"]["c5"] == 16 * infos[32]["stage_flops"]["c5"]
    assert infos[8]["stage_flops"]["c4"] == 4 * infos[32]["stage_flops"]["c4"]
    for key in ("stem", "c2", "c3"):
        assert infos[8]["stage_flops"][key] == infos[32]["stage_flops"][key]
    # torchvision layout: the first block's 1x1 conv ran before the stride
    # already, so it only grows 4x: c5 grows by less than 16x.
    tv = {s: zoo.model_info("resnet50", (512, 512), output_stride=s, stride_in_1x1=False)
          for s in (32, 8)}
    ratio = tv[8]["stage_flops"]["c5"] / tv[32]["stage_flops"]["c5"]
    assert 12 < ratio < 16
    print("\nresnet50 512x512 GMACs by output_stride:",
          {s: round(infos[s]["flops"] / 1e9, 2) for s in infos})


# ------------------------------------------------------------------ errors


def test_bad_output_stride_is_refused():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        zoo.ResNet18(output_stride=4)


def test_torchvision_checkpoint_into_keras_layout_is_refused(tmp_path):
    tref = _tref()

    f = _torch_checkpoint(tmp_path, tref.build("resnet50"), legacy=False)
    with pytest.raises(CheckpointError, match=r"torchvision-layout.*stride_in_1x1=False"):
        zoo.ResNet50(weights=f, input_shape=(H, W, 3))


def test_keras_h5_into_torchvision_layout_is_refused(keras_resnet50):
    f = keras_resnet50[1]
    with pytest.raises(CheckpointError, match=r"keras-layout.*stride_in_1x1=True"):
        zoo.ResNet50(weights=f, stride_in_1x1=False, input_shape=(H, W, 3))


def test_tag_of_the_other_layout_is_refused_before_download():
    with pytest.raises(ValueError, match="torchvision layout only.*stride_in_1x1=False"):
        zoo.ResNet50(weights="coco_voc", mode="dense")


def _load_skipping_mismatch(model, path, mode):
    """``zoo.load_weights(..., skip_mismatch=True)`` with the build's own map."""
    from zoo import assembler

    wmap = assembler.derive_weight_map(assembler.backbone_spec(LIGHT_RESNET), mode,
                                       model.zoo.get("head_layers", ()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo.load_weights(model, path, LIGHT_RESNET, wmap, skip_mismatch=True)
    return [str(w.message) for w in caught]


def test_class_count_mismatch_is_refused_or_drops_the_head_on_request(tmp_path):
    tref = _tref()

    ref = tref.randomize(tref.build("resnet18"), seed=7)
    f = _torch_checkpoint(tmp_path, ref, legacy=True)
    # Refused by default: no weight changes.
    with pytest.raises(CheckpointError, match=r"class count differs.*fc.*skip_mismatch=True"):
        zoo.ResNet18(weights=f, classes=10, input_shape=(H, W, 3))
    m = zoo.ResNet18(classes=10, input_shape=(H, W, 3))
    caught = _load_skipping_mismatch(m, f, "classify")
    assert any("class count differs" in w and "fc" in w for w in caught), caught
    assert m.get_layer("fc").get_weights()[0].shape == (512, 10)
    _assert_conv_loaded(m, "layer4_1_conv2", ref.layer4[1].conv2)


def test_fcn_checkpoint_with_other_class_count_keeps_backbone_on_request(tmp_path):
    tref = _tref()

    ref = tref.randomize(tref.FCN(tref.build("resnet18", 8), classes=21), seed=13)
    f = _torch_checkpoint(tmp_path, ref, legacy=False, name="fcn18.pth")
    with pytest.raises(CheckpointError, match=r"classifier_4.*skip_mismatch=True"):
        zoo.ResNet18(weights=f, mode="dense", classes=5)
    m = zoo.ResNet18(mode="dense", classes=5)
    caught = _load_skipping_mismatch(m, f, "dense")
    assert any("classifier_4" in w for w in caught), caught
    _assert_conv_loaded(m, "classifier_0", ref.classifier[0])
    assert m.get_layer("classifier_4").get_weights()[0].shape == (1, 1, 128, 5)


def test_missing_safetensors_file_is_a_path_not_a_tag(tmp_path, monkeypatch):
    # zoo.weights.is_weights_path knows .safetensors: a bare file name that
    # does not exist is reported as a missing file, not as an unknown tag.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        zoo.ResNet18(weights="missing.safetensors")
