"""The golden integer model of lowbit's datapath, its storage and its loading.

:func:`quant.export.export_model` turns a prepared, weight-quantized and activation-calibrated model into
``model.npz`` + ``meta.json``: a chain of layers with code-domain ops between them (an ``nn.Sequential``), or a
graph (:mod:`quant.integer_graph`: residual adds, concats, average pooling, requantization) for any other model.
:func:`load_export` reads them back as an :class:`IntegerModel`, the bit-exact reference the RTL reproduces.
The format, the arithmetic and the error bound are specified in ``docs/formats.md ("Integer export")``.

Per layer the datapath is (``v`` = row block of output channel ``r``, ``h`` = input block)::

    P_h = sum_{k in block h} (x_k - z_x) * w_{r,k}                             # int32
    A   = (B_r << T_v) + sum_h M_{v,h} * P_h                                    # int64
    y_r = clamp(((A + 2^(S_v - 1)) >> S_v) + z_y, lo, hi)                        # output codes

with the int32 bias ``B_r`` at scale ``s_y * 2^-(S_v - T_v)`` (output LSBs with ``S_v - T_v`` fractional bits).

The golden model uses numpy int64 only; the sole float operations are the quantization of the model's float input
and the final ``logits = codes * scale``.  Importing this module does not import torch, so ``rtl`` can use the
golden model alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lowbit_core.files import atomic_write, check_output_path
from quant.errors import QuantInputError
from quant.integer_graph import Quantizer, check_graph, code_flatten, code_maxpool, quantizer_of, run_graph
from quant.quantizer import MAX_BITS, MIN_BITS
from quant.requant import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    MAX_SHIFT,
    exact,
    max_abs_offset,
    quantize_multipliers,
    requantize,
    round_half_even,
    rounding_shift,
)

__all__ = [
    "FORMAT_VERSION",
    "NPZ_NAME",
    "META_NAME",
    "LOGIT_BITS",
    "IntegerLayer",
    "IntegerModel",
    "load_export",
    "effective_block_scales",
    "im2col",
    "apply_ops",
    "rounding_shift",
    "requantize",
    "quantize_multipliers",
    "GraphRun",
    "validate_graph_model",
    "builtin_test_images",
]

FORMAT_VERSION = "lowbit-integer/2"
NPZ_NAME, META_NAME = "model.npz", "meta.json"
LOGIT_BITS = 32  #: the last layer emits int32 logit codes (see _logit_scale)
_MAX_LOGIT_FRAC_BITS = 24  #: at most 24 extra fractional bits below s_x * max(s_w) for the logits
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same model always gives the same bytes


# ------------------------------------------------------------------------------------------------------------------
# the layer record
# ------------------------------------------------------------------------------------------------------------------
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
        return _layer_out_shape(self, in_shape, where)

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


def effective_block_scales(
    codes: np.ndarray, scales: np.ndarray, row_bounds: np.ndarray, col_bounds: np.ndarray
) -> np.ndarray:
    """Block scales used by the requantization: an all-zero block's scale is arbitrary (it multiplies 0), so it is
    replaced by the largest scale of a non-zero block in the same row block (of the layer if the whole row block
    is zero, or 1.0 if the whole layer is zero).  Non-zero blocks keep their scale."""
    scales = np.asarray(scales, dtype=np.float64)
    nonzero = np.array(
        [
            [np.any(codes[r0:r1, c0:c1] != 0) for c0, c1 in zip(col_bounds[:-1], col_bounds[1:])]
            for r0, r1 in zip(row_bounds[:-1], row_bounds[1:])
        ],
        dtype=bool,
    ).reshape(scales.shape)
    if not nonzero.any():
        return np.ones_like(scales)
    layer_fill = scales[nonzero].max()
    eff = scales.copy()
    for v in range(scales.shape[0]):
        fill = scales[v][nonzero[v]].max() if nonzero[v].any() else layer_fill
        eff[v, ~nonzero[v]] = fill
    return eff


# ------------------------------------------------------------------------------------------------------------------
# code-domain helpers (pure int64)
# ------------------------------------------------------------------------------------------------------------------
def im2col(
    x: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` [N, C, *spatial] (zero point already subtracted) -> columns [N, positions, C * prod(kernel)]
    in channel-major order (PyTorch's weight.reshape(out, -1)), and the output spatial shape."""
    d = len(kernel)
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])  # pads with 0 == the input zero point
    span = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))
    if any(xp.shape[2 + i] < span[i] for i in range(d)):
        raise QuantInputError(f"input spatial shape {x.shape[2:]} is smaller than the kernel span {span}")
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + d)))
    win = win[
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in stride)
        + tuple(slice(None, None, dl) for dl in dilation)
    ]  # [N, C, *out, *kernel]
    out_sp = tuple(win.shape[2 : 2 + d])
    order = (0,) + tuple(range(2, 2 + d)) + (1,) + tuple(range(2 + d, 2 + 2 * d))
    cols = win.transpose(order).reshape(x.shape[0], int(np.prod(out_sp)), -1)
    return cols, out_sp


