"""QGT-style training: fine-tune the float weights with a regularizer that pulls them onto the b-bit grid.

After Ghamari et al. 2021 ("Quantization-Guided Training", arXiv 2103.06231).  The paper's regularizer is not
published, so lowbit implements the natural form and calls it *QGT-style*::

    L = L_task + lambda(t) * sum_l R_l(W_l)
    R_l(W) = ||W - sg(Q_b(W))||^2 / ||sg(W)||^2

``Q_b`` rounds every weight to its output channel's symmetric b-bit grid (codes ``-2^(b-1) .. 2^(b-1) - 1``, one
scale per output channel, as the integer export expects) and ``sg`` is a stop-gradient: the quantized weight, its
scale and the normalizer are constants, so ``dR/dW = 2 (W - Q_b(W)) / ||W||^2`` pulls every weight towards its
nearest grid point.  ``R_l`` is the layer's weight quantization noise-to-signal ratio: scale-free, so layers of any
size and weight range are comparable (which the bottleneck ranking needs), and 0 when the weights lie on the grid.

The grid's per-channel scale (``grid``, :func:`channel_scales`):

* ``"mse"`` (default) -- the multiple ``m * max|w| / qmax``, ``m`` in 0.30, 0.35, .., 1.00 (GPFQ's scale grid),
  with the least squared rounding error of the channel.  The weights are pulled towards a grid that fits their
  distribution, not towards ``{-max, 0, max}``: at 2 bits the max-abs grid rounds most weights to 0, and pulling
  them there costs far more accuracy (docs/quant.md, "QGT", has the figures).
* ``"max"`` -- ``max|w| / qmax``, exactly :func:`quant.rtn.rtn_quantize`'s grid.

Weights stay float during training (``weight_fn`` is None); activations are fake-quantized at ``a_bits`` with a
straight-through estimator, as in :mod:`quant.qat`.  ``lambda(t)`` follows a schedule over the training progress
``t`` in ``[0, 1)``: ``"linear"`` ramps from 0 to ``lam`` over the first ``warmup`` fraction then stays, ``"exp"``
ramps geometrically from ``lam * 1e-3`` to ``lam`` over ``warmup``, ``"constant"`` is ``lam`` throughout
(``warmup = 0`` makes every schedule constant).

After fine-tuning the weights are quantized by ``final`` and activations are recalibrated:

* ``"rtn"`` -- round to the training grid (scales searched again on the final weights; with ``grid="max"`` this
  is :func:`quant.rtn.rtn_quantize`);
* ``"rtn-bc"`` -- the same, plus GPFQ's bias correction (:func:`quant.gpfq.correct_bias`, layer by layer on
  ``calib_x``): the weights that stay slightly off the grid are off in a consistent direction, so their rounding
  errors add up coherently, mostly as a shift of each channel's mean output, which the bias correction removes;
* ``"gpfq"`` -- :func:`quant.gpfq.gpfq_quantize` of the trained float weights.

The per-layer ``R_l`` left at the end are the **bottleneck** signal: the layer whose weights resist the grid
under the same pull as the others is the one that needs more bits.  :func:`qgt_sensitivity` turns it into a
sensitivity table for :mod:`search`; :func:`bottleneck_rank_correlation` compares its ranking with the SQNR one.

How it compares with GPFQ, RTN and QAT at 2-bit weights: docs/quant.md, "QGT".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from quant.data import Split
from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, activations_off, calibrate_activations, capture_inputs, prepare, quant_layers
from quant.finetune import MIN_BITS, FinetuneConfig, TrainOutcome, check_bits, finetune, training_mode
from quant.gpfq import DEFAULT_SCALE_GRID, correct_bias, gpfq_quantize
from quant.groups import quantizer_groups
from quant.models.train import deterministic_cpu
from quant.prefix import inputs_in_order
from quant.quantizer import Blocks, QuantSpec
from quant.rtn import rtn_codes
from quant.sensitivity import COLUMNS, float_model

__all__ = [
    "SCHEDULES",
    "FINALS",
    "GRIDS",
    "SCALE_GRID",
    "DEFAULT_LAM",
    "DEFAULT_WARMUP",
    "DEFAULT_FINAL",
    "EXP_START",
    "QGT_COLUMNS",
    "channel_scales",
    "grid_weight",
    "relative_residual",
    "grid_codes",
    "layer_residuals",
    "lambda_at",
    "default_pairs",
    "qgt_train",
    "qgt_sensitivity",
    "spearman",
    "bottleneck_rank_correlation",
]

SCHEDULES = ("linear", "constant", "exp")
FINALS = ("rtn", "rtn-bc", "gpfq")
GRIDS = ("mse", "max")
#: Multipliers of the max-abs scale searched by the ``"mse"`` grid (GPFQ's :data:`quant.gpfq.DEFAULT_SCALE_GRID`).
SCALE_GRID: tuple[float, ...] = DEFAULT_SCALE_GRID
#: Defaults, chosen on digits-cnn and mnist1d-cnn at w2a8 (docs/quant.md, "QGT").
DEFAULT_LAM = 1.0
DEFAULT_WARMUP = 0.5
DEFAULT_FINAL = "gpfq"
#: Start of the ``"exp"`` ramp as a fraction of ``lam``.
EXP_START = 1e-3
#: Columns of :func:`qgt_sensitivity`: :data:`quant.sensitivity.COLUMNS`, ``quantizer`` and the two noise terms.
QGT_COLUMNS = (*COLUMNS, "quantizer", "w_nsr", "a_nsr")

Pair = tuple[int, int]


# ------------------------------------------------------------------------------------------------------------------
# the grid and the regularizer


def channel_scales(w: torch.Tensor, bits: int, grid: str = "mse") -> torch.Tensor:
    """Per-output-channel scales ``[out, 1]`` of the ``bits`` grid of ``w`` (any shape, output channels first;
    computed in ``w``'s dtype, no gradient).

    ``"max"``: ``max|w| / qmax`` (:func:`quant.quantizer.block_scales`); ``"mse"``: the multiple
    ``m * max|w| / qmax``, ``m`` in :data:`SCALE_GRID`, with the least squared rounding error of the channel (codes
    ``qmin .. qmax``; the smallest ``m`` wins a tie).  An all-zero channel gets scale 1."""
    spec = QuantSpec(bits)
    with torch.no_grad():
        g = w.detach().reshape(w.shape[0], -1)
        amax = g.abs().amax(1, keepdim=True)
        base = torch.where(amax > 0, amax / spec.qmax, torch.ones_like(amax))
        if grid == "max":
            return base
        best, best_err = base, torch.full_like(base, math.inf)
        for m in SCALE_GRID:
            scale = base * m
            err = ((torch.clamp(torch.round(g / scale), spec.qmin, spec.qmax) * scale - g) ** 2).sum(1, keepdim=True)
            better = err < best_err
            best, best_err = torch.where(better, scale, best), torch.where(better, err, best_err)
        return torch.where(amax > 0, best, base)


def grid_weight(w: torch.Tensor, bits: int, grid: str = "mse") -> torch.Tensor:
    """``Q_b(w)``: ``w`` rounded to its per-output-channel ``bits`` grid (no gradient, ``w``'s shape and dtype)."""
    spec = QuantSpec(bits)
    scale = channel_scales(w, bits, grid)
    with torch.no_grad():
        g = w.detach().reshape(w.shape[0], -1)
        return (torch.clamp(torch.round(g / scale), spec.qmin, spec.qmax) * scale).reshape(w.shape)


def relative_residual(w: torch.Tensor, bits: int, grid: str = "mse") -> torch.Tensor:
    """``R(w) = ||w - sg(Q_b(w))||^2 / ||sg(w)||^2`` (a 0-d tensor, differentiable in ``w``; 0 for all-zero ``w``)."""
    q = grid_weight(w, bits, grid)
    signal = (w.detach() ** 2).sum().clamp_min(torch.finfo(w.dtype).tiny)
    return ((w - q) ** 2).sum() / signal


def grid_codes(layer: QuantLayer, bits: int, grid: str = "mse") -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[out, in_c * kernel]`` and per-channel scales ``[out, 1]`` of ``layer``'s float weight on its
    ``bits`` grid, in float64 (for ``"max"`` exactly :func:`quant.rtn.rtn_codes` per channel)."""
    scales = channel_scales(layer.layer.weight.detach().double(), bits, grid).numpy()
    return rtn_codes(layer.gemm_weight(), QuantSpec(bits), Blocks(layer.out_features, 1), layer.kernel, scales)


def _channel_errors(layer: QuantLayer, bits: int, grid: str) -> np.ndarray:
    """Squared rounding error ``[out]`` of each output channel of ``layer``'s float weight (float64)."""
    codes, scales = grid_codes(layer, bits, grid)
    return np.sum((codes * scales - layer.gemm_weight()) ** 2, axis=1)


def _residual64(layer: QuantLayer, bits: int, grid: str) -> float:
    """``R`` of ``layer``'s float weight in float64 (the value reported as the bottleneck signal)."""
    signal = float(np.sum(layer.gemm_weight() ** 2))
    return float(np.sum(_channel_errors(layer, bits, grid))) / signal if signal > 0 else 0.0


def _nested_residuals(layer: QuantLayer, bits: Sequence[int], grid: str) -> dict[int, float]:
    """``{b: R}`` where each channel may use the grid of any width ``2 .. b`` (a narrower grid's codes fit in
    ``b`` bits with the same scale), so ``R`` never grows with ``b``.  A layer trained onto the 2-bit grid is
    otherwise *worse* on the 4-bit MSE grid, whose scale multiples need not contain the 2-bit grid's points."""
    signal = float(np.sum(layer.gemm_weight() ** 2))
    best = np.full(layer.out_features, np.inf)
    out = {}
    for b in range(MIN_BITS, max(bits) + 1):
        best = np.minimum(best, _channel_errors(layer, b, grid))
        if b in bits:
            out[b] = float(np.sum(best)) / signal if signal > 0 else 0.0
    return out


def layer_residuals(
    model: nn.Module, bits: int, grid: str = "mse", example: torch.Tensor | None = None
) -> dict[str, float]:
    """``{layer name: R_l}`` of every QuantLayer's float weight at ``bits`` (float64; execution order with
    ``example``).  A float (unprepared) model is prepared (BN folded) first."""
    check_bits(bits, bits)
    grid = _check_choice("grid", grid, GRIDS)
    if not any(isinstance(m, QuantLayer) for m in model.modules()):
        model = prepare(model)
    return {name: _residual64(layer, bits, grid) for name, layer in quant_layers(model, example)}


# ------------------------------------------------------------------------------------------------------------------
# the lambda schedule and argument checks


def _check_lam(lam: Any) -> float:
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
        raise QuantInputError(f"lam must be a finite number >= 0, got {lam!r}")
    return float(lam)


def _check_warmup(warmup: Any) -> float:
    if isinstance(warmup, bool) or not isinstance(warmup, int | float) or not 0 <= warmup <= 1:
        raise QuantInputError(f"warmup must be a number in [0, 1], got {warmup!r}")
    return float(warmup)


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise QuantInputError(f"unknown {name} {value!r} (allowed: {', '.join(allowed)})")
    return value


def lambda_at(t: float, lam: float, schedule: str = "linear", warmup: float = DEFAULT_WARMUP) -> float:
    """The regularizer weight at training progress ``t`` in [0, 1] (see the module docstring)."""
    lam, warmup = _check_lam(lam), _check_warmup(warmup)
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant" or warmup == 0 or t >= warmup:
        return lam
    frac = max(float(t), 0.0) / warmup
    if schedule == "linear":
        return lam * frac
    return lam * EXP_START ** (1.0 - frac)


def _check_pairs(pairs: Any) -> list[Pair]:
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence) or len(pairs) == 0:
        raise QuantInputError(f"pairs must be a non-empty sequence of (w_bits, a_bits), got {pairs!r}")
    out: list[Pair] = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise QuantInputError(f"bad bit pair {pair!r}: write it as a (w_bits, a_bits) tuple of ints")
        w, a = check_bits(*(int(b) if isinstance(b, np.integer) else b for b in pair))
        if (w, a) not in out:
            out.append((w, a))
    return out


def default_pairs(a_bits: int) -> list[Pair]:
    """The pairs of the sensitivity table :func:`qgt_train` returns: ``w in {8, 4, 3, 2} x a in {8, a_bits}``."""
    return [(w, a) for w in (8, 4, 3, 2) for a in dict.fromkeys((8, a_bits))]


# ------------------------------------------------------------------------------------------------------------------
# training


def _regularizer(
    layers: list[tuple[str, QuantLayer]], w_bits: int, grid: str, lam: float, schedule: str, warmup: float
) -> Callable[[float], tuple[torch.Tensor, dict[str, float]]]:
    """The ``extra_loss`` callback of :func:`quant.finetune.finetune`: ``lambda(t) * sum_l R_l`` and its log."""

    def extra(t: float) -> tuple[torch.Tensor, dict[str, float]]:
        lam_t = lambda_at(t, lam, schedule, warmup)
        terms = [relative_residual(m.layer.weight, w_bits, grid) for _, m in layers]
        total = torch.stack(terms).sum()
        logged = {f"reg/{n}": float(r.detach()) for (n, _), r in zip(layers, terms)}
        logged.update({"reg_total": float(total.detach()), "lambda": lam_t})
        return lam_t * total, logged

    return extra


def _round_to_grid(q: nn.Module, calib_x: torch.Tensor, w_bits: int, grid: str, bias_correction: bool) -> None:
    """Install every layer's codes on its training grid, in execution order; with ``bias_correction`` each layer's
    bias absorbs its mean output error against the float network on ``calib_x`` (inputs through the already
    quantized prefix and the layer's own activation quantizer, as in :func:`quant.gpfq.gpfq_quantize`)."""
    layers = quant_layers(q, calib_x[:1])
    if bias_correction:
        float_model = copy.deepcopy(q)
        float_layers = quant_layers(float_model, calib_x[:1])
        activations_off(float_model)
        float_inputs = inputs_in_order(float_model, float_layers, calib_x)
        quant_inputs = inputs_in_order(q, layers, calib_x)
    for _, layer in layers:
        if bias_correction:
            x_f, x_q = next(float_inputs), next(quant_inputs)
            x_q = layer.act(x_q) if layer.act is not None else x_q
        codes, scales = grid_codes(layer, w_bits, grid)
        layer.set_weight_codes(codes, scales, QuantSpec(w_bits), Blocks(layer.out_features, 1))
        if bias_correction:
            correct_bias(layer, x_f, x_q)


def _finish(q: nn.Module, calib_x: torch.Tensor, w_bits: int, a_bits: int, grid: str, final: str, seed: int) -> None:
    """Quantize the trained weights by ``final`` and recalibrate activations on the weight-quantized model."""
    if final == "gpfq":
        gpfq_quantize(q, calib_x, w_bits, seed=seed)
    else:
        _round_to_grid(q, calib_x, w_bits, grid, bias_correction=final == "rtn-bc")
    calibrate_activations(q, calib_x, a_bits)


def qgt_train(
    model: nn.Module,
    split: Split,
    w_bits: int,
    a_bits: int,
    config: FinetuneConfig | None = None,
    progress: bool = False,
    *,
    lam: float = DEFAULT_LAM,
    schedule: str = "linear",
    warmup: float = DEFAULT_WARMUP,
    final: str = DEFAULT_FINAL,
    grid: str = "mse",
    pairs: Sequence[Pair] | None = None,
) -> TrainOutcome:
    """QGT-style training of float ``model`` at ``w{w_bits}a{a_bits}`` (``model`` itself is not modified).

    Args:
        config: the fine-tuning budget (default :class:`quant.finetune.FinetuneConfig`: 10 epochs, Adam 1e-3).
        lam: the regularizer weight ``lambda`` after the warm-up (finite, >= 0; 0 is plain fine-tuning).
        schedule, warmup: ``lambda(t)``, see the module docstring.
        final: ``"rtn"``, ``"rtn-bc"`` or ``"gpfq"``, the quantizer applied to the trained weights.
        grid: ``"mse"`` or ``"max"``, the grid's per-channel scale (module docstring).
        pairs: the ``(w_bits, a_bits)`` rows of the returned sensitivity table (default :func:`default_pairs`).

    Returns:
        The quantized fake-quant model (codes in every QuantLayer, activations recalibrated); the history (per
        epoch: ``task_loss``, ``train_accuracy``, the epoch means of ``reg/<layer>``, ``reg_total`` and
        ``lambda``); a summary (method, settings, per-layer ``R_l`` before and after training,
        ``bottlenecks``: layer names by final ``R_l``, highest first); the tables ``"sensitivity"``
        (:func:`qgt_sensitivity` of the trained float weights) and ``"bottlenecks"`` (one row per layer).
    """
    w_bits, a_bits = check_bits(w_bits, a_bits)
    lam, warmup = _check_lam(lam), _check_warmup(warmup)
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    final = _check_choice("final", final, FINALS)
    grid = _check_choice("grid", grid, GRIDS)
    pairs = _check_pairs(default_pairs(a_bits) if pairs is None else pairs)
    config = config or FinetuneConfig()
    q = prepare(model)
    layers = quant_layers(q, split.calib_x[:1])
    initial = {n: _residual64(m, w_bits, grid) for n, m in layers}
    calibrate_activations(q, split.calib_x, a_bits)
    with training_mode(q):
        history = finetune(
            q,
            split,
            config,
            extra_loss=_regularizer(layers, w_bits, grid, lam, schedule, warmup),
            label=f"QGT w{w_bits}a{a_bits}",
            progress=progress,
        )
    trained = {n: _residual64(m, w_bits, grid) for n, m in layers}
    sensitivity = qgt_sensitivity(q, split.calib_x, pairs, grid=grid)
    _finish(q, split.calib_x, w_bits, a_bits, grid, final, config.seed)
    ranking = sorted(trained, key=lambda n: -trained[n])
    summary = {
        "method": "qgt",
        "w_bits": w_bits,
        "a_bits": a_bits,
        "lam": lam,
        "schedule": schedule,
        "warmup": warmup,
        "final": final,
        "grid": grid,
        "epochs": config.epochs,
        "lr": config.lr,
        "seed": config.seed,
        "reg_initial": initial,
        "reg_final": trained,
        "reg_total_final": float(sum(trained.values())),
        "bottlenecks": ranking,
    }
    groups = dict(zip(sensitivity["name"], sensitivity["group"]))
    table = pd.DataFrame(
        [
            {
                "layer": i,
                "name": n,
                "group": int(groups[n]),
                "reg_initial": initial[n],
                "reg_final": trained[n],
                "rank": ranking.index(n) + 1,
            }
            for i, (n, _) in enumerate(layers)
        ]
    )
    return TrainOutcome(q, history, summary, tables={"sensitivity": sensitivity, "bottlenecks": table})


# ------------------------------------------------------------------------------------------------------------------
# the sensitivity table


def _check_calib(calib_x: Any) -> torch.Tensor:
    if not isinstance(calib_x, torch.Tensor) or calib_x.ndim < 1 or len(calib_x) == 0:
        raise QuantInputError("calib_x must be a non-empty torch.Tensor [N, ...]")
    if not calib_x.is_floating_point() or not torch.isfinite(calib_x).all():
        raise QuantInputError("calib_x must be finite floating-point inputs")
    return calib_x.detach().double()


def _nsr(noisy: np.ndarray, clean: np.ndarray) -> float:
    """``||noisy - clean||^2 / ||clean||^2`` in float64 (0 for an all-zero ``clean``)."""
    signal = float(np.sum(clean**2))
    return float(np.sum((noisy - clean) ** 2)) / signal if signal > 0 else 0.0


def _act_nsr(
    base: nn.Module, layers: list[tuple[str, QuantLayer]], x: torch.Tensor, a_set: Sequence[int]
) -> dict[tuple[str, int], float]:
    """Relative input-quantization noise of every layer at every ``a``: max-calibrated on the float network."""
    inputs = capture_inputs(base, [m for _, m in layers], x)
    out = {}
    for a in a_set:
        calibrated = copy.deepcopy(base)
        calibrate_activations(calibrated, x, a)
        acts = {n: m.act for n, m in quant_layers(calibrated)}
        for name, m in layers:
            clean = inputs[id(m)]
            out[(name, a)] = _nsr(acts[name](clean).numpy(), clean.numpy())
    return out


def qgt_sensitivity(
    model: nn.Module, calib_x: torch.Tensor, pairs: Sequence[Pair], *, grid: str = "mse", tie_adds: bool = True
) -> pd.DataFrame:
    """A sensitivity table (the format of :func:`quant.sensitivity.sensitivity_table`, ``method="qgt"``) from
    the QGT bottleneck signal of ``model``'s float weights (a QGT-trained or any float model; installed codes and
    activation quantizers are ignored).

    For layer ``l`` and pair ``(w, a)``: ``sensitivity = w_nsr + a_nsr`` with

    * ``w_nsr = R_l`` at ``w`` bits on ``grid``, each channel on the best grid of at most ``w`` bits (so
      ``w_nsr`` never grows with ``w``);
    * ``a_nsr = ||Q_a(x_l) - x_l||^2 / ||x_l||^2`` of the layer's float input on all of ``calib_x``
      (max-calibrated at ``a`` bits on the float network, as :func:`quant.sensitivity.sensitivity_table`).

    Both are noise-to-signal ratios of the layer's two operands; for small,
    independent noises the layer's relative output noise is about their sum.  Rows are per layer (execution
    order, pairs in the given order); tied layers (``group``, :mod:`quant.groups`) keep their own scores, so a
    group's sensitivity is the sum of its members' rows.  Extra columns: ``quantizer`` (``"rtn"`` for the
    max-abs grid, ``"rtn-mse"`` for the MSE-scaled one), ``w_nsr``, ``a_nsr``.
    """
    pairs = _check_pairs(pairs)
    grid = _check_choice("grid", grid, GRIDS)
    x = _check_calib(calib_x)
    base = float_model(model, x.dtype)
    with deterministic_cpu():
        layers = quant_layers(base, x[:1])
        if not layers:
            raise QuantInputError("the model has no Conv1d, Conv2d or Linear layer that runs on calib_x")
        groups = quantizer_groups(base, x[:1], tie_adds=tie_adds)
        a_nsr = _act_nsr(base, layers, x, list(dict.fromkeys(a for _, a in pairs)))
        widths = list(dict.fromkeys(w for w, _ in pairs))
        w_nsr = {(n, w): r for n, m in layers for w, r in _nested_residuals(m, widths, grid).items()}
    label = "rtn" if grid == "max" else "rtn-mse"
    rows = [
        {
            "layer": i,
            "name": n,
            "w_bits": w,
            "a_bits": a,
            "sensitivity": w_nsr[(n, w)] + a_nsr[(n, a)],
            "method": "qgt",
            "group": groups[n],
            "quantizer": label,
            "w_nsr": w_nsr[(n, w)],
            "a_nsr": a_nsr[(n, a)],
        }
        for i, (n, _) in enumerate(layers)
        for w, a in pairs
    ]
    frame = pd.DataFrame.from_records(rows, columns=list(QGT_COLUMNS))
    return frame.astype(
        {"layer": "int64", "w_bits": "int64", "a_bits": "int64", "group": "int64", "sensitivity": "float64"}
    )


# ------------------------------------------------------------------------------------------------------------------
# bottlenecks vs Pandey's SQNR ranking


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` (ascending), ties averaged."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties averaged; NaN if either is constant)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise QuantInputError(f"spearman needs two 1-D sequences of one length >= 2, got {x.shape} and {y.shape}")
    rx, ry = _ranks(x) - (len(x) + 1) / 2, _ranks(y) - (len(y) + 1) / 2
    den = math.sqrt(float(np.sum(rx**2) * np.sum(ry**2)))
    return float(np.sum(rx * ry) / den) if den > 0 else float("nan")


def _per_group(values: dict[str, float], groups: dict[str, int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for name, v in values.items():
        out[groups[name]] = out.get(groups[name], 0.0) + v
    return out


def bottleneck_rank_correlation(
    model_name: str,
    w_bits: int = 2,
    a_bits: int = 8,
    config: FinetuneConfig | None = None,
    *,
    model_seed: int = 0,
    **qgt_kwargs: Any,
) -> dict[str, Any]:
    """Spearman's rho between QGT's bottleneck ranking and Pandey et al.'s SQNR ranking on a built-in model.

    QGT: final ``R_l`` after :func:`qgt_train` at ``w{w_bits}a{a_bits}`` (``qgt_kwargs`` go to it).  SQNR:
    :func:`quant.sensitivity.sensitivity_table` of the pretrained model (``get_model(model_name, model_seed)``) at
    the same pair (RTN, per group NSR).
    Both are summed per quantizer group and compared over groups.  Returns ``rho`` (final ``R_l`` vs SQNR NSR),
    ``rho_initial`` (the pretrained model's ``R_l`` vs SQNR), the two rankings (group labels, most sensitive
    first; a group is labelled by its layer names joined with ``+``) and the per-group values.
    """
    from quant.models.train import get_model, model_split
    from quant.sensitivity import sensitivity_table

    w_bits, a_bits = check_bits(w_bits, a_bits)
    model, split = get_model(model_name, seed=model_seed), model_split(model_name)
    outcome = qgt_train(model, split, w_bits, a_bits, config, **qgt_kwargs)
    sqnr = sensitivity_table(model, split.calib_x, [(w_bits, a_bits)], method="sqnr")
    groups = {str(n): int(g) for n, g in zip(sqnr["name"], sqnr["group"])}
    labels = {g: "+".join(n for n in groups if groups[n] == g) for g in dict.fromkeys(groups.values())}
    nsr = _per_group({str(n): float(s) for n, s in zip(sqnr["name"], sqnr["sensitivity"])}, groups)
    final = _per_group(outcome.summary["reg_final"], groups)
    initial = _per_group(outcome.summary["reg_initial"], groups)
    ids = list(labels)

    def ranking(values: dict[int, float]) -> list[str]:
        return [labels[g] for g in sorted(ids, key=lambda g: -values[g])]

    return {
        "model": model_name,
        "model_seed": model_seed,
        "w_bits": w_bits,
        "a_bits": a_bits,
        "rho": spearman([final[g] for g in ids], [nsr[g] for g in ids]),
        "rho_initial": spearman([initial[g] for g in ids], [nsr[g] for g in ids]),
        "qgt_ranking": ranking(final),
        "sqnr_ranking": ranking(nsr),
        "initial_ranking": ranking(initial),
        "reg_final": {labels[g]: final[g] for g in ids},
        "reg_initial": {labels[g]: initial[g] for g in ids},
        "sqnr_nsr": {labels[g]: nsr[g] for g in ids},
        "summary": outcome.summary,
    }
