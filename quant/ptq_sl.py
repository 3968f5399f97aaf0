"""PTQ-SL (Yuan et al., arXiv 2110.07809): sub-layerwise weight scales found by a greedy search.

The GEMM-form weight ``W[out, in_c * kernel]`` of every layer is cut into an ``n_v x n_h`` block grid
(:class:`quant.quantizer.Blocks`: contiguous row groups x contiguous, channel-aligned column groups) with one
symmetric scale per block.  Each block starts at ``s0 = max|W_block| / (2^(b-1) - 0.5)`` (codes clamped to
``[-2^(b-1), 2^(b-1) - 1]``) and is then searched greedily, block by block, over ``alpha * s0`` for ``alpha`` on a
grid (default 0.5..1.2 in 100 steps, **plus 1.0**) with every other block held at its current scale.  The
kept ``alpha`` is the one that makes the quantized **layer output** closest to the float one on calibration
inputs: ``metric="l2"`` minimises ``||X W^T - X Q^T||_F^2``; ``metric="cosine"`` maximises the cosine
similarity of the whole (flattened) output tensors ``X W^T + b`` and ``X Q^T + b``.  Ties keep the current
scale, so the search never ends worse than the max-abs start (``alpha = 1``).

Efficiency.  Both metrics depend on the calibration inputs only through the (bias-augmented) Gram matrix
``G = [X 1]^T [X 1]``, accumulated once per layer in float64, so the search never materialises the layer
output.  With ``D = W - Q``:

* L2 error ``= sum_i D_i G D_i^T`` is a sum over output rows, so row groups are searched independently; for
  block ``(r, c)`` the error as a function of its candidates is ``D_c G_cc D_c^T + 2 D_c . (D_rest G_rest,c)``
  (a column block's contribution to the output is additive), evaluated for the whole alpha grid at once;
* cosine keeps running per-row totals of ``<Y, Y_hat>`` and ``||Y_hat||^2`` and updates only the searched
  block's share, again for all alphas at once.

Inputs.  By default (``inputs="float"``) every layer is searched on its inputs in the *float* network (all
weight codes and activation quantizers switched off while capturing), as PTQ-SL / PTQ4ViT do: each layer is
then fitted to reproduce exactly its float function, the search does not depend on the order or on the other
layers' settings, and one forward pass serves every layer.  ``inputs="quantized"`` instead captures each
layer's inputs from the partially quantized network (earlier layers' codes and all activation quantizers,
the layer's own input quantizer included, active; layers processed sequentially in execution order) and fits
``X_hat W^T`` -- the float layer applied to what the layer will really see -- at the cost of one forward pass
per layer.  On digits-cnn / mnist1d-cnn (3 training seeds, w4a8 and w3a8, per-channel, 4x1 and 8x2 blocks)
the two modes are within +-0.3 dB logit SQNR of each other with no consistent winner, so the cheaper,
order-independent float mode is the default.

Channel reordering (``reorder="sort" | "kmeans"``) permutes output channels with :mod:`quant.reorder` before
the search, so that rows with similar ranges share a row group; the network's float function is unchanged.
The permutation of each reordered layer is stored on its :class:`QuantLayer` as ``out_perm``
(``perm[j]`` = original index of the channel now at position ``j``), and the relative layer-output error the
search reached as ``ptq_sl_rel_err`` (``||X (W - Q)^T|| / ||X W^T + b||`` on the search's inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, feed_inputs, quant_layers, tensor_quants
from quant.quantizer import Blocks, QuantSpec, block_bounds, check_finite, expand_blocks, quantize

__all__ = [
    "DEFAULT_ALPHAS",
    "METRICS",
    "INPUT_MODES",
    "initial_block_scales",
    "search_block_scales",
    "search_block_scales_gram",
    "lower_inputs",
    "input_gram",
    "layer_output_error",
    "resolve_blocks",
    "ptq_sl_layer",
    "ptq_sl_quantize",
    "float_view",
    "relative_output_errors",
]

#: The paper's candidate grid for the scale multiplier; 1.0 is always added by the search.
DEFAULT_ALPHAS: np.ndarray = np.linspace(0.5, 1.2, 100)
METRICS = ("l2", "cosine")
INPUT_MODES = ("float", "quantized")


# --------------------------------------------------------------------------------------------------------------
# validation helpers


def _as_spec(spec: QuantSpec | int) -> QuantSpec:
    if isinstance(spec, QuantSpec):
        out = spec
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        out = QuantSpec(int(spec))  # raises QuantInputError for bits outside 2..8
    else:
        raise QuantInputError(f"spec must be a QuantSpec or an int bit width, got {spec!r}")
    if not (out.symmetric and out.signed):
        raise QuantInputError("PTQ-SL weight scales need a symmetric signed QuantSpec")
    return out


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise QuantInputError(f"unknown metric {metric!r} (allowed: {', '.join(METRICS)})")
    return metric


def _alpha_grid(alphas: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int]:
    """The candidate multipliers (sorted, unique, with 1.0 added) and the index of 1.0."""
    a = np.asarray(alphas, dtype=np.float64).ravel()
    if a.size == 0:
        raise QuantInputError("alphas must hold at least one candidate multiplier")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise QuantInputError("alphas must be finite and > 0")
    a = np.unique(np.concatenate([a, [1.0]]))
    return a, int(np.flatnonzero(a == 1.0)[0])


def resolve_blocks(
    blocks: Blocks | tuple[int, int] | str, out_features: int, in_channels: int, clamp: bool = False, groups: int = 1
) -> Blocks:
    """``"channel"`` -> ``(out, 1)``, ``"tensor"`` -> ``(1, 1)``, a tuple or :class:`Blocks` as given.

    With ``clamp`` a grid larger than the layer is shrunk to ``(min(n_v, out), min(n_h, in_channels))``;
    without it an oversized grid raises :class:`QuantInputError`.  A grouped conv's groups are separate GEMMs,
    so its row blocks must lie inside groups: ``n_v`` a multiple of ``groups`` whose bounds fall on the group
    boundaries (with ``clamp``, ``n_v`` is first rounded up to a multiple of ``groups``)."""
    if isinstance(blocks, str):
        if blocks == "channel":
            return Blocks(out_features, 1)
        if blocks == "tensor":
            return Blocks(1, 1)
        raise QuantInputError(f"unknown block granularity {blocks!r} (allowed: channel, tensor, (n_v, n_h), Blocks)")
    if isinstance(blocks, Blocks):
        n_v, n_h = blocks.n_v, blocks.n_h
    elif isinstance(blocks, (tuple, list)) and len(blocks) == 2:
        n_v, n_h = blocks
    else:
        raise QuantInputError(f"blocks must be 'channel', 'tensor', (n_v, n_h) or Blocks, got {blocks!r}")
    for name, v in (("n_V", n_v), ("n_H", n_h)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise QuantInputError(f"{name} must be a positive integer, got {v!r}")
    n_v, n_h = int(n_v), int(n_h)
    if clamp:
        if groups > 1:
            n_v = -(-n_v // groups) * groups
        n_v, n_h = min(n_v, out_features), min(n_h, in_channels)
    b = Blocks(n_v, n_h)
    b.check(out_features, in_channels)
    if groups > 1:
        per = out_features // groups
        bounds = block_bounds(out_features, n_v)
        if n_v % groups or not np.array_equal(bounds[:: n_v // groups], np.arange(groups + 1) * per):
            raise QuantInputError(
                f"n_V={n_v} row blocks cross the {groups} groups of a grouped conv ({per} rows "
                f"each): n_V must be a multiple of {groups} whose blocks tile each group"
            )
    return b


def initial_block_scales(weight: np.ndarray, spec: QuantSpec, blocks: Blocks, kernel: int = 1) -> np.ndarray:
    """PTQ-SL's starting scales ``max|W_block| / (2^(b-1) - 0.5)``, shape ``[n_v, n_h]`` (all-zero block -> 1)."""
    w = np.asarray(weight, dtype=np.float64)
    out, cols = w.shape
    rb, cb = block_bounds(out, blocks.n_v), block_bounds(cols // kernel, blocks.n_h) * kernel
    amax = np.array(
        [[np.abs(w[rb[i] : rb[i + 1], cb[j] : cb[j + 1]]).max() for j in range(blocks.n_h)] for i in range(blocks.n_v)]
    )
    scale = amax / (2.0 ** (spec.bits - 1) - 0.5)
    return np.where(scale > 0, scale, 1.0)


def _check_weight(weight: np.ndarray, kernel: int) -> tuple[np.ndarray, int]:
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or w.size == 0:
        raise QuantInputError(f"weight must be a non-empty 2-D GEMM-form array [out, in], got shape {w.shape}")
    check_finite("weight", w)
    if isinstance(kernel, bool) or not isinstance(kernel, (int, np.integer)) or kernel < 1:
        raise QuantInputError(f"kernel must be a positive integer, got {kernel!r}")
    if w.shape[1] % kernel:
        raise QuantInputError(f"weight has {w.shape[1]} columns, not a multiple of the kernel size {kernel}")
    return w, w.shape[1] // int(kernel)


# --------------------------------------------------------------------------------------------------------------
# calibration inputs -> Gram matrix


def lower_inputs(layer: QuantLayer | nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as GEMM rows ``[positions, in_c * kernel]`` (channel-major, like ``gemm_weight``).

    Convolutions are lowered with their real padding (mode included), stride and dilation, so
    ``lower_inputs(l, x) @ W^T + b`` equals the layer output (moved to channels-last)."""
    mod = layer.layer if isinstance(layer, QuantLayer) else layer
    if isinstance(mod, nn.Linear):
        if x.shape[-1] != mod.in_features:
            raise QuantInputError(f"Linear input has {x.shape[-1]} features, the layer expects {mod.in_features}")
        return x.reshape(-1, mod.in_features)
    if not isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        raise QuantInputError(f"cannot lower inputs of {type(mod).__name__} (supported: Conv1d, Conv2d, Linear)")
    pad = mod._reversed_padding_repeated_twice  # noqa: SLF001 - the padding torch applies for non-zero padding modes
    mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
    if any(pad):
        x = F.pad(x, pad, mode=mode)
    # sliding windows as strided views (much faster than F.unfold/im2col on CPU): one unfold per spatial axis
    spatial = x.dim() - 2
    for axis in range(spatial):
        k, d, s = mod.kernel_size[axis], mod.dilation[axis], mod.stride[axis]
        x = x.unfold(2 + axis, (k - 1) * d + 1, s)  # appends a window axis
        if d > 1:
            x = x[..., ::d]
    # x: [N, C, *out_positions, *kernel] -> [N, *out_positions, C, *kernel] -> rows, channel-major columns
    # (for a grouped conv, group g's columns are g * in_c/groups * kernel ... : its GEMM's own columns)
    x = x.permute(0, *range(2, 2 + spatial), 1, *range(2 + spatial, 2 + 2 * spatial))
    return x.reshape(-1, mod.in_channels * int(np.prod(mod.kernel_size)))


class _GramAccumulator:
    """Running bias-augmented Gram ``[X 1]^T [X 1]`` in float64; with ``groups > 1`` one per group's columns,
    ``[groups, k + 1, k + 1]`` (a grouped conv's groups are separate GEMMs)."""

    def __init__(self, groups: int = 1) -> None:
        self.gram: np.ndarray | None = None
        self.groups = groups

    def add(self, rows: torch.Tensor) -> None:
        r = rows.detach().to(torch.float64)
        if self.groups > 1:
            r = r.reshape(r.shape[0], self.groups, -1)
            r = torch.cat([r, torch.ones(r.shape[0], self.groups, 1, dtype=torch.float64)], dim=2)
            g = torch.einsum("pgk,pgl->gkl", r, r).numpy()
        else:
            r = torch.cat([r, torch.ones(r.shape[0], 1, dtype=torch.float64)], dim=1)
            g = (r.T @ r).numpy()
        self.gram = g if self.gram is None else self.gram + g


def input_gram(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Bias-augmented Gram matrix ``[X 1]^T [X 1]`` of GEMM-form inputs ``X[rows, cols]`` (float64)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise QuantInputError(f"calibration inputs must be 2-D [rows, in], got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise QuantInputError("empty calibration set")
    check_finite("calibration inputs", t.detach().double().numpy())
    acc = _GramAccumulator()
    for i in range(0, t.shape[0], 65536):
        acc.add(t[i : i + 65536])
    return acc.gram


def layer_output_error(
    weight: np.ndarray,
    qweight: np.ndarray,
    x: np.ndarray | torch.Tensor,
    metric: str = "l2",
    bias: np.ndarray | None = None,
) -> float:
    """The search objective evaluated directly: ``||X W^T - X Q^T||^2`` (l2) or ``1 - cos(XW^T+b, XQ^T+b)``."""
    _check_metric(metric)
    x = np.asarray(x.detach().double().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    y, yq = x @ np.asarray(weight, np.float64).T, x @ np.asarray(qweight, np.float64).T
    if metric == "l2":
        return float(np.sum((y - yq) ** 2))
    if bias is not None:
        y, yq = y + bias, yq + bias
    den = np.linalg.norm(y) * np.linalg.norm(yq)
    return float(1.0 - (np.sum(y * yq) / den if den > 0 else 0.0))


# --------------------------------------------------------------------------------------------------------------
# the search


def _candidates(wb: np.ndarray, scales: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """Dequantized candidates ``[A, m, k]`` of one block for every scale in ``scales[A]``."""
    s = scales[:, None, None]
    return np.clip(np.rint(wb[None] / s), spec.qmin, spec.qmax) * s


def _quad(c: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sum_{m} c[a, m] g c[a, m]^T`` for every candidate ``a`` (c: [A, m, k], g: [k, k])."""
    a, m, k = c.shape
    return np.einsum("ij,ij->i", (c.reshape(a * m, k) @ g), c.reshape(a * m, k)).reshape(a, m).sum(1)


def search_block_scales_gram(
    weight: np.ndarray,
    gram: np.ndarray,
    spec: QuantSpec | int,
    blocks: Blocks | tuple[int, int] | str,
    kernel: int = 1,
    metric: str = "l2",
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    bias: np.ndarray | None = None,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search_block_scales` on a precomputed bias-augmented Gram matrix (see :func:`input_gram`)."""
    spec = _as_spec(spec)
    _check_metric(metric)
    w, in_ch = _check_weight(weight, kernel)
    out, cols = w.shape
    blocks = resolve_blocks(blocks, out, in_ch)
    grid, one = _alpha_grid(alphas)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise QuantInputError(f"rounds must be a positive integer, got {rounds!r}")
    g = np.asarray(gram, dtype=np.float64)
    if g.shape != (cols + 1, cols + 1):
        raise QuantInputError(f"Gram matrix of shape {g.shape} does not match {cols} weight columns (+1 for bias)")
    check_finite("calibration Gram matrix", g)
    if g[-1, -1] <= 0:
        raise QuantInputError("empty calibration set")
    b = np.zeros(out) if bias is None else np.asarray(bias, dtype=np.float64).reshape(out)
    check_finite("bias", b)

    s0 = initial_block_scales(w, spec, blocks, kernel)
    idx = np.full((blocks.n_v, blocks.n_h), one, dtype=np.int64)
    rb = block_bounds(out, blocks.n_v)
    cb = block_bounds(in_ch, blocks.n_h) * kernel
    full0 = expand_blocks(s0, out, in_ch, kernel)
    q = np.clip(np.rint(w / full0), spec.qmin, spec.qmax) * full0  # current dequantized weight (alpha = 1)

    if metric == "l2":
        gx = g[:cols, :cols]
        # with one column block per row group the L2 error separates over row groups, so one sweep is already
        # the exact grid optimum of every block and a second sweep could not change anything
        for _ in range(1 if blocks.n_h == 1 else int(rounds)):
            changed = False
            for r in range(blocks.n_v):
                r0, r1 = rb[r], rb[r + 1]
                delta = w[r0:r1] - q[r0:r1]
                for c in range(blocks.n_h):
                    c0, c1 = cb[c], cb[c + 1]
                    rest = delta.copy()
                    rest[:, c0:c1] = 0.0
                    h = rest @ gx[:, c0:c1]  # [m, k]
                    wb = w[r0:r1, c0:c1]
                    d = wb[None] - _candidates(wb, grid * s0[r, c], spec)  # [A, m, k]
                    err = _quad(d, gx[c0:c1, c0:c1]) + 2.0 * np.einsum("amk,mk->a", d, h)
                    best = int(np.argmin(err))
                    if err[best] < err[idx[r, c]]:
                        idx[r, c], changed = best, True
                        delta[:, c0:c1] = d[best]
                        q[r0:r1, c0:c1] = wb - d[best]
            if not changed:
                break
    else:
        wt = np.concatenate([w, b[:, None]], axis=1)
        qt = np.concatenate([q, b[:, None]], axis=1)
        wg = wt @ g
        y_norm2 = float(np.sum(wg * wt))
        den_row = np.einsum("ij,ij->i", qt @ g, qt)
        num_row = np.einsum("ij,ij->i", wg, qt)
        for _ in range(int(rounds)):
            changed = False
            for r in range(blocks.n_v):
                r0, r1 = rb[r], rb[r + 1]
                for c in range(blocks.n_h):
                    c0, c1 = cb[c], cb[c + 1]
                    rest = qt[r0:r1].copy()
                    rest[:, c0:c1] = 0.0
                    rest_g = rest @ g
                    num_base = num_row.sum() - num_row[r0:r1].sum() + float(np.sum(wg[r0:r1] * rest))
                    den_base = den_row.sum() - den_row[r0:r1].sum() + float(np.sum(rest_g * rest))
                    wb = w[r0:r1, c0:c1]
                    cand = _candidates(wb, grid * s0[r, c], spec)  # [A, m, k]
                    num = num_base + np.einsum("amk,mk->a", cand, wg[r0:r1, c0:c1])
                    den = den_base + 2.0 * np.einsum("amk,mk->a", cand, rest_g[:, c0:c1]) + _quad(cand, g[c0:c1, c0:c1])
                    with np.errstate(divide="ignore", invalid="ignore"):
                        cos = np.where(den > 0, num / np.sqrt(np.maximum(y_norm2, 1e-300) * den), -np.inf)
                    best = int(np.argmax(cos))
                    if cos[best] > cos[idx[r, c]]:
                        idx[r, c], changed = best, True
                        qt[r0:r1, c0:c1] = cand[best]
                        den_row[r0:r1] = np.einsum("ij,ij->i", qt[r0:r1] @ g, qt[r0:r1])
                        num_row[r0:r1] = np.einsum("ij,ij->i", wg[r0:r1], qt[r0:r1])
            if not changed:
                break

    scales = grid[idx] * s0
    codes = quantize(w, expand_blocks(scales, out, in_ch, kernel), 0, spec)
    return codes, scales


def search_block_scales(
    weight: np.ndarray,
    x: np.ndarray | torch.Tensor,
    spec: QuantSpec | int,
    blocks: Blocks | tuple[int, int] | str,
    kernel: int = 1,
    metric: str = "l2",
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    bias: np.ndarray | None = None,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """PTQ-SL's greedy block-scale search for one layer.

    ``weight``: GEMM-form ``[out, in_c * kernel]`` (channel-major); ``x``: calibration inputs already lowered to
    GEMM rows ``[rows, in_c * kernel]`` (:func:`lower_inputs`); ``blocks``: ``(n_v, n_h)``, :class:`Blocks`,
    ``"channel"`` or ``"tensor"``; ``bias`` only matters for ``metric="cosine"``.  ``rounds`` greedy sweeps
    over the blocks are made (stopping early when a sweep changes nothing).

    Returns int64 codes ``[out, in_c * kernel]`` in ``[-2^(b-1), 2^(b-1) - 1]`` and scales ``[n_v, n_h]``.
    """
    w, _ = _check_weight(weight, kernel)
    xt = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if xt.ndim != 2 or xt.shape[1] != w.shape[1]:
        raise QuantInputError(
            f"calibration inputs of shape {tuple(xt.shape)} do not match the weight's {w.shape[1]} columns"
        )
    return search_block_scales_gram(w, input_gram(xt), spec, blocks, kernel, metric, alphas, bias=bias, rounds=rounds)


# --------------------------------------------------------------------------------------------------------------
# model level


def _layer_bias(layer: QuantLayer) -> np.ndarray | None:
    bias = layer.layer.bias
    return None if bias is None else bias.detach().double().cpu().numpy()


def ptq_sl_layer(
    layer: QuantLayer,
    gram: np.ndarray,
    bits: int,
    blocks: Blocks | tuple[int, int] | str,
    metric: str = "l2",
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    rounds: int = 2,
    clamp: bool = True,
) -> None:
    """Search and install block scales and codes on one :class:`QuantLayer` from its input Gram matrix (one per
    group, ``[groups, k + 1, k + 1]``, for a grouped conv: each group is searched on its own GEMM)."""
    g_count = layer.groups
    b = resolve_blocks(blocks, layer.out_features, layer.in_channels, clamp=clamp, groups=g_count)
    spec = _as_spec(bits)
    w = layer.gemm_weight()
    bias = _layer_bias(layer)
    grams = np.asarray(gram, dtype=np.float64).reshape((g_count,) + np.shape(gram)[-2:])
    per, per_v = layer.out_features // g_count, b.n_v // g_count
    parts = []
    for g in range(g_count):
        rows = slice(g * per, (g + 1) * per)
        parts.append(
            search_block_scales_gram(
                w[rows],
                grams[g],
                spec,
                Blocks(per_v, b.n_h),
                layer.kernel,
                metric,
                alphas,
                bias=None if bias is None else bias[rows],
                rounds=rounds,
            )
        )
    codes, scales = np.concatenate([c for c, _ in parts]), np.concatenate([s for _, s in parts])
    layer.set_weight_codes(codes, scales, spec, b)
    q = codes * expand_blocks(scales, layer.out_features, layer.in_channels, layer.kernel)
    layer.ptq_sl_rel_err = _grouped_rel_err(w, q, bias, grams)


def _grams(
    model: nn.Module,
    layers: list[tuple[str, QuantLayer]],
    calib_x: torch.Tensor,
    batch: int = 256,
    own_act: bool = False,
) -> dict[str, np.ndarray]:
    """Bias-augmented Gram matrices of the lowered inputs of ``layers``.

    The input is taken before the layer's own activation quantizer unless ``own_act`` (then after it, i.e.
    exactly what the layer's weights multiply)."""
    accs = {id(m): _GramAccumulator(m.groups) for _, m in layers}

    def on_input(mod: QuantLayer, x: torch.Tensor) -> None:
        x = mod.act(x) if own_act and mod.act is not None else x
        accs[id(mod)].add(lower_inputs(mod, x))

    feed_inputs(model, [m for _, m in layers], calib_x, on_input, batch)
    return {name: accs[id(m)].gram for name, m in layers}


class float_view:  # noqa: N801 - used like a function: ``with float_view(model): ...``
    """Context manager: every QuantLayer of a model runs in float (no weight codes, no act quantizer)."""

    def __init__(self, model_or_layers: nn.Module | list[tuple[str, QuantLayer]]) -> None:
        self.layers = quant_layers(model_or_layers) if isinstance(model_or_layers, nn.Module) else model_or_layers
        self.tensors = tensor_quants(model_or_layers) if isinstance(model_or_layers, nn.Module) else []
        self.saved: list[tuple[QuantLayer, object, object]] = []
        self.saved_tensors: list[tuple[nn.Module, object]] = []

    def __enter__(self) -> float_view:
        for _, m in self.layers:
            self.saved.append((m, m.w_deq, m.act))
            m.w_deq, m.act = None, None
        for _, t in self.tensors:
            self.saved_tensors.append((t, t.act))
            t.act = None
        return self

    def __exit__(self, *exc: object) -> None:
        for m, w_deq, act in self.saved:
            m.w_deq, m.act = w_deq, act
        for t, act in self.saved_tensors:
            t.act = act


def _check_arguments(
    model: Any, calib_x: Any, metric: str, alphas: Sequence[float] | np.ndarray, inputs: str, reorder: bool | str
) -> None:
    """:func:`ptq_sl_quantize`'s arguments other than the per-layer ones, before the model is touched."""
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(calib_x, torch.Tensor) or calib_x.ndim < 2:
        raise QuantInputError("calib_x must be a torch tensor [N, ...]")
    if len(calib_x) == 0:
        raise QuantInputError("empty calibration set")
    check_finite("calibration inputs", calib_x.detach().double().cpu().numpy())
    _check_metric(metric)
    _alpha_grid(alphas)
    if inputs not in INPUT_MODES:
        raise QuantInputError(f"unknown inputs mode {inputs!r} (allowed: {', '.join(INPUT_MODES)})")
    if reorder not in (False, None, "sort", "kmeans"):
        raise QuantInputError(f"unknown reorder {reorder!r} (allowed: False, 'sort', 'kmeans')")


def ptq_sl_quantize(
    model: nn.Module,
    calib_x: torch.Tensor,
    w_bits: int | Mapping[str, int],
    *,
    blocks: Blocks | tuple[int, int] | str | Mapping[str, Blocks | tuple[int, int] | str] = "channel",
    metric: str = "l2",
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    reorder: bool | str = False,
    inputs: str = "float",
    rounds: int = 2,
    reorder_stat: str = "weight",
) -> nn.Module:
    """PTQ-SL weight quantization of a prepared model (:func:`quant.fakequant.prepare`), in place.

    ``blocks`` applies to every layer -- a uniform ``(n_v, n_h)`` / :class:`Blocks` is clamped to each layer's
    ``(out, in_channels)`` (a first conv with one input channel cannot have ``n_H = 2``) -- or is a mapping
    from layer name to a per-layer value, which is checked strictly.  ``reorder`` = ``"sort"`` or ``"kmeans"``
    first permutes channels (:func:`quant.reorder.reorder_model`, ``n_V`` groups) without changing the float
    function; it needs an ``nn.Sequential`` model.  Layers are processed in execution order; see the module
    docstring for ``inputs``.  Activation quantizers already set on the model are kept (and used for
    ``inputs="quantized"``).  Returns the model.
    """
    _check_arguments(model, calib_x, metric, alphas, inputs, reorder)
    layers = quant_layers(model)
    if not layers:
        raise QuantInputError("model has no QuantLayer; call quant.fakequant.prepare(model) first")

    def pick(value, name, what):  # per-layer value from a scalar or a mapping
        if isinstance(value, Mapping):
            if name not in value:
                raise QuantInputError(f"{what} has no entry for layer {name!r}")
            return value[name]
        return value

    per_layer_blocks = isinstance(blocks, Mapping)
    for name, m in layers:  # validate everything before touching the model
        _as_spec(pick(w_bits, name, "w_bits"))
        try:
            resolve_blocks(
                pick(blocks, name, "blocks"), m.out_features, m.in_channels, clamp=not per_layer_blocks, groups=m.groups
            )
        except QuantInputError as exc:
            raise QuantInputError(f"layer {name!r}: {exc}") from None
        if reorder and m.groups > 1:
            raise QuantInputError(f"layer {name!r}: channel reordering does not apply to a grouped conv")

    if reorder:
        from quant.reorder import reorder_model

        n_groups = {
            name: resolve_blocks(
                pick(blocks, name, "blocks"), m.out_features, m.in_channels, clamp=not per_layer_blocks
            ).n_v
            for name, m in layers
        }
        reorder_model(model, calib_x, n_groups, reorder, stat=reorder_stat)  # sets QuantLayer.out_perm

    layers = quant_layers(model, calib_x[:1])  # execution order
    if inputs == "float":
        with float_view(layers):
            grams = _grams(model, layers, calib_x)
    for name, m in layers:
        gram = _grams(model, [(name, m)], calib_x, own_act=True)[name] if inputs == "quantized" else grams[name]
        ptq_sl_layer(
            m,
            gram,
            pick(w_bits, name, "w_bits"),
            pick(blocks, name, "blocks"),
            metric,
            alphas,
            rounds=rounds,
            clamp=not per_layer_blocks,
        )
    return model


def relative_output_errors(model: nn.Module, calib_x: torch.Tensor) -> dict[str, float]:
    """Per weight-quantized layer: ``||X (W - Q)^T|| / ||X W^T + b||`` on the *float* network's inputs.

    The diagnostic the L2 search minimises, normalised by the float layer output (activation quantizers and
    weight codes are switched off while capturing ``X``)."""
    layers = [(n, m) for n, m in quant_layers(model) if m.w_deq is not None]
    if not layers:
        return {}
    with float_view(quant_layers(model)):
        grams = _grams(model, layers, calib_x)
    return {
        name: _grouped_rel_err(
            m.gemm_weight(), m.w_deq.detach().double().reshape(m.out_features, -1).numpy(), _layer_bias(m), grams[name]
        )
        for name, m in layers
    }


def _grouped_rel_err(w: np.ndarray, q: np.ndarray, bias: np.ndarray | None, gram: np.ndarray) -> float:
    """``||X (W - Q)^T|| / ||X W^T + b||`` from the bias-augmented Gram matrix of X (``[groups, k+1, k+1]`` for a
    grouped conv: group g's rows use its own Gram)."""
    grams = np.asarray(gram).reshape((-1,) + np.shape(gram)[-2:])
    per = w.shape[0] // len(grams)
    b = np.zeros(w.shape[0]) if bias is None else bias
    wt = np.concatenate([w, b[:, None]], axis=1)
    d = w - q
    num = den = 0.0
    for g, gm in enumerate(grams):
        rows = slice(g * per, (g + 1) * per)
        num += float(np.sum((d[rows] @ gm[:-1, :-1]) * d[rows]))
        den += float(np.sum((wt[rows] @ gm) * wt[rows]))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else float("inf")
