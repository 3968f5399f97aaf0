"""The fast engine's equations: cycles, traffic and energy terms of every candidate mapping of a chunk of chips.

Arrays are [C, L, P, T] (chips x layers x pairs x stream-tile choices); what depends on the loop order is a list
with one such array per order.  The equations and their numbering are those of ``docs/sim.md``;
:mod:`sim.candidate_choice` picks the best candidate per point from these terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.chipbatch import DATAFLOW_CODES, ChipBatch
from sim.layerbatch import LayerBatch
from sim.mapping import ORDERS
from sim.precision import pack_and_serial

__all__ = ["WS", "OS", "IS", "Operands", "InputBlocks", "Loops", "Traffic", "EnergyTerms", "CandidateCosts"]
__all__ += ["candidate_costs", "per_chip", "per_layer"]

WS, OS, IS = DATAFLOW_CODES["ws"], DATAFLOW_CODES["os"], DATAFLOW_CODES["is"]

Footprint = Callable[[bool, bool], np.ndarray]
_COMBOS = [(True, True), (True, False), (False, True), (False, False)]


def per_chip(x: np.ndarray) -> np.ndarray:
    """A per-chip field on the [C, L, P, T] axes."""
    return np.asarray(x)[:, None, None, None]


def per_layer(x: np.ndarray) -> np.ndarray:
    """A per-layer field on the [C, L, P, T] axes."""
    return np.asarray(x)[None, :, None, None]


def _cdiv(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return -(-a // b)


@dataclass(frozen=True)
class Operands:
    """The array, the layer's GEMM and the operand widths, broadcast onto [C, L, P, T]."""

    R: np.ndarray  # array rows
    C: np.ndarray  # array columns
    M: np.ndarray
    K: np.ndarray
    N: np.ndarray
    G: np.ndarray  # groups: a layer's groups repeat alike
    act_act: np.ndarray  # activation x activation layer: both operands at the activation width
    w: np.ndarray
    a: np.ndarray
    w_op: np.ndarray  # the second operand's width
    pack: np.ndarray  # reduction elements per PE slot
    serial: np.ndarray  # cycles per beat
    acc: np.ndarray  # accumulator bits
    o: np.ndarray  # bits per output leaving the chip
    half_i: np.ndarray  # half of each SRAM (double buffering), bits
    half_f: np.ndarray
    half_o: np.ndarray
    overlapped: np.ndarray  # the overlapped timing profile


def _operands(chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray) -> Operands:
    c, lay = per_chip, per_layer
    act_act = lay(layers.act_act)
    w = pairs[None, None, :, 0, None]
    a = pairs[None, None, :, 1, None]
    w_op = np.where(act_act, a, w)
    pack, serial = pack_and_serial(c(chips.pe_kind), c(chips.serial_both), w_op, a)
    acc = c(chips.acc_bits)
    # outputs leave the chip at the consumer's activation width (coupled), the layer's own, or acc_bits
    o = np.where(c(chips.output_acc), acc, pairs[None, None, :, 2, None] if pairs.shape[1] > 2 else a)
    half_i, half_f, half_o = (c(x) / 2 for x in (chips.ifmap_sram_bits, chips.filter_sram_bits, chips.ofmap_sram_bits))
    return Operands(
        c(chips.rows),
        c(chips.cols),
        lay(layers.M),
        lay(layers.K),
        lay(layers.N),
        lay(layers.G),
        act_act,
        w,
        a,
        w_op,
        pack,
        serial,
        acc,
        o,
        half_i,
        half_f,
        half_o,
        c(chips.overlapped),
    )


@dataclass(frozen=True)
class InputBlocks:
    """How the reduction splits into input blocks (docs/sim.md, "Input blocks")."""

    window: np.ndarray  # kernel taps per channel
    n_h: np.ndarray  # channel blocks
    chans: np.ndarray  # input channels per group
    wp: np.ndarray  # reduction elements per channel within one block
    taps: np.ndarray  # blocks per channel block
    base: np.ndarray  # channels of a smaller block
    extra: np.ndarray  # channel blocks with one channel more
    sizes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (blocks of this size, channels, PE slots per block)
    k_first: np.ndarray  # reduction elements of the first (largest) block
    red_folds: list[np.ndarray]  # row folds of one block of each size
    Rp: np.ndarray  # reduction elements the rows hold
    k_tile: np.ndarray  # reduction elements one row fold holds, at most


