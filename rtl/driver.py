"""Host-side driver of ``lowbit_gemm_top``: mapping, stream packing, configuration, output order and sim's cycle
prediction.

Pure Python + numpy (no cocotb import): the cocotb bench :mod:`rtl.benches.gemm_bench` and the tests use it.
The stream format is specified in ``docs/rtl.md`` (section "Array and top level"); in short, for
``Y[M, N] = A[M, K] @ B[K, N]`` on an ``R x C`` array with ``pack`` products per PE slot:

- the reduction is cut into ``Kp = ceil(K / pack)`` PE slots; slot ``s`` holds elements ``k = s*pack + j``,
  ``j = 0 .. pack-1``, element ``j`` at bits ``[j*bits +: bits]`` (LSB first, two's complement for signed operands);
- a fold is one (column fold ``c``, row fold ``r``, stream tile ``s``): ``NF = ceil(N / C)`` column folds,
  ``KF = ceil(Kp / R)`` row folds and ``M`` cut into tiles of ``tile_m`` rows; folds run in the mapping's loop order
  (sim's ws mapping, :mod:`sim.mapping`; SCALE-Sim's is ``NKM``: column folds outer, M inner);
- per fold the weight stream carries ``R`` beats (tile row ``R-1`` first, column ``c`` at bits
  ``[c*W_SLOT +: W_SLOT]``) and the activation stream one beat per row ``m`` of the tile (row ``r`` at bits
  ``[r*A_SLOT +: A_SLOT]``);
- after each fold of the last row fold the top emits one beat per row ``m`` of the tile, the ``C`` accumulators
  ``Y[m, cf*C + c]`` at bits ``[c*ACC_BITS +: ACC_BITS]`` (padding columns past ``N`` are 0).

:func:`predicted_cycles` asks ``sim`` itself (a gemm layer on a chip with the same array, PE and weight preload,
evaluated at the same mapping), so the tests compare the RTL's counter against the simulator rather than against
a re-derived formula.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit_core.pairs import format_pair

__all__ = [
    "PE_KINDS",
    "TRANSPOSED_KINDS",
    "ARRAY_PE_KINDS",
    "transposed_kind",
    "GemmPlan",
    "PRELOADS",
    "check_preload",
    "DATAFLOWS",
    "DATAFLOW_PE_KINDS",
    "check_dataflow",
    "parse_mapping",
    "order_index",
    "offered_tile_rows",
    "sim_mapping",
    "fold_sequence",
    "psum_rows_needed",
    "fusion_width",
    "fusion_mode",
    "pack_factor",
    "slot_bits",
    "beats_per_element",
    "SERIAL_KINDS",
    "operand_range",
    "plan_gemm",
    "gemm_streams",
    "top_config",
    "top_parameters",
    "output_order",
    "decode_output_beat",
    "rtl_chip",
    "predicted_layer_cycles",
    "predicted_cycles",
    "block_output_order",
    "block_split",
    "FOLD_BITS",
    "predicted_is_cycles",
    "cycles_table_markdown",
    "main",
]

#: PE kinds of the RTL and their ``PE_KIND`` parameter values: sim's ``fixed`` and ``bitfusion``, and its
#: ``bitserial`` PE as Stripes (``serial: activation``) and Loom (``serial: both``).
PE_KINDS: dict[str, int] = {"fixed": 0, "bitfusion": 1, "stripes": 2, "loom": 3}
#: sim's ``pe.serial`` of each bit-serial kind
SERIAL_KINDS: dict[str, str] = {"stripes": "activation", "loom": "both"}
#: The array PE of an input-stationary GEMM, which runs as the ws GEMM of its transpose: the activations become the
#: array's stationary operand, so the Stripes PE serializes the stationary register's bits (``PE_KIND`` 4,
#: lowbit_serial_pe ``SERIAL = 2``); the other kinds are the same PEs either way.
TRANSPOSED_KINDS: dict[str, str] = {"stripes": "stripes_stationary"}
#: Every ``PE_KIND`` a ws array builds: :data:`PE_KINDS` and the transposed Stripes PE.
ARRAY_PE_KINDS: dict[str, int] = {**PE_KINDS, "stripes_stationary": 4}
_SERIAL_ARRAY_KINDS = ("stripes", "loom", "stripes_stationary")
_FUSION_WIDTHS = (2, 4, 8)
_FUSION_SLOT_BITS = 32
_SERIAL_SLOT_BITS = 8  #: a bit-serial build's widest runtime width (its W_BITS = A_BITS), one stream slot
FOLD_BITS = 16  #: the tops' FOLD_BITS: the width of a fold count and of a block-table entry
#: Weight-preload timing profiles (sim's ``array.weight_preload``) and the top's ``OVERLAP`` parameter.
PRELOADS: dict[str, int] = {"serial": 0, "overlapped": 1}
#: Dataflows the RTL builds and their GEMM top: weight-stationary, output-stationary, and input-stationary as the
#: weight-stationary top on the transposed GEMM (Y^T = B^T A^T: the activations stationary, the weights streamed).
DATAFLOWS: dict[str, str] = {"ws": "lowbit_gemm_top", "os": "lowbit_gemm_os_top", "is": "lowbit_gemm_top"}
#: sim.mapping's dataflow codes
_DATAFLOW_CODES = {"ws": 0, "os": 1, "is": 2}
#: PE kinds each dataflow's array builds (is: as :data:`TRANSPOSED_KINDS` says).
DATAFLOW_PE_KINDS: dict[str, tuple[str, ...]] = {flow: tuple(PE_KINDS) for flow in DATAFLOWS}


def _kind(pe_kind: str) -> str:
    if pe_kind not in ARRAY_PE_KINDS:
        raise ValueError(f"pe_kind must be one of {', '.join(PE_KINDS)}, got {pe_kind!r}")
    return pe_kind


def transposed_kind(pe_kind: str) -> str:
    """The array PE that runs ``pe_kind``'s input-stationary GEMM as the ws GEMM of its transpose."""
    return TRANSPOSED_KINDS.get(_kind(pe_kind), pe_kind)


