"""A small ResNet for scikit-learn's 8x8 digits: residual blocks with 1x1 downsample branches and global average
pooling, the structure of a CIFAR ResNet at digits' size.  It exports as an integer graph (residual adds,
requantization, average pooling) and every conv runs in RTL."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["digits_resnet", "BasicBlock", "DigitsResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (ReLU between), plus the input -- through a 1x1 conv-BN when the shape changes -- then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class DigitsResNet(nn.Module):
    """Stem conv, three stages of one BasicBlock (16, 32, 64 channels; 8x8 -> 4x4 -> 2x2), global average pool,
    one Linear: about 78 k parameters and 0.76 M MACs per image."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def digits_resnet(num_classes: int = 10) -> DigitsResNet:
    """Input ``[N, 1, 8, 8]`` -> logits ``[N, 10]``."""
    return DigitsResNet(num_classes)
