"""DRN-A/C/D and DRNSeg: parity with an independent PyTorch reference
(tests/support/drn_torch_ref.py) through both torch file formats, parameter counts
against the official README, shapes of every mode, and loading errors."""

import json
import math
import os

import numpy as np
import pytest

import zoo
from tests.cases import FULL_SIZE, LIGHT_DRN, PARITY_SIZE
from tests.support.helpers import (REFERENCE, assert_close, assert_untouched, images, nchw, nhwc, save_torch,
                                   snapshot, torch_kernel)
from zoo.models import drn as zdrn
from zoo.weights import load_manifest, load_weights
from zoo.weights.readers.errors import CheckpointError

torch = pytest.importorskip("torch")
from tests.support import drn_torch_ref as ref  # noqa: E402

torch.set_grad_enabled(False)


def _close(a, b, atol=None):
    # An explicit atol (0 for copied kernels) replaces REFERENCE's tolerance.
    tol = REFERENCE if atol is None else {"rtol": 0.0, "atol": atol}
    return assert_close(a, b, **tol, what="DRN vs the torch reference")


def _save_zip(module, tmp_path, stem, prefix=""):
    state = {prefix + k: v for k, v in module.state_dict().items()}
    return save_torch(state, tmp_path / f"{stem}_zip.pth")


def _save_both(module, tmp_path, stem, prefix=""):
    """The zip and the legacy (torch < 1.6) file of ``module``'s state_dict."""
    legacy = save_torch(module.state_dict(), tmp_path / f"{stem}_legacy.pth", legacy=True)
    return _save_zip(module, tmp_path, stem, prefix), legacy


def _classify_parity(tmp_path, variant, size, seed=0):
    net = ref.randomize_(ref.RefDRN(variant), seed)
    x = images(1, *size, seed=seed)
    want = net(nchw(x)).numpy()
    diffs = []
    for path in _save_both(net, tmp_path, variant):
        model = zoo.create_model(variant, weights=path, classifier_activation=None)
        diffs.append(_close(model(x, training=False), want))
    return diffs


# ------------------------------------------------------------ parity


# One variant per architecture (A, C, D) at the small parity size; the
# bottleneck blocks are compared in test_drn_c_58_ignores_unused_downsample.
@pytest.mark.parametrize("variant", ["drn_d_22", "drn_c_26", "drn_a_18"])
def test_classify_parity_zip_and_legacy(tmp_path, variant):
    _classify_parity(tmp_path, variant, PARITY_SIZE)


# The full size (256x320): CI's slow step.
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["drn_d_22", "drn_c_26"])
def test_classify_parity_full_size(tmp_path, variant):
    _classify_parity(tmp_path, variant, FULL_SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(set(ref.VARIANTS) - {"drn_d_22", "drn_c_26", "drn_a_18"}))
def test_classify_parity_every_variant(tmp_path, variant):
    _classify_parity(tmp_path, variant, PARITY_SIZE, seed=3)


def test_drn_c_58_ignores_unused_downsample(tmp_path):
    net = ref.randomize_(ref.RefDRN("drn_c_58"), 1)
    assert "layer7.0.downsample.0.weight" in net.state_dict()
    x = images(1, 40, 56, seed=1)
    zip_path = _save_zip(net, tmp_path, "c58")
    model = zoo.DRN_C_58(weights=zip_path, classifier_activation=None)
    _close(model(x, training=False), net(nchw(x)).numpy())
    assert not any(l.name.startswith("layer7_0_downsample") for l in model.layers)


def test_heatmap_and_features_parity(tmp_path):
    net = ref.randomize_(ref.RefDRN("drn_c_26"), 2)
    x = images(1, 72, 88, seed=2)
    zip_path = _save_zip(net, tmp_path, "c26")
    heat = zoo.DRN_C_26(weights=zip_path, mode="heatmap", classifier_activation=None)
    _close(heat(x, training=False), nhwc(net.heatmap(nchw(x))))
    feats = zoo.DRN_C_26(weights=zip_path, mode="features")(x)
    stages = net.stages(nchw(x))
    # layer1 (stride 1), layer2 (2), layer3 (4); layer4..layer8 share stride 8,
    # so P3 is the deepest of them, layer8.
    assert sorted(feats) == ["P0", "P1", "P2", "P3"]
    for key, want in zip(("P0", "P1", "P2", "P3"), (stages[0], stages[1], stages[2], stages[7])):
        _close(np.asarray(feats[key]), nhwc(want))


def _drnseg_parity(tmp_path, size):
    seg = ref.randomize_(ref.RefDRNSeg("drn_d_22", 19), 4)
    # A trained `up`: it must come from the file, not be regenerated.
    seg.up.weight.mul_(torch.linspace(0.5, 1.5, 19)[:, None, None, None])
    x = images(1, *size, seed=4)
    want = nhwc(seg(nchw(x)))
    zip_path, legacy_path = _save_both(seg, tmp_path, "seg")
    prefixed = _save_zip(seg, tmp_path, "seg_dp", prefix="module.")
    for path in (zip_path, legacy_path, prefixed):
        model = zoo.DRN_D_22(weights=path, mode="dense", classes=19)
        _close(model(x, training=False), want)
    assert not model.get_layer("up").trainable


