"""Per-layer sensitivity tables for mixed-precision search: AIMET/Pandey SQNR, HAWQ Hessian, measured loss.

:func:`sensitivity_table` returns the ``quant`` -> ``search`` contract of ``DESIGN.md`` ("Sensitivity table"): one
row per (layer, bit pair) with

* ``layer`` -- execution-order index (the order of :func:`quant.fakequant.gemm_nodes` with an example, which is
  also the layer order of ``sim.workload.from_torch``), ``name`` -- the QuantLayer name (``"0"``, ``"3"``, ...)
  or, for a product of two activations, the QuantMatmul's (``"blocks.0.attention.matmul"``; both operands at the
  pair's ``a_bits``, as sim costs it, so its rows do not change with ``w_bits``);
* ``w_bits``, ``a_bits``; ``sensitivity`` -- a float >= 0, additive over layers, lower is better, 0 = no loss;
* ``method``, ``quantizer``, and ``group`` -- layers sharing a group must take the same pair
  (:func:`quant.groups.quantizer_groups`, rule in :mod:`quant.groups`);
* method-specific extra columns (below).

Everything runs on a :func:`quant.fakequant.prepare`-d (BN-folded) float32 copy of the model, on ``n_samples``
calibration inputs chosen by ``seed`` (all of them if there are no more), with ``threads`` intra-op threads (every
core by default; restored afterwards).  The same arguments give bit-identical tables on one machine with one thread
count.  float32
resolves a group's NSR to about 1e-5 relative (the output noise of a quantized group is >= 1e-3 of the signal at 8
bits, float32's rounding about 1e-7), far finer than the ranking needs, at a fifth of float64's time.

The per-group methods (``"sqnr"``, ``"loss"``) with the RTN quantizer do not run a full forward per (group, pair):
one float forward is recorded node by node (:mod:`quant.replay`), and for each group only the nodes downstream of
its layers are recomputed, with all pairs stacked in one batch.  Models that ``torch.fx`` cannot trace, or whose
activations do not keep the batch in dimension 0, fall back to full forwards (same results, slower).

Weights are quantized by ``quantizer`` (``"rtn"``: round-to-nearest on max-abs scales; ``"gpfq"``:
:func:`quant.gpfq.quantize_weights` with its default scale search, plus bias correction like
:func:`quant.gpfq.gpfq_quantize`) at ``granularity``; activations at a layer's input by a ``max``-calibrated
quantizer (:func:`quant.fakequant.calibrate_activations` on the float network).

``"sqnr"`` -- Pandey et al. 2023 phase 1 (AIMET AMP).  For every quantizer group ``g`` and pair ``(w, a)`` only
``g``'s layers are quantized (weights at ``w`` bits, inputs at ``a`` bits; everything else float), the batch is
run, and the output error is compared with the float output ``y``::

    NSR_g = sum ||y_q - y||^2 / sum ||y||^2          SQNR_g = -10 log10(NSR_g) dB   (column ``sqnr_db``)

AIMET ranks candidates by SQNR (higher is better), which is not additive.  lowbit stores the noise-to-signal
ratio ``NSR = 10^(-SQNR/10)`` as the sensitivity: if the quantization noises that different groups inject are
small and independent (uncorrelated), they propagate to the output nearly linearly and their powers add, so the
NSR of a mixed assignment is approximately the sum of the groups' NSRs; :func:`output_nsr` measures how far that
holds (docs/search.md gives the figures; at 2-bit weights the noise is no longer small and it holds least).
The NSR is >= 0 and exactly 0 for a lossless
group; the summed NSR of an assignment converts back to an SQNR in dB as ``-10 log10(sum)``.  A group's score
is split **equally** among its member layers, so the rows of a group sum to the group's NSR and any per-layer
sum over an assignment (which gives tied layers one pair) counts each group once.  Each layer's row keeps the
group's ``sqnr_db``.

``"hessian"`` -- HAWQ-V2/V3.  For layer ``i`` with weight ``W_i`` (``n_W`` entries) and input activation ``x_i``
(the batch tensor, ``n_x`` entries), with ``L`` the mean cross-entropy on the labelled batch::

    sensitivity = 1/2 * [ Tr(H_W) / n_W * ||Q_w(W_i) - W_i||^2  +  Tr(H_x) / n_x * ||Q_a(x_i) - x_i||^2 ]

``Tr(H)`` is Hutchinson's estimate ``mean_t v_t^T H v_t`` over ``iterations`` Rademacher vectors ``v_t`` (seeded
per layer), ``H v`` by double back-propagation of ``L`` (float32, products summed in float64).  Each trace is
computed on its own (``H_W`` is the diagonal block of ``W_i``; probing all layers with one joint vector, as
PyHessian does, adds zero-mean cross-layer terms and so variance).  ``Tr / n`` is HAWQ's *average* trace: for a
perturbation ``d`` with isotropic second moment (``E[d d^T] = ||d||^2 / n * I``),
``E[d^T H d] = Tr(H) / n * ||d||^2``, so ``1/2 * Tr/n * ||d||^2`` is the second-order estimate of the loss
increase (in nats, the units of the ``"loss"`` method; HAWQ's objective omits the 1/2, which changes no ranking).
HAWQ ignores activations; lowbit lets ``a_bits`` enter through the same estimate for the layer's input
activations: ``H_x`` is the Hessian of ``L`` with respect to the layer's input over the batch (block-diagonal
over samples, so ``Tr(H_x)/n_x * ||dx||^2`` is the batch average of each sample's term), and ``dx`` the error
of the ``a``-bit input quantizer on the batch.  The two terms add like independent perturbations.  For ReLU
networks both Hessian blocks are positive semi-definite and every Hutchinson sample is >= 0; for other
nonlinearities an estimate can come out slightly negative, and the sensitivity then uses ``max(Tr, 0)`` (the
raw estimates are kept in the ``w_trace`` / ``a_trace`` columns).  With ``quantizer="gpfq"`` the weight term
uses GPFQ's weights on float inputs -- GPFQ minimizes the output error, not ``||dW||``, so the proxy can rate it
worse than RTN.  Extra columns: ``w_trace``, ``w_params``, ``w_delta_sq``, ``a_trace``, ``a_numel``,
``a_delta_sq``.

``"loss"`` -- measured: quantize one group as for ``"sqnr"`` and take the increase of the mean cross-entropy
on the labelled batch, ``max(0, L_q - L_float)`` (a quantized group can lower the loss on a small batch by
chance; that is clipped to 0 and kept raw in ``delta_loss``), split equally among the group's layers.  Extra
columns: ``loss_float``, ``loss_quant``, ``delta_loss``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.files import atomic_write, check_output_path
from quant.errors import QuantInputError
from quant.fakequant import (
    ActQuant,
    QuantLayer,
    QuantMatmul,
    activations_off,
    calibrate_activations,
    capture_inputs,
    gemm_nodes,
    prepare,
    quant_layers,
    quant_matmuls,
)
from quant.gpfq import DEFAULT_SCALE_GRID, correct_bias, layer_inputs_2d, quantize_weights
from quant.groups import quantizer_groups
from quant.progress import progress_bar
from quant.quantizer import MAX_BITS, MIN_BITS, Blocks, QuantSpec, check_finite, expand_blocks
from quant.replay import Replay
from quant.rtn import granularity_blocks, rtn_codes

__all__ = [
    "float_model",
    "METHODS",
    "QUANTIZERS",
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "EXTRA_COLUMNS",
    "TABLE_SUFFIXES",
    "DEFAULT_SAMPLES",
    "DEFAULT_ITERATIONS",
    "sensitivity_table",
    "hessian_traces",
    "output_nsr",
    "write_sensitivity",
    "check_table_path",
    "quantizer_groups",
]

METHODS = ("sqnr", "hessian", "loss")
QUANTIZERS = ("rtn", "gpfq")
#: The columns :func:`sensitivity_table` starts with, in this order (``quantizer`` and the method's extra columns
#: follow).
COLUMNS = ("layer", "name", "w_bits", "a_bits", "sensitivity", "method", "group")
#: The columns DESIGN.md requires of any sensitivity table (checked by :func:`write_sensitivity`).
REQUIRED_COLUMNS = ("layer", "w_bits", "a_bits", "sensitivity")
EXTRA_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "sqnr": ("sqnr_db",),
    "hessian": ("w_trace", "w_params", "w_delta_sq", "a_trace", "a_numel", "a_delta_sq"),
    "loss": ("loss_float", "loss_quant", "delta_loss"),
}
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_SAMPLES = 128
#: at most this many samples (pairs x calibration samples) in one stacked replay batch
MAX_STACKED = 1152
DEFAULT_ITERATIONS = 50

Pair = tuple[int, int]


# ------------------------------------------------------------------------------------------------------------------
# validation


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise QuantInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise QuantInputError(f"unknown {name} {value!r} (allowed: {', '.join(allowed)})")
    return value


def _check_pairs(pairs: Any) -> list[Pair]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) == 0:
        raise QuantInputError(f"pairs must be a non-empty sequence of (w_bits, a_bits), got {pairs!r}")
    out: list[Pair] = []
    for pair in pairs:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b in pair)
        ):
            raise QuantInputError(f"bad bit pair {pair!r}: write it as a (w_bits, a_bits) tuple of ints")
        w, a = int(pair[0]), int(pair[1])
        for label, bits in (("weight", w), ("activation", a)):
            if not MIN_BITS <= bits <= MAX_BITS:
                raise QuantInputError(f"bad bit pair w{w}a{a}: {label} bits must be in {MIN_BITS}..{MAX_BITS}")
        if (w, a) not in out:
            out.append((w, a))
    return out


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in the model's float ``dtype``; integer inputs (token ids for an embedding) stay as they are."""
    return x.to(dtype) if x.is_floating_point() else x