def _check_bits(name: str, bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= int(bits) <= 8:
        raise ValueError(f"{name} must be an integer in 2..8, got {bits!r}")
    return int(bits)


def fusion_width(bits: int) -> int:
    """Field width (bits) of one element in a Bit-Fusion slot: ``bits`` rounded up to 2, 4 or 8."""
    bits = _check_bits("bits", bits)
    return next(w for w in _FUSION_WIDTHS if bits <= w)


def fusion_mode(bits: int) -> int:
    """The Bit-Fusion PE's mode code for ``bits``: 0 (2-bit), 1 (4-bit) or 2 (8-bit fields)."""
    return _FUSION_WIDTHS.index(fusion_width(bits))


def pack_factor(pe_kind: str, w_bits: int, a_bits: int) -> int:
    """Products one PE sums per cycle: 1 for a fixed or bit-serial PE, ``floor(8/a) * floor(8/w)`` (widths
    rounded up to 2/4/8) for Bit Fusion -- the same rule as ``sim.precision``."""
    if _kind(pe_kind) != "bitfusion":
        _check_bits("w_bits", w_bits)
        _check_bits("a_bits", a_bits)
        return 1
    return (8 // fusion_width(a_bits)) * (8 // fusion_width(w_bits))


def slot_bits(pe_kind: str, w_bits: int, a_bits: int) -> tuple[int, int]:
    """(W_SLOT, A_SLOT): bits of one PE's weight slot and activation slot on the streams."""
    if _kind(pe_kind) == "bitfusion":
        return _FUSION_SLOT_BITS, _FUSION_SLOT_BITS
    _check_bits("w_bits", w_bits)
    _check_bits("a_bits", a_bits)
    if pe_kind in _SERIAL_ARRAY_KINDS:
        return _SERIAL_SLOT_BITS, _SERIAL_SLOT_BITS
    return int(w_bits), int(a_bits)


def beats_per_element(pe_kind: str, w_bits: int, a_bits: int) -> int:
    """Steps one streamed element takes: ``a_bits`` (Stripes), ``a_bits * w_bits`` (Loom), ``w_bits`` (Stripes on
    a transposed GEMM, whose stationary operand is the activation), else 1 -- sim's ``serial``."""
    if _kind(pe_kind) == "stripes":
        return _check_bits("a_bits", a_bits)
    if pe_kind == "stripes_stationary":
        return _check_bits("w_bits", w_bits)
    if pe_kind == "loom":
        return _check_bits("a_bits", a_bits) * _check_bits("w_bits", w_bits)
    return 1


def operand_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive (lowest, highest) integer of a ``bits``-bit operand."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def check_dataflow(dataflow: str, pe_kind: str | None = None) -> str:
    """``dataflow`` if the RTL builds it (with ``pe_kind`` PEs), else ValueError naming what it builds."""
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    if pe_kind is not None and pe_kind not in DATAFLOW_PE_KINDS[dataflow]:
        raise ValueError(f"the {dataflow} array builds {', '.join(DATAFLOW_PE_KINDS[dataflow])} PEs, not {pe_kind!r}")
    return dataflow


def check_preload(preload: str) -> str:
    """``preload`` if it is a timing profile (:data:`PRELOADS`), else ValueError naming the field."""
    if preload not in PRELOADS:
        raise ValueError(f"weight_preload must be one of {', '.join(PRELOADS)}, got {preload!r}")
    return preload


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
        """Stream steps per element (:func:`beats_per_element`)."""
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


def _check_operand(name: str, x: np.ndarray, bits: int, signed: bool) -> None:
    lo, hi = operand_range(bits, signed)
    if x.size and (x.min() < lo or x.max() > hi):
        bad = np.argwhere((x < lo) | (x > hi))[0]
        raise ValueError(
            f"{name}{tuple(int(i) for i in bad)} = {int(x[tuple(bad)])} is outside the "
            f"{'signed' if signed else 'unsigned'} {bits}-bit range [{lo}, {hi}]"
        )


def _pack_slots(x: np.ndarray, pack: int, field: int) -> np.ndarray:
    """Pack ``x [..., Kp*pack]`` (reduction last) into slots ``[..., Kp]`` of ``pack`` fields of ``field`` bits."""
    lanes = x.reshape(*x.shape[:-1], -1, pack).astype(np.int64) & ((1 << field) - 1)
    shifts = np.arange(pack, dtype=np.int64) * field
    return (lanes << shifts).sum(axis=-1)  # disjoint fields: sum == bitwise or; at most 32 bits


def _beat(slots: np.ndarray, width: int) -> int:
    """One beat: ``slots[i]`` at bits ``[i*width +: width]``."""
    value = 0
    for i, s in enumerate(slots.tolist()):
        value |= int(s) << (i * width)
    return value


def gemm_streams(
    A: np.ndarray,
    B: np.ndarray,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    w_signed: bool = True,
    a_signed: bool = True,
    order: str | int | None = None,
    tile_m: int | None = None,
    *,
    tile_w: int = 1,
    grid_w: int = 1,
    dataflow: str = "ws",
    blocks: Sequence[int] | None = None,
) -> tuple[list[int], list[int], np.ndarray]:
    """Weight and activation beats of ``lowbit_gemm_top`` for ``A [M, K] @ B [K, N]`` and the exact product.

    Args:
        A: activations, integers in the ``a_bits`` range (signed or unsigned per ``a_signed``).
        B: weights, integers in the ``w_bits`` range (signed or unsigned per ``w_signed``).
        rows, cols: the array's R x C.
        pe_kind: one of :data:`PE_KINDS` (a fixed PE's widths are the build's W_BITS / A_BITS).
        w_bits, a_bits: operand widths in bits (2..8).
        order, tile_m, tile_w, grid_w: the mapping (:func:`plan_gemm`); the streams follow its fold order.
        dataflow: ``"ws"`` (weight tiles preloaded, one activation beat per element) or ``"os"`` (per fold ``Kp``
            beats on both streams: slot k's weights of the fold's columns and activations of its rows).
        blocks: the reduction blocks (:func:`plan_gemm`): each block's slots and folds start at its first element.

    Returns:
        (weight beats, activation beats, expected): the beats as non-negative ints (bit i = ``w_data[i]`` /
        ``in_data[i]``) in stream order, and ``A @ B`` as int64 ``[M, N]`` (exact; the RTL's accumulators wrap
        modulo 2^ACC_BITS).
    """
    A = np.asarray(A)
    B = np.asarray(B)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"need A [M, K] and B [K, N] with matching K, got {A.shape} and {B.shape}")
    if not (np.issubdtype(A.dtype, np.integer) and np.issubdtype(B.dtype, np.integer)):
        raise ValueError(f"A and B must be integer arrays, got {A.dtype} and {B.dtype}")
    M, K = A.shape
    N = B.shape[1]
    plan = plan_gemm(
        M,
        K,
        N,
        rows,
        cols,
        pe_kind,
        w_bits,
        a_bits,
        w_signed,
        a_signed,
        order,
        tile_m,
        tile_w=tile_w,
        grid_w=grid_w,
        dataflow=dataflow,
        blocks=blocks,
    )
    _check_operand("A", A, plan.a_bits, a_signed)
    _check_operand("B", B, plan.w_bits, w_signed)
    R, C, P = plan.rows, plan.cols, plan.pack
    # element fields: Bit Fusion's rounded widths; a bit-serial PE reads the low bits of an 8-bit slot (the
    # two's complement of a narrower operand sign-extended, the bits above its width ignored)
    w_field = fusion_width(plan.w_bits) if pe_kind == "bitfusion" else plan.w_slot
    a_field = fusion_width(plan.a_bits) if pe_kind == "bitfusion" else plan.a_slot

    # zero-pad each block's reduction to whole folds of whole slots (os: whole slots), N to whole column folds
    padded = [kp * P if dataflow == "os" else f * R * P for kp, f in zip(plan.block_slots, plan.block_row_folds)]
    n_pad = plan.col_folds * C
    Ap = np.zeros((M, sum(padded)), dtype=np.int64)
    Bp = np.zeros((sum(padded), n_pad), dtype=np.int64)
    k0 = p0 = 0
    for k_b, pad_b in zip(plan.block_sizes, padded):
        Ap[:, p0 : p0 + k_b] = A[:, k0 : k0 + k_b]
        Bp[p0 : p0 + k_b, :N] = B[k0 : k0 + k_b]
        k0, p0 = k0 + k_b, p0 + pad_b
    a_slots = _pack_slots(Ap, P, a_field)  # [M, KF*R]
    w_slots = _pack_slots(Bp.T, P, w_field).T  # [KF*R, NF*C]

    w_beats: list[int] = []
    a_beats: list[int] = []
    slot0 = [0, *itertools.accumulate(plan.block_slots)]  # os: each block's first slot
    for cf, rf, st in fold_sequence(plan):
        if dataflow == "os":  # slot by slot: the fold's C weights and its rows' activations (missing rows zero)
            members = plan.tile_members(st)
            ks = range(slot0[rf], slot0[rf + 1])  # the fold's block
            w_beats.extend(_beat(w_slots[k, cf * C : (cf + 1) * C], plan.w_slot) for k in ks)
            a_beats.extend(_beat(a_slots[members, k], plan.a_slot) for k in ks)
            continue
        tile = w_slots[rf * R : (rf + 1) * R, cf * C : (cf + 1) * C]
        w_beats.extend(_beat(tile[r], plan.w_slot) for r in range(R - 1, -1, -1))
        vecs = a_slots[plan.tile_members(st), rf * R : (rf + 1) * R]
        a_beats.extend(_beat(v, plan.a_slot) for v in vecs)
    expected = A.astype(np.int64) @ B.astype(np.int64)
    return w_beats, a_beats, expected


def top_config(plan: GemmPlan) -> dict[str, int]:
    """Values of the top's ``cfg_*`` inputs for ``plan`` (mode inputs are ignored by a fixed-PE build; the
    bit-serial widths ``cfg_w_bits``/``cfg_a_bits`` are given for the bit-serial kinds only, which
    ``lowbit_layer_top`` does not build)."""
    fusion = plan.pe_kind == "bitfusion"
    modes = {
        "cfg_overlap": int(plan.preload == "overlapped"),
        "cfg_w_mode": fusion_mode(plan.w_bits) if fusion else 2,
        "cfg_a_mode": fusion_mode(plan.a_bits) if fusion else 2,
        "cfg_w_signed": int(plan.w_signed),
        "cfg_a_signed": int(plan.a_signed),
    }
    if plan.pe_kind in _SERIAL_ARRAY_KINDS:
        modes.update({"cfg_w_bits": plan.w_bits, "cfg_a_bits": plan.a_bits})
    if plan.dataflow == "os":  # lowbit_gemm_os_top
        return {
            "cfg_order": plan.order,
            "cfg_k_slots": _table(plan.block_slots),
            "cfg_blocks_m1": plan.n_blocks - 1,
            "cfg_col_folds": plan.col_folds,
            "cfg_m_folds": plan.tiles,
            "cfg_m_last": plan.tile_h_last,
            **modes,
        }
    config = {
        "cfg_order": plan.order,
        "cfg_row_folds": plan.row_folds,
        "cfg_col_folds": plan.col_folds,
        "cfg_tile_h": plan.tile_rows,
        "cfg_tiles_h": plan.tiles_h,
        "cfg_tile_h_last": plan.tile_h_last,
        "cfg_tile_w": plan.tile_w,
        "cfg_tiles_w": plan.tiles_w,
        "cfg_tile_w_last": plan.tile_w_last,
        "cfg_block_last": _table(plan.block_last_folds),
        **modes,
    }
    return config


def _table(entries: Sequence[int]) -> int:
    """A block table port: entry b at bits ``[b*FOLD_BITS +: FOLD_BITS]``."""
    return sum(int(e) << (b * FOLD_BITS) for b, e in enumerate(entries))


def top_parameters(
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int = 8,
    a_bits: int = 8,
    w_signed: bool = True,
    a_signed: bool = True,
    acc_bits: int = 32,
    psum_rows: int = 256,
    preload: str = "serial",
    dataflow: str = "ws",
    max_blocks: int = 1,
) -> dict[str, int]:
    """Verilog parameters of one ``lowbit_gemm_top`` (``lowbit_gemm_os_top`` for os) build, with room for
    ``max_blocks`` reduction blocks. For Bit Fusion and
    the bit-serial PEs the widths and signedness are run-time configuration, so one build serves every pair (a
    bit-serial build's W_BITS = A_BITS = 8 is its widest runtime width). The timing profile is run-time
    configuration too (``cfg_overlap``): ``preload="overlapped"`` builds a ws array's double-buffered weight
    registers, and that build runs both profiles; an os array is the same for both."""
    check_preload(preload)
    if _kind(pe_kind) not in PE_KINDS and dataflow != "ws":
        raise ValueError(f"the {pe_kind} PE runs in a ws array only (an is GEMM's transpose)")
    check_dataflow(dataflow, pe_kind if pe_kind in PE_KINDS else None)
    params = {"PE_KIND": ARRAY_PE_KINDS[pe_kind], "ROWS": int(rows), "COLS": int(cols), "ACC_BITS": int(acc_bits)}
    if dataflow == "ws":
        params.update({"PSUM_ROWS": int(psum_rows), "OVERLAP": PRELOADS[preload]})
    if max_blocks > 1:
        params["MAX_BLOCKS"] = int(max_blocks)
    if pe_kind in _SERIAL_ARRAY_KINDS:
        params.update({"W_BITS": _SERIAL_SLOT_BITS, "A_BITS": _SERIAL_SLOT_BITS})
    if pe_kind == "fixed":
        params.update(
            {
                "W_BITS": _check_bits("w_bits", w_bits),
                "A_BITS": _check_bits("a_bits", a_bits),
                "W_SIGNED": int(w_signed),
                "A_SIGNED": int(a_signed),
            }
        )
    return params


def output_order(plan: GemmPlan) -> Iterator[tuple[int, int]]:
    """(m, n0) of each output beat of the reduction's last block in stream order: the folds of the last row fold in
    execution order, each tile's rows in order; the beat holds ``Y[m, n0 .. n0+cols-1]`` (columns ``>= N`` are
    padding) and its ``out_fold`` is ``n0 // cols``. (Without blocks these are all the beats.)"""
    for cf, rf, st in fold_sequence(plan):
        if rf == plan.row_folds - 1:
            for m in plan.tile_members(st).tolist():
                yield m, cf * plan.cols


def block_output_order(plan: GemmPlan) -> Iterator[tuple[int, int, int]]:
    """(m, n0, block) of every beat the GEMM top sends, in stream order: after each fold that ends a block, the
    fold's tile rows (without blocks: :func:`output_order` with block 0)."""
    ends = {f: b for b, f in enumerate(plan.block_last_folds)} if plan.dataflow == "ws" else None
    for cf, rf, st in fold_sequence(plan):
        block = rf if ends is None else ends.get(rf)
        if block is not None:
            for m in plan.tile_members(st).tolist():
                yield m, cf * plan.cols, block


def block_split(K: int, n_blocks: int) -> tuple[int, ...]:
    """Elements of each of ``n_blocks`` reduction blocks of K: numpy's array_split rule, the first ``K mod n``
    blocks one longer (sim's ``in_blocks`` of a GEMM, PTQ-SL's ``block_bounds``)."""
    base, extra = divmod(int(K), int(n_blocks))
    return tuple(base + (b < extra) for b in range(int(n_blocks)))


def decode_output_beat(value: int, cols: int, acc_bits: int) -> list[int]:
    """The ``cols`` signed accumulators of one output beat (bit i = ``out_data[i]``)."""
    mask, half = (1 << acc_bits) - 1, 1 << (acc_bits - 1)
    out = []
    for c in range(cols):
        v = (value >> (c * acc_bits)) & mask
        out.append(v - (1 << acc_bits) if v & half else v)
    return out


def _sim_pe(pe_kind: str) -> dict[str, Any]:
    """sim's ``pe`` section for an RTL PE kind."""
    if _kind(pe_kind) == "fixed":
        return {"kind": "fixed", "bits": 8}
    if pe_kind in SERIAL_KINDS:
        return {"kind": "bitserial", "serial": SERIAL_KINDS[pe_kind]}
    return {"kind": pe_kind}


def rtl_chip(rows: int, cols: int, pe_kind: str, preload: str = "serial", dataflow: str = "ws") -> Any:
    """sim's model of an ``rows x cols`` weight-stationary array of lowbit's ``pe_kind`` PEs (sim.config.Chip).

    The fixed PE is modelled as sim's ``fixed`` 8-bit PE (its cycles do not depend on the pair); Stripes and Loom
    as sim's ``bitserial`` PE with ``serial: activation`` and ``both``; ``preload`` is the build's weight-preload
    profile and ``dataflow`` its array (ws or os). DRAM bandwidth is SCALE-Sim's "calc" (no stalls): the
    prediction is ``compute_cycles``, the array's busy cycles. The chip runs SCALE-Sim's schedule
    (``mapping: scalesim``); a prediction at another mapping forces it (:func:`predicted_cycles`)."""
    from sim.config import chip_from_dict  # sim is only needed for the prediction

    check_preload(preload)
    check_dataflow(dataflow)
    return chip_from_dict(
        {
            "name": f"lowbit_rtl_{pe_kind}_{rows}x{cols}"
            + ("_overlapped" if preload == "overlapped" else "")
            + ("_os" if dataflow == "os" else ""),
            "array": {"rows": rows, "cols": cols, "dataflow": dataflow, "weight_preload": preload},
            "pe": _sim_pe(pe_kind),
            "mapping": "scalesim",
            "memory": {
                "ifmap_sram_kib": 64,
                "filter_sram_kib": 64,
                "ofmap_sram_kib": 64,
                "dram_bw_bits_per_cycle": "calc",
                "acc_bits": 32,
            },
        },
        where="rtl chip",
    )


def _sim_pair(pe_kind: str, w_bits: int, a_bits: int) -> tuple[int, int]:
    """The pair sim evaluates: Bit Fusion's widths rounded up to 2/4/8 (the modes the PE runs in)."""
    return (fusion_width(w_bits), fusion_width(a_bits)) if pe_kind == "bitfusion" else (int(w_bits), int(a_bits))


def predicted_layer_cycles(
    layer: Any,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    preload: str = "serial",
    mapping: Any = None,
    dataflow: str = "ws",
) -> int:
    """sim's ``compute_cycles`` of the sim layer ``layer`` (a ``sim.workload.layer.Layer``, PTQ-SL input blocks
    included) on :func:`rtl_chip` at the pair ``w{w_bits}a{a_bits}``, at SCALE-Sim's mapping or at ``mapping`` (a
    :class:`sim.mapping.Mapping`, forced as the reference engine replays it). For Bit Fusion the widths are rounded
    up to 2/4/8, the modes the PE runs in (a Bit-Fusion chip lists only those pairs)."""
    from sim.chipbatch import ChipBatch
    from sim.engine import evaluate
    from sim.layerbatch import LayerBatch
    from sim.workload import Workload

    if pe_kind not in PE_KINDS:
        raise ValueError(f"unknown PE kind {pe_kind!r} (allowed: {', '.join(PE_KINDS)})")
    pair = _sim_pair(pe_kind, w_bits, a_bits)
    chip = rtl_chip(rows, cols, pe_kind, preload, dataflow)
    chip.check_pairs([pair])
    arrays = evaluate(
        ChipBatch.from_chips([chip], [pair]),
        LayerBatch.from_workload(Workload("rtl", (layer,))),
        np.asarray([pair]),
        mapping=mapping,
    )
    return int(arrays["compute_cycles"][0, 0, 0])


def predicted_cycles(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    order: str | int | None = None,
    tile_m: int | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
    n_blocks: int = 1,
) -> int:
    """sim's ``compute_cycles`` for the GEMM ``[M, K] x [K, N]`` on an ``rows x cols`` weight-stationary array of
    ``pe_kind`` PEs at the pair ``w{w_bits}a{a_bits}``, loop order ``order``, stream tiles of ``tile_m`` rows (one
    sim offers, :func:`offered_tile_rows`) and the ``preload`` profile: :func:`predicted_layer_cycles` of a
    one-layer ``gemm`` workload (tokens = M, in_features = K, out_features = N, in_blocks = ``n_blocks``: the
    reduction blocks of :func:`block_split`) at that mapping."""
    from sim.workload.layer import gemm

    plan = plan_gemm(
        M,
        K,
        N,
        rows,
        cols,
        pe_kind,
        w_bits,
        a_bits,
        order=order,
        tile_m=tile_m,
        preload=preload,
        dataflow=dataflow,
        blocks=block_split(K, n_blocks),
    )
    layer = gemm("rtl_gemm", tokens=plan.M, in_features=plan.K, out_features=plan.N, in_blocks=plan.n_blocks)
    if (layer.M, layer.K, layer.N, layer.groups, layer.has_weights) != (plan.M, plan.K, plan.N, 1, True):
        raise AssertionError(
            f"sim's gemm layer is [{layer.M}, {layer.K}] x [{layer.K}, {layer.N}], expected [{M}, {K}] x [{K}, {N}]"
        )
    if dataflow == "os":
        from sim.mapping import Mapping

        mapping = Mapping(plan.order)
    else:
        mapping = sim_mapping(plan.order, plan.M, plan.tile_elements)
    return predicted_layer_cycles(
        layer, plan.rows, plan.cols, pe_kind, plan.w_bits, plan.a_bits, preload, mapping, dataflow
    )


def predicted_is_cycles(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    order: str | int = 0,
    tile_n: int | None = None,
    preload: str = "serial",
) -> int:
    """sim's ``compute_cycles`` for ``[M, K] x [K, N]`` on an input-stationary array: the columns hold M, the
    stream is N in tiles of ``tile_n`` (one sim offers for N), at loop order ``order`` (sim's is orders)."""
    from sim.workload.layer import gemm

    order = order_index(order, "is")
    tile = int(N) if tile_n is None else int(tile_n)
    layer = gemm("rtl_gemm", tokens=int(M), in_features=int(K), out_features=int(N))
    return predicted_layer_cycles(
        layer, rows, cols, pe_kind, w_bits, a_bits, preload, sim_mapping(order, N, tile), "is"
    )


def cycles_table_markdown(records: list[dict]) -> str:
    """Markdown for docs/rtl.md from GEMM bench records (as saved by ``tests/rtl/test_gemm.py``: keys ``build``,
    ``simulator``, ``pe_kind``, ``rows``, ``cols``, ``dataflow``, ``preload``, ``w_bits``, ``a_bits``, ``M``, ``K``,
    ``N``, ``loop_order``, ``tile_m``, ``folds``, ``macs``, ``table``, ``mismatches``, ``measured_cycles``,
    ``predicted_cycles``): one summary row per build, then every record flagged ``table`` in full."""
    builds: dict[str, list[dict]] = {}
    for r in records:
        builds.setdefault(r["build"], []).append(r)
    lines = [
        "| build | simulator | PE | array | dataflow | preload | pairs | GEMMs | mappings | folds | MACs | "
        "mismatches | measured == sim |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in builds.items():
        r0 = rs[0]
        pairs = sorted({(r["w_bits"], r["a_bits"]) for r in rs}, reverse=True)
        orders = {r["loop_order"] for r in rs}
        tiled = sum(r["tile_m"] < r["N" if r.get("dataflow") == "is" else "M"] for r in rs)
        blocked = sum(r.get("blocks", 1) > 1 for r in rs)
        equal = sum(r["measured_cycles"] == r["predicted_cycles"] for r in rs)
        dataflows = ", ".join(d for d in ("ws", "os", "is") if any(r.get("dataflow", "ws") == d for r in rs))
        preloads = ", ".join(p for p in ("serial", "overlapped") if any(r["preload"] == p for r in rs))
        lines.append(
            f"| {name} | {r0['simulator']} | {r0['pe_kind']} | {r0['rows']}×{r0['cols']} | "
            f"{dataflows} | {preloads} | "
            f"{', '.join(f'w{w}a{a}' for w, a in pairs)} | {len(rs)} | "
            f"{len(orders)} orders, {tiled} tiled{f', {blocked} blocked' if blocked else ''} | "
            f"{min(r['folds'] for r in rs)}–{max(r['folds'] for r in rs)} | {sum(r['macs'] for r in rs):,} | "
            f"{sum(r['mismatches'] for r in rs)} | {equal} of {len(rs)} |"
        )
    lines += [
        "",
        "| PE | array | dataflow | preload | pair | M × K × N | folds | measured cycles | sim compute_cycles |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("table"):
            lines.append(
                f"| {r['pe_kind']} | {r['rows']}×{r['cols']} | {r.get('dataflow', 'ws')} | {r['preload']} | "
                f"{format_pair((r['w_bits'], r['a_bits']))} | {r['M']} × {r['K']} × {r['N']} | {r['folds']} | "
                f"{r['measured_cycles']} | {r['predicted_cycles']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m rtl.driver cycles-table [DIR]``: print the cycles tables of docs/rtl.md from the records the
    GEMM tests saved in ``DIR`` (default ``<build root>/gemm_cycles``)."""
    import json
    import sys
    from pathlib import Path

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "cycles-table" or len(args) > 2:
        print("usage: python -m rtl.driver cycles-table [DIR]", file=sys.stderr)
        return 2
    if len(args) == 2:
        folder = Path(args[1])
    else:
        from rtl.runner import default_build_root

        folder = default_build_root() / "gemm_cycles"
    files = sorted(folder.glob("*.json"))
    if not files:
        print(f"no GEMM records in {folder}: run pytest tests/rtl/test_gemm.py first", file=sys.stderr)
        return 2
    records = [r for f in files for r in json.loads(f.read_text())]
    order = {"verilator": 0, "icarus": 1}
    records.sort(
        key=lambda r: (
            order.get(r["simulator"], 2),
            r["build"].startswith("os-"),
            r["build"].startswith("ov-"),
            r["pe_kind"] != "bitfusion",
            r["rows"] * r["cols"],
            r["build"],
        )
    )
    print(cycles_table_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
