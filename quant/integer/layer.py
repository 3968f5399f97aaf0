"""The layer record of the golden integer model: :class:`IntegerLayer`, one Conv1d / Conv2d / Linear layer of the
integer datapath with every field ``model.npz`` stores, and its derived quantities (row blocks, effective scales,
worst-case partial sums and accumulators, the error bound, the ``meta.json`` summary).

The checks that make a layer a valid datapath layer live here too: :func:`validate_layer` (shapes and ranges that keep
the int64 datapath overflow-free) runs on every layer the export builds (:mod:`quant.export_layer`) and every layer
:mod:`quant.integer.loading` reads; :func:`layer_out_shape` is a layer's per-sample output shape, which the loader
chains through a stored model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from quant.errors import QuantInputError
from quant.integer.kernels import effective_block_scales
from quant.integer_graph import Quantizer, quantizer_of
from quant.quantizer import MAX_BITS, MIN_BITS
from quant.requant import INT32_MAX, INT32_MIN, INT64_MAX, MAX_SHIFT, exact, max_abs_offset

__all__ = ["LOGIT_BITS", "KIND_DIMS", "IntegerLayer", "layer_out_shape", "window_count", "validate_layer"]

LOGIT_BITS = 32  #: the last layer emits int32 logit codes (see quant.integer.requant_constants.logit_scale)
#: the number of spatial dimensions of each layer kind
KIND_DIMS = {"conv1d": 1, "conv2d": 2, "linear": 0}


@dataclass(eq=False)
class IntegerLayer:
    """One Conv1d / Conv2d / Linear layer of the integer datapath; every field is stored in ``model.npz``."""

    name: str
    kind: str  # "conv1d" | "conv2d" | "linear"
    out_features: int
    in_channels: int
    kernel_size: tuple[int, ...]  # () for linear
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]  # (before, after) per spatial dim, filled with the input zero point
    dilation: tuple[int, ...]
    w_bits: int
    w_codes: np.ndarray  # [out, in_channels * kernel] int8 (int16 if ever > 8 bits)
    w_scales: np.ndarray  # [n_v, n_h] float64, as quantized
    row_bounds: np.ndarray  # [n_v + 1] output-channel block bounds
    col_bounds: np.ndarray  # [n_h + 1] GEMM-column block bounds (multiples of the kernel)
    out_perm: np.ndarray  # [out] original index of each stored output channel (reorder)
    in_perm: np.ndarray  # [in_channels] original index of each stored input channel
    bias_real: np.ndarray  # [out] float64: the float bias of the fake-quant model
    bias: np.ndarray  # [out] int32 at scale s_y * 2^-(shift[v] - bias_shift[v])
    in_bits: int
    in_scale: float
    in_zero_point: int
    in_qmin: int
    in_qmax: int
    out_bits: int
    out_scale: float
    out_zero_point: int
    out_qmin: int  # clamp bounds; out_qmin = max(qmin, z_y) when a ReLU is fused
    out_qmax: int
    relu: bool  # a ReLU follows (fused into out_qmin)
    logits: bool  # last layer: int32 codes at out_scale, no output quantizer
    multiplier: np.ndarray  # [n_v, n_h] int32 in 0 .. 2^31 - 1
    shift: np.ndarray  # [n_v] int32 in 1 .. 62
    bias_shift: np.ndarray  # [n_v] int32 in 0 .. shift[v]: the bias enters A as B << T
    ops: list[dict[str, Any]] = field(default_factory=list)  # code-domain ops after this layer
    in_shape: tuple[int, ...] = ()  # per-sample input shape seen at export
    groups: int = 1  # grouped / depthwise conv: in_channels is per group
    product: bool = False  # a product of two activations: operand b replaces w_codes

    # derived ---------------------------------------------------------------------------------------------------
    @property
    def n_v(self) -> int:
        return len(self.row_bounds) - 1

    @property
    def n_h(self) -> int:
        return len(self.col_bounds) - 1

    @property
    def kernel(self) -> int:
        return int(np.prod(self.kernel_size)) if self.kernel_size else 1

    @property
    def reduction(self) -> int:
        return self.in_channels * self.kernel

    def in_quantizer(self) -> Quantizer:
        return quantizer_of(self.in_bits, self.in_scale, self.in_zero_point, self.in_qmin, self.in_qmax)

    def held_quantizer(self) -> Quantizer:
        """A product's ``b`` operand: symmetric signed ``w_bits`` codes at the (one) weight scale."""
        lo, hi = _grid(self.w_bits, True)
        return quantizer_of(self.w_bits, float(self.w_scales[0, 0]), 0, lo, hi)

    def out_quantizer(self) -> Quantizer:
        """The output grid (``out_qmin`` is the grid's, not the fused ReLU's clamp)."""
        if self.logits:
            return quantizer_of(self.out_bits, self.out_scale, self.out_zero_point, INT32_MIN, INT32_MAX)
        lo, hi = _grid(self.out_bits, self.out_qmax < (1 << self.out_bits) - 1)
        return quantizer_of(self.out_bits, self.out_scale, self.out_zero_point, lo, hi)

    def out_shape(self, in_shape: tuple[int, ...], where: str) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (refused if the layer cannot take it)."""
        return layer_out_shape(self, in_shape, where)

    def row_block(self) -> np.ndarray:
        """Row block index ``v`` of every output channel, shape [out]."""
        return np.repeat(np.arange(self.n_v), np.diff(self.row_bounds))

    def effective_scales(self) -> np.ndarray:
        return effective_block_scales(self.w_codes, self.w_scales, self.row_bounds, self.col_bounds)

    def bias_frac_bits(self) -> np.ndarray:
        """Fractional bits of the int32 bias per row block, ``F_v = S_v - T_v`` (bias scale ``s_y * 2^-F_v``)."""
        return self.shift.astype(np.int64) - self.bias_shift.astype(np.int64)

    def real_multipliers(self) -> list[list[Fraction]]:
        """Exact ``m_{v,h} = s_x * s_w_eff[v,h] / s_y``."""
        eff = self.effective_scales()
        sx, sy = exact(self.in_scale), exact(self.out_scale)
        return [[sx * exact(s) / sy for s in row] for row in eff]

    def psum_abs_max(self) -> np.ndarray:
        """Worst case ``|P_h|`` over all inputs, per output channel and block, shape [out, n_h] (int64)."""
        qx = max_abs_offset(self.in_qmin, self.in_qmax, self.in_zero_point)
        w = np.abs(self.w_codes.astype(np.int64))
        if self.product:  # any b codes: the largest magnitude of the signed grid everywhere
            w = np.full_like(w, 1 << (self.w_bits - 1))
        sums = np.stack([w[:, c0:c1].sum(axis=1) for c0, c1 in zip(self.col_bounds[:-1], self.col_bounds[1:])], axis=1)
        return sums * qx

    def error_bound_lsb(self) -> np.ndarray:
        """Per output channel, the bound ``delta_r`` (output LSBs) on ``|A / 2^S - y_exact / s_y|`` (see the docs).

        ``delta_r = sum_h |M_{v,h} / 2^S_v - m_{v,h}| * Pmax_{r,h} + |B_r / 2^F_v - b_r / s_y|``;
        the dequantized golden output is then within ``(1/2 + delta_r) * s_y`` of the clamped exact output.
        Exact rational arithmetic, rounded up to float64."""
        reals = self.real_multipliers()
        pmax = self.psum_abs_max()
        rows = self.row_block()
        frac = self.bias_frac_bits()
        out = np.empty(self.out_features)
        for r in range(self.out_features):
            v = int(rows[r])
            two_s = Fraction(2) ** int(self.shift[v])
            err = sum(
                (
                    abs(Fraction(int(mh)) / two_s - m) * int(p)
                    for mh, m, p in zip(self.multiplier[v], reals[v], pmax[r])
                ),
                Fraction(0),
            )
            bias_lsb = exact(self.bias_real[r]) / exact(self.out_scale)
            err += abs(Fraction(int(self.bias[r]), 1 << int(frac[v])) - bias_lsb)
            out[r] = np.nextafter(float(err), np.inf)
        return out

    def acc_abs_max(self) -> int:
        """Worst case ``|A| + 2^(S-1)`` over all inputs (Python int; must be <= 2^63 - 1)."""
        pmax, rows = self.psum_abs_max(), self.row_block()
        return max(
            sum(int(m) * int(p) for m, p in zip(self.multiplier[rows[r]], pmax[r]))
            + (abs(int(self.bias[r])) << int(self.bias_shift[rows[r]]))
            + (1 << (int(self.shift[rows[r]]) - 1))
            for r in range(self.out_features)
        )

    def summary(self) -> dict[str, Any]:
        """The per-layer summary written to ``meta.json``."""
        pmax = int(self.psum_abs_max().max())
        return {
            "name": self.name,
            "kind": self.kind,
            "out_features": self.out_features,
            "in_channels": self.in_channels,
            "groups": self.groups,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": [list(p) for p in self.padding],
            "dilation": list(self.dilation),
            "in_shape": list(self.in_shape),
            "reduction": self.reduction,
            "w_bits": self.w_bits,
            "w_dtype": str(self.w_codes.dtype),
            "n_v": self.n_v,
            "n_h": self.n_h,
            "row_bounds": [int(b) for b in self.row_bounds],
            "col_bounds": [int(b) for b in self.col_bounds],
            "out_permuted": bool(np.any(self.out_perm != np.arange(self.out_features))),
            "in_permuted": bool(np.any(self.in_perm != np.arange(self.in_channels))),
            "in_bits": self.in_bits,
            "in_scale": self.in_scale,
            "in_zero_point": self.in_zero_point,
            "out_bits": self.out_bits,
            "out_scale": self.out_scale,
            "out_zero_point": self.out_zero_point,
            "out_clamp": [self.out_qmin, self.out_qmax],
            "relu_fused": self.relu,
            "logits": self.logits,
            "product": self.product,
            "shift_range": [int(self.shift.min()), int(self.shift.max())],
            "multiplier_range": [int(self.multiplier.min()), int(self.multiplier.max())],
            "psum_bits_needed": pmax.bit_length() + 1,
            "acc_bits_needed": self.acc_abs_max().bit_length() + 1,
            "error_bound_lsb": 0.5 + float(self.error_bound_lsb().max()),
            "error_bound_real": self.out_scale * (0.5 + float(self.error_bound_lsb().max())),
            "ops_after": self.ops,
        }


def window_count(size: int, pad_total: int, kernel: int, stride: int, dilation: int, where: str) -> int:
    span = dilation * (kernel - 1) + 1
    if size + pad_total < span:
        raise QuantInputError(
            f"{where}: input size {size} (padded {size + pad_total}) is smaller than the window span {span}"
        )
    return (size + pad_total - span) // stride + 1


def layer_out_shape(lay: IntegerLayer, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Per-sample output shape of ``lay`` for a per-sample input ``shape`` (refused if the layer cannot take it)."""
    if lay.kind == "linear":
        if not shape or shape[-1] != lay.reduction:
            raise QuantInputError(
                f"{where}: input shape {list(shape)} does not end in the layer's {lay.reduction} features"
            )
        return shape[:-1] + (lay.out_features,)
    d = len(lay.kernel_size)
    if len(shape) != d + 1 or shape[0] != lay.in_channels * lay.groups:
        raise QuantInputError(
            f"{where}: input shape {list(shape)} is not [{lay.in_channels * lay.groups} channels, {d} spatial dims]"
        )
    return (lay.out_features,) + tuple(
        window_count(size, sum(p), k, s, dl, where)
        for size, p, k, s, dl in zip(shape[1:], lay.padding, lay.kernel_size, lay.stride, lay.dilation)
    )


