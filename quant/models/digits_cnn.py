"""A small CNN for scikit-learn's 8x8 digits, built only from layers that map onto an integer datapath."""

from __future__ import annotations

from torch import nn

__all__ = ["digits_cnn"]


def digits_cnn(num_classes: int = 10) -> nn.Sequential:
    """Conv-BN-ReLU x3 with two 2x2 max-pools, then one Linear: input ``[N, 1, 8, 8]`` -> logits ``[N, 10]``.

    Shapes: 1x8x8 -> 16x8x8 -> 32x8x8 -> pool 32x4x4 -> 32x4x4 -> pool 32x2x2 -> flatten 128 -> 10.
    About 15.5 k parameters and 0.45 M MACs per image.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, num_classes),
    )
