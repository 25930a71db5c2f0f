"""A small, independent PyTorch reference of DRN-A/C/D and DRNSeg (test only).

Written from the paper (Yu, Koltun & Funkhouser 2017) and the published
state_dict layouts (module paths and tensor shapes) so that its
``state_dict()`` keys are exactly the official checkpoints' keys. It shares no
code with ``zoo.models.drn``: the structure is spelled out here as explicit
per-variant stage lists, the padding is PyTorch's own symmetric padding, and
pooling is a plain ``mean`` over the map.
"""

import functools

import torch
from torch import nn

from tests.support import torch_blocks
from tests.support.torch_blocks import BasicBlock, Bottleneck, conv, conv_bn_relu_modules, downsample

# BN scales in [0.5, 1) keep DRN's activations O(1) through its depth.
randomize_ = functools.partial(torch_blocks.randomize_, bn_gamma=(0.5, 1.0))

# (arch, block, depths) exactly as the paper's table / official builders.
VARIANTS = {
    "drn_a_18": ("A", "basic", [2, 2, 2, 2]),
    "drn_a_34": ("A", "basic", [3, 4, 6, 3]),
    "drn_a_50": ("A", "bottle", [3, 4, 6, 3]),
    "drn_c_26": ("C", "basic", [1, 1, 2, 2, 2, 2, 1, 1]),
    "drn_c_42": ("C", "basic", [1, 1, 3, 4, 6, 3, 1, 1]),
    "drn_c_58": ("C", "bottle", [1, 1, 3, 4, 6, 3, 1, 1]),
    "drn_d_22": ("D", "basic", [1, 1, 2, 2, 2, 2, 1, 1]),
    "drn_d_24": ("D", "basic", [1, 1, 2, 2, 2, 2, 2, 2]),
    "drn_d_38": ("D", "basic", [1, 1, 3, 4, 6, 3, 1, 1]),
    "drn_d_40": ("D", "basic", [1, 1, 3, 4, 6, 3, 2, 2]),
    "drn_d_54": ("D", "bottle", [1, 1, 3, 4, 6, 3, 1, 1]),
    "drn_d_56": ("D", "bottle", [1, 1, 3, 4, 6, 3, 2, 2]),
    "drn_d_105": ("D", "bottle", [1, 1, 3, 4, 23, 3, 1, 1]),
    "drn_d_107": ("D", "bottle", [1, 1, 3, 4, 23, 3, 2, 2]),
}


def Basic(cin, width, stride, dil, shortcut, add=True, keep_proj=False):
    """fyu/drn's BasicBlock; DRN-C-58's layer7 keeps a projection it never adds."""
    proj = downsample(cin, width, stride) if shortcut and (add or keep_proj) else None
    return BasicBlock(cin, width, stride, dil, proj, residual=add)


def Bottle(cin, width, stride, dil, shortcut, add=True, keep_proj=False):
    """fyu/drn's Bottleneck (dilation in the 3x3, always residual)."""
    proj = downsample(cin, 4 * width, stride) if shortcut else None
    return Bottleneck(cin, width, stride, dil[1], proj)


Basic.growth, Bottle.growth = 1, 4


def _plain(cin, cout, n, stride, dilation):
    mods = []
    for i in range(n):
        mods += conv_bn_relu_modules(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, dilation)
    return nn.Sequential(*mods)


