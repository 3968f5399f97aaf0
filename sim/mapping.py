"""The per-layer mapping space: loop orders and stream-tile sizes, and the buffer policy they imply.

Every dataflow runs a layer as a nest of three fold loops over one systolic fold (docs/sim.md, "Mapping"):

* ``c`` -- column folds: the dimension held by the array's columns (N for ws/os, M for is);
* ``r`` -- reduction folds: row folds of the reduction, block by block (ws/is); the input blocks for os,
  whose reduction stays inside the PEs;
* ``s`` -- stream tiles: the streamed dimension cut into tiles (M in whole output rows for ws, N for is);
  for os, the row folds over M (R output pixels each).

A mapping is a loop order (outer to inner) and a stream-tile size.  The operands have fixed roles:
the *stationary-like* operand is indexed by ``c`` and ``r`` (filters for ws/os, the ifmap for is), the
*streamed* one by ``s`` and ``r`` (the ifmap for ws/os, filters for is), the outputs by ``s`` and ``c``.
A buffer keeps the part of an operand touched by the innermost loops that fits half its SRAM (the other
half fills, double buffering); the loops outside that level re-read it (:func:`operand_level`).
SCALE-Sim's fixed schedule is the candidate (``c``, ``r``, ``s``) with one stream tile (os: (``c``,
``s``, ``r``)); ``mapping: scalesim`` evaluates only that one.

This module holds the candidate set and the policy; :mod:`sim.engine` evaluates every candidate in
closed form and :mod:`sim.reference` replays any one of them fold by fold.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "LOOPS",
    "ORDERS",
    "N_TILE_CHOICES",
    "OBJECTIVES",
    "MAPPING_MODES",
    "Mapping",
    "SCALESIM_ORDER",
    "candidates",
    "gemm_order_name",
    "GEMM_ORDER_NAMES",
    "tile_length",
    "tile_halvings",
    "ceil_log2",
    "axis_halvings",
    "MAX_AXIS_HALVINGS",
    "row_tiles",
    "RowTiles",
    "operand_level",
]

LOOPS = ("c", "r", "s")
#: The six loop orders, outer to inner; index 0 is SCALE-Sim's ws/is order.
ORDERS: tuple[tuple[str, str, str], ...] = tuple((a, b, c) for a, b, c in itertools.permutations(LOOPS))
#: Stream-tile choices per layer: choice ``t`` halves the streamed extent ``tile_halvings(...)[t]`` times (ws:
#: output rows first, then output columns), from untiled down to tiles of one element.
N_TILE_CHOICES = 12
OBJECTIVES = ("latency", "energy", "edp")
MAPPING_MODES = ("search", "scalesim")
#: SCALE-Sim's order per dataflow code (ws 0, os 1, is 2): ws/is (c, r, s); os (c, s, r).
SCALESIM_ORDER = {0: ORDERS.index(("c", "r", "s")), 1: ORDERS.index(("c", "s", "r")), 2: ORDERS.index(("c", "r", "s"))}
#: GEMM dimension of each loop, per dataflow code.
_DIMS = {0: {"c": "N", "r": "K", "s": "M"}, 1: {"c": "N", "r": "K", "s": "M"}, 2: {"c": "M", "r": "K", "s": "N"}}
GEMM_ORDER_NAMES: tuple[str, ...] = tuple("".join(p) for p in itertools.permutations("MNK"))


@dataclass(frozen=True)
class Mapping:
    """One candidate: ``order`` indexes :data:`ORDERS`; ``tile`` is the stream-tile choice (0 = untiled)."""

    order: int
    tile: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.order < len(ORDERS) or not 0 <= self.tile < N_TILE_CHOICES:
            raise ValueError(f"no such mapping: order {self.order}, tile {self.tile}")


def candidates(dataflow: int) -> list[Mapping]:
    """The search space of one dataflow.  os keeps the reduction (its blocks) innermost and has no stream
    tiles (its ``s`` loop is the row folds); ws and is take every order with every tile choice."""
    if dataflow == 1:
        return [Mapping(o) for o, order in enumerate(ORDERS) if order[2] == "r"]
    return [Mapping(o, t) for o in range(len(ORDERS)) for t in range(N_TILE_CHOICES)]


def gemm_order_name(dataflow: int, order: int) -> str:
    """The loop order written in GEMM dimensions, outer to inner (SCALE-Sim's ws order is ``NKM``)."""
    return "".join(_DIMS[dataflow][loop] for loop in ORDERS[order])


def tile_halvings(most: int) -> list[int]:
    """The halvings of the :data:`N_TILE_CHOICES` tile choices when ``most`` halvings reach tiles of one
    element: every count 0..most when they fit (the last repeated), else counts spread evenly over 0..most."""
    if most < N_TILE_CHOICES:
        return [min(t, most) for t in range(N_TILE_CHOICES)]
    return [round(t * most / (N_TILE_CHOICES - 1)) for t in range(N_TILE_CHOICES)]


def ceil_log2(n: int) -> int:
    """Halvings that take ``n`` down to 1 (ceil(log2(n)), 0 for n <= 1)."""
    return int(n - 1).bit_length() if n > 1 else 0


#: Stream tiles are cut at most this many times along one axis (at most 4096 tiles per axis): down to single
#: elements on every real layer, and a bounded enumeration on the largest layers the bounds allow.
MAX_AXIS_HALVINGS = 12


def axis_halvings(n: int) -> int:
    """Halvings of one axis of ``n`` outputs that the tile choices reach: down to 1, or to n / 4096."""
    return min(ceil_log2(n), MAX_AXIS_HALVINGS)


def tile_length(extent: int, tile: int) -> int:
    """Stream-tile length of choice ``tile`` over ``extent`` units."""
    return -(-extent // (1 << tile))


@dataclass(frozen=True)
class RowTiles:
    """A layer's ws stream tiles: blocks of ``h`` output rows x ``wt`` output columns, per tile choice.

    Output rows are batch x out_h for convs (M rows of width 1 for gemm/matmul).  Choice ``t`` halves
    ``tile_halvings(...)[t]`` times, the rows first (down to one row), then the columns.  Every array has
    length :data:`N_TILE_CHOICES`: ``h``/``n_h``/``h_last`` rows per full tile, row tiles, rows of the last;
    ``wt``/``n_w``/``w_last`` the same for columns; ``rows_sum``/``rows_max`` input rows touched summed over
    the row tiles (a halo shared by two tiles counts twice) / by the largest; ``cols_sum``/``cols_max``
    likewise for columns.  A tile's ifmap footprint per input channel is its input rows x input columns, which
    factorizes."""

    rows: int
    width: int
    h: np.ndarray
    n_h: np.ndarray
    h_last: np.ndarray
    wt: np.ndarray
    n_w: np.ndarray
    w_last: np.ndarray
    rows_sum: np.ndarray
    rows_max: np.ndarray
    cols_sum: np.ndarray
    cols_max: np.ndarray

    @property
    def plane_elems(self) -> int:
        """One input channel's touched elements (the untiled footprint)."""
        return int(self.rows_sum[0] * self.cols_sum[0])


def _clip(x: np.ndarray, hi: int) -> np.ndarray:
    return np.minimum(hi, np.maximum(0, x))


def _union(y0: np.ndarray, y1: np.ndarray, size: int, k: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Input positions along one axis touched by windows ``y0 .. y1`` (inclusive) of one image: window ``y``
    covers ``[y*stride - pad, y*stride - pad + k)`` clipped to ``[0, size)`` (padding is never stored)."""
    if stride <= k:  # consecutive windows overlap or touch: the union is one interval
        return np.maximum(0, _clip(y1 * stride - pad + k, size) - _clip(y0 * stride - pad, size))
    # disjoint windows: rows a..b lie inside the input (k each); at most one window crosses each edge
    a, b = -(-pad // stride), (size - k + pad) // stride

    def length(y: int) -> int:
        return max(0, min(size, y * stride - pad + k) - max(0, y * stride - pad))

    edges = sorted({y for y in (a - 1, b + 1) if 0 <= y < out and not a <= y <= b})

    def prefix(n: np.ndarray) -> np.ndarray:  # sum of the lengths of windows 0 .. n-1
        full = k * np.maximum(0, np.minimum(n, b + 1) - a) if a <= b else np.zeros_like(n)
        return full + sum(length(e) * (n > e) for e in edges)

    return prefix(y1 + 1) - prefix(y0)


def _split_all(
    n: int, halvings: list[int], touched: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, ...]:
    """Cut ``n`` outputs into tiles of ceil(n / 2**k) for each ``k`` of ``halvings`` (all in one vectorized
    pass): per choice the tile size, the number of tiles, the last tile's size, the input positions summed
    over the tiles and the largest tile's; ``touched(first, last)`` counts a tile's input positions."""
    sizes = np.array([tile_length(n, k) for k in halvings], dtype=np.int64)
    counts = -(-n // sizes)
    owner = np.repeat(np.arange(len(sizes)), counts)
    first = (np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)) * sizes[owner]
    per_tile = touched(first, np.minimum(n, first + sizes[owner]) - 1)
    starts = np.cumsum(counts) - counts
    return (
        sizes,
        counts,
        n - (counts - 1) * sizes,
        np.add.reduceat(per_tile, starts),
        np.maximum.reduceat(per_tile, starts),
    )


@lru_cache(maxsize=4096)
def row_tiles(
    kind: str,
    batch: int,
    in_h: int,
    in_w: int,
    out_h: int,
    out_w: int,
    k_h: int,
    k_w: int,
    stride: int,
    pad_h: int,
    pad_w: int,
    M: int,
) -> RowTiles:
    """:class:`RowTiles` of one layer, in closed form (a tile's count costs O(1) whatever its size)."""
    if kind in ("conv", "dwconv"):
        rows, width = batch * out_h, out_w
        per_image = int(_union(np.zeros(1, np.int64), np.array([out_h - 1]), in_h, k_h, stride, pad_h, out_h)[0])

        def rows_touched(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:  # rows g of batch x out_h, inclusive
            b0, b1 = g0 // out_h, g1 // out_h
            y0, y1 = g0 % out_h, g1 % out_h
            same = _union(y0, y1, in_h, k_h, stride, pad_h, out_h)
            head = _union(y0, np.full_like(y0, out_h - 1), in_h, k_h, stride, pad_h, out_h)
            tail = _union(np.zeros_like(y1), y1, in_h, k_h, stride, pad_h, out_h)
            return np.where(b0 == b1, same, head + tail + np.maximum(0, b1 - b0 - 1) * per_image)

        def cols_touched(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
            return _union(x0, x1, in_w, k_w, stride, pad_w, out_w)
    else:  # gemm / matmul: every output row reads its own input row
        rows, width = M, 1

        def rows_touched(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
            return g1 - g0 + 1

        def cols_touched(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
            return x1 - x0 + 1

    halvings = tile_halvings(axis_halvings(rows) + axis_halvings(width))
    by_rows = [min(k, axis_halvings(rows)) for k in halvings]
    h, n_h, h_last, r_sum, r_max = _split_all(rows, by_rows, rows_touched)
    wt, n_w, w_last, c_sum, c_max = _split_all(width, [k - r for k, r in zip(halvings, by_rows)], cols_touched)
    fields = (h, n_h, h_last, wt, n_w, w_last, r_sum, r_max, c_sum, c_max)
    return RowTiles(rows, width, *(np.asarray(f, dtype=np.int64) for f in fields))


def operand_level(fits: list[bool]) -> int:
    """The buffer level an operand is kept at: the outermost level ``i`` (0 = the whole nest, 3 = one fold)
    whose footprint ``fits[i]`` half the SRAM; one fold's data always streams through (level 3)."""
    for i, ok in enumerate(fits[:3]):
        if ok:
            return i
    return 3