def test_drnseg_parity_zip_legacy_and_module_prefix(tmp_path):
    _drnseg_parity(tmp_path, PARITY_SIZE)


@pytest.mark.slow
def test_drnseg_parity_full_size(tmp_path):
    _drnseg_parity(tmp_path, FULL_SIZE)


def test_drnseg_odd_size_is_the_official_top_left_crop(tmp_path):
    seg = ref.randomize_(ref.RefDRNSeg("drn_c_26", 5), 5)
    x = images(1, 37, 50, seed=5)
    full = nhwc(seg(nchw(x)))
    assert full.shape[1:3] == (40, 56)  # 8 * ceil(H / 8)
    zip_path = _save_zip(seg, tmp_path, "segc")
    model = zoo.DRN_C_26(weights=zip_path, mode="dense", classes=5)
    _close(model(x, training=False), full[:, :37, :50])


def test_imagenet_checkpoint_into_dense_keeps_bilinear_up(tmp_path):
    net = ref.randomize_(ref.RefDRN("drn_d_22"), 6)
    zip_path = _save_zip(net, tmp_path, "d22")
    model = zoo.DRN_D_22(weights=zip_path, mode="dense", classes=3)
    want = ref.RefDRNSeg("drn_d_22", 3).up.weight.numpy().transpose(2, 3, 0, 1)
    _close(model.get_layer("up").get_weights()[0], want, atol=0)
    _close(model.get_layer("layer5_1_conv2").get_weights()[0],
           torch_kernel(net.layer5[1].conv2), atol=0)


def test_drn_a_output_stride_32_is_plain_resnet(tmp_path):
    net = ref.randomize_(ref.RefDRN("drn_a_18", output_stride=32), 7)
    x = images(1, *PARITY_SIZE, seed=7)
    zip_path = _save_zip(net, tmp_path, "r18")
    model = zoo.DRN_A_18(weights=zip_path, output_stride=32, mode="heatmap", classifier_activation=None)
    got = model(x, training=False)
    assert got.shape == (1, 2, 3, 1000)
    _close(got, nhwc(net.heatmap(nchw(x))))


# ------------------------------------------------------------ counts


# README figure (rounded to 0.1M) and the exact count of the official
# drn.py's parameters (sum of numel over model.parameters()).
# The deeper variants build at full depth: slow.
@pytest.mark.parametrize("name,millions,exact", [
    ("drn_d_22", 16.4, 16393752), ("drn_c_26", 21.1, 21126584),
    pytest.param("drn_d_105", 54.8, 54801304, marks=pytest.mark.slow),
    pytest.param("drn_a_50", 25.6, 25557032, marks=pytest.mark.slow),
    pytest.param("drn_d_38", 26.5, 26501912, marks=pytest.mark.slow),
    pytest.param("drn_c_42", 31.2, 31234744, marks=pytest.mark.slow),
])
def test_param_counts_match_readme(name, millions, exact):
    info = zoo.model_info(name)
    # Like PyTorch's, "params" excludes BN running statistics.
    assert abs(info["params"] / 1e6 - millions) <= 0.05, info["params"]
    assert info["params"] == exact
    assert info["output_stride"] == 8 and info["feature_map"] == (28, 28)


def test_drn_c_58_count_explains_readme():
    info = zoo.model_info("drn_c_58")
    total = info["params"] + info["checkpoint_only_params"]
    assert abs(total / 1e6 - 41.6) <= 0.05, total
    assert total == 41591608
    # The manifest records what the model builds, not the README's 41.6M.
    assert load_manifest()["drn_c_58"]["imagenet"]["params"] == info["params"]


def test_flops_stride8_vs_stride32():
    drn = zoo.model_info("drn_a_18", (224, 224))["flops"]
    resnet = zoo.model_info("drn_a_18", (224, 224), output_stride=32)["flops"]
    assert abs(resnet / 1e9 - 1.82) < 0.02, resnet  # torchvision's ResNet-18 figure
    assert drn > 4 * resnet


# ------------------------------------------------------------ modes


# One architecture per run of the default suite is enough for the shape
# rules (they live in the assembler); the other two run in the slow step.
@pytest.mark.parametrize("name", [LIGHT_DRN] + [
    pytest.param(n, marks=pytest.mark.slow) for n in ("drn_c_26", "drn_a_18")])
