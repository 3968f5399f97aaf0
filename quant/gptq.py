"""GPTQ (Frantar, Ashkboos, Hoefler and Alistarh, ICLR 2023): second-order weight quantization, layer by layer.

For a layer with GEMM weight ``W`` [out, cols] and calibration input ``X~`` [m, cols] (with earlier layers already
quantized), GPTQ quantizes the columns in order.  After column ``i`` is rounded, its error is spread over the
columns not yet quantized so that ``||X~ W^T - X~ Q^T||^2`` grows as little as possible, using the inverse of the
Hessian ``H = 2 X~^T X~``.  As in the paper:

* **dampening**: ``H += damp * mean(diag H) * I`` (``damp = 0.01``), which keeps the Cholesky factor stable;
* **Cholesky form**: the rows of the upper Cholesky factor ``U`` of ``H^-1`` hold every step's update, so no
  inverse is updated column by column;
* **lazy batches**: updates inside a block of ``block_size`` columns are applied at once to the rest of the
  matrix, one GEMM per block (the result is the same as column by column);
* **act order** (optional): columns in order of decreasing ``diag(H)``.

lowbit keeps its hardware grid: symmetric signed ``b``-bit codes with the same per-block scales as RTN and GPFQ
(``max|W_block| / (2^(b-1) - 1)``), fixed before the pass.  A column with ``diag(H) = 0`` (dead on the calibration
set) takes round-to-nearest of its weight, as lowbit's GPFQ does, and spreads no error.  There is no bias
correction (the paper has none).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.gpfq import layer_inputs_2d
from quant.layerwise import check_calibration, layer_weight_bits
from quant.prefix import inputs_in_order
from quant.quantizer import Blocks, QuantSpec, block_scales, expand_blocks
from quant.rtn import granularity_blocks

__all__ = ["gptq_weights", "gptq_quantize", "DEFAULT_DAMP", "DEFAULT_BLOCK_SIZE"]

#: Dampening as a fraction of the mean diagonal of H (the paper's 1 %).
DEFAULT_DAMP = 0.01
#: Columns per lazy batch (the paper's 128).
DEFAULT_BLOCK_SIZE = 128


def _check_options(damp: Any, block_size: Any) -> tuple[float, int]:
    if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not (math.isfinite(damp) and damp > 0):
        raise QuantInputError(f"damp must be a positive finite number, got {damp!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise QuantInputError(f"block_size must be an integer >= 1, got {block_size!r}")
    return float(damp), int(block_size)


def _inverse_factor(H: np.ndarray, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper Cholesky factor of the dampened ``H^-1`` and the dead-column mask."""
    H = H.copy()
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    mean_diag = float(np.mean(np.diag(H)))
    H[np.diag_indices_from(H)] += damp * (mean_diag if mean_diag > 0 else 1.0)
    lower = np.linalg.cholesky(H)
    eye = np.eye(len(H))
    lower_inv = np.linalg.solve(lower, eye)
    inverse = lower_inv.T @ lower_inv  # H^-1
    return np.linalg.cholesky(inverse).T, dead  # upper factor U with U^T U = H^-1


def gptq_weights(
    W: np.ndarray,
    X: np.ndarray,
    steps: np.ndarray,
    qmin: int,
    qmax: int,
    *,
    damp: float = DEFAULT_DAMP,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = False,
) -> np.ndarray:
    """Integer codes [out, cols] of ``W`` [out, cols] on the per-element step grid ``steps`` [out, cols], codes in
    ``[qmin, qmax]``, for calibration input ``X`` [m, cols] (float64 arrays)."""
    damp, block_size = _check_options(damp, block_size)
    W = np.array(W, dtype=np.float64)
    cols = W.shape[1]
    H = 2.0 * (X.T @ X)
    order = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(cols)
    H = H[np.ix_(order, order)]
    W, steps = W[:, order], steps[:, order]
    U, dead = _inverse_factor(H, damp)
    codes = np.empty(W.shape, dtype=np.int64)
    for b0 in range(0, cols, block_size):
        b1 = min(b0 + block_size, cols)
        block = W[:, b0:b1].copy()
        errors = np.zeros_like(block)
        for j in range(b1 - b0):
            i = b0 + j
            q = np.clip(np.rint(block[:, j] / steps[:, i]), qmin, qmax)
            codes[:, i] = q.astype(np.int64)
            if dead[i]:
                continue
            err = (block[:, j] - q * steps[:, i]) / U[i, i]
            block[:, j + 1 :] -= np.outer(err, U[i, i + 1 : b1])
            errors[:, j] = err
        W[:, b1:] -= errors @ U[b0:b1, b1:]
    restore = np.empty_like(order)
    restore[order] = np.arange(cols)
    return codes[:, restore]


