"""A small 1-D CNN for MNIST-1D, built only from layers that map onto an integer datapath."""

from __future__ import annotations

from torch import nn

__all__ = ["mnist1d_cnn"]


def mnist1d_cnn(num_classes: int = 10, channels: int = 32) -> nn.Sequential:
    """Three Conv1d(k=5, pad=2)-BN-ReLU blocks, the last two with stride 2, then one Linear.

    Input ``[N, 1, 40]`` -> logits ``[N, 10]``. Lengths: 40 -> 40 -> 20 -> 10, flatten ``channels * 10`` -> 10.
    """
    c = channels
    return nn.Sequential(
        nn.Conv1d(1, c, kernel_size=5, padding=2),
        nn.BatchNorm1d(c),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm1d(c),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm1d(c),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c * 10, num_classes),
    )
