"""Pure array kernels of the golden integer model: functions of numpy arrays that know nothing of layers or files.

:func:`im2col` lowers a convolution's input codes to GEMM columns (the layer's stride, padding and dilation, in
PyTorch's channel-major column order), :func:`apply_ops` runs the code-domain ops between the layers of a chain (ReLU,
max-pool, flatten) and :func:`effective_block_scales` gives the block scales the requantization uses.  The
requantization primitives (``rounding_shift``, ``requantize``, ``quantize_multipliers``) are :mod:`quant.requant`'s;
:mod:`quant.integer` re-exports them with these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from quant.errors import QuantInputError
from quant.integer_graph import code_flatten, code_maxpool

__all__ = ["effective_block_scales", "im2col", "apply_ops"]


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
