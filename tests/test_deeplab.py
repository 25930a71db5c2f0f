"""DeepLabV3 (torchvision's ``deeplabv3_resnet50/101`` layout) against an
independent PyTorch forward: random weights and BN statistics in the real
state_dict layout, saved as zip and legacy ``.pth`` (issue 9 item 4).

torchvision 0.28 does not import beside torch 2.13 here, so the reference is
``tests/support/resnet_torch_ref.deeplabv3`` (ASPP and DeepLabHead in
``tests/support/torch_blocks.py``), written from torchvision's documented
architecture.

Sizes: the registered ResNet-50 models are compared at the small parity size
in the default suite. There the output-stride-8 map (8x12) is smaller than
the ASPP rates (12, 24, 36), so every dilated tap but the centre falls in the
padding; the ASPP's dilations are compared at the issue's non-square 256x320
(map 32x40) on a ResNet-18 backbone, which is cheap. ResNet-50 at 256x320 and
ResNet-101 run in the slow step.
"""

import numpy as np
import pytest

import zoo
from tests.cases import FULL_SIZE, PARITY_SIZE
from tests.support.helpers import SEGMENTATION, assert_close, normal, save_torch, torch_forward

torch = pytest.importorskip("torch")
from tests.support import resnet_torch_ref as tref  # noqa: E402

# Module-scoped reference models and files are built once: one pytest-xdist
# worker runs this file (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("deeplab")

CLASSES = 21


def _reference(tmp_path_factory, config, seed, size):
    """A random DeepLabV3 with its aux head, both file formats, one input and
    the torch outputs (NHWC)."""
    net = tref.randomize(tref.deeplabv3(config, classes=CLASSES, aux=True), seed=seed)
    folder = tmp_path_factory.mktemp(f"deeplab_{config}")
    files = {fmt: save_torch(net.state_dict(), folder / f"{fmt}.pth", legacy=fmt == "legacy")
             for fmt in ("zip", "legacy")}
    x = normal((1, *size, 3), seed=seed + 1)
    want = torch_forward(net, x)
    assert np.abs(want["out"]).max() > 1e-2  # a dead network would compare equal to anything
    return {"files": files, "x": x, "want": want, "size": size}


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    return _reference(tmp_path_factory, "resnet50", seed=0, size=PARITY_SIZE)


@pytest.fixture(scope="module")
def r50_full(tmp_path_factory):
    return _reference(tmp_path_factory, "resnet50", seed=0, size=FULL_SIZE)


@pytest.fixture(scope="module")
def r18_full(tmp_path_factory):
    return _reference(tmp_path_factory, "resnet18", seed=7, size=FULL_SIZE)


@pytest.fixture(scope="module")
def r101(tmp_path_factory):
    return _reference(tmp_path_factory, "resnet101", seed=5, size=FULL_SIZE)


def _build(ref, fmt, registered, aux, config="resnet50"):
    kwargs = {"mode": "dense", "classes": CLASSES, "weights": ref["files"][fmt],
              "input_shape": (*ref["size"], 3)}
    if aux:
        kwargs["aux_head"] = True
    if registered:
        return zoo.create_model(f"deeplabv3_{config}", **kwargs)
    if config != "resnet18":  # basic blocks have no 1x1 conv to hold the stride
        kwargs["stride_in_1x1"] = False
    return zoo.create_model(config, head="deeplabv3", **kwargs)


def _check(model, ref, aux, what):
    got = model(ref["x"], training=False)
    if aux:
        assert sorted(got) == ["aux", "out"], sorted(got)
        assert_close(got["aux"], ref["want"]["aux"], **SEGMENTATION, what=f"{what} aux")
        got = got["out"]
    assert got.shape == (1, *ref["size"], CLASSES)
    assert_close(got, ref["want"]["out"], **SEGMENTATION, what=f"{what} out")


def test_reference_has_torchvision_state_dict_layout():
    """The reference's keys and shapes are torchvision's (as published in
    deeplabv3_resnet50_coco-cd0a2569.pth), so the parity covers the real map."""
    sd = tref.deeplabv3("resnet50", classes=CLASSES, aux=True).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["backbone.layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["classifier.0.convs.0.0.weight"] == (256, 2048, 1, 1)
    for i in (1, 2, 3):
        assert shapes[f"classifier.0.convs.{i}.0.weight"] == (256, 2048, 3, 3)
    assert shapes["classifier.0.convs.4.1.weight"] == (256, 2048, 1, 1)  # image pooling
    assert shapes["classifier.0.project.0.weight"] == (256, 1280, 1, 1)
    assert shapes["classifier.1.weight"] == (256, 256, 3, 3)
    assert shapes["classifier.2.running_var"] == (256,)
    assert shapes["classifier.4.weight"] == (CLASSES, 256, 1, 1)
    assert shapes["classifier.4.bias"] == (CLASSES,)
    assert shapes["aux_classifier.0.weight"] == (256, 1024, 3, 3)
    assert shapes["aux_classifier.4.bias"] == (CLASSES,)
    assert not any(k.startswith("backbone.fc") for k in sd)
    assert not any(k.startswith("aux") for k in tref.deeplabv3("resnet50", aux=False).state_dict())
    # The dilations of torchvision's replace_stride_with_dilation=[False, True, True].
    net = tref.deeplabv3("resnet50")
    assert net.backbone.layer3[0].conv2.dilation == (1, 1)
    assert net.backbone.layer3[1].conv2.dilation == (2, 2)
    assert net.backbone.layer4[0].conv2.dilation == (2, 2)
    assert net.backbone.layer4[1].conv2.dilation == (4, 4)
    assert [m[0].dilation for m in net.classifier[0].convs[1:4]] == [(12, 12), (24, 24), (36, 36)]


def test_registered_deeplabv3_resnet50_aux_legacy(r50):
    _check(_build(r50, "legacy", registered=True, aux=True), r50, True,
           "deeplabv3_resnet50 aux legacy")


def test_resnet18_deeplabv3_head_at_full_size(r18_full):
    """The head on another backbone (generic path), ASPP taps inside the map."""
    _check(_build(r18_full, "zip", registered=False, aux=True, config="resnet18"), r18_full, True,
           "resnet18+deeplabv3 zip aux 256x320")


@pytest.mark.slow
@pytest.mark.parametrize("fmt,registered,aux", [("zip", True, False), ("legacy", False, True)])
def test_resnet50_deeplabv3_at_full_size(r50_full, fmt, registered, aux):
    _check(_build(r50_full, fmt, registered, aux), r50_full, aux,
           f"resnet50 deeplabv3 256x320 {fmt} registered={registered} aux={aux}")


@pytest.mark.slow
@pytest.mark.parametrize("fmt,registered,aux", [
    ("zip", False, False), ("legacy", False, False), ("zip", False, True), ("zip", True, False),
    ("legacy", True, False)])
def test_resnet50_deeplabv3_every_way(r50, fmt, registered, aux):
    _check(_build(r50, fmt, registered, aux), r50, aux,
           f"resnet50 deeplabv3 {fmt} registered={registered} aux={aux}")


@pytest.mark.slow
@pytest.mark.parametrize("fmt,registered,aux", [("zip", False, False), ("legacy", True, True)])
def test_resnet101_deeplabv3(r101, fmt, registered, aux):
    _check(_build(r101, fmt, registered, aux, config="resnet101"), r101, aux,
           f"resnet101 deeplabv3 {fmt} registered={registered} aux={aux}")