def _check_inputs(calib_x: Any, calib_y: Any, need_labels: bool, method: str) -> None:
    if not isinstance(calib_x, torch.Tensor):
        raise QuantInputError(f"calib_x must be a torch.Tensor, got {type(calib_x).__name__}")
    if calib_x.ndim < 1 or len(calib_x) == 0:
        raise QuantInputError("empty calibration data: calib_x has no samples")
    if calib_x.dtype == torch.bool or calib_x.is_complex():
        raise QuantInputError(f"calib_x must be real numbers or integer token ids, got {calib_x.dtype}")
    if calib_x.is_floating_point():
        check_finite("calibration inputs", calib_x.detach().cpu().double().numpy())
    if calib_y is None:
        if need_labels:
            raise QuantInputError(f"method {method!r} needs labels: pass calib_y (class indices) with calib_x")
        return
    if (
        not isinstance(calib_y, torch.Tensor)
        or calib_y.ndim != 1
        or calib_y.is_floating_point()
        or calib_y.dtype == torch.bool
    ):
        raise QuantInputError("calib_y must be a 1-D integer tensor of class indices")
    if len(calib_y) != len(calib_x):
        raise QuantInputError(f"calib_y has {len(calib_y)} labels for {len(calib_x)} calibration inputs")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def float_model(model: Any, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A prepared copy in ``dtype`` with every quantizer off."""
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    base = prepare(model).to(dtype)
    for _, layer in quant_layers(base):
        layer.clear_weight_quant()
    activations_off(base)
    return base


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise QuantInputError(
            f"the model's forward pass failed on calibration inputs of shape {tuple(x.shape)} ({_first_line(exc)})"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise QuantInputError(f"the model must return one tensor, got {type(out).__name__}")
    return out


def _check_logits(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise QuantInputError(f"cross-entropy needs logits [N, classes], the model returns shape {tuple(logits.shape)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= logits.shape[1]:
        raise QuantInputError(f"labels must be in 0..{logits.shape[1] - 1}, got {lo}..{hi}")


def _select(x: torch.Tensor, y: torch.Tensor | None, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples chosen by ``seed`` (sorted indices), or everything when there are no more than ``n``."""
    if len(x) <= n:
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[idx], (None if y is None else y[idx])


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _threads(threads: int = 1) -> Iterator[None]:
    """``threads`` intra-op threads inside, the caller's setting restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------------------------
# building partly quantized copies


class _Evaluator:
    """Builds copies of the float32 prepared model ``base`` with some layers quantized; caches what it can."""

    def __init__(
        self, base: nn.Module, x: torch.Tensor, quantizer: str, granularity: str | Blocks, replay: bool = True
    ) -> None:
        self.base, self.x, self.quantizer, self.granularity = base, x, quantizer, granularity
        self.layers = quant_layers(base, x[:1])
        self.nodes = gemm_nodes(base, x[:1])  # layers and activation products, in execution order
        self.names = [n for n, _ in self.nodes]
        self.products = {n for n, m in self.nodes if isinstance(m, QuantMatmul)}
        self._acts: dict[int, dict[str, ActQuant]] = {}
        self._acts_b: dict[int, dict[str, ActQuant]] = {}
        self._rtn: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, QuantSpec, Blocks]] = {}
        self._inputs: dict[str, torch.Tensor] | None = None
        self._replay: Replay | None | bool = False if replay else None  # False: not built yet
        for _, layer in self.layers:
            granularity_blocks(layer, granularity).check(layer.out_features, layer.in_channels)

    def acts(self, a_bits: int) -> dict[str, ActQuant]:
        """Input quantizers at ``a_bits`` for every layer and product (its ``a`` operand), calibrated (max) on
        the float network."""
        if a_bits not in self._acts:
            model = copy.deepcopy(self.base)
            calibrate_activations(model, self.x, a_bits)
            self._acts[a_bits] = {n: m.act for n, m in gemm_nodes(model)}
            self._acts_b[a_bits] = {n: m.act_b for n, m in quant_matmuls(model)}
        return self._acts[a_bits]

    def acts_b(self, bits: int) -> dict[str, ActQuant]:
        """The ``b`` operand quantizers of the products at ``bits`` (a pair's ``a_bits``)."""
        self.acts(bits)
        return self._acts_b[bits]

    def inputs(self) -> dict[str, torch.Tensor]:
        """Every layer's input in the float network on the batch."""
        if self._inputs is None:
            captured = capture_inputs(self.base, [m for _, m in self.layers], self.x)
            self._inputs = {n: captured[id(m)] for n, m in self.layers}
        return self._inputs

    def rtn(self, name: str, w_bits: int) -> tuple[np.ndarray, np.ndarray, QuantSpec, Blocks]:
        if (name, w_bits) not in self._rtn:
            layer = dict(self.layers)[name]
            spec, blocks = QuantSpec(w_bits), granularity_blocks(layer, self.granularity)
            codes, scales = rtn_codes(layer.gemm_weight(), spec, blocks, layer.kernel)
            self._rtn[(name, w_bits)] = (codes, scales, spec, blocks)
        return self._rtn[(name, w_bits)]

    def gpfq_float(self, name: str, w_bits: int) -> np.ndarray:
        """GPFQ weights [out, in] on float inputs (no activation quantization), for the Hessian proxy."""
        layer = dict(self.layers)[name]
        X = layer_inputs_2d(layer, self.inputs()[name])
        return quantize_weights(
            layer.gemm_weight(),
            X,
            w_bits,
            blocks=granularity_blocks(layer, self.granularity),
            kernel=layer.kernel,
            groups=layer.groups,
            scale_grid=DEFAULT_SCALE_GRID,
        )

    def replay(self) -> Replay | None:
        """The recorded float forward (:mod:`quant.replay`), or None when the model does not replay (not traceable,
        a layer that runs twice, an activation without the batch in dimension 0)."""
        if self._replay is False:
            try:
                replay = Replay(self.base, self.x)
                first, layer = self.layers[0]
                self._replay = replay if replay.check(first, layer) else None
            except QuantInputError:
                self._replay = None
        return self._replay

    def quantized_layer(self, name: str, pair: Pair) -> nn.Module:
        """A copy of layer ``name`` with RTN codes at ``pair[0]`` bits and its ``pair[1]``-bit input quantizer (a
        product: both operands at ``pair[1]`` bits, as sim costs it)."""
        layer = copy.deepcopy(dict(self.nodes)[name])
        layer.act = self.acts(pair[1])[name]
        if name in self.products:
            layer.act_b = self.acts_b(pair[1])[name]
        else:
            layer.set_weight_codes(*self.rtn(name, pair[0]))
        return layer

    def outputs(self, members: Sequence[str], pairs: Sequence[Pair]) -> list[torch.Tensor]:
        """The model output with ``members`` quantized at each pair (everything else float), one per pair.

        RTN on a model that replays: only the nodes downstream of the members are recomputed, every pair in one
        stacked batch (at most :data:`MAX_STACKED` samples at a time).  Otherwise (GPFQ, whose codes depend on the
        quantized prefix, or a model that does not replay) one full forward per pair."""
        replay = self.replay() if self.quantizer == "rtn" else None
        if replay is None:
            return [_forward(self.build({n: pair for n in members}), self.x) for pair in pairs]
        step = max(1, MAX_STACKED // len(self.x))
        out: list[torch.Tensor] = []
        for i in range(0, len(pairs), step):
            chunk = pairs[i : i + step]
            out += replay.run({n: [self.quantized_layer(n, pair) for pair in chunk] for n in members})
        return out

    def build(self, assignment: Mapping[str, Pair]) -> nn.Module:
        """A copy with the layers of ``assignment`` quantized at their pairs (in execution order), others float."""
        model = copy.deepcopy(self.base)
        layers = dict(gemm_nodes(model))
        for name in self.names:
            if name in assignment:
                layers[name].act = self.acts(assignment[name][1])[name]
                if name in self.products:
                    layers[name].act_b = self.acts_b(assignment[name][1])[name]
        for name in self.names:
            if name not in assignment or name in self.products:
                continue
            layer, w_bits = layers[name], assignment[name][0]
            if self.quantizer == "rtn":
                layer.set_weight_codes(*self.rtn(name, w_bits))
            else:
                self._gpfq(model, layer, name, w_bits)
        return model

    def _gpfq(self, model: nn.Module, layer: QuantLayer, name: str, w_bits: int) -> None:
        """GPFQ of one layer against its inputs in ``model`` as quantized so far (like ``gpfq_quantize``)."""
        x_f = self.inputs()[name]
        x_q = capture_inputs(model, [layer], self.x)[id(layer)]
        if layer.act is not None:
            x_q = layer.act(x_q)
        X, Xq = layer_inputs_2d(layer, x_f), layer_inputs_2d(layer, x_q)
        blocks = granularity_blocks(layer, self.granularity)
        codes, scales = quantize_weights(
            layer.gemm_weight(),
            X,
            w_bits,
            None if np.array_equal(X, Xq) else Xq,
            blocks=blocks,
            kernel=layer.kernel,
            groups=layer.groups,
            scale_grid=DEFAULT_SCALE_GRID,
            return_codes=True,
        )
        layer.set_weight_codes(codes, scales, QuantSpec(w_bits), blocks)
        correct_bias(layer, x_f, x_q)


# ------------------------------------------------------------------------------------------------------------------
# methods


def _with_products(groups: Mapping[str, int], names: Sequence[str]) -> dict[str, int]:
    """``groups`` of the QuantLayers plus one group per activation product (each has its own two operand
    quantizers), renumbered ``0, 1, ...`` by first appearance in ``names`` (execution order)."""
    ids: dict[tuple[str, Any], int] = {}
    keys = [("group", groups[n]) if n in groups else ("product", n) for n in names]
    return {n: ids.setdefault(k, len(ids)) for n, k in zip(names, keys)}


def _group_members(groups: Mapping[str, int]) -> dict[int, list[str]]:
    members: dict[int, list[str]] = {}
    for name, g in groups.items():
        members.setdefault(g, []).append(name)
    return members


def _per_group(
    ev: _Evaluator,
    groups: Mapping[str, int],
    pairs: Sequence[Pair],
    score: Callable[[torch.Tensor], dict[str, float]],
    advance: Callable[[], None],
) -> dict:
    """``score(output)`` for every group quantized alone at every pair: {(group, pair): dict}."""
    out = {}
    for g, members in _group_members(groups).items():
        for pair, y_q in zip(pairs, ev.outputs(members, pairs)):
            out[(g, pair)] = score(y_q)
            advance()
    return out


def _nsr(y_q: torch.Tensor, y: torch.Tensor, signal: float) -> float:
    return float(((y_q - y) ** 2).sum()) / signal


def _sqnr_rows(ev: _Evaluator, groups: Mapping[str, int], pairs: Sequence[Pair], advance) -> list[dict]:
    y = _forward(ev.base, ev.x)
    signal = float((y**2).sum())
    if not signal > 0:
        raise QuantInputError("the float model's output is all zero on the calibration data: SQNR is undefined")
    scores = _per_group(ev, groups, pairs, lambda y_q: {"nsr": _nsr(y_q, y, signal)}, advance)
    sizes = {g: len(m) for g, m in _group_members(groups).items()}
    rows = []
    for name, g in groups.items():
        for pair in pairs:
            nsr = scores[(g, pair)]["nsr"]
            rows.append(
                {
                    "name": name,
                    "pair": pair,
                    "sensitivity": nsr / sizes[g],
                    "sqnr_db": -10.0 * math.log10(nsr) if nsr > 0 else math.inf,
                }
            )
    return rows


def _loss_rows(
    ev: _Evaluator, y: torch.Tensor, groups: Mapping[str, int], pairs: Sequence[Pair], advance
) -> list[dict]:
    logits = _forward(ev.base, ev.x)
    _check_logits(logits, y)
    loss_f = float(F.cross_entropy(logits, y))
    scores = _per_group(ev, groups, pairs, lambda y_q: {"loss": float(F.cross_entropy(y_q, y))}, advance)
    sizes = {g: len(m) for g, m in _group_members(groups).items()}
    rows = []
    for name, g in groups.items():
        for pair in pairs:
            loss_q = scores[(g, pair)]["loss"]
            delta = loss_q - loss_f
            rows.append(
                {
                    "name": name,
                    "pair": pair,
                    "sensitivity": max(0.0, delta) / sizes[g],
                    "loss_float": loss_f,
                    "loss_quant": loss_q,
                    "delta_loss": delta,
                }
            )
    return rows


def _generator(seed: int, *path: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, *path]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _hutchinson(grad: torch.Tensor, wrt: torch.Tensor, iterations: int, gen: torch.Generator) -> float:
    """``mean_t v_t^T H v_t`` over Rademacher ``v_t``, ``H v`` = d(grad . v)/d(wrt)."""
    if not grad.requires_grad:  # the gradient does not depend on wrt: H = 0
        return 0.0
    total = 0.0
    for _ in range(iterations):
        v = torch.randint(0, 2, wrt.shape, generator=gen).to(wrt.dtype) * 2 - 1
        (hv,) = torch.autograd.grad(grad, wrt, grad_outputs=v, retain_graph=True, allow_unused=True)
        total += 0.0 if hv is None else float((hv * v).sum())
    return total / iterations


def _traces(
    base: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    iterations: int,
    seed: int,
    advance: Callable[[], None] = lambda: None,
) -> list[dict]:
    """Hutchinson traces of each layer's weight block and input-activation block, in execution order.

    Hessian-vector products run in float32: CPU convolutions have no fast float64 double-backward, and float32
    changes the traces far less than the Monte-Carlo error does.  The probe
    products are summed in float64."""
    model = copy.deepcopy(base).float()
    x = _cast(x, torch.float32)
    layers = quant_layers(model, x[:1])
    for p in model.parameters():
        p.requires_grad_(False)
    out = []
    with torch.enable_grad():
        weights = [m.layer.weight for _, m in layers]
        for w in weights:
            w.requires_grad_(True)
        logits = model(x)
        _check_logits(logits, y)
        grads = torch.autograd.grad(F.cross_entropy(logits, y), weights, create_graph=True)
        for i, ((name, _), w, g) in enumerate(zip(layers, weights, grads)):
            out.append(
                {
                    "name": name,
                    "w_trace": _hutchinson(g, w, iterations, _generator(seed, i, 0)),
                    "w_params": int(w.numel()),
                }
            )
        for w in weights:
            w.requires_grad_(False)
        del grads, logits
        for i, (name, layer) in enumerate(layers):
            seen: list[torch.Tensor] = []

            def leaf(mod: nn.Module, inp: tuple, seen: list[torch.Tensor] = seen) -> tuple:
                xi = inp[0].detach().requires_grad_(True)
                seen.append(xi)
                return (xi, *inp[1:])

            hook = layer.register_forward_pre_hook(leaf)
            try:
                loss = F.cross_entropy(model(x), y)
            finally:
                hook.remove()
            if len(seen) != 1:
                raise QuantInputError(
                    f"hessian: layer {name!r} runs {len(seen)} times per forward pass (shared layers are not supported)"
                )
            (g,) = torch.autograd.grad(loss, seen[0], create_graph=True)
            out[i].update(
                {
                    "a_trace": _hutchinson(g, seen[0], iterations, _generator(seed, i, 1)),
                    "a_numel": int(seen[0].numel()),
                }
            )
            advance()
    return out


def _hessian_rows(
    ev: _Evaluator, y: torch.Tensor, pairs: Sequence[Pair], iterations: int, seed: int, advance
) -> list[dict]:
    traces = {t["name"]: t for t in _traces(ev.base, ev.x, y, iterations, seed, advance)}
    layers = dict(ev.layers)
    inputs = ev.inputs()
    w_delta: dict[tuple[str, int], float] = {}
    a_delta: dict[tuple[str, int], float] = {}
    rows = []
    for name in ev.names:
        t = traces[name]
        w_curv = max(t["w_trace"], 0.0) / t["w_params"]
        a_curv = max(t["a_trace"], 0.0) / t["a_numel"]
        w_float = layers[name].gemm_weight()
        for w_bits, a_bits in pairs:
            if (name, w_bits) not in w_delta:
                if ev.quantizer == "rtn":
                    codes, scales, _, _ = ev.rtn(name, w_bits)
                    layer = layers[name]
                    deq = codes * expand_blocks(scales, layer.out_features, layer.in_channels, layer.kernel)
                else:
                    deq = ev.gpfq_float(name, w_bits)
                w_delta[(name, w_bits)] = float(np.sum((deq - w_float) ** 2))
            if (name, a_bits) not in a_delta:
                x_f = inputs[name]
                a_delta[(name, a_bits)] = float(((ev.acts(a_bits)[name](x_f) - x_f) ** 2).sum())
            dw, da = w_delta[(name, w_bits)], a_delta[(name, a_bits)]
            rows.append(
                {
                    "name": name,
                    "pair": (w_bits, a_bits),
                    "sensitivity": 0.5 * (w_curv * dw + a_curv * da),
                    "w_trace": t["w_trace"],
                    "w_params": t["w_params"],
                    "w_delta_sq": dw,
                    "a_trace": t["a_trace"],
                    "a_numel": t["a_numel"],
                    "a_delta_sq": da,
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------------------------
# public API


def sensitivity_table(
    model: nn.Module,
    calib_x: torch.Tensor,
    pairs: Sequence[Pair],
    method: str = "sqnr",
    *,
    calib_y: torch.Tensor | None = None,
    quantizer: str = "rtn",
    granularity: str | Blocks = "channel",
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    tie_adds: bool = True,
    progress: bool = False,
    threads: int | None = None,
    replay: bool = True,
) -> pd.DataFrame:
    """Per-layer sensitivity of ``model`` for every bit pair, by ``method`` (see the module docstring).

    Args:
        model: the float model (not modified; a prepared, BN-folded float32 copy is used).  An already prepared
            model is reset to float first.
        calib_x: calibration inputs ``[N, ...]``; ``n_samples`` of them are chosen by ``seed``.
        pairs: ``(w_bits, a_bits)`` tuples, bits in 2..8; duplicates are dropped, order is kept.
        method: ``"sqnr"`` (unlabelled), ``"hessian"`` or ``"loss"`` (both need ``calib_y``).
        calib_y: class indices ``[N]`` for the cross-entropy of ``"hessian"`` and ``"loss"``.
        quantizer: weight quantizer, ``"rtn"`` or ``"gpfq"``.
        granularity: ``"tensor"``, ``"channel"`` or ``Blocks(n_v, n_h)``.
        n_samples: at most this many calibration samples (all if there are fewer).
        seed: chooses the samples and the Hutchinson probe vectors.
        iterations: Hutchinson probes per trace (``"hessian"``).
        tie_adds: grouping rule for residual adds / concats (:mod:`quant.groups`).
        progress: show a progress bar on stderr.
        threads: intra-op threads, default every core this process may use (the table is bit-identical for a
            given machine and thread count; other counts move the float32 sums by about 1e-7 relative).
        replay: recompute only what each group touches (:mod:`quant.replay`); False runs one full forward per
            (group, pair), the reference the replay is tested against.

    Returns:
        One row per (layer, pair), layer-major in execution order, pairs in the given order, with
        :data:`COLUMNS`, ``quantizer`` and the method's :data:`EXTRA_COLUMNS`.
    """
    method = _check_choice("method", method, METHODS)
    quantizer = _check_choice("quantizer", quantizer, QUANTIZERS)
    pairs = _check_pairs(pairs)
    n_samples = _check_int("n_samples", n_samples, 1)
    seed = _check_int("seed", seed, 0)
    iterations = _check_int("iterations", iterations, 1)
    threads = available_cores() if threads is None else _check_int("threads", threads, 1)
    _check_inputs(calib_x, calib_y, method in ("hessian", "loss"), method)
    base = float_model(model)
    x, y = _select(calib_x.detach(), None if calib_y is None else calib_y.detach(), n_samples, seed)
    x = _cast(x, torch.float32)
    with _threads(threads):
        _forward(base, x[:1])
        ev = _Evaluator(base, x, quantizer, granularity, replay)
        if not ev.layers:
            raise QuantInputError("the model has no Conv1d, Conv2d or Linear layer that runs on the calibration data")
        groups = _with_products(quantizer_groups(base, x[:1], tie_adds=tie_adds), ev.names)
        if method == "hessian" and ev.products:
            raise QuantInputError(
                f"the hessian method scores Conv/Linear weights; this model multiplies two "
                f"activations in {', '.join(sorted(ev.products))}: use sqnr or loss"
            )
        n_groups = len(set(groups.values()))
        total = len(ev.layers) if method == "hessian" else n_groups * len(pairs)
        with progress_bar(progress, total, f"sensitivity {method}") as advance:
            if method == "sqnr":
                rows = _sqnr_rows(ev, groups, pairs, advance)
            elif method == "loss":
                rows = _loss_rows(ev, y, groups, pairs, advance)
            else:
                rows = _hessian_rows(ev, y, pairs, iterations, seed, advance)
    index = {n: i for i, n in enumerate(ev.names)}
    records = [
        {
            "layer": index[r["name"]],
            "name": r["name"],
            "w_bits": r["pair"][0],
            "a_bits": r["pair"][1],
            "sensitivity": r["sensitivity"],
            "method": method,
            "group": groups[r["name"]],
            "quantizer": quantizer,
            **{k: r[k] for k in EXTRA_COLUMNS[method]},
        }
        for r in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=[*COLUMNS, "quantizer", *EXTRA_COLUMNS[method]])
    order = {p: i for i, p in enumerate(pairs)}
    frame["_pair"] = [order[(w, a)] for w, a in zip(frame.w_bits, frame.a_bits)]
    frame = frame.sort_values(["layer", "_pair"], kind="stable").drop(columns="_pair").reset_index(drop=True)
    return frame.astype(
        {"layer": "int64", "w_bits": "int64", "a_bits": "int64", "group": "int64", "sensitivity": "float64"}
    )


def hessian_traces(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, iterations: int = DEFAULT_ITERATIONS, seed: int = 0
) -> pd.DataFrame:
    """Hutchinson estimates of each layer's Hessian traces for the mean cross-entropy on ``(x, y)`` (all samples).

    Columns: ``layer``, ``name``, ``w_trace`` (trace of the Hessian block of the layer's weight), ``w_params``,
    ``a_trace`` (trace of the Hessian with respect to the layer's input activation over the batch), ``a_numel``.
    Computed on a prepared (BN-folded) float32 copy (products summed in float64); raw estimates, not clipped
    at 0."""
    iterations = _check_int("iterations", iterations, 1)
    seed = _check_int("seed", seed, 0)
    _check_inputs(x, y, True, "hessian")
    base = float_model(model)
    x = _cast(x.detach(), torch.float32)
    with _threads():
        _forward(base, x[:1])
        rows = _traces(base, x, y.detach(), iterations, seed)
    return pd.DataFrame(
        [{"layer": i, **r} for i, r in enumerate(rows)],
        columns=["layer", "name", "w_trace", "w_params", "a_trace", "a_numel"],
    )


def output_nsr(
    model: nn.Module,
    calib_x: torch.Tensor,
    assignment: Mapping[str, Pair],
    *,
    quantizer: str = "rtn",
    granularity: str | Blocks = "channel",
) -> float:
    """Output noise-to-signal ratio ``sum ||y_q - y||^2 / sum ||y||^2`` on all of ``calib_x`` with the layers named
    in ``assignment`` quantized at their ``(w_bits, a_bits)`` (activations max-calibrated on ``calib_x``; other
    layers float), the quantity the ``"sqnr"`` method scores per group.  Use it to check how well the summed
    sensitivities of a mixed-precision assignment predict its real NSR."""
    quantizer = _check_choice("quantizer", quantizer, QUANTIZERS)
    _check_inputs(calib_x, None, False, "sqnr")
    if not isinstance(assignment, Mapping) or not assignment:
        raise QuantInputError("assignment must be a non-empty mapping {layer name: (w_bits, a_bits)}")
    base = float_model(model)
    x = _cast(calib_x.detach(), torch.float32)
    with _threads():
        _forward(base, x[:1])
        ev = _Evaluator(base, x, quantizer, granularity)
        unknown = sorted(set(assignment) - set(ev.names))
        if unknown:
            raise QuantInputError(f"assignment names unknown layers {unknown} (layers: {ev.names})")
        checked = {name: _check_pairs([pair])[0] for name, pair in assignment.items()}
        y = _forward(base, x)
        signal = float((y**2).sum())
        if not signal > 0:
            raise QuantInputError("the float model's output is all zero on the calibration data: NSR is undefined")
        replay = ev.replay() if quantizer == "rtn" else None
        if replay is None:
            return _nsr(_forward(ev.build(checked), x), y, signal)
        (y_q,) = replay.run({name: [ev.quantized_layer(name, pair)] for name, pair in checked.items()})
        return _nsr(y_q, y, signal)


def check_table_path(path: str | os.PathLike[str]) -> Path:
    """Refuse a sensitivity-table path that cannot be written (unknown suffix, an existing directory, a file or an
    unwritable directory above it): call it before computing the table."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise QuantInputError(f"{path}: unknown table format {path.suffix or '(none)'!r}; use .csv or .parquet")
    return check_output_path(path, "sensitivity table", error=QuantInputError)


def write_sensitivity(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a sensitivity table atomically as CSV or Parquet (by suffix: .csv, .parquet, .pq); the path is
    checked by :func:`check_table_path` first."""
    path = check_table_path(path)
    if not isinstance(frame, pd.DataFrame):
        raise QuantInputError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise QuantInputError(f"sensitivity table lacks columns {missing}")
    s = frame["sensitivity"].to_numpy(dtype=np.float64)
    if not (np.isfinite(s).all() and (s >= 0).all()):
        raise QuantInputError("sensitivity values must be finite and >= 0")
    if path.suffix.lower() == ".csv":
        return atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode()))
    return atomic_write(path, lambda f: frame.to_parquet(f, index=False))
