"""How one GEMM ``Y[M, N] = A[M, K] @ B[K, N]`` maps onto an ``R x C`` array: its folds, their order and its
stream tiles (:class:`GemmPlan`, made by :func:`plan_gemm`).

With ``pack`` products per PE slot (:func:`rtl.kinds.pack_factor`):

- the reduction is cut into ``Kp = ceil(K / pack)`` PE slots;
- a fold is one (column fold ``c``, row fold ``r``, stream tile ``s``): ``NF = ceil(N / C)`` column folds,
  ``KF = ceil(Kp / R)`` row folds and ``M`` cut into tiles of ``tile_m`` rows; folds run in the mapping's loop order
  (sim's ws mapping, :mod:`sim.mapping`; SCALE-Sim's is ``NKM``: column folds outer, M inner).

The loop orders and the stream tiles are sim's mapper's own (:mod:`sim.mapping`, imported where used), so a mapping
read from a cost table (:func:`parse_mapping`) runs on the RTL exactly as sim costs it. Pure Python + numpy (no
cocotb import).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtl.kinds import PE_KINDS, beats_per_element, check_dataflow, check_preload, pack_factor, slot_bits

__all__ = [
    "GemmPlan",
    "parse_mapping",
    "order_index",
    "offered_tile_rows",
    "sim_mapping",
    "plan_gemm",
    "fold_sequence",
    "psum_rows_needed",
    "block_split",
]

#: sim.mapping's dataflow codes
_DATAFLOW_CODES = {"ws": 0, "os": 1, "is": 2}


def order_index(order: str | int, dataflow: str = "ws") -> int:
    """Index into :data:`sim.mapping.ORDERS` of a loop order given as its GEMM name (ws ``NKM``: N outer, M inner;
    sim's ``loop_order`` column) or as the index itself (0..5); os takes the two orders with the reduction
    innermost (``NMK``, ``MNK``), sim's os candidates."""
    from sim.mapping import candidates, gemm_order_name

    code = _DATAFLOW_CODES[check_dataflow(dataflow)]
    allowed = sorted({m.order for m in candidates(code)})
    names = {gemm_order_name(code, o): o for o in allowed}
    if isinstance(order, (int, np.integer)) and not isinstance(order, bool):
        if int(order) not in allowed:
            raise ValueError(
                f"loop order index must be one of {', '.join(map(str, allowed))} for {dataflow}, got {order}"
            )
        return int(order)
    if not isinstance(order, str) or order.upper() not in names:
        raise ValueError(
            f"loop order must be one of {', '.join(sorted(names))} for {dataflow} (outer to inner), got {order!r}"
        )
    return names[order.upper()]


def offered_tile_rows(M: int) -> list[int]:
    """The stream-tile lengths sim's mapper offers a GEMM of ``M`` rows (distinct, largest first)."""
    from sim.mapping import axis_halvings, tile_halvings, tile_length

    return sorted({tile_length(M, k) for k in tile_halvings(axis_halvings(M))}, reverse=True)


def parse_mapping(text: str, M: int, dataflow: str = "ws") -> tuple[int, int]:
    """``ORDER:TILE`` (e.g. ``NKM:16``, the cost table's ``loop_order`` and ``tile_m``; ``ORDER`` alone is
    untiled) as (order index, tile length); the tile must be one that sim's mapper offers for a stream of ``M``
    elements (pass N for is, whose stream is N: the cost table's ``tile_n``; os has no stream tiles: ``ORDER``
    alone)."""
    order_text, _, tile_text = str(text).partition(":")
    order = order_index(order_text.strip(), dataflow)
    if not tile_text.strip():
        return order, int(M)
    if dataflow == "os":
        raise ValueError(f"mapping {text!r}: an os mapping has no stream tile (give the loop order alone)")
    try:
        tile_m = int(tile_text)
    except ValueError:
        raise ValueError(f"mapping {text!r}: the tile must be an integer, got {tile_text!r}") from None
    sim_mapping(order, M, tile_m)  # refuses tiles sim does not offer
    return order, tile_m


def sim_mapping(order: int, M: int, tile_m: int) -> Any:
    """sim's :class:`sim.mapping.Mapping` of a GEMM run with loop order ``order`` and tiles of ``tile_m`` rows."""
    from sim.mapping import Mapping, axis_halvings, tile_halvings, tile_length

    for t, k in enumerate(tile_halvings(axis_halvings(M))):
        if tile_length(M, k) == tile_m:
            return Mapping(order_index(order), t)
    raise ValueError(
        f"tile {tile_m} is not a stream tile sim offers for a stream of {M} (offered: "
        f"{', '.join(str(x) for x in offered_tile_rows(M))})"
    )


@dataclass(frozen=True)
class GemmPlan:
    """How one GEMM maps onto the array (all counts are integers; cycles per fold in clock cycles)."""

    M: int
    K: int
    N: int
    rows: int
    cols: int
    pe_kind: str
    w_bits: int
    a_bits: int
    w_signed: bool
    a_signed: bool
    pack: int
    Kp: int  # reduction length in PE slots, ceil(K / pack)
    row_folds: int  # KF = ceil(Kp / rows)
    col_folds: int  # NF = ceil(N / cols)
    w_slot: int
    a_slot: int
    order: int = 0  # loop order, index into sim.mapping.ORDERS (0: SCALE-Sim's NKM)
    tile_m: int = 0  # grid rows per stream tile (the last may be shorter); 0 in a hand-built plan means all
    preload: str = "serial"  # weight-preload timing profile (the build's OVERLAP)
    tile_w: int = 1  # grid columns per stream tile
    grid_w: int = 1  # the M elements form a grid of M / grid_w rows x grid_w columns (a conv's output rows x out_w)
    dataflow: str = "ws"  # "os": the array's rows hold M (tiles of ``rows`` outputs), the reduction streams
    blocks: tuple[int, ...] = ()  # reduction elements per block (PTQ-SL's input blocks); () is one block of K

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """Reduction elements of each block (one block of K without blocks)."""
        return self.blocks or (self.K,)

    @property
    def n_blocks(self) -> int:
        return len(self.block_sizes)

    @property
    def block_slots(self) -> tuple[int, ...]:
        """PE slots of each block, ``ceil(K_b / pack)``: every block packs its own slots."""
        return tuple(-(-k // self.pack) for k in self.block_sizes)

    @property
    def block_row_folds(self) -> tuple[int, ...]:
        """Reduction folds of each block: ``ceil(Kp_b / rows)`` (os: one fold per block)."""
        if self.dataflow == "os":
            return (1,) * self.n_blocks
        return tuple(-(-kp // self.rows) for kp in self.block_slots)

    @property
    def block_last_folds(self) -> tuple[int, ...]:
        """The last reduction fold of each block (the ws top's ``cfg_block_last``)."""
        return tuple(int(x) - 1 for x in itertools.accumulate(self.block_row_folds))

    @property
    def grid_h(self) -> int:
        """Rows of the element grid (M for a GEMM)."""
        return self.M // self.grid_w

    @property
    def tile_rows(self) -> int:
        """Grid rows per full stream tile."""
        return self.tile_m or self.grid_h

    @property
    def tiles_h(self) -> int:
        return -(-self.grid_h // self.tile_rows)

    @property
    def tile_h_last(self) -> int:
        return self.grid_h - (self.tiles_h - 1) * self.tile_rows

    @property
    def tiles_w(self) -> int:
        return -(-self.grid_w // self.tile_w)

    @property
    def tile_w_last(self) -> int:
        return self.grid_w - (self.tiles_w - 1) * self.tile_w

    @property
    def tiles(self) -> int:
        """Stream tiles: tiles_h x tiles_w."""
        return self.tiles_h * self.tiles_w

    @property
    def tile_elements(self) -> int:
        """Elements of a full stream tile (sim's ``tile_m``)."""
        return self.tile_rows * self.tile_w

    def tile_members(self, s: int) -> np.ndarray:
        """The elements m of stream tile ``s`` (tile (s // tiles_w, s % tiles_w)), row-major within the tile."""
        i, j = divmod(s, self.tiles_w)
        rows = np.arange(i * self.tile_rows, min(self.grid_h, (i + 1) * self.tile_rows))
        cols = np.arange(j * self.tile_w, min(self.grid_w, (j + 1) * self.tile_w))
        return (rows[:, None] * self.grid_w + cols[None, :]).reshape(-1)

    @property
    def order_name(self) -> str:
        """The loop order in GEMM dimensions, outer to inner (``NKM`` is SCALE-Sim's ws order, ``NMK`` its os)."""
        from sim.mapping import gemm_order_name

        return gemm_order_name(_DATAFLOW_CODES[self.dataflow], self.order)

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds * self.tiles

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates, M*K*N."""
        return self.M * self.K * self.N

    @property
    def w_beats(self) -> int:
        """Beats on the weight stream: ``rows`` per fold (os: ``Kp_b`` per fold, ``Kp`` per output tile)."""
        if self.dataflow == "os":
            return self.col_folds * self.tiles * self.Kp
        return self.folds * self.rows

    @property
    def in_beats(self) -> int:
        """Beats on the activation stream: each row fold and column fold streams all ``M`` rows (os: ``Kp`` per
        fold, ``Kp`` per output tile)."""
        if self.dataflow == "os":
            return self.col_folds * self.tiles * self.Kp
        return self.row_folds * self.col_folds * self.M

    @property
    def out_beats(self) -> int:
        """Beats the GEMM top sends: ``M`` per column fold and block."""
        return self.col_folds * self.M * self.n_blocks

    @property
    def beats(self) -> int:
        """Stream steps per element (:func:`rtl.kinds.beats_per_element`)."""
        return beats_per_element(self.pe_kind, self.w_bits, self.a_bits)

    @property
    def busy_cycles_bound(self) -> int:
        """Array-busy cycles under serial preload (an upper bound for overlapped): per fold R load steps and
        ``tile * beats + R + C - 2`` stream steps."""
        if self.dataflow == "os":
            return self.col_folds * self.tiles * (self.Kp * self.beats + self.n_blocks * (self.rows + self.cols - 2))
        return self.folds * (2 * self.rows + self.cols - 2) + self.row_folds * self.col_folds * self.M * self.beats

    @property
    def cycle_limit(self) -> int:
        """A generous bench timeout in clock cycles: 50x (busy cycles + stream beats) + 1000, room for heavy
        random gaps and backpressure."""
        return 50 * (self.busy_cycles_bound + self.w_beats + self.in_beats + self.out_beats) + 1000


def plan_gemm(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    w_signed: bool = True,
    a_signed: bool = True,
    order: str | int | None = None,
    tile_m: int | None = None,
    preload: str = "serial",
    *,
    tile_w: int = 1,
    grid_w: int = 1,
    dataflow: str = "ws",
    blocks: Sequence[int] | None = None,
) -> GemmPlan:
    """Validate the sizes and return the fold plan of ``[M, K] x [K, N]`` on a ``rows x cols`` array, run in loop
    order ``order`` with stream tiles of ``tile_m`` rows (default: untiled) and the ``preload`` profile.

    A convolution's M elements form a grid (``grid_w`` = its output width; rows are images x output rows) and its
    tiles are ``tile_m`` grid rows x ``tile_w`` grid columns, as sim's (``sim.mapping.RowTiles``). ``order``
    defaults to SCALE-Sim's. On an output-stationary array (``dataflow="os"``) the stream loop is the row folds of
    M, ``rows`` outputs each: there are no other tiles, and the reduction loop holds one fold per block.
    ``blocks`` splits K into consecutive reduction blocks (their element counts, summing to K): each block packs
    its own slots and starts its own folds, and the top sends each block's sums (sim's ``in_blocks``)."""
    check_dataflow(dataflow, pe_kind if pe_kind in PE_KINDS else None)
    if dataflow == "is":
        raise ValueError("plan an is GEMM as the ws GEMM of its transpose (rtl.gemm.gemm_job does)")
    if dataflow == "os":
        if tile_m is not None or tile_w != 1 or grid_w != 1:
            raise ValueError("an os mapping has no stream tiles (its stream loop is the row folds of M)")
        order = 1 if order is None else order
    order = 0 if order is None else order
    for name, v in (("M", M), ("K", K), ("N", N), ("rows", rows), ("cols", cols), ("grid_w", grid_w)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if M % grid_w:
        raise ValueError(f"M = {M} is not a whole number of grid rows of {grid_w}")
    grid_h = int(M) // int(grid_w)
    tile = grid_h if tile_m is None else tile_m
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool) or not 1 <= tile <= grid_h:
        raise ValueError(f"tile_m must be an integer in 1..{grid_h}, got {tile_m!r}")
    if not isinstance(tile_w, (int, np.integer)) or isinstance(tile_w, bool) or not 1 <= tile_w <= grid_w:
        raise ValueError(f"tile_w must be an integer in 1..{grid_w}, got {tile_w!r}")
    check_preload(preload)
    sizes = (int(K),) if blocks is None else tuple(int(b) for b in blocks)
    if (
        any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in (blocks or ()))
        or sum(sizes) != K
    ):
        raise ValueError(f"blocks must be positive integers summing to K = {K}, got {blocks!r}")
    pack = pack_factor(pe_kind, w_bits, a_bits)
    slots = [-(-k // pack) for k in sizes]
    w_slot, a_slot = slot_bits(pe_kind, w_bits, a_bits)
    if dataflow == "os":  # one fold per block (the block's reduction streams); tiles of R rows of M
        row_folds, tile = len(sizes), min(int(rows), grid_h)
    else:
        row_folds = sum(-(-kp // int(rows)) for kp in slots)
    return GemmPlan(
        int(M),
        int(K),
        int(N),
        int(rows),
        int(cols),
        pe_kind,
        int(w_bits),
        int(a_bits),
        bool(w_signed),
        bool(a_signed),
        pack,
        sum(slots),
        row_folds,
        -(-int(N) // int(cols)),
        w_slot,
        a_slot,
        order_index(order, dataflow),
        int(tile),
        preload,
        int(tile_w),
        int(grid_w),
        dataflow,
        sizes if len(sizes) > 1 else (),
    )


def fold_sequence(plan: GemmPlan) -> Iterator[tuple[int, int, int]]:
    """(column fold, row fold, stream tile) of every fold, in execution order (the plan's loop order)."""
    from sim.mapping import ORDERS

    loops = ORDERS[plan.order]
    extent = {"c": plan.col_folds, "r": plan.row_folds, "s": plan.tiles}
    for idx in itertools.product(*(range(extent[x]) for x in loops)):
        at = dict(zip(loops, idx))
        yield at["c"], at["r"], at["s"]


def psum_rows_needed(plan: GemmPlan) -> int:
    """Partial-sum buffer rows the plan needs: the elements the loops inside the row-fold loop visit (a tile;
    all M when the tiles are inside it; times NF when the column folds are)."""
    from sim.mapping import ORDERS

    if plan.dataflow == "os":
        return 0  # the sums stay in the PEs
    loops = ORDERS[plan.order]
    inside = loops[loops.index("r") + 1 :]
    return (plan.M if "s" in inside else plan.tile_elements) * (plan.col_folds if "c" in inside else 1)


def block_split(K: int, n_blocks: int) -> tuple[int, ...]:
    """Elements of each of ``n_blocks`` reduction blocks of K: numpy's array_split rule, the first ``K mod n``
    blocks one longer (sim's ``in_blocks`` of a GEMM, PTQ-SL's ``block_bounds``)."""
    base, extra = divmod(int(K), int(n_blocks))
    return tuple(base + (b < extra) for b in range(int(n_blocks)))
