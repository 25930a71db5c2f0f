"""The conv/BN building blocks of the tests' PyTorch references (test only).

One module for the blocks the ResNet, DRN, GoogLeNet and DeepLabV3
references share, written from torchvision's and fyu/drn's documented
architectures (module names and tensor layouts, so that ``state_dict()``
keys are the upstream checkpoints' keys), plus one randomiser for them.
"""

import torch
from torch import nn
from torch.nn import functional as F


def conv(cin, cout, k, stride=1, dilation=1, bias=False):
    """A ``k x k`` convolution with PyTorch's symmetric "same" padding."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2),
                     dilation=dilation, bias=bias)


def conv_bn_relu_modules(cin, cout, k, stride=1, dilation=1, eps=1e-5):
    """``[Conv2d, BatchNorm2d, ReLU]``, for Sequentials that number their children
    (DRN-D's plain stages, torchvision's FCNHead, ASPP branches)."""
    return [conv(cin, cout, k, stride, dilation), nn.BatchNorm2d(cout, eps=eps), nn.ReLU()]


def conv_bn_relu(cin, cout, k, stride=1, dilation=1, eps=1e-5):
    """``nn.Sequential(Conv2d, BatchNorm2d, ReLU)`` (keys ``0.*`` and ``1.*``)."""
    return nn.Sequential(*conv_bn_relu_modules(cin, cout, k, stride, dilation, eps))


def downsample(cin, cout, stride=1):
    """The residual projection: 1x1 conv and BN (keys ``0.*``, ``1.*``)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ConvBN(nn.Module):
    """Conv (no bias), BN, ReLU as attributes ``conv`` and ``bn``
    (torchvision's GoogLeNet/Inception ``BasicConv2d``)."""

    def __init__(self, cin, cout, eps=1e-5, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (``conv1 bn1 conv2 bn2 downsample``).

    Args:
        cin: input channels.
        planes: output channels.
        stride: stride of ``conv1``.
        dilation: ``(d1, d2)`` of ``conv1`` and ``conv2`` (torchvision's
            ``previous_dilation`` for a stage's first block, DRN's pair).
        downsample: the projection module, or None for an identity shortcut.
        residual: False for DRN-C's degridding layers, which keep the
            projection's weights but never add the shortcut.
    """

    expansion = 1

    def __init__(self, cin, planes, stride=1, dilation=(1, 1), downsample=None, residual=True):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            y = y + (x if self.downsample is None else self.downsample(x))
        return F.relu(y)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride and dilation in the 3x3 ``conv2``),
    4x expansion: ``conv1 bn1 conv2 bn2 conv3 bn3 downsample``."""

    expansion = 4

    def __init__(self, cin, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def randomize_(module, seed=0, bn_gamma=(0.5, 1.5)):
    """Well-conditioned random weights and BN statistics, in place; eval mode.

    Convolutions and linear layers get He-scaled normal weights and small
    biases; BN layers random affine parameters and running statistics
    (variances in [0.5, 1.5)), so a transposed kernel or a wrong epsilon
    shows. Transposed convolutions (frozen bilinear upsampling) are left as
    built.

    Args:
        module: an ``nn.Module``.
        seed: seed of the generator.
        bn_gamma: range of the BN scales. DRN passes ``(0.5, 1.0)``: its
            22-105 layers without a global scale would otherwise grow the
            activations to ~1e3, where float32 rounding swamps the parity
            tolerance.

    Returns:
        ``module``, in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                lo, hi = bn_gamma
                m.weight.copy_(torch.rand(n, generator=g) * (hi - lo) + lo)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module.eval()


class ASPPPooling(nn.Sequential):
    """torchvision's image-pooling branch: global mean, 1x1 conv-BN-ReLU,
    bilinear back to the map's size (children ``1`` conv, ``2`` BN)."""

    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """torchvision's ASPP: ``convs`` = 1x1 branch, one 3x3 branch per rate,
    image pooling; ``project`` = 1x1 conv-BN-ReLU over their concatenation
    (then dropout 0.5, identity in eval)."""

    def __init__(self, cin, rates=(12, 24, 36), cout=256):
        super().__init__()
        branches = [conv_bn_relu(cin, cout, 1)]
        branches += [conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu_modules(len(branches) * cout, cout, 1),
                                     nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.convs], 1))


def deeplab_head(cin, classes, rates=(12, 24, 36)):
    """torchvision's ``DeepLabHead``: ASPP, 3x3 conv-BN-ReLU, 1x1 classifier
    with bias (keys ``0.*`` ASPP, ``1`` conv, ``2`` BN, ``4`` classifier)."""
    return nn.Sequential(ASPP(cin, rates), *conv_bn_relu_modules(256, 256, 3),
                         nn.Conv2d(256, classes, 1))
