"""An independent PyTorch ResNet/FCN with torchvision's module names.

torchvision has no CPU wheel here, so this re-states its ``resnet.py`` and
``segmentation/fcn.py`` in a few lines for the parity tests: BasicBlock /
Bottleneck v1.5 (stride in the 3x3), ``replace_stride_with_dilation`` with
``previous_dilation`` for a stage's first block, and ``FCNHead``. BasicBlock
dilation (refused by torchvision) follows timm: conv1 at the previous
dilation, conv2 at the stage's.
"""

import torch
from torch import nn
from torch.nn import functional as F

from tests.support.torch_blocks import (BasicBlock, Bottleneck, conv_bn_relu_modules, deeplab_head,
                                downsample)
from tests.support.torch_blocks import randomize_ as randomize  # noqa: F401 - the tests' entry point


def _block(block, inplanes, planes, stride, proj, first_dilation, dilation):
    # torchvision gives a Bottleneck one dilation (the previous one for a
    # stage's first block, in its 3x3 conv); BasicBlock gets a pair.
    if block is Bottleneck:
        return Bottleneck(inplanes, planes, stride, first_dilation, proj)
    return BasicBlock(inplanes, planes, stride, (first_dilation, dilation), proj)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, replace_stride_with_dilation=(False, False, False)):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        proj = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            proj = downsample(self.inplanes, planes * block.expansion, stride)
        mods = [_block(block, self.inplanes, planes, stride, proj, previous, self.dilation)]
        self.inplanes = planes * block.expansion
        mods += [_block(block, self.inplanes, planes, 1, None, self.dilation, self.dilation)
                 for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def features(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c4, self.layer4(c4)

    def forward(self, x):
        _, c5 = self.features(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(c5, 1), 1))


def fcn_head(in_channels, classes):
    inter = in_channels // 4
    return nn.Sequential(*conv_bn_relu_modules(in_channels, inter, 3), nn.Dropout(0.1),
                         nn.Conv2d(inter, classes, 1))


class FCN(nn.Module):
    """torchvision's ``fcn_resnet*``: ``backbone.*``, ``classifier.*``, ``aux_classifier.*``."""

    def __init__(self, backbone, classes=21):
        super().__init__()
        del backbone.fc  # IntermediateLayerGetter drops avgpool and fc
        self.backbone = backbone
        c5 = backbone.layer4[-1].bn2.num_features if isinstance(backbone.layer4[-1], BasicBlock) \
            else backbone.layer4[-1].bn3.num_features
        self.classifier = fcn_head(c5, classes)
        self.aux_classifier = fcn_head(c5 // 2, classes)

    def forward(self, x):
        size = x.shape[-2:]
        c4, c5 = self.backbone.features(x)
        out = F.interpolate(self.classifier(c5), size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_classifier(c4), size, mode="bilinear", align_corners=False)
        return {"out": out, "aux": aux}


CONFIGS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


def build(config, output_stride=32, num_classes=1000):
    block, layers = CONFIGS[config]
    return ResNet(block, layers, num_classes, DILATE[output_stride])


class DeepLabV3(nn.Module):
    """torchvision's ``deeplabv3_resnet*``: an output-stride-8 backbone
    (``backbone.*``), ``classifier.*`` = DeepLabHead on layer4 and the optional
    ``aux_classifier.*`` = FCNHead on layer3, both upsampled to the input."""

    def __init__(self, backbone, classes=21, aux=False):
        super().__init__()
        del backbone.fc
        self.backbone = backbone
        self.classifier = deeplab_head(backbone.inplanes, classes)
        self.aux_classifier = fcn_head(backbone.inplanes // 2, classes) if aux else None

    def forward(self, x):
        size = x.shape[-2:]
        c4, c5 = self.backbone.features(x)
        out = {"out": F.interpolate(self.classifier(c5), size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            out["aux"] = F.interpolate(self.aux_classifier(c4), size, mode="bilinear",
                                       align_corners=False)
        return out


def deeplabv3(config="resnet50", classes=21, aux=False):
    """``deeplabv3_resnet50/101(weights=None, weights_backbone=None,
    num_classes=classes, aux_loss=aux)``: the backbone dilates layer3 and layer4."""
    return DeepLabV3(build(config, output_stride=8), classes, aux)
