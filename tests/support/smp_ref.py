"""segmentation_models_pytorch 0.6.0 as a reference (tests only).

``import_smp()`` imports SMP or skips the test. SMP imports timm and
torchvision; the torchvision wheel that pairs with the CPU torch 2.13.0 is
PyPI's 0.28.0 (a CUDA build): its C++ ops library cannot load without CUDA,
and its ``torchvision._meta_registrations`` then fails on import, registering
a fake kernel for the absent ``torchvision::nms`` op. Only the detection ops
need that library; SMP uses the pure-Python ``torchvision.models``. So the
module is pre-seeded in ``sys.modules`` with an empty stand-in, in this test
process only, before torchvision is first imported: nothing is registered in
torch, no file is changed (see CONTRIBUTING.md, "Running SMP in tests").
"""

import os
import sys
import types

import numpy as np
import pytest

_META = "torchvision._meta_registrations"


def import_smp():
    """``segmentation_models_pytorch``, or a skip when it is not installed."""
    pytest.importorskip("torch")
    if "torchvision" not in sys.modules and _META not in sys.modules:
        sys.modules[_META] = types.ModuleType(_META)
    return pytest.importorskip("segmentation_models_pytorch")


def randomize(model, seed=0):
    """Non-trivial BN statistics and norm affine parameters, random conv
    biases (torch-side, in place; the conv kernels keep SMP's and
    torchvision's random initialisation); returns ``model`` in eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 1.0 + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.2)
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.2)
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.LayerNorm)):
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
    return model.eval()


def smp_model(arch, encoder, classes=3, seed=0, **kwargs):
    """A randomized SMP model in eval mode."""
    import torch

    smp = import_smp()
    torch.manual_seed(seed)
    model = getattr(smp, arch)(encoder, encoder_weights=None, classes=classes, **kwargs)
    return randomize(model, seed)


def save_state(model, folder, name="smp.pth"):
    """Writes ``model.state_dict()`` to ``folder/name``; returns the path."""
    import torch

    path = os.path.join(str(folder), name)
    torch.save(model.state_dict(), path)
    return path


def smp_forward(model, x_nhwc):
    """SMP's output (NHWC numpy) for an NHWC numpy input; the input is
    zero-padded bottom/right to SMP's multiple and the output cropped."""
    import torch

    n, h, w, _ = x_nhwc.shape
    m = 2 ** model.encoder._depth
    ph, pw = (-h) % m, (-w) % m
    x = np.pad(x_nhwc, ((0, 0), (0, ph), (0, pw), (0, 0)))
    with torch.no_grad():
        y = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return y.transpose(0, 2, 3, 1)[:, :h, :w, :]
