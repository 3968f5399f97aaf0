"""Function-preserving channel reordering for PTQ-SL (and any block-wise weight quantizer).

Permuting the output channels of a layer ``l`` -- its weight rows and bias, and every BatchNorm between it
and the next weighted layer ``l+1`` (running mean / var, weight, bias) -- and permuting ``l+1``'s input
channels the same way leaves the network's function unchanged, because everything in between (ReLU-like
activations, max / average pooling, dropout) acts on each channel separately.  When ``l`` is a convolution
followed by ``Flatten`` -> ``Linear``, the Linear's input features move in groups of the spatial size ``S``
(feature ``c * S + s`` belongs to channel ``c``).

Convention: ``perm[j]`` is the *original* index of the channel that ends up at position ``j``.  Layer ``l``'s
rows become ``W_l[perm]`` and layer ``l+1``'s columns ``W_{l+1}[:, perm]`` (a gather with ``perm`` is the scatter
with its inverse, i.e. the inverse permutation applied to the input channels).

Only graphs that are provably a chain are accepted: an ``nn.Sequential`` (nested ``nn.Sequential`` allowed)
of Conv1d / Conv2d / Linear (plain or wrapped in :class:`quant.fakequant.QuantLayer`), BatchNorm1d / 2d,
Flatten, channel-wise activations, pooling and dropout.  Anything else between two weighted layers -- a custom
block that may hold a residual add, a grouped convolution, a Linear applied to a non-flattened tensor, a layer
used twice -- raises :class:`QuantInputError` naming the offending module.  Works both on an unfolded float
model (BatchNorms permuted) and on a BN-folded prepared model (weight codes of touched layers are cleared, and
each reordered :class:`QuantLayer` records its overall output order, composed over repeated reorders, in
``out_perm`` -- the attribute :mod:`quant.integer` exports).

How the permutation is chosen (:func:`choose_permutation`):

* ``"sort"``: ascending per-channel range -- ``max |w|`` of the (BN-scaled) output row for ``stat="weight"``,
  ``max - min`` of the output activations on calibration data for ``stat="activation"``;
* ``"kmeans"``: scikit-learn ``KMeans`` (fixed ``random_state``) on per-channel ``[min, max]`` with
  ``n_groups`` clusters; clusters are laid out by increasing mean range, channels inside a cluster by range.
  (Blocks are *equal-size* contiguous row groups, so cluster boundaries need not coincide with block
  boundaries; ordering the clusters by range keeps neighbouring blocks homogeneous anyway.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer

__all__ = [
    "Link",
    "METHODS",
    "STATS",
    "plan_links",
    "channel_stats",
    "choose_permutation",
    "permute_channels",
    "reorder_model",
]

METHODS = ("sort", "kmeans")
STATS = ("weight", "activation")

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
)
_POOL = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)


@dataclass
class Link:
    """A producer -> consumer pair whose shared channel axis can be permuted.

    ``bns``: BatchNorms in between with the feature expansion at their position (1 before a Flatten, ``S``
    after); ``expand``: features per channel at the consumer's input (``S`` after Flatten, else 1)."""

    producer: str
    producer_module: nn.Module
    consumer: str
    consumer_module: nn.Module
    channels: int
    bns: list[tuple[str, nn.Module, int]] = field(default_factory=list)
    expand: int = 1

    @property
    def channel_bns(self) -> list[nn.Module]:
        """BatchNorms acting on the producer's channels themselves (before any Flatten)."""
        return [bn for _, bn, e in self.bns if e == 1]


def _inner(m: nn.Module) -> nn.Module:
    return m.layer if isinstance(m, QuantLayer) else m


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    if isinstance(module, QuantLayer) or not any(True for _ in module.children()):
        return [(prefix, module)]
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    raise QuantInputError(
        f"cannot prove channel reordering safe through {prefix or 'the model'!r} "
        f"({type(module).__name__}): only nn.Sequential chains are supported "
        f"(no residual adds or custom blocks)"
    )


def _example(calib_x: torch.Tensor | None) -> torch.Tensor:
    if calib_x is None or not isinstance(calib_x, torch.Tensor) or calib_x.ndim < 2:
        raise QuantInputError("calib_x must be a torch tensor [N, ...] (needed to trace shapes)")
    if len(calib_x) == 0:
        raise QuantInputError("empty calibration set")
    return calib_x


def _run(model: nn.Module, x: torch.Tensor, batch: int = 512) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                model(x[i : i + batch])
    finally:
        model.train(was_training)


