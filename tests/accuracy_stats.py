"""Accuracy comparisons that a test set can resolve.

One digits test image is 0.25 points and one published mnist1d signal 0.1 points, and float kernels differ across
CPUs, so a quantized or fine-tuned model's accuracy moves by a few test inputs from machine to machine. Tests
therefore compare accuracies only with a margin of ``Z`` standard errors:

* paired (same inputs, per-input correctness known): McNemar's statistic on the discordant inputs;
* unpaired (only the two accuracies known): the binomial standard error of the difference.
"""

from __future__ import annotations

import math

import torch

#: standard errors of margin (one-sided false-alarm probability about 3e-5 under a normal approximation)
Z = 4.0


def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-input correctness (bool ``[N]``) of ``model`` in eval mode."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x).argmax(1) == y
    finally:
        model.train(was)


def discordant(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(inputs only ``a`` gets right, inputs only ``b`` gets right)."""
    return int((a & ~b).sum()), int((~a & b).sum())


def paired_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """McNemar's z for "a is more accurate than b": (a-only - b-only) / sqrt(a-only + b-only)."""
    a_only, b_only = discordant(a, b)
    return (a_only - b_only) / math.sqrt(max(a_only + b_only, 1))


def assert_beats(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """``a`` is more accurate than ``b`` by more than ``Z`` standard errors (paired)."""
    z = paired_z(a, b)
    assert z > Z, f"{what}: z = {z:.1f} <= {Z} (only-a-right {discordant(a, b)[0]}, only-b-right {discordant(a, b)[1]})"


def assert_within(a: torch.Tensor, b: torch.Tensor, points: float, what: str) -> None:
    """``a`` loses at most ``points`` of accuracy against ``b``, with ``Z`` standard errors to spare (paired):
    the upper confidence bound of the loss is below ``points``."""
    n = len(a)
    loss = 100.0 * float(b.float().mean() - a.float().mean())
    sigma = 100.0 * math.sqrt(max(sum(discordant(a, b)), 1)) / n
    assert loss + Z * sigma <= points, f"{what}: loss {loss:.2f} + {Z} x {sigma:.2f} points > {points}"


def unpaired_margin(acc_a: float, acc_b: float, n: int) -> float:
    """``Z`` binomial standard errors (in points) of the difference of two accuracies (percent) on ``n`` inputs
    each, as if independent (conservative for two models scored on the same inputs)."""

    def var(acc: float) -> float:
        p = min(max(acc / 100.0, 1.0 / n), 1.0 - 1.0 / n)
        return p * (1.0 - p) / n

    return 100.0 * Z * math.sqrt(var(acc_a) + var(acc_b))