class RefDRN(nn.Module):
    """DRN backbone + 1x1 classifier; ``forward`` returns logits (global mean
    pooling), ``heatmap`` the per-cell logits, ``stages`` the stage outputs."""

    def __init__(self, variant, classes=1000, output_stride=8):
        super().__init__()
        arch, kind, depths = VARIANTS[variant]
        blk = Basic if kind == "basic" else Bottle
        self.arch = arch
        self.names = []
        self.cin = None

        def res_stage(cls, width, n, stride, dil, first_dil, add=True):
            blocks = []
            for i in range(n):
                s = stride if i == 0 else 1
                d = first_dil if i == 0 else dil
                out = width * cls.growth
                need = i == 0 and (s != 1 or self.cin != out)
                # DRN-C-58's layer7 keeps a projection the forward never adds.
                blocks.append(cls(self.cin, width, s, (d, d), need, add, keep_proj=True))
                self.cin = out
            return nn.Sequential(*blocks)

        if arch == "A":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.cin = 64
            plan = {8: [(1, 1), (2, 1), (1, 2), (1, 4)], 32: [(1, 1), (2, 1), (2, 1), (2, 1)]}[output_stride]
            for i, (width, (s, d)) in enumerate(zip([64, 128, 256, 512], plan)):
                # ResNet's first block of a stage stays undilated in DRN-A.
                setattr(self, f"layer{i + 1}", res_stage(blk, width, depths[i], s, d, 1))
            self.fc = nn.Linear(self.cin, classes)
            return
        if arch == "C":
            self.conv1 = conv(3, 16, 7)
            self.bn1 = nn.BatchNorm2d(16)
            self.cin = 16
            self.layer1 = res_stage(Basic, 16, depths[0], 1, 1, 1)
            self.layer2 = res_stage(Basic, 32, depths[1], 2, 1, 1)
        else:
            self.layer0 = nn.Sequential(conv(3, 16, 7), nn.BatchNorm2d(16), nn.ReLU())
            self.layer1 = _plain(16, 16, depths[0], 1, 1)
            self.layer2 = _plain(16, 32, depths[1], 2, 1)
            self.cin = 32
        self.layer3 = res_stage(blk, 64, depths[2], 2, 1, 1)
        self.layer4 = res_stage(blk, 128, depths[3], 2, 1, 1)
        self.layer5 = res_stage(blk, 256, depths[4], 1, 2, 2)
        self.layer6 = res_stage(blk, 512, depths[5], 1, 4, 4)
        if arch == "C":
            self.layer7 = res_stage(Basic, 512, depths[6], 1, 2, 2, add=False)
            self.layer8 = res_stage(Basic, 512, depths[7], 1, 1, 1, add=False)
        else:
            self.layer7 = _plain(self.cin, 512, depths[6], 1, 2)
            self.layer8 = _plain(512, 512, depths[7], 1, 1)
            self.cin = 512
        self.fc = nn.Conv2d(self.cin, classes, 1)

    def stages(self, x):
        outs = []
        if self.arch == "A":
            x = torch.relu(self.bn1(self.conv1(x)))
            x = nn.functional.max_pool2d(x, 3, 2, 1)
            layers = [self.layer1, self.layer2, self.layer3, self.layer4]
        else:
            if self.arch == "C":
                x = torch.relu(self.bn1(self.conv1(x)))
            else:
                x = self.layer0(x)
            layers = [getattr(self, f"layer{i}") for i in range(1, 9)]
        for layer in layers:
            x = layer(x)
            outs.append(x)
        return outs

    def _fc(self, x):
        if isinstance(self.fc, nn.Linear):
            w = self.fc.weight[:, :, None, None]
            return nn.functional.conv2d(x, w, self.fc.bias)
        return self.fc(x)

    def heatmap(self, x):
        return self._fc(self.stages(x)[-1])

    def forward(self, x):
        feat = self.stages(x)[-1]
        return self._fc(feat.mean(dim=(2, 3), keepdim=True)).flatten(1)


class RefDRNSeg(nn.Module):
    """DRNSeg: ``base`` = the DRN's children without the classifier, ``seg``
    1x1 to classes, ``up`` grouped bilinear x8 transposed conv. Returns the
    upsampled logits (the official returns their log_softmax)."""

    def __init__(self, variant, classes=19):
        super().__init__()
        drn = RefDRN(variant, classes=1000)
        kids = [m for n, m in drn.named_children() if n != "fc"]
        if drn.arch in ("A", "C"):
            kids = kids[:2] + [nn.ReLU()] + kids[2:]
        if drn.arch == "A":
            kids = kids[:3] + [nn.MaxPool2d(3, 2, 1)] + kids[3:]
        self.base = nn.Sequential(*kids)
        self.seg = nn.Conv2d(drn.cin, classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4,
                                     groups=classes, bias=False)
        # Bilinear kernel for a x8 upsampling.
        f = 8
        centre = (16 - 1) / 2
        r = 1 - torch.abs(torch.arange(16, dtype=torch.float64) - centre) / f
        with torch.no_grad():
            self.up.weight.copy_((r[:, None] * r[None, :]).float().expand(classes, 1, 16, 16))

    def forward(self, x):
        return self.up(self.seg(self.base(x)))
