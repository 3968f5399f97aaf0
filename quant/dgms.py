"""DGMS on CPU: differentiable Gaussian-mixture weight sharing (Dong et al., ICML 2022), with a path to hardware.

Each layer gets one mixture of ``K = 2^b`` Gaussians over its weights (:class:`DGMSWeight`). Component 0 is
pinned at ``mu_0 = 0`` (pruning); components ``1..K-1`` have learnable means. With mixing weights
``pi~_k = |pi_k| / sum_j |pi_j|``, the responsibilities and the relaxed assignment of a weight ``w`` are::

    gamma_k = pi~_k N(w; mu_k, sigma_k) / sum_j pi~_j N(w; mu_j, sigma_j)      # computed in log space
    Phi     = softmax(gamma / tau)                                             # learnable temperature tau

Training uses the soft weight ``sum_k Phi_k mu_k`` (component 0 contributes 0); inference uses the mean of
``argmax_k Phi_k``. Both the float weights (through ``Phi``) and the mixture parameters are trained by the shared
loop :func:`quant.finetune.finetune`. ``hard_phase`` (default 0, the paper) makes the last fraction of the epochs
forward the hard weight with the soft weight's gradient (straight-through), which closes the soft-hard gap a
rising ``tau`` can open (measured in docs/quant.md).

**Codebooks.** ``"free"`` is the paper's: K-1 free means, k-means initialised (the cluster nearest 0 becomes
component 0). ``"grid"`` (the default) ties the means to the uniform grid the hardware runs, ``mu_k = s c_k``
for the ``2^b - 1`` non-zero codes ``c_k`` of the symmetric b-bit grid with one learnable scale ``s`` per layer;
everything else (zero component, mixing weights, sigmas, temperature, soft training, hard inference) is DGMS.

**Channel scales.** BN is folded into the weights (:func:`quant.fakequant.prepare`), so channels differ in scale by
the BN gain, which in the paper sits after the conv, is trained and stays in float. The mixture therefore models
``w / alpha_r`` with a learnable per-output-channel ``alpha_r`` (initialised at the channel's RMS;
``channel_norm=False`` fixes it at 1): one mixture per layer, each channel's codebook ``alpha_r mu_k``.

**Numerical safety** (the reference code is CUDA-only and computes the pdfs in linear space):

* ``gamma`` is a softmax of ``log pi~_k + log N(w; mu_k, sigma_k)``: no pdf underflow for weights far from every
  mean (in linear space all pdfs underflow to 0 there and the weight gets the mean of all means);
* ``sigma_k = sigma_min + exp(s_k)``, ``tau = TAU_MIN + exp(t)``, ``alpha_r = exp(a_r)`` and the grid scale
  ``exp(l)``: positive without clamping, and Adam's steps are relative (``tau`` starts at 0.03; an absolute Adam
  step of 1e-2 would be a third of it); ``sigma_min = 1e-4 max|W / alpha|`` and ``TAU_MIN = 1e-4`` bound
  ``(w - mu)^2 / sigma^2`` and ``gamma / tau`` (<= 1e4), so both softmaxes stay finite;
* ``pi~_k = (|pi_k| + eps) / sum_j (|pi_j| + eps)`` with ``eps = 1e-8``: a mixing weight that reaches 0 keeps a
  finite log and gradient;
* a non-finite mixture parameter or soft weight stops training with
  :class:`~quant.finetune.TrainingDivergedError` naming the layer; nothing is returned.

**Path to hardware: snap to a uniform grid.** After training, each weight takes its hard component; per output
channel, the codebook ``alpha_r mu_k`` is snapped to the symmetric b-bit grid of lowbit's integer datapath:
``c_k = clip(rint(alpha_r mu_k / s), -2^(b-1), 2^(b-1) - 1)`` with the scale ``s`` minimising
``sum_k n_k (alpha_r mu_k - s c_k)^2`` (``n_k``: the channel's weights in component k; :func:`best_scale`).
Component 0 gets code 0 exactly, so the learned sparsity survives. The codes are installed with
:meth:`~quant.fakequant.QuantLayer.set_weight_codes` (per-channel scales, ``Blocks(out, 1)``): the normal integer
export, golden model and RTL flow apply unchanged. The test accuracy of the hard-assignment model (learned means)
is measured before the snap and compared with the snapped model's: the difference is what the snap costs (zero
for the grid codebook up to float rounding; large for free means at 2 bits).

**Deviations from the paper:** every QuantLayer gets a mixture (the paper keeps the first conv and the last FC in
float; lowbit compares all methods with all layers at ``w_bits``); the grid codebook and the channel scales above;
fine-tuning uses lowbit's shared budget (Adam, cosine decay, :class:`~quant.finetune.FinetuneConfig`) instead of
the paper's SGD, with the mixture's learning rate ``mixture_lr_scale`` (10) times the weights'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from quant.data import Split, evaluate_accuracy
from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, calibrate_activations, model_size_bits, prepare, quant_layers
from quant.finetune import FinetuneConfig, TrainingDivergedError, TrainOutcome, check_bits, finetune, training_mode
from quant.quantizer import Blocks, QuantSpec

__all__ = [
    "CODEBOOKS",
    "DGMSWeight",
    "MixtureInit",
    "SnapResult",
    "TAU_MIN",
    "best_scale",
    "check_components",
    "dgms_train",
    "grid_codes",
    "grid_init",
    "kmeans_init",
    "snap_channel",
    "snap_layer",
]

TAU_MIN = 1e-4  #: floor of the temperature: gamma / tau <= 1e4
SIGMA_MIN_REL = 1e-4  #: floor of every sigma, relative to the layer's max |W / alpha| at initialisation
PI_EPS = 1e-8  #: added to every |pi_k| before normalising
KMEANS_MAX_ITER = 300
_LOG_2PI = math.log(2.0 * math.pi)
DEFAULT_TAU0 = 0.03  #: initial temperature (the paper: 0.01); tuned on the calibration split
DEFAULT_MIXTURE_LR_SCALE = 10.0  #: the mixture's learning rate relative to the weights' (see DGMSWeight)
SNAPS = ("uniform",)
CODEBOOKS = ("free", "grid")  #: free means (the paper) or means tied to the uniform grid


# ------------------------------------------------------------------------------------------------------------------
# initialisation: deterministic 1-D k-means (codebook "free") or the uniform grid (codebook "grid")
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixtureInit:
    """Initial parameters of one mixture: component 0 first (mean exactly 0), then ascending means."""

    means: np.ndarray  # [K] float64, means[0] == 0
    sigmas: np.ndarray  # [K] float64 > 0
    pis: np.ndarray  # [K] float64, sums to 1
    counts: np.ndarray  # [K] int64: weights per component
    scale: float | None = None  # the grid scale (codebook "grid"), None for k-means


def _lloyd_1d(w: np.ndarray, k: int) -> np.ndarray:
    """Sorted cluster centers of 1-D Lloyd's iterations from the ``(i + 1/2) / k`` quantiles (deterministic).

    An emptied cluster keeps its center."""
    centers = np.quantile(w, (np.arange(k) + 0.5) / k)
    for _ in range(KMEANS_MAX_ITER):
        labels = _nearest(w, centers)
        counts = np.bincount(labels, minlength=k)
        sums = np.bincount(labels, weights=w, minlength=k)
        new = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), centers))
        if np.array_equal(new, centers):
            break
        centers = new
    return centers


def _nearest(w: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``centers`` for each of ``w`` (a tie goes to the lower center)."""
    mids = (centers[1:] + centers[:-1]) / 2.0
    return np.searchsorted(mids, w, side="left")