def gptq_quantize(
    model: nn.Module,
    calib_x: torch.Tensor,
    w_bits: int | dict[str, int],
    *,
    granularity: str | Blocks = "channel",
    damp: float = DEFAULT_DAMP,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = False,
    batch: int = 256,
    report: list[dict[str, Any]] | None = None,
) -> nn.Module:
    """GPTQ every QuantLayer of a :func:`quant.fakequant.prepare`-d model, in place, in execution order.

    Layer ``l``'s ``X~`` is its input in ``model`` with layers ``< l`` already quantized (through its own activation
    quantizer when one is set).  Grouped convs are quantized one group at a time.  ``w_bits``: bits for every
    layer or ``{layer name: bits}`` covering every QuantLayer.  ``report`` (a list) receives one dict per layer:
    ``name``, ``bits``, ``rows``, ``cols``, ``out``, ``rel_sq_error`` (``||X~ W^T - X~ Q^T||^2 / ||X~ W^T||^2``),
    ``dead_columns`` and ``seconds``."""
    damp, block_size = _check_options(damp, block_size)
    check_calibration(model, calib_x)
    layers, bits_of = layer_weight_bits(model, calib_x, w_bits)
    for _, layer in layers:
        granularity_blocks(layer, granularity)  # refuse a grid that does not fit before any work
    for (name, layer), x_q in zip(layers, inputs_in_order(model, layers, calib_x, batch)):
        t0 = time.perf_counter()
        bits = bits_of[name]
        blocks = granularity_blocks(layer, granularity)
        if layer.act is not None:
            x_q = layer.act(x_q)
        X = layer_inputs_2d(layer, x_q)
        del x_q
        w = layer.gemm_weight()
        spec = QuantSpec(bits)
        scales = block_scales(w, blocks, spec, layer.kernel)
        out, cols = w.shape
        steps = expand_blocks(scales, out, cols // layer.kernel, layer.kernel)
        per = out // layer.groups
        codes = np.empty(w.shape, dtype=np.int64)
        dead = 0
        for g in range(layer.groups):
            rs, cs = slice(g * per, (g + 1) * per), slice(g * cols, (g + 1) * cols)
            Xg = X[:, cs]
            codes[rs] = gptq_weights(
                w[rs], Xg, steps[rs], spec.qmin, spec.qmax, damp=damp, block_size=block_size, act_order=act_order
            )
            dead += int((np.einsum("ij,ij->j", Xg, Xg) <= 0).sum())
        layer.set_weight_codes(codes, scales, spec, blocks)
        if report is not None:
            ref = err = 0.0
            for g in range(layer.groups):
                rs, cs = slice(g * per, (g + 1) * per), slice(g * cols, (g + 1) * cols)
                exact = X[:, cs] @ w[rs].T
                ref += float(np.sum(exact**2))
                err += float(np.sum((exact - X[:, cs] @ (codes[rs] * steps[rs]).T) ** 2))
            report.append(
                {
                    "name": name,
                    "bits": bits,
                    "rows": int(X.shape[0]),
                    "cols": int(cols),
                    "out": int(out),
                    "rel_sq_error": err / ref if ref > 0 else float("nan"),
                    "dead_columns": dead,
                    "seconds": time.perf_counter() - t0,
                }
            )
    return model
