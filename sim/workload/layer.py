"""Layer and workload descriptions, lowered to the GEMM view the array executes.

A layer is one of:

* ``conv``   -- dense 2-D convolution (1-D convs use ``in_h = k_h = 1``);
* ``dwconv`` -- grouped/depthwise convolution, executed as ``groups`` independent GEMMs;
* ``gemm``   -- activations [M, K] times a weight matrix [K, N] (Linear, FC);
* ``matmul`` -- activations times activations (attention scores, attention x V): both
  operands are dynamic, so the second operand is stored at activation width and the layer
  holds no weights.

GEMM view per group: ``M`` output rows (batch x output pixels), ``K`` reduction length,
``N`` output columns; ``groups`` copies run back to back.

``in_blocks`` (n_H of PTQ-SL's n_V x n_H block scales, default 1) splits each group's input channels into
that many contiguous, near-equal blocks (numpy's array_split rule, as ``quant.quantizer.block_bounds``):
each block's partial sums are rescaled separately, so the array runs one reduction per block
(``docs/sim.md``, "Input blocks").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

import pandas as pd

from lowbit_core.errors import InputError

__all__ = ["Layer", "Workload", "KINDS", "LayerKind", "conv", "gemm", "matmul", "MAX_DIM", "MAX_LAYER_MACS"]

#: The kinds of layer (``Layer.kind``), as the Literal the YAML workload schema checks ``kind`` against.
LayerKind = Literal["conv", "dwconv", "gemm", "matmul"]
KINDS: tuple[str, ...] = get_args(LayerKind)
#: Largest value of any size field of a layer (sides, channels, taps, stride, groups, batch, padding, blocks).
MAX_DIM = 2**24
#: Largest MACs of one layer, and largest input pixels x weights (what a weight-stationary pass that
#: re-streams the input can read).  With the chip bounds of :mod:`sim.config` (array sides <= 4096,
#: DRAM bandwidth >= 0.01 bits per cycle) every int64 count of :mod:`sim.engine` stays below 2^63.
MAX_LAYER_MACS = 2**48
_SIZE_FIELDS = (
    "in_h",
    "in_w",
    "in_c",
    "out_c",
    "k_h",
    "k_w",
    "stride",
    "groups",
    "out_h",
    "out_w",
    "batch",
    "pad",
    "in_blocks",
)


@dataclass(frozen=True)
class Layer:
    """One layer. Sizes are element counts; ``out_h/out_w`` are stored, not re-derived,
    so imported workloads (e.g. SCALE-Sim's no-padding convention) keep their exact shape."""

    name: str
    kind: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    k_h: int = 1
    k_w: int = 1
    stride: int = 1
    groups: int = 1
    out_h: int = 1
    out_w: int = 1
    batch: int = 1
    pad: int = 0
    in_blocks: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"layer {self.name!r}: unknown kind {self.kind!r} (allowed: {', '.join(KINDS)})")
        for fname in _SIZE_FIELDS:
            value = getattr(self, fname)
            lowest = 0 if fname == "pad" else 1
            if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= MAX_DIM:
                raise InputError(
                    f"layer {self.name!r}: {fname} must be an integer in {lowest}..{MAX_DIM}, got {value!r}"
                )
        if self.in_c % self.groups or self.out_c % self.groups:
            raise InputError(
                f"layer {self.name!r}: groups={self.groups} must divide in_c={self.in_c} and out_c={self.out_c}"
            )
        if self.kind == "conv" and self.groups != 1:
            raise InputError(f"layer {self.name!r}: a grouped conv must have kind 'dwconv', not 'conv'")
        if self.in_blocks > self.in_c // self.groups:
            raise InputError(
                f"layer {self.name!r}: in_blocks={self.in_blocks} exceeds the "
                f"{self.in_c // self.groups} input channels per group"
            )
        pixels = self.batch * self.in_h * self.in_w
        if self.macs > MAX_LAYER_MACS:
            raise InputError(
                f"layer {self.name!r} is too large: {self.macs:.4g} MACs exceed the limit of 2^48 "
                f"({MAX_LAYER_MACS:.4g}) per layer"
            )
        if pixels * self.weight_elems > MAX_LAYER_MACS:
            raise InputError(
                f"layer {self.name!r} is too large: input pixels x weights = {pixels} x "
                f"{self.weight_elems} = {pixels * self.weight_elems:.4g} exceeds the limit of 2^48 "
                f"({MAX_LAYER_MACS:.4g}) per layer"
            )

    # GEMM view --------------------------------------------------------------------------
    @property
    def M(self) -> int:
        """Output rows per group: batch x output pixels (tokens for gemm/matmul)."""
        return self.batch * self.out_h * self.out_w

    @property
    def K(self) -> int:
        """Reduction length per group."""
        return self.k_h * self.k_w * (self.in_c // self.groups)

    @property
    def window(self) -> int:
        """Reduction elements per input channel: k_h*k_w for convs, 1 for gemm/matmul."""
        return self.k_h * self.k_w if self.kind in ("conv", "dwconv") else 1

    @property
    def block_k(self) -> tuple[int, ...]:
        """Reduction length of each input block (per group), in order: channel-aligned, the first
        ``in_c/groups mod in_blocks`` blocks one channel longer (``quant.quantizer.block_bounds``)."""
        base, extra = divmod(self.in_c // self.groups, self.in_blocks)
        return tuple((base + (h < extra)) * self.window for h in range(self.in_blocks))

    @property
    def N(self) -> int:
        """Output columns (filters) per group."""
        return self.out_c // self.groups

    @property
    def macs(self) -> int:
        return self.groups * self.M * self.K * self.N

    @property
    def ifmap_elems(self) -> int:
        """Unique input activations (no padding stored)."""
        return self.batch * self.in_h * self.in_w * self.in_c

    @property
    def ifmap_used_elems(self) -> int:
        """Unique input activations touched by at least one window (per all groups).

        Differs from :attr:`ifmap_elems` when stride > kernel (skipped pixels) or when windows
        run past the input (SCALE-Sim's ceil rule); padding is never stored.
        """
        return (
            self.batch
            * _span(self.in_h, self.k_h, self.stride, self.pad, self.out_h)
            * _span(self.in_w, self.k_w, self.stride, self.pad, self.out_w)
            * self.in_c
        )

    @property
    def weight_elems(self) -> int:
        """Elements of the second operand (weights, or the second activation for matmul)."""
        return self.groups * self.K * self.N

    @property
    def ofmap_elems(self) -> int:
        return self.groups * self.M * self.N

    @property
    def has_weights(self) -> bool:
        return self.kind != "matmul"


def _span(size: int, k: int, stride: int, pad: int, out: int) -> int:
    """Input positions along one axis covered by ``out`` windows of width ``k`` (padding excluded)."""
    if k >= stride:
        lo, hi = -pad, (out - 1) * stride - pad + k
        return max(0, min(size, hi) - max(0, lo))
    # Disjoint windows (k < stride): those in [first, last] lie inside the input; at most one window crosses
    # each edge of the input; every other window lies wholly in the padding.
    first = max(0, -(-pad // stride))
    last = min(out - 1, (size - k + pad) // stride)
    inside = k * max(0, last - first + 1)
    edges = {o for o in (first - 1, last + 1) if 0 <= o < out and not first <= o <= last}
    return inside + sum(max(0, min(size, o * stride - pad + k) - max(0, o * stride - pad)) for o in edges)


def conv(
    name: str,
    in_hw: int | tuple[int, int],
    in_c: int,
    out_c: int,
    k: int | tuple[int, int],
    stride: int = 1,
    pad: int | tuple[int, int] = 0,
    groups: int = 1,
    batch: int = 1,
    in_blocks: int = 1,
) -> Layer:
    """A conv with PyTorch's output size rule, floor((H + 2p - k) / s) + 1."""
    ih, iw = (in_hw, in_hw) if isinstance(in_hw, int) else in_hw
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    oh = (ih + 2 * ph - kh) // stride + 1
    ow = (iw + 2 * pw - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise InputError(f"layer {name!r}: kernel {kh}x{kw} larger than padded input {ih}x{iw}")
    if ph != pw:
        raise InputError(f"layer {name!r}: asymmetric padding {ph}x{pw} is not supported")
    return Layer(
        name,
        "dwconv" if groups > 1 else "conv",
        ih,
        iw,
        in_c,
        out_c,
        kh,
        kw,
        stride,
        groups,
        oh,
        ow,
        batch,
        ph,
        in_blocks,
    )


def gemm(name: str, tokens: int, in_features: int, out_features: int, batch: int = 1, in_blocks: int = 1) -> Layer:
    """A Linear layer applied to ``tokens`` rows: [tokens, in] x [in, out]."""
    return Layer(
        name, "gemm", 1, tokens, in_features, out_features, out_h=1, out_w=tokens, batch=batch, in_blocks=in_blocks
    )


def matmul(name: str, rows: int, inner: int, cols: int, heads: int = 1, batch: int = 1) -> Layer:
    """Activation x activation product per head: [rows, inner] x [inner, cols]."""
    return Layer(name, "matmul", 1, rows, inner * heads, cols * heads, groups=heads, out_h=1, out_w=rows, batch=batch)


@dataclass(frozen=True)
class Workload:
    """A named sequence of layers in execution order.

    ``consumers`` (optional) gives, per layer, the index of the layer that reads its output (the first one in
    execution order when several do; -1 for none): the dataflow of a traced graph, where the next layer in
    execution order need not be the reader (a ResNet's downsample branch, a block's output). None means unknown
    (readers assume the next layer)."""

    name: str
    layers: tuple[Layer, ...] = field(default_factory=tuple)
    consumers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise InputError(f"workload {self.name!r} has no layers")
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise InputError(f"workload {self.name!r}: duplicate layer name {layer.name!r}")
            seen.add(layer.name)
        if self.consumers is not None:
            n = len(self.layers)
            if len(self.consumers) != n or any(
                isinstance(c, bool) or not isinstance(c, int) or not (c == -1 or i < c < n)
                for i, c in enumerate(self.consumers)
            ):
                raise InputError(
                    f"workload {self.name!r}: consumers must give, per layer, -1 or the index of a "
                    f"later layer, got {self.consumers!r}"
                )

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def with_in_blocks(self, n_h: int) -> Workload:
        """The same workload deployed with PTQ-SL input blocks: every weighted layer gets
        ``in_blocks = min(n_h, input channels per group)`` (PTQ-SL's own clamp); matmul layers keep 1."""
        if isinstance(n_h, bool) or not isinstance(n_h, int) or n_h < 1:
            raise InputError(f"in_blocks must be a positive integer, got {n_h!r}")
        return Workload(
            self.name,
            tuple(
                dataclasses.replace(layer, in_blocks=min(n_h, layer.in_c // layer.groups))
                if layer.has_weights
                else layer
                for layer in self.layers
            ),
            self.consumers,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per layer with the shape fields and the GEMM view."""
        rows = []
        for i, l in enumerate(self.layers):
            rows.append(
                {
                    "layer": i,
                    "name": l.name,
                    "kind": l.kind,
                    "batch": l.batch,
                    "in_h": l.in_h,
                    "in_w": l.in_w,
                    "in_c": l.in_c,
                    "out_c": l.out_c,
                    "k_h": l.k_h,
                    "k_w": l.k_w,
                    "stride": l.stride,
                    "groups": l.groups,
                    "out_h": l.out_h,
                    "out_w": l.out_w,
                    "in_blocks": l.in_blocks,
                    "M": l.M,
                    "K": l.K,
                    "N": l.N,
                    "macs": l.macs,
                }
            )
        return pd.DataFrame(rows)