def _input_blocks(chips: ChipBatch, layers: LayerBatch, op: Operands) -> InputBlocks:
    window = per_layer(layers.window)
    n_h = per_layer(layers.blocks)
    chans = op.K // window
    # per_tap: every kernel tap of every channel block is its own block of reduction elements (one per channel)
    wp = np.where(per_chip(chips.per_tap), 1, window)
    taps = window // wp
    base, extra = chans // n_h, chans % n_h
    sizes = [
        (count * taps, ch, _cdiv(ch * wp, op.pack))
        for count, ch in ((extra, base + 1), (n_h - extra, base))
        if np.any(count)
    ]
    k_first = (base + (extra > 0)) * wp
    red_folds = [_cdiv(kp, op.R) for _, _, kp in sizes]
    Rp = op.R * op.pack
    return InputBlocks(
        window, n_h, chans, wp, taps, base, extra, sizes, k_first, red_folds, Rp, np.minimum(k_first, Rp)
    )


@dataclass(frozen=True)
class Loops:
    """Loop extents and stream tiles (docs/sim.md, "Mapping")."""

    Sc: np.ndarray  # the dimension the columns hold
    cf: np.ndarray  # column folds
    rf: np.ndarray  # reduction folds, all blocks
    mf: np.ndarray  # row folds of M (os)
    ts: np.ndarray  # stream tile length
    ns: np.ndarray  # stream tiles
    t_last: np.ndarray  # length of the last stream tile
    tile_kinds: list[tuple[np.ndarray, np.ndarray]]  # (tiles of this length, length)


def _loops(df: int, layers: LayerBatch, tiles: list[int], op: Operands, bl: InputBlocks) -> Loops:
    lt = lambda x: np.asarray(x)[:, tiles][None, :, None, :]  # noqa: E731 - per layer and tile choice
    M, N, R, C = op.M, op.N, op.R, op.C
    Sc = M if df == IS else N
    cf = _cdiv(Sc, C)
    rf = sum(count * f for (count, _, _), f in zip(bl.sizes, bl.red_folds))
    mf = _cdiv(M, R)
    if df == WS:  # blocks of h output rows x wt output columns (sim.mapping.RowTiles)
        h, n_ht, h_last, wt, n_wt, w_last = (
            lt(getattr(layers, f"rt_{f}")) for f in ("h", "n_h", "h_last", "wt", "n_w", "w_last")
        )
        ts, ns, t_last = h * wt, n_ht * n_wt, h_last * w_last
        tile_kinds = [((n_ht - 1) * (n_wt - 1), ts), (n_ht - 1, h * w_last), (n_wt - 1, h_last * wt), (1, t_last)]
    elif df == IS:
        n_col = np.asarray(layers.N)[:, None]
        lens = _cdiv(n_col, 1 << np.asarray(layers.n_halvings))
        counts = _cdiv(n_col, lens)
        ts, ns, t_last = lt(lens), lt(counts), lt(n_col - (counts - 1) * lens)
        tile_kinds = [(ns - 1, ts), (1, t_last)]
    else:
        ts, ns, t_last = np.minimum(M, R), mf, M - (mf - 1) * R
        tile_kinds = []
    return Loops(Sc, cf, rf, mf, ts, ns, t_last, tile_kinds)


def _compute_cycles(df: int, op: Operands, bl: InputBlocks, lp: Loops) -> tuple[np.ndarray, np.ndarray]:
    """Folds and compute cycles (eq. 1-3 and the timing profiles)."""
    G, R, C, serial = op.G, op.R, op.C, op.serial
    if df == OS:
        folds = G * lp.cf * lp.mf * bl.n_h * bl.taps
        serial_cycles = G * lp.cf * lp.mf * sum(count * (R + C - 2 + serial * kp) for count, _, kp in bl.sizes) - 1
        # fold f issues serial*K'_f + max(0, R - serial*K'_next) after the one before it: its stream, and room on
        # the result buses for the previous fold's R rows when the next fold is shorter than R (eq. 2''). Summed
        # over the folds that deficit counts for every fold but the first, which is the first (largest) block.
        kp_first = bl.sizes[0][2]
        over_cycles = (
            G * lp.cf * lp.mf * sum(count * np.maximum(serial * kp, R) for count, _, kp in bl.sizes)
            - np.maximum(0, R - serial * kp_first)
            + R
            + C
            - 3
        )
    else:
        folds = G * lp.cf * lp.rf * lp.ns
        stream = op.M if df == WS else op.N
        serial_cycles = G * lp.cf * lp.rf * (lp.ns * (2 * R + C - 2) + serial * stream) - 1
        slots = sum(count * np.maximum(serial * size, R) for count, size in lp.tile_kinds)  # every stream tile
        slot_last = np.maximum(serial * lp.t_last, R)
        over_cycles = R + G * lp.cf * lp.rf * slots - slot_last + serial * lp.t_last + R + C - 3
    return folds, np.where(op.overlapped, over_cycles, serial_cycles)


