"""segmentation_models_pytorch (SMP) 0.6.0 parity (issue 21): its decoders as
zoo heads, its ``state_dict`` loaded by :func:`zoo.from_smp`.

Each case builds ``smp.<Arch>(encoder, encoder_weights=None, classes=3)``
with random weights and non-trivial BatchNorm statistics, saves its
``state_dict``, loads it with ``zoo.from_smp`` and compares logits. The
reference side pads a non-divisible input with zeros to SMP's multiple and
the comparison reads the crop. SMP is imported through
``tests/support/smp_ref.py`` (see CONTRIBUTING.md, "Running SMP in tests").
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.smp_ref import import_smp, save_state, smp_forward, smp_model

smp = import_smp()

import zoo  # noqa: E402
from zoo.weights import CheckpointError  # noqa: E402

ARCHS = ("Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3Plus", "Linknet", "MAnet", "UPerNet")
# SMP refuses to dilate VGG (DeepLabV3Plus needs output stride 16).
VGG_ARCHS = tuple(a for a in ARCHS if a != "DeepLabV3Plus")
CLASSES = 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _x(h, w, seed=0):
    return np.random.default_rng(seed).standard_normal((1, h, w, 3)).astype("float32")


def assert_parity(ours, ref, rtol=1e-4):
    """Within ``rtol`` of the reference's largest magnitude (float32 sums
    over thousands of terms; random weights reach large logits)."""
    scale = float(np.abs(ref).max())
    diff = float(np.abs(ours - ref).max())
    assert ours.shape == ref.shape
    assert diff <= rtol * max(scale, 1.0), f"max abs diff {diff:.3g} at scale {scale:.3g}"
    return diff, scale


def _parity(arch, encoder, tmp_path, sizes=((64, 64),), **kwargs):
    ref = smp_model(arch, encoder, classes=CLASSES, **kwargs)
    path = save_state(ref, tmp_path)
    model = zoo.from_smp(arch, encoder, classes=CLASSES, weights=path, **kwargs)
    for h, w in sizes:
        x = _x(h, w)
        assert_parity(np.asarray(model(x)), smp_forward(ref, x))
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_every_head_on_resnet18(arch, tmp_path):
    # Unet also runs a size SMP refuses (not a multiple of 32): the zoo pads
    # it, and equals SMP on the zero-padded input, compared on the crop.
    sizes = ((64, 64), (37, 53)) if arch == "Unet" else ((64, 64),)
    model = _parity(arch, "resnet18", tmp_path, sizes=sizes)
    assert model.zoo["head"] == arch.lower()


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["resnet34", "resnet50"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_head_on_deeper_resnets_two_sizes(arch, encoder, tmp_path):
    _parity(arch, encoder, tmp_path, sizes=((64, 96), (50, 83)))


@pytest.mark.slow
@pytest.mark.parametrize("arch", VGG_ARCHS)
def test_every_head_on_vgg16_two_sizes(arch, tmp_path):
    _parity(arch, "vgg16", tmp_path, sizes=((64, 96), (50, 83)))


@pytest.mark.slow
def test_non_default_arguments(tmp_path):
    _parity("Unet", "resnet18", tmp_path, decoder_attention_type="scse")
    _parity("UnetPlusPlus", "resnet18", tmp_path, decoder_attention_type="scse")
    _parity("Unet", "resnet18", tmp_path, decoder_channels=(128, 64, 32, 16, 8),
            decoder_interpolation="bilinear")
    _parity("FPN", "resnet18", tmp_path, decoder_merge_policy="cat", encoder_depth=4, upsampling=2)
    _parity("DeepLabV3Plus", "resnet18", tmp_path, encoder_output_stride=8)
    _parity("Linknet", "resnet18", tmp_path, decoder_use_norm=False)


def test_deeplabv3plus_dilates_like_make_dilated():
    model = zoo.from_smp("DeepLabV3Plus", "resnet18")
    rates = {l.name: l.dilation_rate[0] for l in model.layers if l.name.startswith("layer4_")
             and hasattr(l, "dilation_rate")}
    # SMP's make_dilated: every 3x3 conv of layer4 at dilation 2, the first block's included.
    assert rates["layer4_0_conv1"] == rates["layer4_0_conv2"] == rates["layer4_1_conv1"] == 2


def test_wrong_arch_or_encoder_names_the_first_mismatched_layer(tmp_path):
    path = save_state(smp_model("FPN", "resnet18", classes=CLASSES), tmp_path, "fpn.pth")
    with pytest.raises(CheckpointError, match=r"decoder_blocks_0_conv1_0|decoder\.p5"):
        zoo.from_smp("Unet", "resnet18", classes=CLASSES, weights=path)
    with pytest.raises(ValueError, match="encoder"):
        zoo.from_smp("Unet", "efficientnet-b0")


@pytest.mark.slow
def test_wrong_encoder_depth_names_the_first_extra_layer(tmp_path):
    path = save_state(smp_model("Unet", "resnet34", classes=CLASSES), tmp_path, "unet34.pth")
    with pytest.raises(CheckpointError, match=r"encoder\.layer1\.2"):
        zoo.from_smp("Unet", "resnet18", classes=CLASSES, weights=path)


def test_convert_cli_then_registry_rebuild(tmp_path):
    """``zoo convert --from-smp`` writes a .weights.h5; the registry builds the
    same model from the printed arguments (what zoo export/predict do)."""
    from zoo.cli import main
    from zoo.smp import smp_builder_kwargs

    ref = smp_model("Unet", "resnet18", classes=CLASSES)
    src = save_state(ref, tmp_path, "unet.pth")
    dst = str(tmp_path / "unet.weights.h5")
    main(["convert", src, dst, "--from-smp", "Unet", "resnet18", "--classes", str(CLASSES)])
    name, kwargs = smp_builder_kwargs("Unet", "resnet18", CLASSES)
    model = zoo.create_model(name, weights=dst, **kwargs)
    x = _x(64, 64)
    assert_parity(np.asarray(model(x)), smp_forward(ref, x))


def test_safetensors_file(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    ref = smp_model("FPN", "resnet18", classes=CLASSES)
    path = str(tmp_path / "fpn.safetensors")
    safetensors_torch.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    model = zoo.from_smp("FPN", "resnet18", classes=CLASSES, weights=path)
    x = _x(64, 64)
    assert_parity(np.asarray(model(x)), smp_forward(ref, x))


WORKER = """
import sys, numpy as np, zoo
arch, path, x_path, out = sys.argv[1:5]
model = zoo.from_smp(arch, "resnet18", classes=3, weights=path)
np.save(out, np.asarray(model.predict(np.load(x_path), verbose=0)))
"""


@pytest.mark.backends
@pytest.mark.parametrize("backend,arch", [("jax", "FPN"), ("torch", "Unet")])
def test_other_keras_backends(backend, arch, tmp_path):
    pytest.importorskip(backend)
    ref = smp_model(arch, "resnet18", classes=CLASSES)
    path = save_state(ref, tmp_path)
    x = _x(64, 96)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-c", WORKER, arch, path, str(tmp_path / "x.npy"), str(out)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_parity(np.load(out), smp_forward(ref, x))