def _flat(weight: np.ndarray | torch.Tensor) -> np.ndarray:
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else weight
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size == 0 or not np.isfinite(w).all():
        raise QuantInputError("DGMS initialisation needs a non-empty, finite weight")
    return w


def _component_stats(w: np.ndarray, means: np.ndarray, labels: np.ndarray, scale: float | None = None) -> MixtureInit:
    """sigma_k: the std of component k's weights around ``means[k]`` (``n - 1`` denominator) floored at
    ``1e-3 max|W|``; ``pi_k = (n_k + 1) / (N + K)`` (no empty component)."""
    k = len(means)
    counts = np.bincount(labels, minlength=k)
    sq = np.bincount(labels, weights=(w - means[labels]) ** 2, minlength=k)
    floor = 1e-3 * (float(np.abs(w).max()) or 1.0)
    sigmas = np.maximum(np.sqrt(sq / np.maximum(counts - 1, 1)), floor)
    return MixtureInit(means, sigmas, (counts + 1.0) / (w.size + k), counts.astype(np.int64), scale)


def kmeans_init(weight: np.ndarray | torch.Tensor, k: int) -> MixtureInit:
    """Initialise a k-component mixture from ``weight`` by 1-D k-means (as the reference code).

    The cluster whose center is nearest 0 becomes component 0 with mean exactly 0, its sigma measured around 0;
    the others follow in ascending order of their centers."""
    w = _flat(weight)
    centers = _lloyd_1d(w, k)
    zero = int(np.argmin(np.abs(centers)))
    order = np.array([zero] + [i for i in range(k) if i != zero])
    means = centers[order].copy()
    means[0] = 0.0
    labels = np.argsort(order)[_nearest(w, centers)]  # cluster index -> component index
    return _component_stats(w, means, labels)