def test_shapes_every_mode(name):
    h, w = 37, 50  # odd sides: the x8 maps round up
    x = images(2, h, w)
    h8, w8 = math.ceil(h / 8), math.ceil(w / 8)
    build = lambda **kw: zoo.create_model(name, classes=7, **kw)  # noqa: E731
    assert build(input_shape=(h, w, 3))(x).shape == (2, 7)
    assert build(mode="classify")(x).shape == (2, 7)
    assert build(mode="heatmap")(x).shape == (2, h8, w8, 7)
    assert build(mode="dense")(x).shape == (2, h, w, 7)
    feats = zoo.create_model(name, mode="features")(x)
    assert feats[list(feats)[-1]].shape[1:3] == (h8, w8)


def test_empty_map_refused():
    with pytest.raises(ValueError, match="empty feature map"):
        zoo.DRN_D_22(input_shape=(0, 64, 3))


def test_unknown_output_stride_refused():
    with pytest.raises(ValueError, match="output_stride"):
        zoo.DRN_A_18(output_stride=4)
    with pytest.raises(ValueError, match="x8"):
        zoo.DRN_A_18(output_stride=32, mode="dense")


# ------------------------------------------------------------ errors


def test_wrong_variant_fails_before_loading(tmp_path):
    net = ref.randomize_(ref.RefDRN("drn_c_26"), 8)
    zip_path = _save_zip(net, tmp_path, "c26")
    model = zoo.DRN_D_22()
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="layer0_0") as err:
        load_weights(model, zip_path, "drn_d_22", zdrn.drn_weight_map("drn_d_22"))
    assert "c26_zip.pth" in str(err.value)
    assert_untouched(model, before)


def test_deeper_variant_names_first_extra_key(tmp_path):
    zip_path = _save_zip(ref.RefDRN("drn_d_38"), tmp_path, "d38")
    with pytest.raises(CheckpointError, match=r"layer3\.2\.conv1"):
        zoo.DRN_D_22(weights=zip_path)


# ------------------------------------------------------------ manifest


def test_manifest_entries():
    manifest = load_manifest()
    for name, prefix in [("drn_c_26", "ddedf421"), ("drn_d_22", "4bd2f8ea"), ("drn_d_105", "12b40979")]:
        entry = manifest[name]["imagenet"]
        assert entry["file"] == f"{name}-{prefix}.pth"
        assert entry["url"] == f"http://dl.yf.io/drn/{name}-{prefix}.pth"
        assert entry["hash"] == f"sha256:{prefix}"
        assert entry["preprocessing"]["type"] == "torch"
        assert "classifier" not in entry  # a built model knows its head (model.zoo)
    assert manifest["drn_a_50"]["imagenet"]["file"] == "resnet50-19c8e357.pth"
    entry = manifest["drn_d_38"]["cityscapes"]
    assert entry["classes"] == 19 and entry["file"] == "drn_d_38_cityscapes.pth"
    assert entry["hash"].startswith("sha384:") and entry["mode"] == "dense"
    json.dumps(manifest)


# ------------------------------------------------------------ published tags


def _as_published(monkeypatch, model_name, tag, path):
    """Records ``path``'s own hash for the tag: local files are hash-checked,
    and a random test file cannot match the published one."""
    import hashlib

    from zoo.weights import file_spec

    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    monkeypatch.setitem(file_spec(model_name, tag), "hash", "sha256:" + digest)
    # The verified-files cache then lives in the test's folder, not ~/.keras.
    monkeypatch.setenv("KERAS_HOME", str(os.path.dirname(path)))


def test_cityscapes_tag_resolves_locally_with_19_classes(tmp_path, monkeypatch):
    from zoo.weights import file_spec

    seg = ref.randomize_(ref.RefDRNSeg(LIGHT_DRN, 19), 9)
    path = tmp_path / file_spec(LIGHT_DRN, "cityscapes")["file"]
    save_torch(seg.state_dict(), path)
    _as_published(monkeypatch, LIGHT_DRN, "cityscapes", path)
    monkeypatch.setenv("KERAS_ZOO_WEIGHTS", str(tmp_path))
    x = images(1, 48, 72, seed=9)
    model = zoo.create_model(LIGHT_DRN, weights="cityscapes", mode="dense")  # classes from the manifest
    assert model.output.shape[-1] == 19
    _close(model(x, training=False), nhwc(seg(nchw(x))))


def test_imagenet_tag_reads_a_legacy_file_by_its_published_name(tmp_path, monkeypatch):
    net = ref.randomize_(ref.RefDRN("drn_d_22"), 10)
    save_torch(net.state_dict(), tmp_path / "drn_d_22-4bd2f8ea.pth", legacy=True)
    _as_published(monkeypatch, "drn_d_22", "imagenet", tmp_path / "drn_d_22-4bd2f8ea.pth")
    monkeypatch.setenv("KERAS_ZOO_WEIGHTS", str(tmp_path))
    x = images(1, 40, 48, seed=10)
    model = zoo.DRN_D_22(weights="imagenet", classifier_activation=None)
    _close(model(x, training=False), net(nchw(x)).numpy())
