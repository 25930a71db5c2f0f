"""A PyTorch GoogLeNet written from torchvision's ``models/googlenet.py``
(module names, ceil-mode pools, the 3x3 "5x5" branch, BN eps 1e-3, the
auxiliary heads and ``transform_input``), used only as the tests' reference.
"""

import torch
from torch import nn
from torch.nn import functional as F

from tests.support.torch_blocks import ConvBN
from tests.support.torch_blocks import randomize_ as randomize  # noqa: F401 - the tests' entry point

BLOCKS = (
    ("inception3a", 192, (64, 96, 128, 16, 32, 32)),
    ("inception3b", 256, (128, 128, 192, 32, 96, 64)),
    ("inception4a", 480, (192, 96, 208, 16, 48, 64)),
    ("inception4b", 512, (160, 112, 224, 24, 64, 64)),
    ("inception4c", 512, (128, 128, 256, 24, 64, 64)),
    ("inception4d", 512, (112, 144, 288, 32, 64, 64)),
    ("inception4e", 528, (256, 160, 320, 32, 128, 128)),
    ("inception5a", 832, (256, 160, 320, 32, 128, 128)),
    ("inception5b", 832, (384, 192, 384, 48, 128, 128)),
)


def BasicConv2d(cin, cout, **kwargs):
    """torchvision's BasicConv2d: conv (no bias), BN with eps 1e-3, ReLU."""
    return ConvBN(cin, cout, eps=0.001, **kwargs)


class Inception(nn.Module):
    def __init__(self, cin, c1, r3, c3, r5, c5, pp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, r3, kernel_size=1),
                                     BasicConv2d(r3, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, r5, kernel_size=1),
                                     BasicConv2d(r5, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin, classes):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = torch.flatten(self.conv(x), 1)
        return self.fc2(F.relu(self.fc1(x)))


class GoogLeNet(nn.Module):
    def __init__(self, classes=1000, aux_logits=True, transform_input=False):
        super().__init__()
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cin, cfg in BLOCKS:
            setattr(self, name, Inception(cin, *cfg))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        if aux_logits:
            self.aux1 = InceptionAux(512, classes)
            self.aux2 = InceptionAux(528, classes)
        self.aux_logits = aux_logits
        self.fc = nn.Linear(1024, classes)

    def features(self, x):
        if self.transform_input:
            x = torch.cat([
                x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
            ], 1)
        out = {}
        x = self.maxpool1(self.conv1(x))
        x = self.conv3(self.conv2(x))
        out["stem"] = x
        x = self.maxpool2(x)
        x = self.inception3b(self.inception3a(x))
        out["inception3"] = x
        x = self.maxpool3(x)
        x = self.inception4a(x)
        out["inception4a"] = x
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        out["inception4d"] = x
        x = self.inception4e(x)
        out["inception4"] = x
        x = self.maxpool4(x)
        x = self.inception5b(self.inception5a(x))
        out["inception5"] = x
        return out

    def forward(self, x):
        f = self.features(x)
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(f["inception5"], 1), 1))
        if self.aux_logits:
            return logits, self.aux2(f["inception4d"]), self.aux1(f["inception4a"])
        return logits