def validate_layer(lay: IntegerLayer) -> None:  # noqa: C901 - one check per layer field
    """Shape/range checks that make the int64 datapath overflow-free (also run at export)."""
    where = f"layer {lay.name}"
    if lay.kind not in ("conv1d", "conv2d", "linear"):
        raise QuantInputError(f"{where}: unknown kind {lay.kind!r} (allowed: conv1d, conv2d, linear)")
    _validate_geometry(lay, where)
    _validate_quantizers(lay, where)
    if lay.w_codes.shape != (lay.out_features, lay.reduction):
        raise QuantInputError(f"{where}: w_codes shape {lay.w_codes.shape} != {(lay.out_features, lay.reduction)}")
    lo, hi = -(1 << (lay.w_bits - 1)), (1 << (lay.w_bits - 1)) - 1
    if lay.w_codes.min() < lo or lay.w_codes.max() > hi:
        raise QuantInputError(f"{where}: weight codes outside the {lay.w_bits}-bit range")
    if lay.row_bounds[0] != 0 or lay.row_bounds[-1] != lay.out_features or np.any(np.diff(lay.row_bounds) <= 0):
        raise QuantInputError(f"{where}: bad row block bounds {lay.row_bounds.tolist()}")
    if (
        lay.col_bounds[0] != 0
        or lay.col_bounds[-1] != lay.reduction
        or np.any(np.diff(lay.col_bounds) <= 0)
        or np.any(lay.col_bounds % lay.kernel)
    ):
        raise QuantInputError(f"{where}: bad column block bounds {lay.col_bounds.tolist()}")
    if lay.w_scales.shape != (lay.n_v, lay.n_h) or lay.multiplier.shape != (lay.n_v, lay.n_h):
        raise QuantInputError(f"{where}: scales/multipliers must have shape {(lay.n_v, lay.n_h)}")
    if lay.shift.shape != (lay.n_v,) or lay.shift.min() < 1 or lay.shift.max() > MAX_SHIFT:
        raise QuantInputError(f"{where}: shifts must be {lay.n_v} values in 1..{MAX_SHIFT}")
    if lay.bias_shift.shape != (lay.n_v,) or lay.bias_shift.min() < 0 or np.any(lay.bias_shift > lay.shift):
        raise QuantInputError(f"{where}: bias shifts must be {lay.n_v} values in 0..shift")
    if lay.multiplier.min() < 0 or lay.multiplier.max() > INT32_MAX:
        raise QuantInputError(f"{where}: multipliers must be in 0..2^31-1")
    if lay.bias.shape != (lay.out_features,) or lay.bias_real.shape != (lay.out_features,):
        raise QuantInputError(f"{where}: bias must have shape ({lay.out_features},)")
    if lay.bias.min() < INT32_MIN or lay.bias.max() > INT32_MAX:
        raise QuantInputError(f"{where}: bias outside int32")
    for label, perm, n in (("out_perm", lay.out_perm, lay.out_features), ("in_perm", lay.in_perm, lay.in_channels)):
        if perm.shape != (n,) or sorted(perm.tolist()) != list(range(n)):
            raise QuantInputError(f"{where}: {label} is not a permutation of 0..{n - 1}")
    for label, value in (
        ("w_scales", lay.w_scales),
        ("bias_real", lay.bias_real),
        ("scales", np.array([lay.in_scale, lay.out_scale])),
    ):
        if not np.isfinite(value).all():
            raise QuantInputError(f"{where}: {label} holds NaN or inf")
    if lay.w_scales.min() <= 0 or lay.in_scale <= 0 or lay.out_scale <= 0:
        raise QuantInputError(f"{where}: scales must be > 0")
    if not (lay.in_qmin <= lay.in_zero_point <= lay.in_qmax and lay.out_qmin <= lay.out_qmax):
        raise QuantInputError(f"{where}: zero point outside its code range or empty output range")
    pmax = int(lay.psum_abs_max().max())
    if pmax > INT32_MAX:
        raise QuantInputError(
            f"{where}: worst-case partial sum {pmax} overflows int32; reduce the block width (n_H) or the bits"
        )
    if lay.acc_abs_max() > INT64_MAX:
        raise QuantInputError(f"{where}: worst-case rescaled accumulator overflows int64")


