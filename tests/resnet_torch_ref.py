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


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, first_dilation=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, first_dilation, first_dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, first_dilation=1, dilation=1):
        super().__init__()
        # torchvision gives the block one dilation: the previous one for a
        # stage's first block, used by its 3x3 conv.
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, first_dilation, first_dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(out + idt)


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
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods = [block(self.inplanes, planes, stride, downsample, previous, self.dilation)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes, first_dilation=self.dilation, dilation=self.dilation)
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
    return nn.Sequential(
        nn.Conv2d(in_channels, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter), nn.ReLU(),
        nn.Dropout(0.1), nn.Conv2d(inter, classes, 1),
    )


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


def randomize(module, seed=0):
    """He-scaled random weights and random BN statistics, in eval mode."""
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
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module.eval()