def apply_ops(x: np.ndarray, ops: list[dict[str, Any]], zero_point: int) -> np.ndarray:
    """ReLU (``max(x, z)``), max-pool and flatten on codes; all commute with a monotone quantizer."""
    for op in ops:
        if op["op"] == "relu":
            x = np.maximum(x, np.int64(zero_point))
        elif op["op"] == "maxpool":
            x = code_maxpool(x, op)
        elif op["op"] == "flatten":
            x = code_flatten(x, int(op["start_dim"]), int(op["end_dim"]))
        else:
            raise QuantInputError(f"unknown op {op['op']!r} in the export (allowed: relu, maxpool, flatten)")
    return x


def _as_codes(x: Any, qmin: int, qmax: int, what: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise QuantInputError(f"{what}: expected integer codes, got dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.size and (x.min() < qmin or x.max() > qmax):
        raise QuantInputError(f"{what}: codes {x.min()}..{x.max()} outside {qmin}..{qmax}")
    return x


# ------------------------------------------------------------------------------------------------------------------
# the golden model
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class GraphRun:
    """One execution of an integer model: every layer's input and output codes (a product's in ``operands``, its
    ``a`` and ``b`` codes, and ``outputs``), and the output codes."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    codes: np.ndarray
    operands: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class IntegerModel:
    """The golden integer model: GEMM layers in execution order, and either a chain (code-domain ops before the
    first layer and after each layer) or a ``graph`` of nodes (:mod:`quant.integer_graph`)."""

    def __init__(
        self,
        layers: list[IntegerLayer],
        pre_ops: list[dict[str, Any]] | None = None,
        name: str = "model",
        graph: list[dict[str, Any]] | None = None,
    ) -> None:
        if not layers:
            raise QuantInputError("an integer model needs at least one layer")
        self.layers = list(layers)
        self.pre_ops = list(pre_ops or [])
        self.graph = list(graph) if graph else None
        self.name = name
        self._by_name = {layer.name: layer for layer in self.layers}
        if len(self._by_name) != len(self.layers):
            raise QuantInputError("layer names must be unique")

    def layer(self, name: str) -> IntegerLayer:
        try:
            return self._by_name[name]
        except KeyError:
            raise QuantInputError(f"no layer {name!r} (layers: {', '.join(self._by_name)})") from None

    # one layer ---------------------------------------------------------------------------------------------------
    def run_layer(self, name: str, x_codes: Any) -> np.ndarray:
        """Output codes of layer ``name`` for its input codes (conv: [N, C, *spatial]; linear: [..., in]).

        Pure int64: im2col with the layer's stride/padding/dilation (padding = the input zero point), one int32
        partial sum per input block, 64-bit rescale-and-sum starting at the shifted bias, rounding shift, zero point,
        clamp."""
        lay = self.layer(name)
        x = _as_codes(x_codes, lay.in_qmin, lay.in_qmax, f"layer {name} input") - np.int64(lay.in_zero_point)
        if lay.kind == "linear":
            if x.shape[-1] != lay.reduction:
                raise QuantInputError(f"layer {name}: input has {x.shape[-1]} features, expected {lay.reduction}")
            lead = x.shape[:-1]
            cols = x.reshape(1, -1, lay.reduction)
        else:
            d = len(lay.kernel_size)
            if x.ndim != d + 2 or x.shape[1] != lay.in_channels * lay.groups:
                raise QuantInputError(
                    f"layer {name}: input shape {x.shape}, expected [N, "
                    f"{lay.in_channels * lay.groups}, {d} spatial dims]"
                )
            cols, out_sp = im2col(x, lay.kernel_size, lay.stride, lay.padding, lay.dilation)
        rows = lay.row_block()
        w = lay.w_codes.astype(np.int64)
        mult = lay.multiplier.astype(np.int64)[rows]  # [out, n_h]
        acc = np.zeros(cols.shape[:2] + (lay.out_features,), dtype=np.int64)
        acc += lay.bias.astype(np.int64) << lay.bias_shift.astype(np.int64)[rows]
        g, per_out = lay.groups, lay.out_features // lay.groups
        cols_g = cols.reshape(cols.shape[:2] + (g, lay.reduction))  # group-major channels
        w_g = w.reshape(g, per_out, lay.reduction)
        for h, (c0, c1) in enumerate(zip(lay.col_bounds[:-1], lay.col_bounds[1:])):
            if g == 1:
                psum = cols[:, :, c0:c1] @ w[:, c0:c1].T  # P_h, |P_h| < 2^31 (checked at export)
            else:  # each group's block against its rows
                psum = np.einsum("npgk,gok->npgo", cols_g[..., c0:c1], w_g[..., c0:c1]).reshape(acc.shape)
            acc += psum * mult[:, h]
        y = requantize(acc, lay.shift.astype(np.int64)[rows], lay.out_zero_point, lay.out_qmin, lay.out_qmax)
        if lay.kind == "linear":
            return y.reshape(lead + (lay.out_features,))
        return np.moveaxis(y, 2, 1).reshape((x.shape[0], lay.out_features) + out_sp)

    def run_product(self, name: str, a_codes: Any, b_codes: Any) -> np.ndarray:
        """Output codes of the product ``name``: ``a @ b`` over the last two dims, every leading (sample, head)
        index a Linear layer with ``b`` as its weight codes -- the arithmetic of :meth:`run_layer` with one block
        (int64 products, ``* M``, the bias (0) at its shift, rounding shift, zero point, clamp)."""
        lay = self.layer(name)
        if not lay.product:
            raise QuantInputError(f"layer {name} is not a product of two activations")
        a = _as_codes(a_codes, lay.in_qmin, lay.in_qmax, f"product {name} operand a") - np.int64(lay.in_zero_point)
        held = lay.held_quantizer()
        b = _as_codes(b_codes, held["qmin"], held["qmax"], f"product {name} operand b")
        if a.shape[-1] != lay.in_channels or b.shape[-2:] != (lay.in_channels, lay.out_features):
            raise QuantInputError(
                f"product {name}: operands {list(a.shape)} and {list(b.shape)}, expected "
                f"[..., {lay.in_channels}] and [..., {lay.in_channels}, {lay.out_features}]"
            )
        acc = np.matmul(a, b) * np.int64(lay.multiplier[0, 0])
        acc += np.int64(lay.bias[0]) << np.int64(lay.bias_shift[0])
        return requantize(acc, np.int64(lay.shift[0]), lay.out_zero_point, lay.out_qmin, lay.out_qmax)

    # whole model -------------------------------------------------------------------------------------------------
    def input_quantizer(self) -> Quantizer:
        """The model input's quantizer: the graph's input node, or the first layer's input quantizer."""
        return dict(self.graph[0]["q"]) if self.graph else self.layers[0].in_quantizer()

    def output_quantizer(self) -> Quantizer:
        """The quantizer of the model's output codes."""
        return dict(self.graph[-1]["q"]) if self.graph else self.layers[-1].out_quantizer()

    def input_quantizers(self) -> list[Quantizer]:
        """One quantizer per model input (a graph may have several input nodes, e.g. embeddings and a mask)."""
        if not self.graph:
            return [self.input_quantizer()]
        return [dict(n["q"]) for n in self.graph if n["op"] == "input"]

    def quantize_input(self, x: Any) -> np.ndarray | list[np.ndarray]:
        """Codes of the model input: float -> ``clip(rint(x / s_x) + z_x)`` with the input quantizer (the only
        float step before the logits); integer input is taken as codes and range-checked.  A model with several
        inputs takes a tuple or list of them, in the graph's order, and returns a list of codes."""
        qs = self.input_quantizers()
        if len(qs) > 1:
            if not isinstance(x, (tuple, list)) or len(x) != len(qs):
                raise QuantInputError(f"the model takes {len(qs)} inputs; pass a tuple of {len(qs)} arrays")
            return [_quantize_one(v, q, f"model input {i}") for i, (v, q) in enumerate(zip(x, qs))]
        if isinstance(x, (tuple, list)) and len(x) == 1:
            x = x[0]
        return _quantize_one(x, qs[0], "model input")

    def execute(self, x: Any, run_gemm: Callable[[str, np.ndarray], np.ndarray] | None = None) -> GraphRun:
        """Run the model on ``x`` (float input or input codes; a tuple for several inputs); ``run_gemm(layer,
        codes)`` replaces :meth:`run_layer` for every layer (e.g. the RTL), and its outputs are what the rest of the
        model reads."""
        gemm = run_gemm if run_gemm is not None else self.run_layer
        inputs: dict[str, np.ndarray] = {}
        outputs: dict[str, np.ndarray] = {}

        def step(name: str, codes: np.ndarray) -> np.ndarray:
            inputs[name] = codes
            outputs[name] = gemm(name, codes)
            return outputs[name]

        operands: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def product(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            operands[name] = (a, b)
            outputs[name] = self.run_product(name, a, b)
            return outputs[name]

        if self.graph:
            env = run_graph(self.graph, self.quantize_input(x), step, run_product=product)
            return GraphRun(inputs, outputs, env[self.graph[-1]["name"]], operands)
        codes = apply_ops(self.quantize_input(x), self.pre_ops, self.layers[0].in_zero_point)
        for lay in self.layers:
            codes = apply_ops(step(lay.name, codes), lay.ops, lay.out_zero_point)
        return GraphRun(inputs, outputs, codes)

    def trace(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's output codes (from :meth:`run_layer`, before the ops that follow it)."""
        return self.execute(x).outputs

    def layer_inputs(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's input codes when the model runs on ``x``."""
        return self.execute(x).inputs

    def logits(self, codes: np.ndarray) -> np.ndarray:
        """The model output in real units: ``(codes - z) * s`` (float64)."""
        q = self.output_quantizer()
        return (codes - q["zero_point"]).astype(np.float64) * q["scale"]

    def run(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, predictions)`` for a float input (quantized here) or integer input codes.

        ``logits = (codes - z) * s_out`` (float64, the only float step after the input); ``predictions`` is the
        argmax of the integer output codes over the last axis (ties -> lowest index)."""
        codes = self.execute(x).codes
        return self.logits(codes), np.argmax(codes, axis=-1)

    # storage -----------------------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The ``model.npz`` content."""
        out: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "model_name": np.array(self.name),
            "layers": np.array([lay.name for lay in self.layers]),
            "pre_ops": np.array(json.dumps(self.pre_ops)),
            "graph": np.array(json.dumps(self.graph or [])),
        }
        for lay in self.layers:
            for f in fields(IntegerLayer):
                if f.name == "name":
                    continue
                value = getattr(lay, f.name)
                if isinstance(value, np.ndarray):
                    arr = value
                elif f.name == "ops":
                    arr = np.array(json.dumps(value))
                elif isinstance(value, tuple):
                    arr = np.array(value, dtype=np.int64)
                elif isinstance(value, str):
                    arr = np.array(value)
                elif isinstance(value, bool):
                    arr = np.array(value, dtype=np.bool_)
                elif isinstance(value, (int, np.integer)):
                    arr = np.array(value, dtype=np.int64)
                else:
                    arr = np.array(value, dtype=np.float64)
                out[f"{lay.name}/{f.name}"] = arr
        return out

    def meta(self, npz_sha256: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.name,
            "npz": NPZ_NAME,
            "npz_sha256": npz_sha256,
            "layers": [lay.name for lay in self.layers],
            "pre_ops": self.pre_ops,
            "graph": self.graph or [],
            "layer_summaries": [lay.summary() for lay in self.layers],
        }

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``model.npz`` then ``meta.json`` atomically (temporary file + ``os.replace``); returns ``out_dir``."""
        out = check_output_path(out_dir, "integer export", directory=True, error=QuantInputError)
        out.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key, arr in self.arrays().items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                payload = io.BytesIO()
                np.lib.format.write_array(payload, np.array(arr, order="C"), allow_pickle=False)
                zf.writestr(info, payload.getvalue())
        data = buf.getvalue()
        atomic_write(out / NPZ_NAME, lambda f: f.write(data))
        meta = self.meta(hashlib.sha256(data).hexdigest())
        atomic_write(out / META_NAME, lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode()))
        return out


def _quantize_one(x: Any, q: Quantizer, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if np.issubdtype(arr.dtype, np.integer):
        return _as_codes(arr, q["qmin"], q["qmax"], what)
    if not np.issubdtype(arr.dtype, np.floating):
        raise QuantInputError(f"{what} must be float or integer codes, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise QuantInputError(f"{what}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf)")
    codes = np.rint(arr / q["scale"]) + q["zero_point"]
    return np.clip(codes, q["qmin"], q["qmax"]).astype(np.int64)


# ------------------------------------------------------------------------------------------------------------------
# loading: every stored field is type-checked, and every field the datapath does not use (meta.json, the scales,
# the real bias, the bit widths, shapes and permutations) must agree with the fields it does use
# ------------------------------------------------------------------------------------------------------------------
#: the per-layer arrays of ``model.npz``: exact dtype and number of dimensions, as written by :meth:`IntegerModel.save`
_ARRAYS: dict[str, tuple[Any, int]] = {
    "w_scales": (np.float64, 2),
    "row_bounds": (np.int64, 1),
    "col_bounds": (np.int64, 1),
    "out_perm": (np.int32, 1),
    "in_perm": (np.int32, 1),
    "bias_real": (np.float64, 1),
    "bias": (np.int32, 1),
    "multiplier": (np.int32, 2),
    "shift": (np.int32, 1),
    "bias_shift": (np.int32, 1),
}
_INT_TUPLES = ("kernel_size", "stride", "dilation", "in_shape")
_SCALARS = {
    "kind": "str",
    "relu": "bool",
    "logits": "bool",
    "product": "bool",
    "in_scale": "float",
    "out_scale": "float",
    **{
        k: "int"
        for k in (
            "out_features",
            "in_channels",
            "w_bits",
            "in_bits",
            "in_zero_point",
            "in_qmin",
            "in_qmax",
            "out_bits",
            "out_zero_point",
            "out_qmin",
            "out_qmax",
            "groups",
        )
    },
}
_SCALAR_DTYPES = {"str": "U", "bool": "b", "int": "i", "float": "f"}
_MODEL_KEYS = ("format_version", "model_name", "layers", "pre_ops", "graph")
_KIND_DIMS = {"conv1d": 1, "conv2d": 2, "linear": 0}
_OP_FIELDS = {
    "relu": {"op"},
    "flatten": {"op", "start_dim", "end_dim"},
    "maxpool": {"op", "dims", "kernel", "stride", "padding", "dilation"},
}
_MAX_SHAPE_ELEMENTS = 1 << 40  #: a per-sample shape beyond this is damage, not a model


def builtin_test_images(model_name: str, count: int) -> np.ndarray:
    """The first ``count`` test images (float, as the model takes them) of the built-in model an export names, so
    an export of a built-in model can be run on real inputs without the caller loading the data sets itself.
    Needs torch; an unknown name is a :class:`QuantInputError`."""
    from quant.models import model_split  # torch and the data sets: only when asked for

    return model_split(model_name).test_x[:count].numpy()


def load_export(directory: str | os.PathLike[str]) -> IntegerModel:
    """Read ``model.npz`` + ``meta.json`` written by :func:`quant.export.export_model` and validate them.

    Raises :class:`QuantInputError` (one line, naming the file and field) for a missing or unreadable file, a
    ``meta.json`` that is not the JSON object :meth:`IntegerModel.meta` writes, an npz without its arrays or with
    an array of the wrong dtype or shape, constants that break the datapath's bounds, and an export that is not
    self-consistent: every field the datapath does not use must equal what the fields it uses give (see
    ``docs/formats.md``, "Loading")."""
    d = Path(directory)
    meta_path, npz_path = d / META_NAME, d / NPZ_NAME
    if not d.is_dir():
        raise QuantInputError(f"cannot read the integer export in {d}: no such directory")
    try:
        meta = json.loads(meta_path.read_text())
        data = npz_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise QuantInputError(f"cannot read the integer export in {d}: {exc}") from None
    if not isinstance(meta, dict):
        raise QuantInputError(f"{meta_path}: not a JSON object (got {type(meta).__name__}); re-export the model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise QuantInputError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this reader supports {FORMAT_VERSION!r}"
        )
    sha = hashlib.sha256(data).hexdigest()
    if meta.get("npz_sha256") != sha:
        raise QuantInputError(f"{npz_path} does not match the sha256 recorded in {META_NAME} (partial write?)")
    arrays = _read_npz(data, npz_path)
    names = _stored_names(arrays, npz_path)
    expected = set(_MODEL_KEYS) | {f"{n}/{f.name}" for n in names for f in fields(IntegerLayer) if f.name != "name"}
    missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
    if missing or extra:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected array {', '.join(extra[:3])}"
        more = len(missing or extra) - 3
        raise QuantInputError(f"{npz_path}: {what}{f' and {more} more' if more > 0 else ''}")
    if _scalar(arrays, "format_version", "str", npz_path) != FORMAT_VERSION:
        raise QuantInputError(f"{npz_path}: format_version {str(arrays['format_version'])!r}")
    layers = [_stored_layer(arrays, name, npz_path) for name in names]
    pre_ops = _check_ops(_json_field(arrays, "pre_ops", npz_path), f"{npz_path}: pre_ops")
    graph = _json_field(arrays, "graph", npz_path)
    model = IntegerModel(layers, pre_ops, _scalar(arrays, "model_name", "str", npz_path), graph)
    if graph:
        _check_dag(model, npz_path)
    else:
        _check_chain(model, npz_path)
    _check_meta(meta, model.meta(sha), meta_path)
    return model


def _read_npz(data: bytes, path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise QuantInputError(f"{path}: not an npz (zip) archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QuantInputError(f"{path}: cannot read its arrays ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _describe(arr: np.ndarray) -> str:
    return f"a {arr.dtype} array of shape {list(arr.shape)}"


def _scalar(arrays: Mapping[str, np.ndarray], key: str, kind: str, path: Path) -> Any:
    """The 0-d array ``arrays[key]`` as a Python str / bool / int / float; refused unless it is one of ``kind``."""
    arr = arrays[key]
    if arr.ndim != 0 or arr.dtype.kind != _SCALAR_DTYPES[kind] or (kind in ("int", "float") and arr.itemsize != 8):
        raise QuantInputError(
            f"{path}: {key} must be a single {kind}{'64' if kind in ('int', 'float') else ''}, got {_describe(arr)}"
        )
    return {"str": str, "bool": bool, "int": int, "float": float}[kind](arr)


def _json_field(arrays: Mapping[str, np.ndarray], key: str, path: Path) -> Any:
    try:
        return json.loads(_scalar(arrays, key, "str", path))
    except ValueError as exc:
        raise QuantInputError(f"{path}: {key} is not valid JSON ({_first_line(exc)})") from None


def _stored_names(arrays: Mapping[str, np.ndarray], path: Path) -> list[str]:
    if "layers" not in arrays:
        raise QuantInputError(f"{path}: missing layers")
    arr = arrays["layers"]
    if arr.ndim != 1 or arr.dtype.kind != "U" or len(arr) == 0:
        raise QuantInputError(f"{path}: layers must be a non-empty list of names, got {_describe(arr)}")
    names = [str(n) for n in arr]
    if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
        raise QuantInputError(f"{path}: layer names must be unique, non-empty and free of '/'")
    return names


def _stored_layer(arrays: Mapping[str, np.ndarray], name: str, path: Path) -> IntegerLayer:
    """One layer from its arrays; each is type-checked before use, then the layer is validated."""
    kwargs: dict[str, Any] = {"name": name}
    for field_name, kind in _SCALARS.items():
        kwargs[field_name] = _scalar(arrays, f"{name}/{field_name}", kind, path)
    if kwargs["kind"] not in _KIND_DIMS:
        raise QuantInputError(f"{path}: {name}/kind {kwargs['kind']!r} (allowed: {', '.join(_KIND_DIMS)})")
    if not MIN_BITS <= kwargs["w_bits"] <= MAX_BITS:
        raise QuantInputError(f"{path}: {name}/w_bits {kwargs['w_bits']} is outside {MIN_BITS}..{MAX_BITS}")
    for field_name in _INT_TUPLES:
        arr = arrays[f"{name}/{field_name}"]
        if arr.ndim != 1 or arr.dtype != np.int64:
            raise QuantInputError(f"{path}: {name}/{field_name} must be a 1-D int64 array, got {_describe(arr)}")
        kwargs[field_name] = tuple(int(v) for v in arr)
    pad = arrays[f"{name}/padding"]
    if pad.dtype != np.int64 or not (pad.ndim == 2 and pad.shape[1] == 2 or pad.shape == (0,)):
        raise QuantInputError(f"{path}: {name}/padding must be an int64 array [dims, 2], got {_describe(pad)}")
    kwargs["padding"] = tuple((int(a), int(b)) for a, b in pad.reshape(-1, 2))
    w_dtype = _w_codes_dtype(kwargs["w_bits"])
    for field_name, (dtype, ndim) in {"w_codes": (w_dtype, 2), **_ARRAYS}.items():
        arr = arrays[f"{name}/{field_name}"]
        if arr.dtype != dtype or arr.ndim != ndim:
            raise QuantInputError(
                f"{path}: {name}/{field_name} must be a {ndim}-D {np.dtype(dtype)} array, got {_describe(arr)}"
            )
        kwargs[field_name] = arr
    kwargs["ops"] = _check_ops(_json_field(arrays, f"{name}/ops", path), f"{path}: {name}/ops")
    layer = IntegerLayer(**kwargs)
    try:
        _validate_layer(layer)
        _check_constants(layer)
    except QuantInputError as exc:
        raise QuantInputError(f"{path}: {exc}") from None
    return layer


def _w_codes_dtype(w_bits: int) -> Any:
    return np.int8 if w_bits <= 8 else np.int16


def _int_list(value: Any, length: int, minimum: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    )


def _check_ops(ops: Any, where: str) -> list[dict[str, Any]]:
    """The code-domain ops of a layer (or before the first layer): a list of the records :func:`_op_record` makes."""
    if not isinstance(ops, list):
        raise QuantInputError(f"{where} must be a list of ops, got {type(ops).__name__}")
    for i, op in enumerate(ops):
        kind = op.get("op") if isinstance(op, dict) else None
        if not isinstance(kind, str) or kind not in _OP_FIELDS:
            raise QuantInputError(f"{where}[{i}]: unknown op {kind!r} (allowed: {', '.join(_OP_FIELDS)})")
        if set(op) != _OP_FIELDS[kind]:
            raise QuantInputError(f"{where}[{i}]: a {kind} op has the fields {', '.join(sorted(_OP_FIELDS[kind]))}")
        if kind == "flatten" and not _int_list([op["start_dim"], op["end_dim"]], 2, -(1 << 30)):
            raise QuantInputError(f"{where}[{i}]: flatten start_dim and end_dim must be integers")
        if kind == "maxpool":
            d = op["dims"]
            if d not in (1, 2) or isinstance(d, bool):
                raise QuantInputError(f"{where}[{i}]: maxpool dims must be 1 or 2, got {d!r}")
            if not all(_int_list(op[k], d, 1) for k in ("kernel", "stride", "dilation")) or not _int_list(
                op["padding"], d, 0
            ):
                raise QuantInputError(
                    f"{where}[{i}]: maxpool kernel, stride, dilation (>= 1) and padding (>= 0) "
                    f"must be {d} integers each"
                )
    return ops


def _window_count(size: int, pad_total: int, kernel: int, stride: int, dilation: int, where: str) -> int:
    span = dilation * (kernel - 1) + 1
    if size + pad_total < span:
        raise QuantInputError(
            f"{where}: input size {size} (padded {size + pad_total}) is smaller than the window span {span}"
        )
    return (size + pad_total - span) // stride + 1


def _layer_out_shape(lay: IntegerLayer, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
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
        _window_count(size, sum(p), k, s, dl, where)
        for size, p, k, s, dl in zip(shape[1:], lay.padding, lay.kernel_size, lay.stride, lay.dilation)
    )


def _op_out_shape(op: Mapping[str, Any], shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Per-sample shape after one code-domain op (the batch dimension is dimension 0 of the op's tensor)."""
    if op["op"] == "relu":
        return shape
    if op["op"] == "maxpool":
        d = op["dims"]
        if len(shape) != d + 1:
            raise QuantInputError(f"{where}: maxpool{d}d needs [channels, {d} spatial dims], got {list(shape)}")
        return shape[:1] + tuple(
            _window_count(size, 2 * p, k, s, dl, where)
            for size, p, k, s, dl in zip(shape[1:], op["padding"], op["kernel"], op["stride"], op["dilation"])
        )
    full = (1,) + shape
    start, end = op["start_dim"], op["end_dim"]
    if not (-len(full) <= start < len(full) and -len(full) <= end < len(full)):
        raise QuantInputError(f"{where}: flatten dims {start}..{end} are outside a {len(full)}-D tensor")
    start, end = start % len(full), end % len(full)
    if start == 0 or start > end:
        raise QuantInputError(f"{where}: flatten dims {start}..{end} must keep the batch dimension and be ordered")
    return (full[:start] + (math.prod(full[start : end + 1]),) + full[end + 1 :])[1:]


def _expanded_perm(prev: np.ndarray, in_channels: int) -> np.ndarray | None:
    """The input permutation a layer inherits from the previous layer's output permutation (None: sizes differ)."""
    if in_channels % len(prev):
        return None
    expand = in_channels // len(prev)
    return (prev.astype(np.int64)[:, None] * expand + np.arange(expand)).reshape(-1)


def _check_chain(model: IntegerModel, path: Path) -> None:
    """Consecutive layers agree: each input quantizer is the previous layer's output quantizer, each stored input
    shape is what the previous layer and its ops produce, permutations follow, and only the last layer emits
    logits (with its outputs in class order)."""
    layers = model.layers
    shape = layers[0].in_shape
    for i, lay in enumerate(layers):
        where = f"{path}: layer {lay.name}"
        if lay.in_shape != shape or math.prod(shape) > _MAX_SHAPE_ELEMENTS:
            raise QuantInputError(f"{where}: in_shape {list(lay.in_shape)}, but the layer before gives {list(shape)}")
        shape = _layer_out_shape(lay, shape, where)
        for op in lay.ops:
            shape = _op_out_shape(op, shape, where)
        last = i == len(layers) - 1
        if lay.logits != last:
            raise QuantInputError(f"{where}: logits is {lay.logits}, but only the last layer emits logits")
        prev_perm = layers[i - 1].out_perm if i else np.arange(lay.in_channels)
        inherited = _expanded_perm(prev_perm, lay.in_channels) if i else prev_perm
        if lay.groups > 1:  # a grouped layer's channels cannot be permuted across groups
            identity = not np.any(prev_perm != np.arange(len(prev_perm)))
            inherited = np.arange(lay.in_channels) if identity else None
        if inherited is None or not np.array_equal(lay.in_perm, inherited):
            raise QuantInputError(f"{where}: in_perm does not follow the previous layer's out_perm")
        if last and np.any(lay.out_perm != np.arange(lay.out_features)):
            raise QuantInputError(f"{where}: the last layer's outputs are the classes and cannot be permuted")
        if not last:
            nxt = layers[i + 1]
            for label in ("bits", "scale", "zero_point"):
                if getattr(lay, f"out_{label}") != getattr(nxt, f"in_{label}"):
                    raise QuantInputError(
                        f"{where}: out_{label} {getattr(lay, f'out_{label}')!r} differs from the "
                        f"next layer's in_{label} {getattr(nxt, f'in_{label}')!r}"
                    )


def validate_graph_model(model: IntegerModel, where: str) -> None:
    """Check a graph model as :func:`load_export` does (raises :class:`QuantInputError` naming ``where``)."""
    _check_dag(model, where)


def _check_dag(model: IntegerModel, path: Path | str) -> None:
    """A stored graph is valid (:func:`quant.integer_graph.check_graph`), it has no chain ops, and exactly the
    layers whose output only the output node reads emit logits."""
    if model.pre_ops or any(lay.ops for lay in model.layers):
        raise QuantInputError(f"{path}: a graph export keeps its ops in the graph (pre_ops and layer ops are empty)")
    check_graph(model.graph, {lay.name: lay for lay in model.layers}, str(path))
    readers: dict[str, int] = {}
    for node in model.graph:
        for name in node["inputs"]:
            readers[name] = readers.get(name, 0) + 1
    final = model.graph[-1]["inputs"][0]
    for node in model.graph:
        if node["op"] == "matmul" and model.layer(node["layer"]).logits:
            raise QuantInputError(f"{path}: product {node['layer']}: a product does not emit logits")
        if node["op"] != "gemm":
            continue
        lay = model.layer(node["layer"])
        if lay.product:
            raise QuantInputError(f"{path}: layer {lay.name} is a product template; only a matmul node runs it")
        feeds_output = node["name"] == final and readers[node["name"]] == 1
        if lay.logits != feeds_output:
            raise QuantInputError(
                f"{path}: layer {lay.name}: logits is {lay.logits}, but only a layer that feeds "
                f"the output alone emits logits"
            )
        if np.any(lay.in_perm != np.arange(lay.in_channels)) or np.any(lay.out_perm != np.arange(lay.out_features)):
            raise QuantInputError(f"{path}: layer {lay.name}: a graph export has no channel permutations")


def _check_constants(lay: IntegerLayer) -> None:
    """The multipliers, shifts and biases the datapath uses must be the ones the stored scales and real bias give
    (and the logit scale of the last layer the one its weight scales give): no ignored field can disagree."""
    where = f"layer {lay.name}"
    eff = lay.effective_scales()
    rows = lay.row_block()
    sx = exact(lay.in_scale)
    if lay.logits:
        out_scale, mults, shifts, bias, bias_shifts = _logit_scale(
            sx, eff, lay.psum_abs_max(), rows, lay.bias_real, where
        )
        if out_scale != lay.out_scale:
            raise QuantInputError(
                f"{where}: out_scale {lay.out_scale!r} is not the logit scale {out_scale!r} that "
                f"in_scale and w_scales give"
            )
    else:
        mults, shifts, bias, bias_shifts = _requant_constants(sx, eff, lay.out_scale, lay.bias_real, rows, where)
    for label, want, got in (
        ("multiplier", mults, lay.multiplier),
        ("shift", shifts, lay.shift),
        ("bias", bias, lay.bias),
        ("bias_shift", bias_shifts, lay.bias_shift),
    ):
        if not np.array_equal(np.asarray(want, dtype=np.int64), got.astype(np.int64)):
            raise QuantInputError(
                f"{where}: {label} is not what in_scale, out_scale, w_scales and bias_real give; "
                f"the stored constants and scales disagree"
            )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_difference(got: Any, want: Any, path: str) -> str | None:
    """Path (``a.b[2].c``) of the first place where the JSON value ``got`` differs from ``want`` (types included),
    or None when they are equal."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return path
        for key in [*want, *(k for k in got if k not in want)]:
            sub = f"{path}.{key}" if path else key
            if key not in got or key not in want:
                return sub
            found = _first_difference(got[key], want[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return path
        for i, (g, w) in enumerate(zip(got, want)):
            found = _first_difference(g, w, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if type(got) is type(want) and got == want else path


_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return _MISSING
    return value


def _check_meta(meta: dict[str, Any], want: dict[str, Any], path: Path) -> None:
    """``meta.json`` must be exactly what :meth:`IntegerModel.meta` writes for the loaded arrays."""
    want = json.loads(json.dumps(want))
    where = _first_difference(meta, want, "")
    if where is None:
        return
    got, expected = _lookup(meta, where), _lookup(want, where)
    if got is _MISSING:
        raise QuantInputError(f"{path}: missing field {where} ({NPZ_NAME} gives {_short(expected)}); re-export")
    if expected is _MISSING:
        raise QuantInputError(f"{path}: unexpected field {where}; meta.json must describe the arrays (re-export)")
    raise QuantInputError(
        f"{path}: {where} is {_short(got)} but {NPZ_NAME} gives {_short(expected)}; meta.json "
        f"must describe the arrays (re-export)"
    )


def _validate_layer(lay: IntegerLayer) -> None:
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
    d = _KIND_DIMS[lay.kind]
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


# ------------------------------------------------------------------------------------------------------------------
# requantization constants (used by the export and, to check a stored export, by the loader)
# ------------------------------------------------------------------------------------------------------------------
def _requant_constants(
    sx: Fraction, eff: np.ndarray, out_scale: float, bias_real: np.ndarray, rows: np.ndarray, where: str
) -> tuple[list[list[int]], list[int], list[int], list[int]]:
    """Multipliers ``M[v][h]``, shifts ``S[v]``, int32 biases ``B[r]`` and bias shifts ``T[v]`` for one output scale.

    ``B_r = rint(b_r / s_y * 2^F_v)`` with the most fractional bits ``F_v <= S_v`` that keep every ``B_r`` of row
    block ``v`` in int32; ``T_v = S_v - F_v``."""
    sy = exact(out_scale)
    mults, shifts = map(list, zip(*(quantize_multipliers([sx * exact(s) / sy for s in row]) for row in eff)))
    bias_lsb = [exact(b) / sy for b in bias_real]
    bias = [0] * len(bias_real)
    bias_shifts = []
    for v, shift in enumerate(shifts):
        members = np.flatnonzero(rows == v)
        for frac in range(shift, -1, -1):
            vals = [round_half_even(bias_lsb[r] * (1 << frac)) for r in members]
            if all(INT32_MIN <= b <= INT32_MAX for b in vals):
                break
        else:
            raise QuantInputError(
                f"{where}: bias of {float(max(abs(bias_lsb[r]) for r in members)):.3g} output LSBs does not fit int32"
            )
        for r, b in zip(members, vals):
            bias[r] = b
        bias_shifts.append(shift - frac)
    return mults, shifts, bias, bias_shifts


def _logit_scale(
    sx: Fraction, eff: np.ndarray, pmax: np.ndarray, rows: np.ndarray, bias_real: np.ndarray, where: str
) -> tuple[float, list[list[int]], list[int], list[int], list[int]]:
    """Scale and requantization constants of the int32 logits: ``s_out = s_x * max(s_w_eff) * 2^-F`` with the
    largest ``F`` in 0..24 such that no logit code can leave int32 for any input (``F = 0`` if none does: the
    clamp then saturates exactly)."""
    top = exact(float(eff.max()))
    for frac_bits in range(_MAX_LOGIT_FRAC_BITS, -1, -1):
        s_out = float(sx * top / 2**frac_bits)  # rounded to float64; the constants use this stored value
        try:
            mults, shifts, bias, bias_shifts = _requant_constants(sx, eff, s_out, bias_real, rows, where)
        except QuantInputError:
            if frac_bits == 0:
                raise
            continue
        worst = max(
            (
                sum(int(m) * int(p) for m, p in zip(mults[rows[r]], pmax[r]))
                + (abs(bias[r]) << bias_shifts[rows[r]])
                + (1 << (shifts[rows[r]] - 1))
            )
            >> shifts[rows[r]]
            for r in range(len(rows))
        )
        if worst <= INT32_MAX or frac_bits == 0:
            return s_out, mults, shifts, bias, bias_shifts
    raise AssertionError("unreachable")