def _validate_geometry(lay: IntegerLayer, where: str) -> None:
    """Positive sizes, one kernel/stride/dilation/padding entry per spatial dimension of the kind, block bounds."""
    d = KIND_DIMS[lay.kind]
    if lay.out_features < 1 or lay.in_channels < 1:
        raise QuantInputError(f"{where}: out_features and in_channels must be >= 1")
    if lay.groups < 1 or lay.out_features % lay.groups or (lay.kind == "linear" and lay.groups != 1):
        raise QuantInputError(
            f"{where}: groups {lay.groups} must be >= 1, divide out_features {lay.out_features} "
            f"and be 1 for a linear layer"
        )
    if not len(lay.kernel_size) == len(lay.stride) == len(lay.dilation) == len(lay.padding) == d:
        raise QuantInputError(
            f"{where}: a {lay.kind} layer needs {d} kernel_size, stride, dilation and padding entries"
        )
    if min((*lay.kernel_size, *lay.stride, *lay.dilation), default=1) < 1 or any(
        p < 0 for pair in lay.padding for p in pair
    ):
        raise QuantInputError(f"{where}: kernel_size, stride and dilation must be >= 1 and padding >= 0")
    if len(lay.row_bounds) < 2 or len(lay.col_bounds) < 2:
        raise QuantInputError(f"{where}: row_bounds and col_bounds need at least 2 entries")