def grid_codes(bits: int) -> np.ndarray:
    """The non-zero codes of the symmetric b-bit grid, ascending: ``qmin..-1, 1..qmax`` (``2^b - 1`` codes)."""
    spec = QuantSpec(bits)
    return np.array([c for c in range(spec.qmin, spec.qmax + 1) if c != 0], dtype=np.int64)


def grid_init(weight: np.ndarray | torch.Tensor, bits: int) -> MixtureInit:
    """Initialise a mixture whose means are the uniform grid ``s * c`` (codebook ``"grid"``): ``s`` minimises the
    weights' squared rounding error (:func:`best_scale`), each weight starts in the component of its code."""
    w = _flat(weight)
    spec = QuantSpec(bits)
    s = best_scale(w, np.ones_like(w), spec) if np.any(w != 0) else 1.0
    codes = np.concatenate([[0], grid_codes(bits)])
    lookup = np.full(spec.levels, -1, dtype=np.int64)
    lookup[codes - spec.qmin] = np.arange(len(codes))
    labels = lookup[_grid_codes(w, s, spec).astype(np.int64) - spec.qmin]
    return _component_stats(w, s * codes.astype(np.float64), labels, s)


# ------------------------------------------------------------------------------------------------------------------
# the mixture
# ------------------------------------------------------------------------------------------------------------------
def _inv_exp_offset(value: np.ndarray | float, floor: float) -> torch.Tensor:
    """``log(value - floor)``: the raw parameter of ``floor + exp(raw) = value``."""
    return torch.log(torch.as_tensor(np.asarray(value, dtype=np.float64) - floor)).float()