def plan_links(model: nn.Module, calib_x: torch.Tensor) -> list[Link]:
    """The permutable producer -> consumer links of a Sequential model, in order (traced on ``calib_x[:2]``).

    Raises :class:`QuantInputError` naming the module when the chain cannot be proven safe."""
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    leaves = _leaves(model, "")
    _check_unshared(leaves)
    shapes = _trace_shapes(model, leaves, calib_x)
    walk = _LinkWalk()
    for name, m in leaves:
        walk.visit(name, m, *shapes.get(name, ((), ())))
    return walk.links


def _check_unshared(leaves: list[tuple[str, nn.Module]]) -> None:
    """Refuse a leaf used at two places in the chain: permuting it for one use would corrupt the other.

    Channel-wise modules without channel state (activations, pooling, dropout, Flatten) may be shared."""
    seen: dict[int, str] = {}
    for name, m in leaves:
        if id(m) in seen and not isinstance(m, _ELEMENTWISE + _POOL + (nn.Flatten,)):
            raise QuantInputError(
                f"module {name!r} is the same object as {seen[id(m)]!r}; a shared layer cannot be reordered safely"
            )
        seen.setdefault(id(m), name)


def _trace_shapes(
    model: nn.Module, leaves: list[tuple[str, nn.Module]], calib_x: torch.Tensor
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``{leaf name: (input shape, output shape)}`` of each leaf's first call on ``calib_x[:2]``.

    The walk needs them to tell where a Flatten expands channels and whether a Linear consumes channels."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = []
    for name, m in leaves:

        def hook(mod: nn.Module, inp: tuple[object, ...], out: object, name: str = name) -> None:
            if name not in shapes and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
                shapes[name] = (tuple(inp[0].shape), tuple(out.shape))

        hooks.append(m.register_forward_hook(hook))
    try:
        _run(model, _example(calib_x)[:2])
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _consumed_features(name: str, inner: nn.Module, in_shape: tuple[int, ...], expand: int) -> int:
    """The input features weighted layer ``inner`` (named ``name``) reads from the open producer.

    A Linear must see a flattened ``[N, F]`` tensor and a convolution the producer's channels themselves, else
    the producer's channel axis is not the consumer's input axis and permuting it would change the function."""
    if isinstance(inner, nn.Linear):
        if len(in_shape) != 2:
            raise QuantInputError(
                f"layer {name!r}: Linear applied to a {len(in_shape)}-D tensor does not "
                f"consume channels; add a Flatten before it"
            )
        return inner.in_features
    if expand != 1:
        raise QuantInputError(f"layer {name!r}: convolution after a Flatten cannot be reordered")
    return inner.in_channels


@dataclass
class _LinkWalk:
    """The state of :func:`plan_links`' walk over the leaves, one :meth:`visit` per leaf in order.

    ``prod`` is the open producer (the last weighted layer, ``None`` before the first one or after a Linear over
    a sequence axis), ``channels`` its output channels, ``bns`` / ``expand`` what lies between it and the next
    weighted layer, ``barrier`` the first module in between not known to act channel-wise (reported only if a
    consumer follows); ``links`` the links found so far."""

    links: list[Link] = field(default_factory=list)
    prod: tuple[str, nn.Module] | None = None
    channels: int = 0
    expand: int = 1
    barrier: str | None = None
    bns: list[tuple[str, nn.Module, int]] = field(default_factory=list)

    def visit(self, name: str, m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        """Account for leaf ``m`` (named ``name``, traced with these shapes): a weighted layer or one in between."""
        inner = _inner(m)
        if isinstance(inner, _WEIGHTED):
            self._weighted(name, m, inner, in_shape, out_shape)
        elif self.prod is not None:
            self._between(name, m, in_shape)

    def _weighted(
        self, name: str, m: nn.Module, inner: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> None:
        """Close the open producer's link at weighted layer ``m`` (if any) and open ``m`` as the next producer."""
        if getattr(inner, "groups", 1) != 1:
            raise QuantInputError(
                f"layer {name!r}: grouped convolution (groups={inner.groups}) cannot be reordered safely"
            )
        if self.prod is not None:
            self.links.append(self._link_to(self.prod, name, m, inner, in_shape))
        if isinstance(inner, nn.Linear) and len(out_shape) != 2:
            self.prod = None  # a Linear over a sequence axis: its features are not dim 1, do not permute
            self.barrier = None
            return
        self.prod, self.bns, self.expand, self.barrier = (name, m), [], 1, None
        self.channels = int(inner.weight.shape[0])

    def _link_to(
        self, prod: tuple[str, nn.Module], name: str, m: nn.Module, inner: nn.Module, in_shape: tuple[int, ...]
    ) -> Link:
        """The link from the open producer ``prod`` to consumer ``m``; refuses a barrier between them or a
        feature-count mismatch (either would make the permutation change the network's function)."""
        if self.barrier is not None:
            raise QuantInputError(
                f"cannot reorder {prod[0]!r} -> {name!r}: {self.barrier} between them is not known to act channel-wise"
            )
        need = _consumed_features(name, inner, in_shape, self.expand)
        if need != self.channels * self.expand:
            raise QuantInputError(
                f"layer {name!r} expects {need} inputs but {prod[0]!r} provides "
                f"{self.channels} channels x {self.expand}"
            )
        return Link(prod[0], prod[1], name, m, self.channels, list(self.bns), self.expand)

    def _between(self, name: str, m: nn.Module, in_shape: tuple[int, ...]) -> None:
        """Account for a non-weighted leaf after the open producer: a BatchNorm to permute along, a Flatten that
        expands channels into features, a channel-wise module to pass, or else a barrier."""
        if isinstance(m, _BN):
            if m.num_features != self.channels * self.expand:
                raise QuantInputError(
                    f"BatchNorm {name!r} has {m.num_features} features, expected {self.channels * self.expand}"
                )
            self.bns.append((name, m, self.expand))
        elif isinstance(m, nn.Flatten):
            self._flatten(name, m, in_shape)
        elif isinstance(m, _ELEMENTWISE) or (isinstance(m, _POOL) and self.expand == 1):
            return
        else:
            self.barrier = self.barrier or f"{name!r} ({type(m).__name__})"

    def _flatten(self, name: str, m: nn.Flatten, in_shape: tuple[int, ...]) -> None:
        """A Flatten of all non-batch dims turns each channel into ``prod(spatial)`` consecutive features; any other
        Flatten of a >2-D tensor mixes the channel axis with others and is a barrier."""
        if len(in_shape) > 2:
            end = m.end_dim if m.end_dim >= 0 else len(in_shape) + m.end_dim
            if m.start_dim != 1 or end != len(in_shape) - 1:
                self.barrier = self.barrier or f"{name!r} (Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}))"
            else:
                self.expand *= int(np.prod(in_shape[2:]))


def _bn_factor(bn: nn.Module) -> np.ndarray:
    if bn.running_var is None:
        return np.ones(bn.num_features)
    f = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        f = f * bn.weight.detach().double()
    return f.cpu().numpy()


def channel_stats(
    model: nn.Module, calib_x: torch.Tensor, stat: str = "weight", links: list[Link] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel ``([min, max] features [C, 2], range key [C])`` of every link's producer.

    ``stat="weight"``: the producer's output rows scaled by the BatchNorms that follow it (the effective,
    BN-folded weight), key ``max |w|``; ``stat="activation"``: the producer's output after those BatchNorms on
    ``calib_x``, key ``max - min``."""
    if stat not in STATS:
        raise QuantInputError(f"unknown reorder statistic {stat!r} (allowed: {', '.join(STATS)})")
    links = plan_links(model, calib_x) if links is None else links
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if stat == "weight":
        for link in links:
            w = _inner(link.producer_module).weight.detach().double().reshape(link.channels, -1).cpu().numpy()
            for bn in link.channel_bns:
                w = w * _bn_factor(bn)[:, None]
            lo, hi = w.min(axis=1), w.max(axis=1)
            out[link.producer] = (np.stack([lo, hi], axis=1), np.maximum(np.abs(lo), np.abs(hi)))
        return out
    mins: dict[str, torch.Tensor] = {}
    maxs: dict[str, torch.Tensor] = {}
    hooks = []
    for link in links:
        tap = link.channel_bns[-1] if link.channel_bns else link.producer_module

        def hook(mod, inp, y, key=link.producer):
            y = y.detach().double().transpose(0, 1).reshape(y.shape[1], -1)
            lo, hi = y.min(dim=1).values, y.max(dim=1).values
            mins[key] = lo if key not in mins else torch.minimum(mins[key], lo)
            maxs[key] = hi if key not in maxs else torch.maximum(maxs[key], hi)

        hooks.append(tap.register_forward_hook(hook))
    try:
        _run(model, _example(calib_x))
    finally:
        for h in hooks:
            h.remove()
    for link in links:
        lo, hi = mins[link.producer].numpy(), maxs[link.producer].numpy()
        out[link.producer] = (np.stack([lo, hi], axis=1), hi - lo)
    return out


def choose_permutation(
    features: np.ndarray, key: np.ndarray, n_groups: int, method: str, random_state: int = 0
) -> np.ndarray:
    """A channel order from per-channel ``features[C, 2]`` ([min, max]) and a range ``key[C]``."""
    if method not in METHODS:
        raise QuantInputError(f"unknown reorder method {method!r} (allowed: {', '.join(METHODS)})")
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise QuantInputError(f"n_groups must be a positive integer, got {n_groups!r}")
    features, key = np.asarray(features, dtype=np.float64), np.asarray(key, dtype=np.float64)
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(key))):
        raise QuantInputError("channel statistics hold non-finite values (NaN or inf); refusing to reorder")
    by_key = np.argsort(key, kind="stable")
    k = min(int(n_groups), len(np.unique(features, axis=0)))
    if method == "sort" or k <= 1:
        return by_key.astype(np.int64)
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, random_state=random_state, n_init=10).fit(features).labels_
    cluster_key = np.array([key[labels == c].mean() for c in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(cluster_key, kind="stable")] = np.arange(k)
    return np.lexsort((np.arange(len(key)), key, rank[labels])).astype(np.int64)


def _check_perm(perm: np.ndarray, n: int, name: str) -> np.ndarray:
    p = np.asarray(perm)
    if p.shape != (n,) or not np.issubdtype(p.dtype, np.integer) or not np.array_equal(np.sort(p), np.arange(n)):
        raise QuantInputError(f"permutation for {name!r} must be a permutation of 0..{n - 1}")
    return p.astype(np.int64)


def _take(t: torch.Tensor | None, idx: np.ndarray, dim: int) -> None:
    if t is not None:
        t.data = torch.index_select(t.data, dim, torch.as_tensor(idx, dtype=torch.long)).contiguous()


def _apply(link: Link, perm: np.ndarray) -> None:
    prod, cons = link.producer_module, link.consumer_module
    for m in (prod, cons):
        if isinstance(m, QuantLayer):
            m.clear_weight_quant()  # codes refer to the old channel order
    if isinstance(prod, QuantLayer):  # overall order w.r.t. the original model: compose with any earlier reorder
        old = getattr(prod, "out_perm", None)
        prod.out_perm = perm.copy() if old is None else np.asarray(old, dtype=np.int64)[perm]
    p = _inner(prod)
    _take(p.weight, perm, 0)
    _take(p.bias, perm, 0)
    for _, bn, e in link.bns:
        idx = perm if e == 1 else (perm[:, None] * e + np.arange(e)).ravel()
        for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias):
            _take(t, idx, 0)
    idx = perm if link.expand == 1 else (perm[:, None] * link.expand + np.arange(link.expand)).ravel()
    _take(_inner(cons).weight, idx, 1)


def permute_channels(model: nn.Module, perms: Mapping[str, np.ndarray], calib_x: torch.Tensor) -> nn.Module:
    """Apply explicit output-channel permutations ``{producer name: perm}`` (in place); returns the model."""
    links = {link.producer: link for link in plan_links(model, calib_x)}
    unknown = sorted(set(perms) - set(links))
    if unknown:
        raise QuantInputError(
            f"cannot permute the outputs of {unknown[0]!r}: it is not followed by a weighted "
            f"layer in the chain (permutable: {', '.join(links) or 'none'})"
        )
    for name, perm in perms.items():
        _apply(links[name], _check_perm(perm, links[name].channels, name))
    return model


def reorder_model(
    model: nn.Module,
    calib_x: torch.Tensor,
    n_groups: int | Mapping[str, int],
    method: str = "kmeans",
    *,
    stat: str = "weight",
    random_state: int = 0,
) -> tuple[nn.Module, dict[str, np.ndarray]]:
    """Reorder every permutable layer's output channels (in place) so that similar ranges are adjacent.

    ``n_groups`` (an int or ``{layer name: int}``) is the number of row groups ``n_V`` the layer will be
    quantized with (the k-means cluster count).  Returns ``(model, {producer name: perm})``."""
    if method not in METHODS:
        raise QuantInputError(f"unknown reorder method {method!r} (allowed: {', '.join(METHODS)})")
    links = plan_links(model, calib_x)
    stats = channel_stats(model, calib_x, stat, links)
    perms: dict[str, np.ndarray] = {}
    for link in links:
        if isinstance(n_groups, Mapping):
            if link.producer not in n_groups:
                raise QuantInputError(f"n_groups has no entry for layer {link.producer!r}")
            g = n_groups[link.producer]
        else:
            g = n_groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
            raise QuantInputError(f"n_groups for layer {link.producer!r} must be a positive integer, got {g!r}")
        features, key = stats[link.producer]
        perm = choose_permutation(features, key, min(int(g), link.channels), method, random_state)
        _apply(link, perm)
        perms[link.producer] = perm
    return model, perms
