"""Uniform quantizer primitives: specs, block granularity, scales, quantize / dequantize.

Weights are handled in GEMM form ``W[out, in]`` with a channel-major reduction (PyTorch's
``[out, in_c * k_h * k_w]``).  A weight's *granularity* is a grid of ``n_v x n_h`` blocks with
one scale each: ``n_v`` contiguous groups of output rows and ``n_h`` contiguous groups of *input
channels* (a channel's ``k_h * k_w`` elements never straddle two blocks, so block boundaries
are the partial-sum boundaries of the integer datapath).  ``(1, 1)`` is per-tensor,
``(out, 1)`` per-channel, anything else PTQ-SL's sub-layerwise scales.

Codes use round-half-to-even (``numpy.rint`` / ``torch.round``, in float64) everywhere, so the
fake-quant model and the integer export produce the same codes; the golden integer model's
fixed-point requantization tracks the fake-quant model within the bound in docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.errors import QuantInputError

__all__ = [
    "QuantSpec",
    "Blocks",
    "block_bounds",
    "block_scales",
    "expand_blocks",
    "quantize",
    "dequantize",
    "fake_quantize",
    "check_finite",
    "check_seed",
    "MIN_BITS",
    "MAX_BITS",
]

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class QuantSpec:
    """A b-bit uniform grid.

    * symmetric signed (weights): codes ``[-2^(b-1), 2^(b-1) - 1]``, zero point 0;
    * asymmetric unsigned (activations): codes ``[0, 2^b - 1]`` with an integer zero point;
    * symmetric unsigned (non-negative activations, e.g. after ReLU): ``[0, 2^b - 1]``, zero point 0.
    """

    bits: int
    symmetric: bool = True
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or not MIN_BITS <= int(self.bits) <= MAX_BITS:
            raise QuantInputError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {self.bits!r}")
        if not self.symmetric and self.signed:
            raise QuantInputError("an asymmetric quantizer is unsigned (codes 0..2^b-1 with a zero point)")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin + 1


@dataclass(frozen=True)
class Blocks:
    """An ``n_v x n_h`` block grid over a GEMM-form weight (rows x input-channel groups)."""

    n_v: int = 1
    n_h: int = 1

    def check(self, out_features: int, in_channels: int) -> None:
        if not (1 <= self.n_v <= out_features):
            raise QuantInputError(f"n_V={self.n_v} must be in 1..{out_features} (output channels)")
        if not (1 <= self.n_h <= in_channels):
            raise QuantInputError(f"n_H={self.n_h} must be in 1..{in_channels} (input channels)")


def block_bounds(size: int, parts: int) -> np.ndarray:
    """Boundaries of ``parts`` contiguous, near-equal groups of ``size`` items (numpy array_split rule)."""
    base, extra = divmod(size, parts)
    sizes = np.full(parts, base, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def expand_blocks(values: np.ndarray, out_features: int, in_channels: int, kernel: int) -> np.ndarray:
    """Broadcast per-block ``values[n_v, n_h]`` to the weight shape ``[out, in_channels * kernel]``."""
    n_v, n_h = values.shape
    rows = np.repeat(np.arange(n_v), np.diff(block_bounds(out_features, n_v)))
    cols = np.repeat(np.repeat(np.arange(n_h), np.diff(block_bounds(in_channels, n_h))), kernel)
    return values[rows][:, cols]


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise a one-line error if ``array`` holds NaN or inf."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise QuantInputError(f"{name}: {int(bad.sum())} non-finite values (NaN or inf); refusing to quantize")


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int; a bool, a non-integer or a negative value raises a one-line error naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise QuantInputError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def block_scales(weight: np.ndarray, blocks: Blocks, spec: QuantSpec, kernel: int = 1) -> np.ndarray:
    """Max-abs scales per block, ``max|W_block| / qmax`` (symmetric); shape [n_v, n_h].

    An all-zero block gets scale 1 (any scale represents it exactly)."""
    w = np.asarray(weight, dtype=np.float64)
    check_finite("weight", w)
    out, cols = w.shape
    if cols % kernel:
        raise QuantInputError(f"weight has {cols} columns, not a multiple of the kernel size {kernel}")
    in_ch = cols // kernel
    blocks.check(out, in_ch)
    rb, cb = block_bounds(out, blocks.n_v), block_bounds(in_ch, blocks.n_h) * kernel
    amax = np.array(
        [[np.abs(w[rb[i] : rb[i + 1], cb[j] : cb[j + 1]]).max() for j in range(blocks.n_h)] for i in range(blocks.n_v)]
    )
    scale = amax / spec.qmax
    return np.where(scale > 0, scale, 1.0)


def quantize(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, spec: QuantSpec) -> np.ndarray:
    """Integer codes ``clip(rint(x / scale) + zero_point, qmin, qmax)`` as int64."""
    q = np.rint(np.asarray(x, dtype=np.float64) / scale) + zero_point
    return np.clip(q, spec.qmin, spec.qmax).astype(np.int64)


def dequantize(codes: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int = 0) -> np.ndarray:
    """``(codes - zero_point) * scale`` as float64."""
    return (np.asarray(codes, dtype=np.float64) - zero_point) * scale


def fake_quantize(
    x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, spec: QuantSpec
) -> np.ndarray:
    """Quantize then dequantize (float64)."""
    return dequantize(quantize(x, scale, zero_point, spec), scale, zero_point)