def _channel_rms(weight: torch.Tensor) -> torch.Tensor:
    """RMS of every output channel's weights, ``[out]`` float64 (1 for an all-zero channel)."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    rms = w.pow(2).mean(dim=1).sqrt()
    return torch.where(rms > 0, rms, torch.ones_like(rms))


class DGMSWeight(nn.Module):
    """The per-layer Gaussian mixture of DGMS: ``forward(w)`` is the soft weight, :meth:`hard` the hard one.

    The mixture models the layer's weights divided by a per-output-channel scale ``alpha_r`` (``channel_norm``,
    learnable, initialised at the channel's RMS; 1 and fixed without it): BN is folded into the weights, so
    channels differ in scale by the BN gain, which in the paper sits after the conv, is trained and is not
    quantized. Parameters: the means (codebook ``"free"``: ``mu``, the K-1 non-zero means, k-means initialised;
    codebook ``"grid"``: ``log_scale``, the means being ``exp(log_scale) * c`` for the non-zero grid codes ``c``;
    ``mu_0 = 0`` is fixed in both), ``pi`` (K raw mixing weights), ``log_sigma`` (K,
    ``sigma = sigma_min + exp(log_sigma)``), ``log_tau`` (``tau = TAU_MIN + exp(log_tau)``) and ``log_alpha``.

    ``lr_scale`` multiplies the mixture's learning rate inside the shared loop: every parameter is stored divided by
    it and multiplied back on use, and Adam's step is invariant to the gradient's scale, so a step of ``lr`` on the
    stored value is a step of ``lr_scale * lr`` on the parameter (the float weights keep ``lr``). Read the
    parameters through :meth:`param`.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bits: int,
        tau0: float = 0.03,
        name: str = "?",
        codebook: str = "grid",
        channel_norm: bool = True,
        lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.lr_scale = float(lr_scale)
        c = self.lr_scale
        if codebook not in CODEBOOKS:
            raise QuantInputError(f"unknown codebook {codebook!r} (allowed: {', '.join(CODEBOOKS)})")
        self.name, self.bits, self.k, self.codebook = name, int(bits), 1 << int(bits), codebook
        alpha = _channel_rms(weight) if channel_norm else torch.ones(weight.shape[0], dtype=torch.float64)
        if channel_norm:
            self.log_alpha = nn.Parameter((torch.log(alpha) / c).float())
        else:
            self.register_buffer("log_alpha", torch.zeros(weight.shape[0]))
        u = weight.detach().double().reshape(weight.shape[0], -1) / alpha[:, None]
        init = kmeans_init(u, self.k) if codebook == "free" else grid_init(u, self.bits)
        self.sigma_min = SIGMA_MIN_REL * (float(u.abs().max()) or 1.0)
        if codebook == "free":
            self.mu = nn.Parameter((torch.as_tensor(init.means[1:]) / c).float())
        else:
            self.register_buffer("codes", torch.as_tensor(grid_codes(self.bits)).float())
            self.log_scale = nn.Parameter((torch.log(torch.tensor([init.scale], dtype=torch.float64)) / c).float())
        self.pi = nn.Parameter((torch.as_tensor(init.pis) / c).float())
        sig = _inv_exp_offset(np.maximum(init.sigmas, 2 * self.sigma_min), self.sigma_min)
        self.log_sigma = nn.Parameter(sig / c)
        self.log_tau = nn.Parameter(_inv_exp_offset([tau0], TAU_MIN) / c)
        self.straight_through = False

    # the mixture's quantities ----------------------------------------------------------------------------------
    def param(self, name: str) -> torch.Tensor:
        """The value of parameter ``name`` (the stored tensor times ``lr_scale``; buffers as they are)."""
        t = getattr(self, name)
        return t * self.lr_scale if isinstance(t, nn.Parameter) else t

    def nonzero_means(self) -> torch.Tensor:
        """The K-1 learnable means ``mu_1..mu_{K-1}`` (of the normalised weights)."""
        return self.param("mu") if self.codebook == "free" else torch.exp(self.param("log_scale")) * self.codes

    def means(self) -> torch.Tensor:
        """All K means, ``[0, mu_1, ..., mu_{K-1}]`` (of the normalised weights)."""
        mu = self.nonzero_means()
        return torch.cat([mu.new_zeros(1), mu])

    def alpha(self) -> torch.Tensor:
        """The per-output-channel scales ``alpha_r``, ``[out]``."""
        return torch.exp(self.param("log_alpha"))

    def channel_means(self) -> torch.Tensor:
        """Every channel's codebook in weight units, ``alpha_r * mu_k``, ``[out, K]``."""
        return self.alpha()[:, None] * self.means()[None, :]

    def sigmas(self) -> torch.Tensor:
        return self.sigma_min + torch.exp(self.param("log_sigma"))

    def tau(self) -> torch.Tensor:
        return TAU_MIN + torch.exp(self.param("log_tau"))

    def mixing(self) -> torch.Tensor:
        """``pi~``: the normalised mixing weights (sum 1)."""
        a = self.param("pi").abs() + PI_EPS
        return a / a.sum()

    def normalised(self, w: torch.Tensor) -> torch.Tensor:
        """``w / alpha_r`` in GEMM form ``[out, cols]``."""
        return w.reshape(w.shape[0], -1) / self.alpha()[:, None]

    def log_joint(self, w: torch.Tensor) -> torch.Tensor:
        """``log pi~_k + log N(w / alpha_r; mu_k, sigma_k)`` per weight and component, ``[numel, K]``."""
        sig = self.sigmas()
        z = (self.normalised(w).reshape(-1, 1) - self.means()) / sig
        return torch.log(self.mixing()) - 0.5 * z * z - torch.log(sig) - 0.5 * _LOG_2PI

    def responsibilities(self, w: torch.Tensor) -> torch.Tensor:
        """``gamma``, ``[numel, K]`` (rows sum to 1)."""
        return torch.softmax(self.log_joint(w), dim=1)

    def assignment(self, w: torch.Tensor) -> torch.Tensor:
        """``Phi = softmax(gamma / tau)``, ``[numel, K]`` (rows sum to 1)."""
        return torch.softmax(self.responsibilities(w) / self.tau(), dim=1)

    # soft and hard weights -------------------------------------------------------------------------------------
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.check_finite()
        soft = (self.assignment(w)[:, 1:] @ self.nonzero_means()).reshape(w.shape[0], -1)
        soft = (soft * self.alpha()[:, None]).reshape(w.shape)
        if not torch.isfinite(soft).all():
            self._collapsed("soft weights")
        if self.straight_through:  # forward the hard weight, backpropagate the soft one
            return soft + (self.hard(w)[1] - soft).detach()
        return soft

    @torch.no_grad()
    def hard(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(component index of every weight, shaped like ``w``; the hard weight ``alpha_r mu_k`` of it).

        ``argmax Phi = argmax gamma = argmax log_joint`` (both softmaxes are monotone); the log joint is used
        because it cannot saturate."""
        self.check_finite()
        idx = self.log_joint(w).argmax(dim=1).reshape(w.shape[0], -1)
        return idx.reshape(w.shape), torch.gather(self.channel_means(), 1, idx).reshape(w.shape)

    def check_finite(self) -> None:
        """Raise :class:`TrainingDivergedError` if any mixture parameter is NaN or inf."""
        for pname, p in self.named_parameters():
            if not torch.isfinite(p).all():
                self._collapsed(f"parameter {pname}")

    def _collapsed(self, what: str) -> None:
        raise TrainingDivergedError(
            f"DGMS mixture of layer {self.name} collapsed (NaN or inf in its {what}); stopped, nothing written"
        )

    def extra_repr(self) -> str:
        return f"layer={self.name}, K={self.k}, codebook={self.codebook}"


class _FixedWeight(nn.Module):
    """A ``weight_fn`` that returns a fixed tensor (the hard-assignment weight before snapping)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("fixed", weight.detach().clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.fixed


# ------------------------------------------------------------------------------------------------------------------
# snapping to the uniform grid
# ------------------------------------------------------------------------------------------------------------------
def _grid_codes(mu: np.ndarray, s: np.ndarray, spec: QuantSpec) -> np.ndarray:
    return np.clip(np.rint(mu / s), spec.qmin, spec.qmax)


def _grid_error(mu: np.ndarray, n: np.ndarray, s: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """``sum_k n_k (mu_k - s c_k)^2`` for every scale of ``s`` ([S] -> [S])."""
    s = s[:, None]
    return (n * (mu - s * _grid_codes(mu, s, spec)) ** 2).sum(axis=1)


def _refine(mu: np.ndarray, n: np.ndarray, s: float, spec: QuantSpec, iters: int = 30) -> float:
    """Alternate codes and the least-squares scale ``sum n mu c / sum n c^2`` while the error decreases."""
    err = float(_grid_error(mu, n, np.array([s]), spec)[0])
    for _ in range(iters):
        c = _grid_codes(mu, s, spec)
        den = float((n * c * c).sum())
        if den == 0.0:
            break
        s_new = float((n * mu * c).sum()) / den
        if not s_new > 0.0:
            break
        e_new = float(_grid_error(mu, n, np.array([s_new]), spec)[0])
        if e_new >= err:
            break
        s, err = s_new, e_new
    return s


def best_scale(mu: np.ndarray, n: np.ndarray, spec: QuantSpec, grid: int = 256, refine_best: int = 8) -> float:
    """The scale ``s > 0`` minimising ``sum_k n_k (mu_k - s c_k)^2`` with ``c_k = clip(rint(mu_k / s))``.

    A geometric grid of ``grid`` scales from a quarter of the no-clipping scale to ``2 max|mu|`` (above it every
    code is 0), the ``refine_best`` best refined by :func:`_refine`; ``mu`` must have a non-zero entry."""
    mu, n = np.asarray(mu, dtype=np.float64), np.asarray(n, dtype=np.float64)
    amax = float(np.abs(mu).max())
    noclip = max(float(mu.max()) / spec.qmax, float(-mu.min()) / -spec.qmin, amax / -spec.qmin)
    cands = np.unique(np.concatenate([np.geomspace(noclip / 4.0, 2.0 * amax, grid), [noclip]]))
    errs = _grid_error(mu, n, cands, spec)
    best = [_refine(mu, n, float(s), spec) for s in cands[np.argsort(errs, kind="stable")[:refine_best]]]
    return best[int(np.argmin(_grid_error(mu, n, np.array(best), spec)))]


def snap_channel(means: np.ndarray, counts: np.ndarray, spec: QuantSpec) -> tuple[float, np.ndarray]:
    """Scale ``s > 0`` and codes ``c_k`` (int64, ``[K]``, ``c_0 = 0``) of one output channel's codebook.

    ``s`` minimises ``sum_{k >= 1} n_k (mu_k - s c_k)^2`` (:func:`best_scale`) over the components the channel
    uses. A channel without non-zero weights gets scale 1 (as :func:`quant.quantizer.block_scales`)."""
    means = np.asarray(means, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    used = (np.arange(len(means)) > 0) & (counts > 0) & (means != 0.0)
    codes = np.zeros(len(means), dtype=np.int64)
    if not used.any():
        return 1.0, codes
    s = best_scale(means[used], counts[used], spec)
    codes[used] = _grid_codes(means[used], s, spec).astype(np.int64)
    return s, codes


@dataclass(frozen=True)
class SnapResult:
    """One layer snapped to the uniform grid (GEMM form)."""

    codes: np.ndarray  # [out, cols] int64 weight codes
    scales: np.ndarray  # [out, 1] float64 per-channel scales
    comp_codes: np.ndarray  # [out, K] int64: the code of every component in every channel (column 0 is 0)
    counts: np.ndarray  # [out, K] int64: weights per channel and component


def snap_layer(means: np.ndarray, idx: np.ndarray, spec: QuantSpec) -> SnapResult:
    """Snap a layer's hard assignment ``idx`` (``[out, cols]`` component indices) with codebooks ``means``
    (``[K]`` shared, or ``[out, K]`` per channel; ``means[..., 0] == 0``) to per-output-channel uniform grids
    (:func:`snap_channel`)."""
    idx = np.asarray(idx, dtype=np.int64)
    means = np.broadcast_to(np.asarray(means, dtype=np.float64), (idx.shape[0], np.shape(means)[-1]))
    k = means.shape[1]
    counts = np.stack([np.bincount(row, minlength=k) for row in idx])
    snapped = [snap_channel(mu, c, spec) for mu, c in zip(means, counts)]
    scales = np.array([[s] for s, _ in snapped], dtype=np.float64)
    comp_codes = np.stack([c for _, c in snapped])
    codes = np.take_along_axis(comp_codes, idx, axis=1)
    return SnapResult(codes, scales, comp_codes, counts)


# ------------------------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------------------------
def check_components(components: object, w_bits: int) -> int:
    """``K = 2^w_bits`` (components including the zero component); a different ``components`` is an error."""
    k = 1 << w_bits
    if components is None:
        return k
    if isinstance(components, bool) or not isinstance(components, int | np.integer) or int(components) != k:
        raise QuantInputError(
            f"K={components!r} is inconsistent with w_bits={w_bits}: DGMS uses K = 2^b components "
            f"including the zero component (K={k})"
        )
    return k


def _positive(name: str, value: object, floor: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > floor):
        raise QuantInputError(f"{name} must be a finite number > {floor:g}, got {value!r}")


def _check_options(tau0: object, snap: object, codebook: object, mixture_lr_scale: object, hard_phase: object) -> None:
    _positive("tau0", tau0, TAU_MIN)
    _positive("mixture_lr_scale", mixture_lr_scale)
    if isinstance(hard_phase, bool) or not isinstance(hard_phase, int | float) or not 0.0 <= float(hard_phase) <= 1.0:
        raise QuantInputError(f"hard_phase must be a fraction of training in [0, 1], got {hard_phase!r}")
    if snap not in SNAPS:
        raise QuantInputError(f"unknown snap {snap!r} (allowed: {', '.join(SNAPS)})")
    if codebook not in CODEBOOKS:
        raise QuantInputError(f"unknown codebook {codebook!r} (allowed: {', '.join(CODEBOOKS)})")


def _end_of_epoch(mixtures: dict[str, tuple[QuantLayer, DGMSWeight]], hard_from: int):  # noqa: ANN202 - closure
    """``on_epoch``: the mean temperature and the fraction of weights whose hard component is 0; from epoch
    ``hard_from`` on, the mixtures forward their hard weights (straight-through)."""

    def log(epoch: int) -> dict[str, float]:
        for _, mix in mixtures.values():
            mix.straight_through = epoch >= hard_from
        with torch.no_grad():
            zeros = total = 0
            for m, mix in mixtures.values():
                idx, _ = mix.hard(m.layer.weight)
                zeros += int((idx == 0).sum())
                total += idx.numel()
            taus = [float(mix.tau()) for _, mix in mixtures.values()]
        return {"tau_mean": float(np.mean(taus)), "sparsity": zeros / total}

    return log


def _layer_record(name: str, mix: DGMSWeight, idx: np.ndarray, snap: SnapResult) -> dict:
    """JSON-ready per-layer summary: the learned mixture, its sparsity and the snapped codebook."""
    with torch.no_grad():
        means, sig, pis, alpha = (
            t.double().numpy().tolist() for t in (mix.means(), mix.sigmas(), mix.mixing(), mix.alpha())
        )
        tau = float(mix.tau())
    counts = np.bincount(idx.ravel(), minlength=mix.k)
    return {
        "name": name,
        "weights": int(idx.size),
        "sparsity": float(counts[0] / idx.size),
        "zero_codes": float(np.mean(snap.codes == 0)),
        "tau": tau,
        "means": means,
        "sigmas": sig,
        "pi": pis,
        "alpha": alpha,
        "counts": counts.tolist(),
        "scales": snap.scales.ravel().tolist(),
        "codes": snap.comp_codes.tolist(),
    }


def _codebook_table(name: str, means: np.ndarray, snap: SnapResult) -> pd.DataFrame:
    """One row per (channel, component): learned mean ``alpha_r mu_k`` (``means``: ``[out, K]``), count, code,
    scale and the snapped value ``s * c``."""
    out, k = snap.comp_codes.shape
    ch, comp = np.meshgrid(np.arange(out), np.arange(k), indexing="ij")
    s = np.repeat(snap.scales, k, axis=1)
    return pd.DataFrame(
        {
            "layer": name,
            "channel": ch.ravel(),
            "component": comp.ravel(),
            "mean": means.ravel(),
            "count": snap.counts.ravel(),
            "code": snap.comp_codes.ravel(),
            "scale": s.ravel(),
            "snapped": (s * snap.comp_codes).ravel(),
        }
    )


def _compression(w_bits: int, sparsity: float, zero_codes: float, q: nn.Module) -> dict[str, float]:
    float_bits, quant_bits = model_size_bits(q)
    return {
        "sparsity": sparsity,
        "zero_codes": zero_codes,
        "compression_dense": 32.0 / w_bits,
        "compression_sparse": 32.0 / (w_bits * (1.0 - zero_codes)) if zero_codes < 1.0 else math.inf,
        "model_compression_dense": float_bits / quant_bits,
    }


def _train_mixtures(
    q: nn.Module,
    split: Split,
    w_bits: int,
    a_bits: int,
    config: FinetuneConfig,
    progress: bool,
    hard_phase: float,
    **mixture: object,
) -> tuple[pd.DataFrame, dict[str, DGMSWeight], dict[str, torch.Tensor]]:
    """Fine-tune ``q`` with one mixture per QuantLayer; (history, mixtures, hard component indices)."""
    named = quant_layers(q)
    with training_mode(q):
        mixtures: dict[str, tuple[QuantLayer, DGMSWeight]] = {}
        for name, m in named:
            m.weight_fn = DGMSWeight(m.layer.weight.detach(), w_bits, name=name, **mixture)
            mixtures[name] = (m, m.weight_fn)
        hard_from = config.epochs - round(hard_phase * config.epochs)
        for mix in mixtures.values():
            mix[1].straight_through = hard_from <= 0
        history = finetune(
            q,
            split,
            config,
            on_epoch=_end_of_epoch(mixtures, hard_from),
            label=f"DGMS w{w_bits}a{a_bits}",
            progress=progress,
        )
        hard = {name: mix.hard(m.layer.weight)[0] for name, (m, mix) in mixtures.items()}
    return history, {name: mix for name, (_, mix) in mixtures.items()}, hard


def _hard_accuracy(
    q: nn.Module, split: Split, a_bits: int, mixtures: dict[str, DGMSWeight], hard: dict[str, torch.Tensor]
) -> float:
    """Test accuracy with the hard weights ``alpha_r mu_k`` (learned means, not snapped), activations
    recalibrated; the layers' ``weight_fn`` are cleared afterwards."""
    layers = dict(quant_layers(q))
    with torch.no_grad():
        for name, m in layers.items():
            idx = hard[name].reshape(m.out_features, -1)
            w = torch.gather(mixtures[name].channel_means(), 1, idx).reshape(m.layer.weight.shape)
            m.weight_fn = _FixedWeight(w)
    try:
        calibrate_activations(q, split.calib_x, a_bits)
        return evaluate_accuracy(q, split.test_x, split.test_y)
    finally:
        for m in layers.values():
            m.weight_fn = None


def _snap_model(
    q: nn.Module, w_bits: int, mixtures: dict[str, DGMSWeight], hard: dict[str, torch.Tensor]
) -> tuple[list[dict], pd.DataFrame]:
    """Install every layer's snapped codes (per-channel scales); (per-layer records, codebook table)."""
    spec = QuantSpec(w_bits)
    records, tables = [], []
    for name, m in quant_layers(q):
        mix = mixtures[name]
        idx = hard[name].reshape(m.out_features, -1).numpy()
        means = mix.channel_means().detach().double().numpy()
        res = snap_layer(means, idx, spec)
        m.set_weight_codes(res.codes, res.scales, spec, Blocks(m.out_features, 1))
        records.append(_layer_record(name, mix, idx, res))
        tables.append(_codebook_table(name, means, res))
    return records, pd.concat(tables, ignore_index=True)


def dgms_train(
    model: nn.Module,
    split: Split,
    w_bits: int,
    a_bits: int,
    config: FinetuneConfig | None = None,
    progress: bool = False,
    *,
    components: int | None = None,
    tau0: float = DEFAULT_TAU0,
    snap: str = "uniform",
    codebook: str = "grid",
    channel_norm: bool = True,
    mixture_lr_scale: float = DEFAULT_MIXTURE_LR_SCALE,
    hard_phase: float = 0.0,
) -> TrainOutcome:
    """DGMS of float ``model`` at ``w{w_bits}a{a_bits}``: one K = 2^w_bits mixture per layer, fine-tuned, hard
    assignment, snapped to per-channel uniform b-bit grids (see the module docstring).

    Returns the fake-quant model with b-bit codes installed and activations recalibrated; ``summary`` holds the
    sparsity, compression ratios, test accuracy before and after the snap and per-layer codebooks; ``tables``
    holds ``codebook`` (one row per layer, channel and component)."""
    w_bits, a_bits = check_bits(w_bits, a_bits)
    k = check_components(components, w_bits)
    _check_options(tau0, snap, codebook, mixture_lr_scale, hard_phase)
    config = config or FinetuneConfig()
    q = prepare(model)
    calibrate_activations(q, split.calib_x, a_bits)
    history, mixtures, hard = _train_mixtures(
        q,
        split,
        w_bits,
        a_bits,
        config,
        progress,
        hard_phase,
        tau0=tau0,
        codebook=codebook,
        channel_norm=channel_norm,
        lr_scale=mixture_lr_scale,
    )
    acc_hard = _hard_accuracy(q, split, a_bits, mixtures, hard)
    records, table = _snap_model(q, w_bits, mixtures, hard)
    calibrate_activations(q, split.calib_x, a_bits)
    acc_snap = evaluate_accuracy(q, split.test_x, split.test_y)
    n = sum(r["weights"] for r in records)
    sparsity = sum(r["sparsity"] * r["weights"] for r in records) / n
    zero_codes = sum(r["zero_codes"] * r["weights"] for r in records) / n
    summary = {
        "method": "dgms",
        "w_bits": w_bits,
        "a_bits": a_bits,
        "components": k,
        "tau0": float(tau0),
        "codebook": codebook,
        "channel_norm": bool(channel_norm),
        "mixture_lr_scale": float(mixture_lr_scale),
        "snap": snap,
        "granularity": "channel",
        "epochs": config.epochs,
        "lr": config.lr,
        "test_accuracy_hard": acc_hard,
        "test_accuracy_snapped": acc_snap,
        "snap_cost": acc_hard - acc_snap,
        **_compression(w_bits, sparsity, zero_codes, q),
        "layers": records,
    }
    return TrainOutcome(q, history, summary=summary, tables={"codebook": table})
