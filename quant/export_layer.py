"""One QuantLayer as an :class:`quant.integer.IntegerLayer`: geometry, codes, scales and the requantization
constants for a given output quantizer (shared by the chain and the graph export)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from quant.errors import QuantInputError
from quant.integer import LOGIT_BITS, IntegerLayer, effective_block_scales
from quant.integer.layer import validate_layer
from quant.integer.requant_constants import logit_scale, requant_constants
from quant.quantizer import block_bounds
from quant.requant import INT32_MAX, INT32_MIN, exact, max_abs_offset

__all__ = ["export_layer", "conv_geometry", "int_tuple"]


def int_tuple(value: Any, d: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * d


def _conv_padding(conv: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    d = len(kernel)
    if conv.padding_mode != "zeros":
        raise QuantInputError(f"padding_mode {conv.padding_mode!r} is not supported (only 'zeros')")
    pad = conv.padding
    if pad == "valid":
        return ((0, 0),) * d
    if pad == "same":
        total = [dl * (k - 1) for k, dl in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    return tuple((p, p) for p in int_tuple(pad, d))


def conv_geometry(
    conv: Any,
) -> tuple[str, tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...], tuple[int, ...]]:
    """``(kind, kernel_size, stride, padding, dilation)`` of a Conv1d / Conv2d / Linear."""
    from torch import nn

    if isinstance(conv, nn.Linear):
        return "linear", (), (), (), ()
    d = 1 if isinstance(conv, nn.Conv1d) else 2
    ksize, stride, dilation = int_tuple(conv.kernel_size, d), int_tuple(conv.stride, d), int_tuple(conv.dilation, d)
    return f"conv{d}d", ksize, stride, _conv_padding(conv, ksize, dilation), dilation


def export_layer(
    name: str,
    m: Any,
    out_act: Any,
    ops: list[dict[str, Any]],
    in_shape: tuple[int, ...],
    out_perm: np.ndarray,
    in_perm: np.ndarray,
) -> IntegerLayer:
    """The IntegerLayer of QuantLayer ``m`` writing ``out_act``'s codes (an ActQuant; None: int32 logits), with a
    ReLU fused into the output clamp when ``ops`` hold one."""
    where = f"layer {name}"
    conv = m.layer
    kind, ksize, stride, padding, dilation = conv_geometry(conv)
    if not m.w_spec.signed:
        raise QuantInputError(f"{where}: weight codes must use a signed symmetric QuantSpec")
    codes = np.asarray(m.w_codes, dtype=np.int64)
    scales = np.asarray(m.w_scales, dtype=np.float64).reshape(m.blocks.n_v, m.blocks.n_h)
    if not np.isfinite(scales).all() or scales.min() <= 0:
        raise QuantInputError(f"{where}: weight scales must be finite and > 0")
    w_dtype = np.int8 if m.w_spec.bits <= 8 else np.int16
    row_bounds = block_bounds(m.out_features, m.blocks.n_v)
    col_bounds = block_bounds(m.in_channels, m.blocks.n_h) * m.kernel

    act_in = m.act
    for label, s in (("input", act_in.scale), ("output", out_act.scale if out_act is not None else 1.0)):
        if not math.isfinite(s) or s <= 0:
            raise QuantInputError(f"{where}: {label} activation scale {s!r} must be finite and > 0")
    bias_real = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(m.out_features)
    eff = effective_block_scales(codes, scales, row_bounds, col_bounds)
    rows = np.repeat(np.arange(len(row_bounds) - 1), np.diff(row_bounds))
    sx = exact(act_in.scale)
    relu = any(op["op"] == "relu" for op in ops)

    # partial-sum bound (independent of the output quantizer)
    qx = max_abs_offset(act_in.spec.qmin, act_in.spec.qmax, act_in.zero_point)
    wabs = np.abs(codes)
    pmax = np.stack([wabs[:, c0:c1].sum(axis=1) for c0, c1 in zip(col_bounds[:-1], col_bounds[1:])], axis=1) * qx

    if out_act is None:
        out_bits, out_zp = LOGIT_BITS, 0
        out_qmin, out_qmax = INT32_MIN, INT32_MAX
        out_scale, mults, shifts, bias, bias_shifts = logit_scale(sx, eff, pmax, rows, bias_real, where)
    else:
        spec = out_act.spec
        out_bits, out_zp, out_scale = spec.bits, int(out_act.zero_point), float(out_act.scale)
        out_qmin, out_qmax = spec.qmin, spec.qmax
        mults, shifts, bias, bias_shifts = requant_constants(sx, eff, out_scale, bias_real, rows, where)
    if relu:
        out_qmin = max(out_qmin, out_zp)
    layer = IntegerLayer(
        name=name,
        kind=kind,
        out_features=m.out_features,
        in_channels=m.in_channels,
        kernel_size=ksize,
        stride=stride,
        padding=padding,
        dilation=dilation,
        w_bits=int(m.w_spec.bits),
        w_codes=codes.astype(w_dtype),
        w_scales=scales,
        row_bounds=row_bounds.astype(np.int64),
        col_bounds=col_bounds.astype(np.int64),
        out_perm=out_perm.astype(np.int32),
        in_perm=in_perm.astype(np.int32),
        bias_real=bias_real,
        bias=np.array(bias, dtype=np.int32),
        in_bits=int(act_in.spec.bits),
        in_scale=float(act_in.scale),
        in_zero_point=int(act_in.zero_point),
        in_qmin=int(act_in.spec.qmin),
        in_qmax=int(act_in.spec.qmax),
        out_bits=int(out_bits),
        out_scale=out_scale,
        out_zero_point=out_zp,
        out_qmin=int(out_qmin),
        out_qmax=int(out_qmax),
        relu=relu,
        logits=out_act is None,
        multiplier=np.array(mults, dtype=np.int32),
        shift=np.array(shifts, dtype=np.int32),
        bias_shift=np.array(bias_shifts, dtype=np.int32),
        ops=ops,
        in_shape=tuple(in_shape),
        groups=int(m.groups),
    )
    validate_layer(layer)
    return layer