def _grid(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _validate_quantizers(lay: IntegerLayer, where: str) -> None:
    """Bit widths in range and code ranges that are the grids of those widths: ``in_bits`` / ``out_bits`` are not
    used by the arithmetic, so they must agree with the clamp bounds that are.  The output clamp starts at the zero
    point exactly when a ReLU follows (``relu`` must say so), and the logits are int32 codes with zero point 0."""
    if not (MIN_BITS <= lay.w_bits <= MAX_BITS and MIN_BITS <= lay.in_bits <= MAX_BITS):
        raise QuantInputError(f"{where}: w_bits and in_bits must be in {MIN_BITS}..{MAX_BITS}")
    if (lay.in_qmin, lay.in_qmax) not in (_grid(lay.in_bits, True), _grid(lay.in_bits, False)):
        raise QuantInputError(f"{where}: input range {lay.in_qmin}..{lay.in_qmax} is not a {lay.in_bits}-bit grid")
    if lay.relu != any(op.get("op") == "relu" for op in lay.ops):
        raise QuantInputError(
            f"{where}: relu is {lay.relu}, but the ops after the layer {'do not ' if lay.relu else ''}hold a ReLU"
        )
    if lay.logits:
        grids = [(INT32_MIN, INT32_MAX)] if lay.out_bits == LOGIT_BITS and lay.out_zero_point == 0 else []
    elif MIN_BITS <= lay.out_bits <= MAX_BITS:
        grids = [_grid(lay.out_bits, True), _grid(lay.out_bits, False)]
    else:
        grids = []
    if not grids:
        raise QuantInputError(
            f"{where}: out_bits {lay.out_bits} must be in {MIN_BITS}..{MAX_BITS} "
            f"({LOGIT_BITS} with zero point 0 for the logits of the last layer)"
        )
    clamps = [
        (max(lo, lay.out_zero_point) if lay.relu else lo, hi) for lo, hi in grids if lo <= lay.out_zero_point <= hi
    ]
    if (lay.out_qmin, lay.out_qmax) not in clamps:
        raise QuantInputError(
            f"{where}: output clamp {lay.out_qmin}..{lay.out_qmax} is not the {lay.out_bits}-bit "
            f"grid{' from the zero point (ReLU fused)' if lay.relu else ''}"
        )
