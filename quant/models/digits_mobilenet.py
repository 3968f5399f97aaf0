"""A MobileNetV2-style net for scikit-learn's 8x8 digits: inverted residual blocks (1x1 expansion, 3x3 depthwise,
1x1 linear projection, a residual add where the shape allows it) with ReLU6.  It exports as an integer graph and
its depthwise convs run in RTL group by group."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["digits_mobilenet", "InvertedResidual", "DigitsMobileNet"]


class InvertedResidual(nn.Module):
    """1x1 conv-BN-ReLU6 (x ``expand``), 3x3 depthwise conv-BN-ReLU6 (``stride``), 1x1 conv-BN; plus the input when
    ``stride == 1`` and the channel counts agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class DigitsMobileNet(nn.Module):
    """Stem conv (16), inverted residuals 16 -> 16 -> 24 (stride 2) -> 24 -> 32 (stride 2), a 1x1 conv to 64,
    global average pool (``mean``), one Linear: about 21 k parameters and 0.34 M MACs per image."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 2),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),
        )
        self.head = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6())
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean([2, 3]))


def digits_mobilenet(num_classes: int = 10) -> DigitsMobileNet:
    """Input ``[N, 1, 8, 8]`` -> logits ``[N, 10]``."""
    return DigitsMobileNet(num_classes)