@dataclass(frozen=True)
class _Roles:
    """Footprints (capacity test) and data counts of the stationary-like (s) and streamed (x) operand roles as
    functions of which of their two relevant loops are whole (eq. 4-9, M1)."""

    s_foot: Footprint
    s_use: Footprint
    x_foot: Footprint
    x_use: Footprint
    s_total: np.ndarray  # every element of the role's operand, bits
    x_total: np.ndarray
    cap_s: np.ndarray  # the role's half SRAM, bits
    cap_x: np.ndarray


def _roles_ws(layers: LayerBatch, tiles: list[int], op: Operands, bl: InputBlocks) -> _Roles:
    lt = lambda x: np.asarray(x)[:, tiles][None, :, None, :]  # noqa: E731 - per layer and tile choice
    M, K, N, C, a, w_op = op.M, op.K, op.N, op.C, op.a, op.w_op
    plane = per_layer(layers.plane_elems)
    share = np.gcd(bl.Rp, bl.wp)
    chunk_ch = np.minimum(bl.base + (bl.extra > 0), (bl.wp - share + bl.Rp - 1) // bl.wp + 1)
    planes = sum(count * (f + ch - 1 - (f - 1) * share // bl.wp) for (count, ch, _), f in zip(bl.sizes, bl.red_folds))
    rt_sum = lt(layers.rt_rows_sum) * lt(layers.rt_cols_sum)
    rt_max = lt(layers.rt_rows_max) * lt(layers.rt_cols_max)
    return _Roles(
        lambda ci, ri: (N if ci else np.minimum(N, C)) * (K if ri else bl.k_tile) * w_op,
        lambda cs, rs: K * N * w_op,
        lambda si, ri: (plane if si else rt_max) * (bl.chans if ri else chunk_ch) * a,
        lambda ss, rs: (rt_sum if ss else plane) * (planes if rs else bl.chans) * a,
        K * N * w_op,
        M * K * a,
        op.half_f,
        op.half_i,
    )


def _roles_os(layers: LayerBatch, op: Operands, bl: InputBlocks) -> _Roles:
    M, K, N, R, C, a, w_op = op.M, op.K, op.N, op.R, op.C, op.a, op.w_op
    used_g, lowered = per_layer(layers.ifmap_used_g), M * K
    return _Roles(
        lambda ci, ri: (N if ci else np.minimum(N, C)) * (K if ri else bl.k_first) * w_op,
        lambda cs, rs: K * N * w_op,
        lambda si, ri: (used_g if si and ri else (M if si else np.minimum(M, R)) * (K if ri else bl.k_first)) * a,
        lambda ss, rs: (lowered if ss or rs else used_g) * a,
        K * N * w_op,
        lowered * a,
        op.half_f,
        op.half_i,
    )


def _roles_is(layers: LayerBatch, op: Operands, bl: InputBlocks, lp: Loops) -> _Roles:
    M, K, N, C, a, w_op = op.M, op.K, op.N, op.C, op.a, op.w_op
    used_g, lowered = per_layer(layers.ifmap_used_g), M * K
    return _Roles(
        lambda ci, ri: (used_g if ci and ri else (M if ci else np.minimum(M, C)) * (K if ri else bl.k_tile)) * a,
        lambda cs, rs: (lowered if cs or rs else used_g) * a,
        lambda si, ri: (N if si else lp.ts) * (K if ri else bl.k_tile) * w_op,
        lambda ss, rs: K * N * w_op,
        lowered * a,
        K * N * w_op,
        op.half_i,
        op.half_f,
    )


def _traffic_per_order(
    positions: list[dict[str, int]],
    G: np.ndarray,
    fits: dict,
    uses: dict,
    rel: tuple[str, str],
    irr: str,
    irr_extent: np.ndarray,
) -> list[np.ndarray]:
    """DRAM bits of one operand per group, one [C, L, P, T] array per order: kept at the outermost level that
    fits, re-read by the irrelevant loop outside it (sim.mapping.operand_level)."""
    reread: dict[tuple[bool, bool, bool], np.ndarray] = {}  # (a split, b split, irr outside) -> bits
    out: list[np.ndarray] = []
    for pos in positions:
        result = None
        for level in (3, 2, 1, 0):  # inner to outer, so the outermost fitting level wins
            inside = (pos[rel[0]] >= level, pos[rel[1]] >= level)
            key = (not inside[0], not inside[1], pos[irr] < level)
            if key not in reread:  # per group of the layer, then x G (a layer's groups repeat alike)
                reread[key] = G * (uses[key[:2]] * irr_extent if key[2] else uses[key[:2]])
            t = reread[key]
            result = t if result is None else np.where(fits[inside], t, result)
        assert result is not None  # the first level visited always sets it
        out.append(result)
    return out


@dataclass(frozen=True)
class Traffic:
    """Memory traffic in bits.  ``per_s`` / ``per_x`` / ``per_spill`` hold one [C, L, P, T] array per loop order:
    DRAM bits of the stationary-like and streamed operands and of the spilled partial sums (exact integers)."""

    per_s: list[np.ndarray]
    per_x: list[np.ndarray]
    per_spill: list[np.ndarray]
    feasible: np.ndarray | np.bool_  # the smallest stationary tile fits its half SRAM (os: always)
    unmappable_bits: np.ndarray  # that smallest tile's bits (the error message's figure)
    rounds: np.ndarray  # times each output is accumulated in the ofmap SRAM
    reads_s: np.ndarray  # array-side SRAM reads (8-9)
    reads_x: np.ndarray
    ofmap_writes: np.ndarray
    ofmap_reads: np.ndarray
    out_bits: np.ndarray  # the layer's outputs to DRAM


def _spills(df: int, positions: list[dict[str, int]], op: Operands, lp: Loops) -> list[np.ndarray]:
    """Per order: DRAM bits of partial sums spilled because their footprint exceeds half the ofmap SRAM."""
    if df == OS:
        return [np.zeros((1, 1, 1, 1), dtype=np.int64) for _ in positions]
    out_elems = op.G * op.M * op.N
    tile_cols = np.minimum(lp.Sc, op.C)
    stream_all = op.M if df == WS else op.N
    per_spill = []
    for pos in positions:
        foot = (stream_all if pos["s"] > pos["r"] else lp.ts) * (lp.Sc if pos["c"] > pos["r"] else tile_cols) * op.acc
        # every reduction fold after the first writes its partial sums out and reads them back
        per_spill.append(np.where(foot > op.half_o, (lp.rf - 1) * out_elems * op.acc, 0))
    return per_spill


def _traffic(df: int, roles: _Roles, orders: list[int], op: Operands, bl: InputBlocks, lp: Loops) -> Traffic:
    positions = [{loop: ORDERS[o].index(loop) for loop in ("c", "r", "s")} for o in orders]
    s_fits = {k: roles.s_foot(*k) <= roles.cap_s for k in _COMBOS}
    x_fits = {k: roles.x_foot(*k) <= roles.cap_x for k in _COMBOS}
    s_uses = {k: roles.s_use(*k) for k in _COMBOS}
    x_uses = {k: roles.x_use(*k) for k in _COMBOS}
    per_s = _traffic_per_order(positions, op.G, s_fits, s_uses, ("c", "r"), "s", lp.ns)
    per_x = _traffic_per_order(positions, op.G, x_fits, x_uses, ("s", "r"), "c", lp.cf)
    smallest = roles.s_foot(False, False)
    feasible = smallest <= roles.cap_s if df != OS else np.True_
    out_elems = op.G * op.M * op.N
    rounds = bl.n_h * bl.taps if df == OS else lp.rf
    return Traffic(
        per_s,
        per_x,
        _spills(df, positions, op, lp),
        feasible,
        smallest,
        rounds,
        op.G * roles.s_total * lp.ns,
        op.G * roles.x_total * lp.cf,
        out_elems * op.acc * rounds,
        out_elems * (op.acc * (rounds - 1) + op.o),
        out_elems * op.o,
    )


def _edge_bits(df: int, op: Operands, bl: InputBlocks, lp: Loops) -> tuple[np.ndarray, np.ndarray]:
    """Bits of the layer's first load and last write-back, which double buffering cannot hide (eq. 10)."""
    M, N, R, C, a, w_op, o = op.M, op.N, op.R, op.C, op.a, op.w_op, op.o
    if df == WS:
        return bl.k_tile * np.minimum(N, C) * w_op, lp.t_last * (N - (lp.cf - 1) * C) * o
    if df == IS:
        return bl.k_tile * np.minimum(M, C) * a, (M - (lp.cf - 1) * C) * lp.t_last * o
    first = (np.minimum(M, R) * a + np.minimum(N, C) * w_op) * np.minimum(op.K, op.pack)
    return first, (M - (lp.mf - 1) * R) * (N - (lp.cf - 1) * C) * o


@dataclass(frozen=True)
class EnergyTerms:
    """Energy (eq. 11-15): a fixed part per tile choice, pJ per DRAM bit of each operand, and static power."""

    macs: np.ndarray
    e_mac: np.ndarray
    e_reg: np.ndarray
    e_s_w: np.ndarray  # SRAM write pJ per bit of the stationary-like role's buffer
    e_x_w: np.ndarray
    e_o_r: np.ndarray
    e_o_w: np.ndarray
    e_dram_bit: np.ndarray
    e_sram_fixed: np.ndarray
    e_fixed: np.ndarray
    per_bit_s: np.ndarray
    per_bit_x: np.ndarray
    per_bit_spill: np.ndarray


def _energy_terms(df: int, chips: ChipBatch, op: Operands, tr: Traffic) -> EnergyTerms:
    c = per_chip
    macs = op.G * op.M * op.K * op.N
    mac_pj = np.where(op.act_act, chips.act_mac_pj[:, None, :, None], chips.mac_pj[:, None, :, None])
    e_mac = macs * mac_pj
    # stationary operands shift down into their PE registers, (R + 1) / 2 registers on average; os drains its
    # partial sums the same way.  The MAC energy already includes the multiply-accumulate's own registers.
    shifted = tr.ofmap_writes if df == OS else tr.reads_s
    e_reg = shifted * ((op.R + 1) / 2 * c(chips.e_reg))  # float factor first: shifted * (R + 1) can pass 2^63
    if df == IS:
        e_s_r, e_s_w, e_x_r, e_x_w = (
            c(x) for x in (chips.e_sram_ifmap_r, chips.e_sram_ifmap_w, chips.e_sram_filter_r, chips.e_sram_filter_w)
        )
    else:
        e_s_r, e_s_w, e_x_r, e_x_w = (
            c(x) for x in (chips.e_sram_filter_r, chips.e_sram_filter_w, chips.e_sram_ifmap_r, chips.e_sram_ifmap_w)
        )
    e_o_r, e_o_w, e_dram_bit = c(chips.e_sram_ofmap_r), c(chips.e_sram_ofmap_w), c(chips.e_dram)
    e_sram_fixed = tr.reads_s * e_s_r + tr.reads_x * e_x_r + tr.ofmap_reads * e_o_r + tr.ofmap_writes * e_o_w
    return EnergyTerms(
        macs,
        e_mac,
        e_reg,
        e_s_w,
        e_x_w,
        e_o_r,
        e_o_w,
        e_dram_bit,
        e_sram_fixed,
        e_mac + e_reg + e_sram_fixed + tr.out_bits * e_dram_bit,
        e_dram_bit + e_s_w,
        e_dram_bit + e_x_w,
        2 * e_dram_bit + e_o_r + e_o_w,  # out to DRAM and back, written and read in the ofmap SRAM
    )


@dataclass(frozen=True)
class CandidateCosts:
    """Everything the choice of a candidate needs, for one dataflow on a chunk of chips."""

    op: Operands
    blocks: InputBlocks
    loops: Loops
    folds: np.ndarray
    compute: np.ndarray  # compute cycles [C, L, P, T]
    traffic: Traffic
    first_bits: np.ndarray
    last_bits: np.ndarray
    energy: EnergyTerms


def candidate_costs(
    df: int, chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray, orders: list[int], tiles: list[int]
) -> CandidateCosts:
    """The terms of every (tile, order) candidate of dataflow ``df`` for ``chips`` x ``layers`` x ``pairs``."""
    op = _operands(chips, layers, pairs)
    bl = _input_blocks(chips, layers, op)
    lp = _loops(df, layers, tiles, op, bl)
    folds, compute = _compute_cycles(df, op, bl, lp)
    if df == WS:
        roles = _roles_ws(layers, tiles, op, bl)
    elif df == OS:
        roles = _roles_os(layers, op, bl)
    else:
        roles = _roles_is(layers, op, bl, lp)
    traffic = _traffic(df, roles, orders, op, bl, lp)
    first_bits, last_bits = _edge_bits(df, op, bl, lp)
    return CandidateCosts(
        op, bl, lp, folds, compute, traffic, first_bits, last_bits, _energy_terms(df, chips, op, traffic)
    )
