"""GPFQ: greedy path-following quantization (Lybrand & Saab 2021; Zhang, Zhou & Saab 2023).

For one neuron ``w`` (a row of the GEMM-form weight ``W[out, in]``), with ``X[m, in]`` the layer's inputs in the
float network and ``X~[m, in]`` its inputs in the partly quantized network, GPFQ walks the ``in`` columns once::

    u_0 = 0
    q_t = Q( <X~_t, u_{t-1} + w_t X_t> / ||X~_t||^2 )
    u_t = u_{t-1} + w_t X_t - q_t X~_t

so ``u_t`` is the running output error ``X w - X~ q`` of the first ``t`` weights and each ``q_t`` is the alphabet
value that best cancels it along ``X~_t`` (rounded, not the exact minimizer).  All neurons of a layer are done at
once; they are independent (each has its own error vector), which is why the scale search below can pick a scale
per output-row group.

Two exact forms of the same recursion are implemented (:func:`quantize_weights`, ``method=``):

* ``"direct"`` keeps the error matrix ``U[m, out]``: ``O(m * in * out)`` memory-bound work;
* ``"gram"`` uses ``H = X~^T X~`` (one BLAS SYRK, ``O(m * in^2)``) and ``P[t] = sum_{j<=t} G_tj w_j`` with
  ``G = X~^T X`` (from a blocked pass over the data that never forms ``G``), then
  ``q_t = Q((P[t] - sum_{j<t} H_tj q_j) / H_tt)``, an ``O(in^2 * out)`` loop in column blocks whose earlier blocks
  enter through GEMMs; all scale candidates run stacked in one pass, and each row's error is accumulated from
  the recursion's own products.

Both are float64.  They agree up to rounding (tested code-for-code on random data); ``"auto"`` picks the faster by
a cost model (:func:`pick_method`): the Gram form for conv layers (``m`` = thousands of patches) and for scale
searches, the direct form when ``in`` is large compared with ``m`` and only one candidate runs (e.g. one neuron
with 4096 weights and 64 samples).  Measured by ``benchmarks/bench_gpfq.py`` and, on whole networks,
``benchmarks/bench_real_scale.py``.

Guards (choices documented here, see also ``REFERENCES.md`` section 2):

* **dead column** -- ``||X~_t|| <= 1e-12 * max_j ||X~_j||`` (or exactly 0): the column cannot change the
  calibration error, so any code is equally good on the calibration set.  The reference code takes ``Q(0)``;
  lowbit takes ``Q(w_t)`` (round-to-nearest of the float weight), which is the least perturbation of the float
  network on inputs where that channel is alive (a channel dead on the calibration set need not be dead at test
  time).  The threshold is relative, so the result does not depend on the scale of ``X``.
* **tiny projection** -- some versions of the reference code replace ``q_t`` by ``Q(w_t)`` when the projection
  ``<X~_t, u + w_t X_t>`` is below ``1e-10``.  lowbit does **not**: a small projection means the best value along
  ``X~_t`` is close to 0, so ``Q(projection / ||X~_t||^2)`` is exactly what the greedy rule asks for; replacing it
  by ``Q(w_t)`` discards the error the path has accumulated, the absolute threshold makes the result depend on the
  units of ``X`` (quantizing ``1e-6 * X`` would fall back to RTN everywhere), and as a signed comparison it would
  fire for every negative projection.  ``quantize_weights(W, c * X)`` is invariant to ``c > 0`` (tested).

Alphabets:

* ``"bbit"`` (default, hardware): codes ``[-2^(b-1), 2^(b-1) - 1]`` (``QuantSpec(b)``), one scale per block,
  ``C`` times RTN's step ``max|W_block| / (2^(b-1) - 1)``.  Without a scale search ``C`` defaults to
  ``(2^(b-1) - 1) / 2^(b-1)``, i.e. the step ``max|W_block| / 2^(b-1)``, which puts all ``2^b`` codes inside the
  weights' range (RTN's step leaves the bottom code ``-2^(b-1)`` beyond ``-max|W|``, so at 2 bits only 3 of the
  4 codes can be used).  The top of the range is clipped by one step; GPFQ's error feedback carries the clipped part
  to the later weights, which is why this pays off here and not for RTN (docs/quant.md has the ablation).  A scale
  search multiplies RTN's step itself (``C = 1``), so its default grid 0.30 .. 1.00 contains both steps at 2 and
  3 bits;
* ``"paper"``: the reference code's ``2^b + 1`` levels ``k * delta``, ``k = -2^(b-1) .. 2^(b-1)``, with
  ``delta = C * r / 2^(b-1)`` and ``r`` the mean over the block's rows of their max ``|w|``.  The codes need
  **b + 1 bits**; :func:`gpfq_quantize` installs them with ``QuantSpec(b + 1)`` (so ``b <= 7`` there).

The network driver :func:`gpfq_quantize` quantizes a :func:`quant.fakequant.prepare`-d model layer by layer in
execution order, lowering convolutions to patch matrices with their real stride / padding / dilation
(:func:`layer_inputs_2d`), and optionally searches a scale multiplier per output-row group and corrects the bias.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, activations_off, quant_layers
from quant.layerwise import check_calibration, check_weight_bits, layer_weight_bits
from quant.prefix import inputs_in_order
from quant.quantizer import (
    MAX_BITS,
    Blocks,
    QuantSpec,
    block_bounds,
    block_scales,
    check_finite,
    check_seed,
    expand_blocks,
)
from quant.rtn import granularity_blocks

__all__ = [
    "quantize_weights",
    "correct_bias",
    "gpfq_quantize",
    "layer_inputs_2d",
    "alphabet_scales",
    "full_code_multiplier",
    "pick_method",
    "ALPHABETS",
    "DEFAULT_SCALE_GRID",
    "DEAD_COLUMN_RTOL",
]

ALPHABETS = ("bbit", "paper")
#: Scale multipliers tried per output-row group by ``scale_search`` (of RTN's step ``max|W| / (2^(b-1) - 1)``).
DEFAULT_SCALE_GRID: tuple[float, ...] = tuple(float(a) for a in np.round(np.linspace(0.3, 1.0, 15), 2))
#: A column of X~ whose norm is at most this fraction of the largest column norm counts as dead (see module doc).
DEAD_COLUMN_RTOL = 1e-12


# ------------------------------------------------------------------------------------------------------------------
# validation and conversion helpers


def _to_f64(name: str, a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QuantInputError(f"{name}: not a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise QuantInputError(f"{name} must be 2-D, got shape {tuple(arr.shape)}")
    check_finite(name, arr)
    return arr


def _check_alphabet(alphabet: Any) -> str:
    if alphabet not in ALPHABETS:
        raise QuantInputError(f"unknown alphabet {alphabet!r} (allowed: {', '.join(ALPHABETS)})")
    return alphabet


def _code_range(bits: int, alphabet: str) -> tuple[int, int]:
    half = 1 << (bits - 1)
    return (-half, half - 1) if alphabet == "bbit" else (-half, half)


def full_code_multiplier(bits: int) -> float:
    """``(2^(b-1) - 1) / 2^(b-1)``: the ``C`` that turns RTN's step into ``max|W| / 2^(b-1)``, the step whose ``2^b``
    codes all lie inside ``[-max|W|, max|W|]`` (the ``"bbit"`` default without a scale search)."""
    half = 1 << (check_weight_bits(bits) - 1)
    return (half - 1) / half


def alphabet_scales(
    weight: np.ndarray, bits: int, blocks: Blocks, kernel: int = 1, alphabet: str = "bbit", C: float = 1.0
) -> np.ndarray:
    """The reference step per block ``[n_v, n_h]`` of an alphabet (see the module docstring), times ``C``.

    ``"bbit"``: ``C * max|W_block| / (2^(b-1) - 1)`` (RTN's step; see :func:`full_code_multiplier` for the default
    ``C`` without a search); ``"paper"``: ``C * mean_rows(max_cols |W_block|) / 2^(b-1)``.  An all-zero block gets
    step ``C`` (any step represents it exactly)."""
    bits, alphabet = check_weight_bits(bits), _check_alphabet(alphabet)
    w = np.asarray(weight, dtype=np.float64)
    if alphabet == "bbit":
        return C * block_scales(w, blocks, QuantSpec(bits), kernel)
    out, cols = w.shape
    if cols % kernel:
        raise QuantInputError(f"weight has {cols} columns, not a multiple of the kernel size {kernel}")
    blocks.check(out, cols // kernel)
    rb, cb = block_bounds(out, blocks.n_v), block_bounds(cols // kernel, blocks.n_h) * kernel
    r = np.array(
        [
            [np.abs(w[rb[i] : rb[i + 1], cb[j] : cb[j + 1]]).max(axis=1).mean() for j in range(blocks.n_h)]
            for i in range(blocks.n_v)
        ]
    )
    step = r / (1 << (bits - 1))
    return C * np.where(step > 0, step, 1.0)


# ------------------------------------------------------------------------------------------------------------------
# the greedy pass (two exact forms)


#: columns per block of the Gram form's lazy updates: earlier blocks enter through one GEMM per block
_GRAM_BLOCK = 128
#: at most this many rows (output rows x scale candidates) in one stacked Gram pass
_MAX_STACKED_ROWS = 4096


def pick_method(m: int, cols: int, out: int, candidates: int = 1) -> str:
    """The faster exact form for ``candidates`` scale candidates, by a cost model (one BLAS thread).

    Direct: ~3 memory passes over ``U[m, out]`` per column and candidate, ~5 ns per ``m * in * out``.  Gram: the
    SYRK and the projections (~0.1 ns per ``m * in * min(in, 3 out + 128)``, once), then every candidate stacked in
    one blocked pass whose work is BLAS GEMMs (~0.05 ns per ``in^2 * out`` and candidate) plus ~20 us of Python
    per column.  The Gram form wins
    for conv layers (``m`` = thousands of patches) and for scale searches; the direct form for one candidate when
    ``in`` is large compared with ``m``, or when ``in x in`` matrices would not fit comfortably."""
    if cols > 8192:
        return "direct"
    direct = candidates * (5e-9 * m * cols * out + 1e-5 * cols)
    gram = 1e-10 * m * cols * min(cols, 3 * out + _GRAM_BLOCK) + 5e-11 * cols * cols * out * candidates + 2e-5 * cols
    return "gram" if gram <= direct else "direct"


class _Stats:
    """Calibration statistics of one (conv-group) slice of a layer, reused across scale candidates."""

    def __init__(self, X: np.ndarray, Xq: np.ndarray | None, method: str) -> None:
        self.same = Xq is None
        Xq = X if self.same else Xq
        self.method = method
        hn = np.einsum("ij,ij->j", Xq, Xq)
        self.dead = hn <= (DEAD_COLUMN_RTOL**2) * hn.max() if hn.max() > 0 else np.ones_like(hn, dtype=bool)
        self.hdiag = np.where(self.dead, 1.0, hn)
        self.hn = hn
        self.X, self.Xq = X, Xq  # views of the caller's arrays: no copy
        if method == "gram":
            self.H = Xq.T @ Xq  # symmetric: one SYRK

    def greedy(self, W: np.ndarray, S: np.ndarray, qmin: int, qmax: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes ``[A, out, in]`` for weights ``W[out, in]`` under each of ``A`` per-element step matrices
        ``S[A, out, in]`` (the scale candidates); and each row's squared error ``||X w_i - X~ q_i||^2`` on the
        calibration data, ``[A, out]``."""
        if self.method == "direct":
            parts = [self._direct(W, s, qmin, qmax) for s in S]
            return np.stack([c for c, _ in parts]), np.stack([e for _, e in parts])
        out = W.shape[0]
        step = max(1, _MAX_STACKED_ROWS // out)
        P, GW, wfw = self._projections(W)
        parts = [self._gram(W, P, GW, wfw, S[a : a + step], qmin, qmax) for a in range(0, len(S), step)]
        return np.concatenate([c for c, _ in parts]), np.concatenate([e for _, e in parts])

    def _projections(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the recursion and its error need from ``X``, the same for every candidate: ``P[t] = sum_{j<=t}
        x~_t . x_j w_j`` and ``GW = X~^T X W^T`` (both ``[in, out]``) and ``||X w_i||^2``.  With ``G = X~^T X``
        they are ``tril(G) W^T`` and ``G W^T``; forming ``G`` costs ``2 m in^2``, while a blocked pass that keeps
        the running ``X[:, :t] W[:, :t]^T`` costs ``2 m in (3 out + block)``, far less for wide layers."""
        X, Xq = self.X, self.Xq
        m, n = X.shape
        if self.same or n <= 3 * W.shape[0] + _GRAM_BLOCK:
            G = self.H if self.same else Xq.T @ X
            XW = X @ W.T
            return np.tril(G) @ W.T, G @ W.T, np.einsum("ij,ij->j", XW, XW)
        P = np.empty((n, W.shape[0]))
        Y = np.zeros((m, W.shape[0]))  # X[:, :b0] W[:, :b0]^T
        for b0 in range(0, n, _GRAM_BLOCK):
            b1 = min(n, b0 + _GRAM_BLOCK)
            Xb, Xqb, Wb = X[:, b0:b1], Xq[:, b0:b1], W[:, b0:b1]
            P[b0:b1] = Xqb.T @ Y + np.tril(Xqb.T @ Xb) @ Wb.T
            Y += Xb @ Wb.T
        return P, Xq.T @ Y, np.einsum("ij,ij->j", Y, Y)

    def _gram(self, W, P, GW, wfw, S, qmin, qmax):
        """The Gram recursion for ``A`` candidates at once (rows stacked), in column blocks: within a block each
        column reads the block's earlier columns directly; earlier blocks enter through one GEMM per block.  Each
        row's error ``||X w||^2 - 2 q^T G w + q^T H q`` accumulates block by block from the recursion's own
        products (``sum_{j<t} H_tj q_j = P[t] - r_t``), so no candidate needs another pass over ``H`` or ``X``."""
        a_count, out, n = S.shape
        H, hd, dead = self.H, self.hdiag, self.dead
        rows = a_count * out
        ST = np.ascontiguousarray(S.transpose(2, 0, 1).reshape(n, rows))  # [n, A*out]
        PT = np.tile(P, (1, a_count))  # [n, A*out]
        WT = np.tile(W.T, (1, a_count))
        QT = np.zeros((n, rows))
        R = np.empty((_GRAM_BLOCK, rows))
        codes = np.zeros((n, rows), dtype=np.int64)
        cross = np.zeros(rows)
        quad = np.zeros(rows)
        for b0 in range(0, n, _GRAM_BLOCK):
            b1 = min(n, b0 + _GRAM_BLOCK)
            acc = PT[b0:b1] - H[b0:b1, :b0] @ QT[:b0] if b0 else PT[b0:b1].copy()
            for t in range(b0, b1):
                r = acc[t - b0] - H[t, b0:t] @ QT[b0:t]  # P[t] - sum_{j<t} H_tj q_j
                R[t - b0] = r
                c = np.clip(np.rint((WT[t] if dead[t] else r / hd[t]) / ST[t]), qmin, qmax)
                codes[t] = c
                QT[t] = c * ST[t]
            qb = QT[b0:b1]
            hq = PT[b0:b1] - R[: b1 - b0]
            quad += np.einsum("ij,ij->j", qb, 2 * hq + self.hn[b0:b1, None] * qb)
            cross += np.einsum("ij,ij->j", qb, np.tile(GW[b0:b1], (1, a_count)))
        codes = codes.T.reshape(a_count, out, n)
        err = np.tile(wfw, a_count) - 2 * cross + quad
        return codes, np.maximum(err, 0.0).reshape(a_count, out)

    def _direct(self, W, S, qmin, qmax):
        out, n = W.shape
        X, Xq, hd, dead = self.X, self.Xq, self.hdiag, self.dead
        U = np.zeros((X.shape[0], out))
        codes = np.zeros((out, n), dtype=np.int64)
        for t in range(n):
            w, s = W[:, t], S[:, t]
            U += np.outer(X[:, t], w)
            a = w if dead[t] else (Xq[:, t] @ U) / hd[t]
            c = np.clip(np.rint(a / s), qmin, qmax)
            codes[:, t] = c
            U -= np.outer(Xq[:, t], c * s)
        return codes, np.einsum("ij,ij->j", U, U)


def _row_groups(out: int, n_v: int) -> np.ndarray:
    return np.repeat(np.arange(n_v), np.diff(block_bounds(out, n_v)))


def _gpfq_layer(
    W: np.ndarray,
    X: np.ndarray,
    Xq: np.ndarray | None,
    bits: int,
    blocks: Blocks,
    kernel: int,
    groups: int,
    alphabet: str,
    base_scales: np.ndarray,
    grid: Sequence[float] | None,
    method: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Codes, block scales and a small report; ``grid`` = scale multipliers searched per output-row group."""
    out, cols = W.shape
    qmin, qmax = _code_range(bits, alphabet)
    m = X.shape[0]
    if method == "auto":
        method = pick_method(m, cols, out // groups, 1 if not grid else len(grid))
    per = out // groups
    slices = [(slice(g * per, (g + 1) * per), slice(g * cols, (g + 1) * cols)) for g in range(groups)]
    stats = [_Stats(X[:, cs], None if Xq is None else Xq[:, cs], method) for _, cs in slices]
    in_ch = cols // kernel
    mults = [1.0] if not grid else [float(a) for a in grid]
    row_group = _row_groups(out, blocks.n_v)
    best_err = np.full(blocks.n_v, np.inf)
    best_codes = np.zeros((out, cols), dtype=np.int64)
    best_mult = np.ones(blocks.n_v)
    err_at_one = None
    steps = np.stack([expand_blocks(base_scales * alpha, out, in_ch, kernel) for alpha in mults])
    all_codes = np.empty((len(mults), out, cols), dtype=np.int64)
    all_err = np.empty((len(mults), out))
    for (rs, _), st in zip(slices, stats):  # every candidate of a slice in one pass
        all_codes[:, rs], all_err[:, rs] = st.greedy(W[rs], steps[:, rs], qmin, qmax)
    for alpha, codes, row_err in zip(mults, all_codes, all_err):
        grp_err = np.bincount(row_group, weights=row_err, minlength=blocks.n_v)
        if alpha == 1.0:
            err_at_one = float(grp_err.sum())
        better = grp_err < best_err
        best_err[better], best_mult[better] = grp_err[better], alpha
        rows = better[row_group]
        best_codes[rows] = codes[rows]
    report = {
        "method": method,
        "sq_error": float(best_err.sum()),
        "sq_error_mult1": float("nan") if err_at_one is None else err_at_one,
        "multipliers": best_mult,
        "dead_columns": int(sum(int(st.dead.sum()) for st in stats)),
    }
    return best_codes, base_scales * best_mult[:, None], report


# ------------------------------------------------------------------------------------------------------------------
# single-layer API


def quantize_weights(
    W: Any,
    X: Any,
    bits: int,
    X_quantized: Any = None,
    *,
    blocks: Blocks | None = None,
    kernel: int = 1,
    alphabet: str = "bbit",
    scales: Any = None,
    C: float | None = None,
    return_codes: bool = False,
    groups: int = 1,
    method: str = "auto",
    scale_grid: Sequence[float] | None = None,
) -> Any:
    """GPFQ-quantize one layer's GEMM-form weight.

    Args:
        W: weights ``[out, in]`` (numpy or torch), ``in = in_channels * kernel`` channel-major.
        X: the layer's inputs in the float network, ``[m, in]`` (``[m, groups * in]`` for grouped convs).
        bits: 2..8.
        X_quantized: the same inputs in the partly quantized network (default ``X``), same shape as ``X``.
        blocks: the scale grid (default per-channel ``Blocks(out, 1)``; ``Blocks(1, 1)`` is per-tensor).
        kernel: ``k_h * k_w`` of a conv (so column blocks are channel-aligned); 1 for Linear.
        alphabet: ``"bbit"`` (codes ``-2^(b-1) .. 2^(b-1) - 1``, at most ``2^b`` values per block) or ``"paper"``
            (codes ``-2^(b-1) .. 2^(b-1)``: ``2^b + 1`` values, which need **b + 1 bits**).
        scales: explicit steps per block ``[n_v, n_h]`` (fixed before the greedy pass); excludes ``C``.
        C: multiplier of the alphabet's reference step (``"bbit"``: RTN's ``max|W| / (2^(b-1) - 1)``; default
            :func:`full_code_multiplier` without ``scale_grid``, 1 with it; ``"paper"``: default 1, and the paper's
            comments use ~0.975 / 1.16 / 1.81 for VGG-16 / ResNet-18 / ResNet-50 at 4 bits).
        return_codes: return ``(codes int64 [out, in], scales [n_v, n_h])`` instead of dequantized weights.
        groups: conv groups; output rows ``g * out/groups ...`` use input columns ``g * in ... (g + 1) * in`` of X.
        method: ``"auto"``, ``"gram"`` or ``"direct"`` (see the module docstring).
        scale_grid: optional multipliers of the reference step (times ``C`` or the given ``scales``); for every
            group of output rows that shares a scale
            (a row of blocks), the multiplier with the least ``||X W^T - X~ Q^T||^2`` on ``X`` is kept.

    Returns:
        The dequantized weights ``codes * scale`` with W's array type (torch in, torch out; same dtype), or
        ``(codes, scales)`` when ``return_codes``.
    """
    is_torch = isinstance(W, torch.Tensor)
    bits, alphabet = check_weight_bits(bits), _check_alphabet(alphabet)
    w = _to_f64("W", W)
    x = _to_f64("X", X)
    xq = None if X_quantized is None else _to_f64("X_quantized", X_quantized)
    out, cols = w.shape
    if out == 0 or cols == 0:
        raise QuantInputError(f"W has an empty shape {w.shape}")
    if x.shape[0] == 0:
        raise QuantInputError("empty calibration data: X has 0 rows")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 or out % groups:
        raise QuantInputError(f"groups must be a positive divisor of the {out} output rows, got {groups!r}")
    if x.shape[1] != cols * groups:
        raise QuantInputError(
            f"X has {x.shape[1]} columns but W has {cols} input columns" + (f" x {groups} groups" if groups > 1 else "")
        )
    if xq is not None and xq.shape != x.shape:
        raise QuantInputError(f"X_quantized has shape {xq.shape}, X has {x.shape}")
    if isinstance(kernel, bool) or not isinstance(kernel, (int, np.integer)) or kernel < 1 or cols % kernel:
        raise QuantInputError(f"kernel must be a positive divisor of the {cols} input columns, got {kernel!r}")
    if method not in ("auto", "gram", "direct"):
        raise QuantInputError(f"unknown method {method!r} (allowed: auto, gram, direct)")
    blocks = Blocks(out, 1) if blocks is None else blocks
    if not isinstance(blocks, Blocks):
        raise QuantInputError(f"blocks must be a Blocks(n_v, n_h), got {blocks!r}")
    blocks.check(out, cols // kernel)
    grid = _check_grid(scale_grid)
    base = _resolve_scales(w, bits, blocks, kernel, alphabet, scales, C, searching=grid is not None)
    codes, sc, _ = _gpfq_layer(w, x, xq, bits, blocks, kernel, groups, alphabet, base, grid, method)
    if return_codes:
        return codes, sc
    deq = codes * expand_blocks(sc, out, cols // kernel, kernel)
    if is_torch:
        return torch.as_tensor(deq, dtype=W.dtype if W.is_floating_point() else torch.float64, device=W.device)
    dtype = W.dtype if isinstance(W, np.ndarray) and np.issubdtype(W.dtype, np.floating) else np.float64
    return deq.astype(dtype)


def _resolve_scales(
    w: np.ndarray, bits: int, blocks: Blocks, kernel: int, alphabet: str, scales: Any, C: float | None, searching: bool
) -> np.ndarray:
    if scales is not None and C is not None:
        raise QuantInputError("give either scales or C, not both")
    if scales is not None:
        s = scales.detach().cpu().double().numpy() if isinstance(scales, torch.Tensor) else scales
        s = np.asarray(s, dtype=np.float64)
        if s.size != blocks.n_v * blocks.n_h:
            raise QuantInputError(
                f"scales has {s.size} entries, the block grid {blocks.n_v}x{blocks.n_h} needs {blocks.n_v * blocks.n_h}"
            )
        s = s.reshape(blocks.n_v, blocks.n_h)
        check_finite("scales", s)
        if (s <= 0).any():
            raise QuantInputError("scales must be positive")
        return s
    c = (full_code_multiplier(bits) if alphabet == "bbit" and not searching else 1.0) if C is None else C
    if (
        isinstance(c, bool)
        or not isinstance(c, (int, float, np.floating, np.integer))
        or not (math.isfinite(c) and c > 0)
    ):
        raise QuantInputError(f"C must be a positive finite number, got {C!r}")
    return alphabet_scales(w, bits, blocks, kernel, alphabet, float(c))


def _check_grid(grid: Sequence[float] | None) -> list[float] | None:
    if grid is None:
        return None
    try:
        g = [float(a) for a in grid]
    except (TypeError, ValueError):
        raise QuantInputError(f"scale_grid must be a sequence of positive numbers, got {grid!r}") from None
    if not g or not all(math.isfinite(a) and a > 0 for a in g):
        raise QuantInputError(f"scale_grid must be a non-empty sequence of positive numbers, got {grid!r}")
    return g


# ------------------------------------------------------------------------------------------------------------------
# lowering layer inputs to GEMM rows


_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _explicit_padding(conv: nn.Module) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim, resolving ``"same"`` / ``"valid"`` like PyTorch."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return [(0, 0)] * len(conv.kernel_size)
        # "same" (stride 1 only, PyTorch enforces it): the odd extra element goes after, as in PyTorch
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(conv.kernel_size, conv.dilation)]
    return [(p, p) for p in conv.padding]


def layer_inputs_2d(layer: QuantLayer | nn.Module, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A layer's input as float64 GEMM rows ``[rows, in_c * kernel]`` (channel-major, like ``gemm_weight()``).

    Linear: leading dims flattened (rows = samples).  Conv1d/Conv2d: patches (im2col) with the layer's real
    stride, padding (any padding mode, ``"same"`` / ``"valid"``) and dilation, rows ordered (sample, output
    position), so ``patches @ W.T`` reshaped to ``[N, L, out]`` is the convolution output without bias when
    ``groups == 1``.  For grouped convs the columns hold all ``in_c * kernel`` input columns; group ``g`` uses the
    ``g``-th slice.  Done in numpy (strided views), not ``F.unfold``: exact in float64 and free of torch's
    intra-op thread pool, which on a loaded 2-core machine made tiny unfolds take up to a second."""
    conv = layer.layer if isinstance(layer, QuantLayer) else layer
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if isinstance(conv, nn.Linear):
        return np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        raise QuantInputError(f"cannot lower inputs of {type(conv).__name__} (supported: Conv1d, Conv2d, Linear)")
    nd = len(conv.kernel_size)
    if a.ndim != nd + 2:
        raise QuantInputError(f"{type(conv).__name__} input must be {nd + 2}-D [N, C, ...], got shape {a.shape}")
    pads = _explicit_padding(conv)
    if any(p for pair in pads for p in pair):
        mode = _NP_PAD_MODE[conv.padding_mode]
        a = np.pad(a, [(0, 0), (0, 0)] + pads, mode=mode)
    ks, dil, st = conv.kernel_size, conv.dilation, conv.stride
    span = tuple(d * (k - 1) + 1 for k, d in zip(ks, dil))
    if any(a.shape[2 + i] < span[i] for i in range(nd)):
        raise QuantInputError(f"input of spatial size {a.shape[2:]} is smaller than the dilated kernel {span}")
    win = np.lib.stride_tricks.sliding_window_view(a, span, axis=tuple(range(2, 2 + nd)))
    # win: [N, C, *out_positions_before_stride, *span] -> stride the positions, dilate the window
    index = (
        (slice(None), slice(None)) + tuple(slice(None, None, s) for s in st) + tuple(slice(None, None, d) for d in dil)
    )
    win = win[index]  # [N, C, *L, *k]
    n, c = win.shape[:2]
    perm = (0,) + tuple(range(2, 2 + nd)) + (1,) + tuple(range(2 + nd, 2 + 2 * nd))
    return np.ascontiguousarray(win.transpose(perm)).reshape(n * int(np.prod(win.shape[2 : 2 + nd])), -1)


# ------------------------------------------------------------------------------------------------------------------
# network API


def _layer_output(layer: QuantLayer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    conv = layer.layer
    if isinstance(conv, nn.Linear):
        return F.linear(x, weight)
    return conv._conv_forward(x, weight, None)  # noqa: SLF001 - torch's conv with the layer's own padding mode and a given weight


def gpfq_quantize(
    model: nn.Module,
    calib_x: torch.Tensor,
    w_bits: int | dict[str, int],
    *,
    granularity: str | Blocks = "channel",
    alphabet: str = "bbit",
    C: float | None = None,
    bias_correction: bool = True,
    patch_fraction: float | None = None,
    seed: int = 0,
    scale_search: bool = True,
    scale_grid: Sequence[float] = DEFAULT_SCALE_GRID,
    method: str = "auto",
    batch: int = 256,
    report: list[dict[str, Any]] | None = None,
) -> nn.Module:
    """GPFQ every QuantLayer of a :func:`quant.fakequant.prepare`-d model, in place, in execution order.

    For layer ``l``: ``X`` is its input in the float network (a private float copy, no weight or activation
    quantization) and ``X~`` its input in ``model`` with layers ``< l`` already quantized, both on ``calib_x`` at that
    moment (``X~`` passes through the layer's own activation quantizer when one is set, since that is what the
    weights multiply).  Convs are lowered with :func:`layer_inputs_2d`; grouped convs are quantized one group at a
    time (each group's rows see only its input slice; scales may still span groups).

    Args:
        w_bits: bits for every layer, or ``{layer name: bits}`` covering every QuantLayer (mixed precision).
        granularity: ``"tensor"``, ``"channel"`` or ``Blocks(n_v, n_h)`` (PTQ-SL blocks: scales fixed before the pass).
        alphabet: ``"bbit"`` (installed as ``QuantSpec(bits)``) or ``"paper"`` (``2^b + 1`` levels, installed as
            ``QuantSpec(bits + 1)`` with the step ``delta`` as scale; needs ``bits <= 7``).
        C: multiplier of the alphabet's reference step (see :func:`quantize_weights`).
        bias_correction: ``b += mean over samples (and positions) of (X W^T - X~ Q^T)`` per output channel.
        patch_fraction: for convs, keep this fraction (0, 1] of the patch rows (seeded by ``seed``).
        scale_search: search ``scale_grid`` multipliers (default 0.30, 0.35, .., 1.00) of RTN's step (times ``C``)
            per output-row group (per channel for ``"channel"``), keeping the one with the least calibration error
            ``||X W^T - X~ Q^T||^2``.  1.0 is in the default grid, and so is the no-search step at 2 and 3 bits, so
            the search never does worse than those on that objective.  On by default; it costs one greedy pass per
            multiplier over shared Gram matrices (its effect on accuracy and its cost: docs/quant.md).
        method: ``"auto"``, ``"gram"`` or ``"direct"``.
        report: if a list is given, one dict per layer is appended: ``name``, ``bits``, ``rows`` / ``cols`` / ``out``
            (GEMM shape), ``method``, ``rel_sq_error`` (``||X W^T - X~ Q^T||^2 / ||X W^T||^2`` on the calibration
            rows, before bias correction), ``rel_sq_error_mult1`` (the same with the unscaled step; NaN if 1.0 is
            not in the grid), ``multipliers`` (chosen per row group), ``dead_columns`` and ``seconds``.
    Returns:
        ``model`` (quantized in place).
    """
    alphabet = _check_alphabet(alphabet)
    check_calibration(model, calib_x)
    if patch_fraction is not None and (
        isinstance(patch_fraction, bool) or not isinstance(patch_fraction, (int, float)) or not 0 < patch_fraction <= 1
    ):
        raise QuantInputError(f"patch_fraction must be in (0, 1], got {patch_fraction!r}")
    seed = check_seed(seed)
    if method not in ("auto", "gram", "direct"):
        raise QuantInputError(f"unknown method {method!r} (allowed: auto, gram, direct)")
    grid = _check_grid(scale_grid) if scale_search else None
    layers, bits_of = layer_weight_bits(model, calib_x, w_bits)
    for name, b in bits_of.items():
        if alphabet == "paper" and b + 1 > MAX_BITS:
            raise QuantInputError(
                f"layer {name!r}: the paper alphabet at {b} bits needs {b + 1}-bit codes (max {MAX_BITS})"
            )

    float_model = copy.deepcopy(model)
    float_layers = quant_layers(float_model)
    for _, m in float_layers:
        m.clear_weight_quant()
    activations_off(float_model)
    float_inputs = inputs_in_order(float_model, float_layers, calib_x, batch)
    quant_inputs = inputs_in_order(model, layers, calib_x, batch)
    gen = torch.Generator().manual_seed(int(seed))

    for (name, layer), x_f, x_q in zip(layers, float_inputs, quant_inputs):
        t0 = time.perf_counter()
        bits = bits_of[name]
        blocks = granularity_blocks(layer, granularity)
        if layer.act is not None:
            x_q = layer.act(x_q)
        Xn = layer_inputs_2d(layer, x_f)
        Xqn = layer_inputs_2d(layer, x_q)
        del x_f, x_q
        means = (Xn.mean(axis=0), Xqn.mean(axis=0)) if bias_correction else None
        if patch_fraction is not None and patch_fraction < 1 and not isinstance(layer.layer, nn.Linear):
            keep = max(1, math.ceil(patch_fraction * Xn.shape[0]))
            rows = torch.randperm(Xn.shape[0], generator=gen)[:keep].sort().values.numpy()
            Xn, Xqn = Xn[rows], Xqn[rows]
        same = np.array_equal(Xn, Xqn)
        w = layer.gemm_weight()
        base = _resolve_scales(w, bits, blocks, layer.kernel, alphabet, None, C, searching=grid is not None)
        codes, scales, info = _gpfq_layer(
            w, Xn, None if same else Xqn, bits, blocks, layer.kernel, layer.groups, alphabet, base, grid, method
        )
        spec = QuantSpec(bits + 1 if alphabet == "paper" else bits)
        layer.set_weight_codes(codes, scales, spec, blocks)
        if means is not None:
            _add_bias(layer, _mean_output_gap(layer, w, *means))
        if report is not None:
            per, cols = w.shape[0] // layer.groups, w.shape[1]
            ref = sum(
                float(np.sum((Xn[:, g * cols : (g + 1) * cols] @ w[g * per : (g + 1) * per].T) ** 2))
                for g in range(layer.groups)
            )
            report.append(
                {
                    "name": name,
                    "bits": bits,
                    "rows": int(Xn.shape[0]),
                    "cols": int(w.shape[1]),
                    "out": int(w.shape[0]),
                    "method": info["method"],
                    "rel_sq_error": info["sq_error"] / ref if ref > 0 else float("nan"),
                    "rel_sq_error_mult1": info["sq_error_mult1"] / ref if ref > 0 else float("nan"),
                    "multipliers": info["multipliers"],
                    "dead_columns": info["dead_columns"],
                    "seconds": time.perf_counter() - t0,
                }
            )
    return model


def correct_bias(layer: QuantLayer, x_f: torch.Tensor, x_q: torch.Tensor) -> None:
    """GPFQ's bias correction, in place: ``b += mean(X W^T - X~ Q^T)`` over every dim but the output channel,
    computed in float64 with the layer's own op (``x_f`` float inputs, ``x_q`` quantized-prefix inputs)."""
    conv = layer.layer
    w_f = conv.weight.detach().double()
    w_q = layer.w_deq.detach().double()
    with torch.no_grad():
        diff = _layer_output(layer, x_f.double(), w_f) - _layer_output(layer, x_q.double(), w_q)
    dims = [d for d in range(diff.dim()) if d != (diff.dim() - 1 if isinstance(conv, nn.Linear) else 1)]
    _add_bias(layer, diff.mean(dim=dims).numpy())


def _mean_output_gap(layer: QuantLayer, w: np.ndarray, mean_f: np.ndarray, mean_q: np.ndarray) -> np.ndarray:
    """``mean(X W^T - X~ Q^T)`` per output channel from the GEMM rows' column means (the same quantity as
    :func:`correct_bias`, without a second pass over the data); grouped convs group by group."""
    out, cols = w.shape
    q = layer.w_deq.detach().double().reshape(out, -1).cpu().numpy()
    per = out // layer.groups
    return np.concatenate(
        [
            w[g * per : (g + 1) * per] @ mean_f[g * cols : (g + 1) * cols]
            - q[g * per : (g + 1) * per] @ mean_q[g * cols : (g + 1) * cols]
            for g in range(layer.groups)
        ]
    )


def _add_bias(layer: QuantLayer, shift: np.ndarray) -> None:
    conv = layer.layer
    check_finite("bias correction", shift)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(len(shift), dtype=torch.float64)
    bias = bias + torch.from_numpy(np.asarray(shift, dtype=np.float64))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
