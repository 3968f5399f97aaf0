"""The fast engine: closed-form cycles, traffic and energy, vectorized over chips x layers x pairs x mappings.

For every (chip, layer, pair) it evaluates every candidate mapping of :mod:`sim.mapping` at once (a fourth
array axis) and keeps the best for the chip's objective; ``mapping: scalesim`` chips evaluate only SCALE-Sim's
schedule.  All equations are in ``docs/sim.md``; :mod:`sim.reference` replays any mapping fold by fold and
the tests assert that both agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import numpy as np

from lowbit_core.errors import InputError
from lowbit_core.pairs import format_pair
from sim.chipbatch import ChipBatch
from sim.layerbatch import LayerBatch
from sim.mapping import (
    GEMM_ORDER_NAMES,
    ORDERS,
    SCALESIM_ORDER,
    Mapping,
    candidates,
    gemm_order_name,
)
from sim.precision import pack_and_serial

__all__ = ["evaluate", "check_mappable", "point_groups", "MODEL_VERSION", "ARRAY_COLUMNS"]

#: Bump when any equation changes: sweeps hash it, so a resumed sweep never mixes model versions.
MODEL_VERSION = "lowbit-sim/5"

WS, OS, IS = 0, 1, 2
SEARCH, SCALESIM = 0, 1
LATENCY, ENERGY, EDP = 0, 1, 2
_BITS_PER_KIB = 8192
_BUFFER = {WS: "filter", OS: "filter", IS: "ifmap"}

#: The arrays :func:`evaluate` returns, in cost-table order.
ARRAY_COLUMNS = (
    "macs",
    "compute_cycles",
    "stall_cycles",
    "total_cycles",
    "latency_us",
    "energy_pj",
    "energy_mac_pj",
    "energy_reg_pj",
    "energy_sram_pj",
    "energy_dram_pj",
    "energy_static_pj",
    "weight_bits",
    "dram_bits",
    "utilization",
    "bops",
    "dram_ifmap_bits",
    "dram_filter_bits",
    "dram_ofmap_bits",
    "sram_ifmap_bits",
    "sram_filter_bits",
    "sram_ofmap_bits",
    "folds",
    "loop_order",
    "tile_m",
    "tile_n",
    "tile_k",
)
_INT_COLUMNS = {
    "macs",
    "compute_cycles",
    "stall_cycles",
    "total_cycles",
    "weight_bits",
    "dram_bits",
    "bops",
    "dram_ifmap_bits",
    "dram_filter_bits",
    "dram_ofmap_bits",
    "sram_ifmap_bits",
    "sram_filter_bits",
    "sram_ofmap_bits",
    "folds",
    "loop_order",
    "tile_m",
    "tile_n",
    "tile_k",
}
#: index into GEMM_ORDER_NAMES of each (dataflow, ORDERS index)
_GEMM_ORDER = {
    (df, o): GEMM_ORDER_NAMES.index(gemm_order_name(df, o)) for df in (WS, OS, IS) for o in range(len(ORDERS))
}


def _cdiv(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return -(-a // b)


def evaluate(
    chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray, mapping: Mapping | None = None
) -> dict[str, np.ndarray]:
    """Cost arrays of shape [C, L, P] for ``pairs``: int array [P, 2] of (w_bits, a_bits), or [P, 3] of
    (w_bits, a_bits, out_bits) when each layer's output is stored at the consumer's activation width
    ``out_bits`` instead of its own ``a_bits`` (the coupled table of ``search``).

    Each chip's mapping is searched (or SCALE-Sim's, for ``mapping: scalesim``); ``mapping`` forces one
    candidate on every chip instead, without the capacity check (what the reference engine replays).
    Cycles and bits are int64; energies (pJ), latency (us) and utilization are float64; ``loop_order`` indexes
    :data:`sim.mapping.GEMM_ORDER_NAMES`.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    pairs = pairs.reshape(-1, pairs.shape[-1] if pairs.ndim > 1 else 2)
    shape = (len(chips), len(layers), len(pairs))
    out = {k: np.empty(shape, dtype=np.int64 if k in _INT_COLUMNS else np.float64) for k in ARRAY_COLUMNS}
    modes = np.full(len(chips), SCALESIM) if mapping is not None else np.asarray(chips.mapping_mode)
    for df in (WS, OS, IS):
        for mode in (SEARCH, SCALESIM):
            sel = np.nonzero((np.asarray(chips.dataflow) == df) & (modes == mode))[0]
            if not len(sel):
                continue
            sub = chips if len(sel) == len(chips) else chips.take(sel)
            if mapping is not None:
                cands = [mapping]
            elif mode == SCALESIM:
                cands = [Mapping(SCALESIM_ORDER[df])]
            else:
                cands = candidates(df)
            part = _evaluate_dataflow(df, sub, layers, pairs, cands, check=mode == SEARCH and mapping is None)
            for k, v in part.items():
                out[k][sel] = v
    return out


def check_mappable(chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray) -> None:
    """Raise a one-line InputError when a searching chip has a (layer, pair) whose stationary tile fits no
    double-buffered SRAM (no candidate mapping exists); cheap, so a sweep checks it before any work."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, np.asarray(pairs).shape[-1])
    searching = np.asarray(chips.mapping_mode) == SEARCH
    for df in (WS, IS):  # os keeps nothing stationary in the PEs
        sel = np.nonzero(searching & (np.asarray(chips.dataflow) == df))[0]
        if not len(sel):
            continue
        sub = chips.take(sel)
        c = lambda x: np.asarray(x)[:, None, None]
        lay = lambda x: np.asarray(x)[None, :, None]
        K, window, n_h = lay(layers.K), lay(layers.window), lay(layers.blocks)
        act_act = lay(layers.act_act)
        w, a = pairs[None, None, :, 0], pairs[None, None, :, 1]
        w_op = np.where(act_act, a, w)
        pack, _ = pack_and_serial(c(sub.pe_kind), c(sub.serial_both), w_op, a)
        chans = K // window
        wp = np.where(c(sub.per_tap), 1, window)  # reduction elements per channel in one block
        k_tile = np.minimum((chans // n_h + (chans % n_h > 0)) * wp, c(sub.rows) * pack)
        if df == WS:
            bits, cap = k_tile * np.minimum(lay(layers.N), c(sub.cols)) * w_op, c(sub.filter_sram_bits) / 2
        else:
            bits, cap = k_tile * np.minimum(lay(layers.M), c(sub.cols)) * a, c(sub.ifmap_sram_bits) / 2
        ok = bits <= cap
        if not ok.all():
            _raise_infeasible(df, sub, layers, pairs, ok, bits[..., None])


def _evaluate_dataflow(
    df: int, chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray, cands: list[Mapping], check: bool
) -> dict[str, np.ndarray]:
    """Every candidate of one dataflow on chips that share it; the best per (chip, layer, pair).

    Candidates form a grid of stream-tile choices (axis 3) x loop orders (axis 4).  Everything that does not
    depend on the order is computed on [C, L, P, T]; only the traffic that does (operand levels, partial-sum
    spills) and the objective reach the full [C, L, P, T, O].  Chips that differ only in DRAM bandwidth,
    clock or static power (a sweep's innermost axes) share everything but the last step of the selection, so
    they are evaluated as one chip with a bandwidth axis (:func:`point_groups`).  Large batches run in chunks
    so that the candidate arrays stay in cache."""
    orders = sorted({m.order for m in cands})
    tiles = sorted({m.tile for m in cands})
    if len(orders) * len(tiles) != len(cands):
        raise ValueError("candidates must form a grid of orders x tiles")
    slots = point_groups(chips)
    n_b = slots.shape[1]
    reps = chips if n_b == 1 else chips.take(slots[:, 0])
    points = {k: np.asarray(getattr(chips, k), dtype=np.float64)[slots] for k in _POINT_FIELDS}
    per_group = len(layers) * len(pairs) * len(orders) * len(tiles) * n_b
    step = max(1, _CHUNK_ELEMENTS // per_group)
    parts = [
        _evaluate_chunk(
            df,
            reps.take(slice(i, i + step)) if len(reps) > step else reps,
            {k: v[i : i + step] for k, v in points.items()},
            layers,
            pairs,
            orders,
            tiles,
            check,
        )
        for i in range(0, len(reps), step)
    ]
    result = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if n_b == 1:
        return result
    out = {}
    for k, v in result.items():  # a padding slot repeats its group's last chip, so its rows are that chip's
        out[k] = np.empty((len(chips),) + v.shape[1:], dtype=v.dtype)
        out[k][slots.reshape(-1)] = v
    return out


#: Chip fields that enter only after the DRAM traffic of every candidate is known: per point, not per group.
_POINT_FIELDS = ("bandwidth", "clock_mhz", "static_mw")


def point_groups(chips: ChipBatch) -> np.ndarray:
    """Chip indices [U, B]: groups of chips equal in every field but :data:`_POINT_FIELDS`, in order of their
    first chip, each padded to the largest group's size ``B`` by repeating its last chip; [C, 1] (no
    grouping) when that padding would add more than a quarter of the points."""
    n = len(chips)
    identity = np.arange(n)[:, None]
    if n < 2:
        return identity
    keys = [
        np.asarray(getattr(chips, f.name), dtype=np.float64).reshape(n, -1)
        for f in fields(ChipBatch)
        if f.name not in _POINT_FIELDS and f.name != "names"
    ]
    _, first, inverse, counts = np.unique(
        np.concatenate(keys, axis=1), axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    n_b = int(counts.max())
    if n_b == 1 or len(counts) * n_b > n + n // 4:
        return identity
    by_first = np.argsort(first)  # group ids in order of their first chip
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(len(by_first))
    members = np.lexsort((identity[:, 0], rank[inverse.reshape(-1)]))  # chips grouped, each group in chip order
    sizes = counts[by_first]
    starts = np.cumsum(sizes) - sizes
    offset = np.minimum(np.arange(n_b)[None, :], sizes[:, None] - 1)
    return members[starts[:, None] + offset]


#: Candidate-array elements per chunk of chips (8 MiB per float64 array; measured best of 2^16..2^22).
_CHUNK_ELEMENTS = 1 << 20


def _evaluate_chunk(  # noqa: C901 - to split: the vectorized engine's per-chunk pass
    df: int,
    chips: ChipBatch,
    points: dict[str, np.ndarray],
    layers: LayerBatch,
    pairs: np.ndarray,
    orders: list[int],
    tiles: list[int],
    check: bool,
) -> dict[str, np.ndarray]:
    """``chips`` are the groups' first chips [U]; ``points`` the per-point fields [U, B] of every chip of each
    group; the result has U x B rows, group by group."""
    c: Callable[[np.ndarray], np.ndarray] = lambda x: np.asarray(x)[:, None, None, None]
    lay: Callable[[np.ndarray], np.ndarray] = lambda x: np.asarray(x)[None, :, None, None]
    lt = lambda x: np.asarray(x)[:, tiles][None, :, None, :]  # noqa: E731 - per layer and tile choice
    n_c, n_l, n_p, n_t, n_o = len(chips), len(layers), len(pairs), len(tiles), len(orders)
    n_b = points["bandwidth"].shape[1]
    n_pts = n_c * n_b
    positions = [{loop: ORDERS[o].index(loop) for loop in ("c", "r", "s")} for o in orders]

    R, C = c(chips.rows), c(chips.cols)
    M, K, N, G = lay(layers.M), lay(layers.K), lay(layers.N), lay(layers.G)
    act_act = lay(layers.act_act)
    w = pairs[None, None, :, 0, None]
    a = pairs[None, None, :, 1, None]
    w_op = np.where(act_act, a, w)
    pack, serial = pack_and_serial(c(chips.pe_kind), c(chips.serial_both), w_op, a)
    acc = c(chips.acc_bits)
    # outputs leave the chip at the consumer's activation width (coupled), the layer's own, or acc_bits
    o = np.where(c(chips.output_acc), acc, pairs[None, None, :, 2, None] if pairs.shape[1] > 2 else a)
    half_i, half_f, half_o = (c(x) / 2 for x in (chips.ifmap_sram_bits, chips.filter_sram_bits, chips.ofmap_sram_bits))
    overlapped = c(chips.overlapped)

    # --- input blocks (docs/sim.md, "Input blocks") ------------------------------------------------
    window = lay(layers.window)
    n_h = lay(layers.blocks)
    chans = K // window
    # per_tap: every kernel tap of every channel block is its own block of reduction elements (one per channel)
    wp = np.where(c(chips.per_tap), 1, window)  # reduction elements per channel within one block
    taps = window // wp  # blocks per channel block
    base, extra = chans // n_h, chans % n_h
    sizes = [
        (count * taps, ch, _cdiv(ch * wp, pack))
        for count, ch in ((extra, base + 1), (n_h - extra, base))
        if np.any(count)
    ]  # (blocks of this size, channels per block, PE slots per block)
    k_first = (base + (extra > 0)) * wp  # reduction elements of the first (largest) block
    red_folds = [_cdiv(kp, R) for _, _, kp in sizes]
    Rp = R * pack
    k_tile = np.minimum(k_first, Rp)  # reduction elements one row fold holds, at most

    # --- loops: extents and stream tiles (docs/sim.md, "Mapping") -----------------------------------
    Sc = M if df == IS else N  # the dimension the columns hold
    cf = _cdiv(Sc, C)
    rf = sum(count * f for (count, _, _), f in zip(sizes, red_folds))  # reduction folds, all blocks
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

    # --- compute cycles (eq. 1-3 and the timing profiles) ------------------------------------------
    if df == OS:
        folds = G * cf * mf * n_h * taps
        serial_cycles = G * cf * mf * sum(count * (R + C - 2 + serial * kp) for count, _, kp in sizes) - 1
        # fold f issues serial*K'_f + max(0, R - serial*K'_next) after the one before it: its stream, and room on
        # the result buses for the previous fold's R rows when the next fold is shorter than R (eq. 2''). Summed
        # over the folds that deficit counts for every fold but the first, which is the first (largest) block.
        kp_first = sizes[0][2]
        over_cycles = (
            G * cf * mf * sum(count * np.maximum(serial * kp, R) for count, _, kp in sizes)
            - np.maximum(0, R - serial * kp_first)
            + R
            + C
            - 3
        )
    else:
        folds = G * cf * rf * ns
        stream = M if df == WS else N
        serial_cycles = G * cf * rf * (ns * (2 * R + C - 2) + serial * stream) - 1
        slots = sum(count * np.maximum(serial * size, R) for count, size in tile_kinds)  # every stream tile
        slot_last = np.maximum(serial * t_last, R)
        over_cycles = R + G * cf * rf * slots - slot_last + serial * t_last + R + C - 3
    compute = np.where(overlapped, over_cycles, serial_cycles)

    # --- footprints (capacity test) and data counts of the operand roles (eq. 4-9, M1) -------------
    used_g = lay(layers.ifmap_used_g)
    lowered = M * K
    if df == WS:
        plane = lay(layers.plane_elems)
        share = np.gcd(Rp, wp)
        chunk_ch = np.minimum(base + (extra > 0), (wp - share + Rp - 1) // wp + 1)
        planes = sum(count * (f + ch - 1 - (f - 1) * share // wp) for (count, ch, _), f in zip(sizes, red_folds))
        rt_sum = lt(layers.rt_rows_sum) * lt(layers.rt_cols_sum)
        rt_max = lt(layers.rt_rows_max) * lt(layers.rt_cols_max)
        s_foot = lambda ci, ri: (N if ci else np.minimum(N, C)) * (K if ri else k_tile) * w_op
        s_use = lambda cs, rs: K * N * w_op
        x_foot = lambda si, ri: (plane if si else rt_max) * (chans if ri else chunk_ch) * a
        x_use = lambda ss, rs: (rt_sum if ss else plane) * (planes if rs else chans) * a
        s_total, x_total, cap_s, cap_x = K * N * w_op, lowered * a, half_f, half_i
    elif df == OS:
        s_foot = lambda ci, ri: (N if ci else np.minimum(N, C)) * (K if ri else k_first) * w_op
        s_use = lambda cs, rs: K * N * w_op
        x_foot = lambda si, ri: (used_g if si and ri else (M if si else np.minimum(M, R)) * (K if ri else k_first)) * a
        x_use = lambda ss, rs: (lowered if ss or rs else used_g) * a
        s_total, x_total, cap_s, cap_x = K * N * w_op, lowered * a, half_f, half_i
    else:
        s_foot = lambda ci, ri: (used_g if ci and ri else (M if ci else np.minimum(M, C)) * (K if ri else k_tile)) * a
        s_use = lambda cs, rs: (lowered if cs or rs else used_g) * a
        x_foot = lambda si, ri: (N if si else ts) * (K if ri else k_tile) * w_op
        x_use = lambda ss, rs: K * N * w_op
        s_total, x_total, cap_s, cap_x = lowered * a, K * N * w_op, half_i, half_f
    combos = [(True, True), (True, False), (False, True), (False, False)]
    s_fits = {k: s_foot(*k) <= cap_s for k in combos}
    x_fits = {k: x_foot(*k) <= cap_x for k in combos}
    s_uses = {k: s_use(*k) for k in combos}
    x_uses = {k: x_use(*k) for k in combos}

    def traffic_per_order(
        fits: dict, uses: dict, rel: tuple[str, str], irr: str, irr_extent: np.ndarray
    ) -> list[np.ndarray]:
        """DRAM bits of one operand per group, one [C, L, P, T] array per order: kept at the outermost level
        that fits, re-read by the irrelevant loop outside it (sim.mapping.operand_level)."""
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

    # per order: DRAM bits of the stationary-like and streamed operands and the spilled partial sums, each
    # [C, L, P, T] (exact integers); only the selection below reaches [C, L, P, T, O]
    per_s = traffic_per_order(s_fits, s_uses, ("c", "r"), "s", ns)
    per_x = traffic_per_order(x_fits, x_uses, ("s", "r"), "c", cf)
    feasible = s_foot(False, False) <= cap_s if df != OS else np.True_

    out_elems = G * M * N
    zero = np.zeros((1, 1, 1, 1), dtype=np.int64)
    if df == OS:
        per_spill = [zero for _ in positions]
        rounds = n_h * taps
    else:
        tile_cols = np.minimum(Sc, C)
        stream_all = M if df == WS else N
        per_spill = []
        for pos in positions:
            foot = (stream_all if pos["s"] > pos["r"] else ts) * (Sc if pos["c"] > pos["r"] else tile_cols) * acc
            # every reduction fold after the first writes its partial sums out and reads them back
            per_spill.append(np.where(foot > half_o, (rf - 1) * out_elems * acc, 0))
        rounds = rf
    reads_s = G * s_total * ns  # array-side reads (8-9)
    reads_x = G * x_total * cf
    ofmap_writes = out_elems * acc * rounds
    ofmap_reads = out_elems * (acc * (rounds - 1) + o)
    out_bits = out_elems * o

    # --- stalls: double buffering overlaps DRAM with compute, except the first load and the last
    # write-back of the layer (eq. 10) ---------------------------------------------------------------
    if df == WS:
        first_bits = k_tile * np.minimum(N, C) * w_op
        last_bits = t_last * (N - (cf - 1) * C) * o
    elif df == IS:
        first_bits = k_tile * np.minimum(M, C) * a
        last_bits = (M - (cf - 1) * C) * t_last * o
    else:
        first_bits = (np.minimum(M, R) * a + np.minimum(N, C) * w_op) * np.minimum(K, pack)
        last_bits = (M - (mf - 1) * R) * (N - (cf - 1) * C) * o
    bw = points["bandwidth"][:, :, None, None, None]  # [U, B, 1, 1, 1]: a bandwidth axis after the chips
    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731 - one rounding, the same for int64 and exact ints
    # with unlimited bandwidth (inf) every transfer takes 0 cycles; [U, B, L, P, T]
    edge = np.where(
        np.isfinite(bw), np.ceil(f64(first_bits)[:, None] / bw) + np.ceil(f64(last_bits)[:, None] / bw), 0.0
    )
    beyond_edges = out_bits - first_bits - last_bits  # DRAM bits other than the two edges, less the operands'

    def stall_of(
        dram_operands: np.ndarray, comp: np.ndarray, edge_c: np.ndarray, bw_c: np.ndarray, extra: np.ndarray
    ) -> np.ndarray:
        """Float stall cycles (10) for the operands' DRAM bits (float, exact below 2^53)."""
        middle = np.ceil(np.maximum(dram_operands + extra, 0.0) / bw_c)
        return edge_c + np.maximum(0.0, middle - comp)

    # --- energy (eq. 11-15) ----------------------------------------------------------------------------
    macs = G * M * K * N
    mac_pj = np.where(act_act, chips.act_mac_pj[:, None, :, None], chips.mac_pj[:, None, :, None])
    e_mac = macs * mac_pj
    # stationary operands shift down into their PE registers, (R + 1) / 2 registers on average; os drains its
    # partial sums the same way.  The MAC energy already includes the multiply-accumulate's own registers.
    shifted = out_elems * acc * rounds if df == OS else reads_s
    e_reg = shifted * ((R + 1) / 2 * c(chips.e_reg))  # float factor first: shifted * (R + 1) can pass 2^63
    if df == IS:
        e_s_r, e_s_w, e_x_r, e_x_w = (
            c(x) for x in (chips.e_sram_ifmap_r, chips.e_sram_ifmap_w, chips.e_sram_filter_r, chips.e_sram_filter_w)
        )
    else:
        e_s_r, e_s_w, e_x_r, e_x_w = (
            c(x) for x in (chips.e_sram_filter_r, chips.e_sram_filter_w, chips.e_sram_ifmap_r, chips.e_sram_ifmap_w)
        )
    e_o_r, e_o_w, e_dram_bit = c(chips.e_sram_ofmap_r), c(chips.e_sram_ofmap_w), c(chips.e_dram)
    # energy = fixed part (this tile choice) + pJ per DRAM bit of each operand + static power x time
    e_sram_fixed = reads_s * e_s_r + reads_x * e_x_r + ofmap_reads * e_o_r + ofmap_writes * e_o_w
    e_fixed = e_mac + e_reg + e_sram_fixed + out_bits * e_dram_bit
    per_bit_s, per_bit_x = e_dram_bit + e_s_w, e_dram_bit + e_x_w
    per_bit_spill = 2 * e_dram_bit + e_o_r + e_o_w  # out to DRAM and back, written and read in the ofmap SRAM
    static_per_cycle = (points["static_mw"] / points["clock_mhz"] * 1e3)[:, :, None, None, None]  # pJ per cycle

    # --- the best candidate per (chip, layer, pair): float selection over [C, L, P, T, O] -------------------
    full = (n_c, n_l, n_p, n_t, n_o)
    if n_t * n_o == 1:
        pick = pick_t = pick_o = np.zeros((n_pts, n_l, n_p, 1), dtype=np.int64)
        if check and not np.all(feasible):
            _raise_infeasible(
                df, chips, layers, pairs, np.broadcast_to(feasible, (n_c, n_l, n_p, 1))[..., 0], s_foot(False, False)
            )
    else:
        # per candidate: DRAM bits beyond the layer's two exposed edges, and the energy but for static power
        beyond = np.empty(full)
        energy = np.empty(full)
        e_fixed_f, beyond_f = f64(e_fixed), f64(beyond_edges)
        for k, (ds_k, dx_k, sp_k) in enumerate(zip(per_s, per_x, per_spill)):
            beyond[..., k] = (ds_k + dx_k + 2 * sp_k) + beyond_f
            energy[..., k] = e_fixed_f + (ds_k * per_bit_s + dx_k * per_bit_x + sp_k * per_bit_spill)
        # total = edge + max(compute, transfer of the rest): (10) with compute + stall folded together
        np.maximum(beyond, 0.0, out=beyond)
        total = np.divide(beyond[:, None], bw[..., None])  # [U, B, L, P, T, O]
        np.ceil(total, out=total)
        np.maximum(total, f64(compute)[:, None, ..., None], out=total)
        total += edge[..., None]
        energy_ub = np.multiply(total, static_per_cycle[..., None])
        energy_ub += energy[:, None]
        energy = energy_ub
        objectives = np.asarray(chips.objective)
        kinds = set(objectives.tolist())
        if kinds == {LATENCY}:
            primary = total
        elif kinds == {ENERGY}:
            primary = energy
        elif kinds == {EDP}:
            primary = energy * total
        else:
            obj = objectives[:, None, None, None, None, None]
            primary = np.where(obj == LATENCY, total, np.where(obj == ENERGY, energy, energy * total))
        primary = primary.reshape(n_c, n_b, n_l, n_p, n_t * n_o)
        ok = np.broadcast_to(feasible, (n_c, n_l, n_p, n_t))
        if not ok.all():
            primary = np.where(np.repeat(ok, n_o, axis=-1)[:, None], primary, np.inf)
        best = primary.min(axis=-1, keepdims=True)
        if check and not np.all(np.isfinite(best)):
            _raise_infeasible(df, chips, layers, pairs, np.isfinite(best[:, 0, ..., 0]), s_foot(False, False))
        if kinds == {LATENCY}:
            tie = energy
        elif LATENCY not in kinds:
            tie = total
        else:
            tie = np.where(objectives[:, None, None, None, None, None] == LATENCY, energy, total)
        secondary = tie.reshape(primary.shape)  # tie is not needed after this: overwritten in place
        np.copyto(secondary, np.inf, where=primary != best)
        pick = secondary.argmin(axis=-1).reshape(n_pts, n_l, n_p, 1)
        pick_t, pick_o = pick // n_o, pick % n_o

    group = np.repeat(np.arange(n_c), n_b)[:, None, None]  # each point's group
    lix, pix = np.arange(n_l)[None, :, None], np.arange(n_p)[None, None, :]

    def at_t(x: np.ndarray, rows: np.ndarray = group) -> np.ndarray:
        """A per-group [U, L, P, T] (or [.., 1]) array at each point's chosen tile: [U x B, L, P]."""
        x = np.asarray(x)
        if x.shape[-1] == 1:
            xb = np.broadcast_to(x[..., 0], (n_c if rows is group else n_pts, n_l, n_p))
            return xb[rows, lix, pix] if rows is not group or n_b > 1 else xb
        xb = np.broadcast_to(x, (n_c if rows is group else n_pts, n_l, n_p, n_t))
        return xb[rows, lix, pix, pick_t[..., 0]]

    def per_point(x: np.ndarray) -> np.ndarray:  # a per-point [U, B] field as [U x B, 1, 1]
        return np.asarray(x).reshape(n_pts, 1, 1)

    cell = (group * n_l + lix) * n_p + pix  # each point's (group, layer, pair) cell, flat

    def at_o(per_order: list[np.ndarray]) -> np.ndarray:  # per-order [.., T] arrays at the chosen candidate
        if len(per_order) == 1:
            return at_t(per_order[0])
        stacked = np.stack([np.broadcast_to(x, (n_c, n_l, n_p, n_t)) for x in per_order], axis=-1)
        return stacked.reshape(-1)[cell * (n_t * n_o) + pick[..., 0]]

    # --- the chosen candidate's figures, exactly -------------------------------------------------------------
    ds, dx, sb = at_o(per_s), at_o(per_x), at_o(per_spill)
    compute_c = at_t(compute)
    dram_ofmap = 2 * sb + at_t(out_bits)
    bw_p = per_point(points["bandwidth"])
    edge_p = at_t(
        np.broadcast_to(edge, (n_c, n_b) + edge.shape[2:]).reshape((n_pts,) + edge.shape[2:]),
        rows=np.arange(n_pts)[:, None, None],
    )
    stall = np.where(
        np.isfinite(bw_p), stall_of(f64(ds + dx + 2 * sb), f64(compute_c), edge_p, bw_p, f64(at_t(beyond_edges))), 0.0
    ).astype(np.int64)
    tot = compute_c + stall
    tot_f = f64(tot)
    g = lambda x: x[..., 0][group[:, 0, 0]] if x.shape[0] > 1 else x[..., 0]  # noqa: E731 - per chip, per point
    e_var_c = ds * g(per_bit_s) + dx * g(per_bit_x) + sb * g(per_bit_spill)
    static_p = per_point(points["static_mw"] / points["clock_mhz"] * 1e3)
    energy_c = (f64(at_t(e_fixed)) + e_var_c) + tot_f * static_p  # the selection's order
    e_sram = at_t(e_sram_fixed) + ds * g(e_s_w) + dx * g(e_x_w) + sb * g(e_o_r + e_o_w)
    e_dram = (ds + dx + dram_ofmap) * g(e_dram_bit)
    if df == IS:
        dram_ifmap, dram_filter, sram_ifmap, sram_filter = ds, dx, ds + at_t(reads_s), dx + at_t(reads_x)
    else:
        dram_ifmap, dram_filter, sram_ifmap, sram_filter = dx, ds, dx + at_t(reads_x), ds + at_t(reads_s)
    weight_bits = np.where(act_act, 0, G * K * N * w + G * N * n_h * c(chips.scale_bits))
    util = at_t(macs * serial) / (at_t(R * C * pack) * np.maximum(tot_f, 1.0))  # a 1-cycle layer has index 0
    order_code = np.array([_GEMM_ORDER[(df, x)] for x in orders])[pick_o[..., 0]]
    if df == WS:
        tiles_mnk = (ts, np.minimum(N, C), k_tile)
    elif df == IS:
        tiles_mnk = (np.minimum(M, C), ts, k_tile)
    else:
        tiles_mnk = (np.minimum(M, R), np.minimum(N, C), k_first)
    return {
        "macs": at_t(macs),
        "compute_cycles": compute_c,
        "stall_cycles": stall,
        "total_cycles": tot,
        "latency_us": tot / per_point(points["clock_mhz"]),
        "energy_pj": energy_c,
        "energy_mac_pj": at_t(e_mac),
        "energy_reg_pj": at_t(e_reg),
        "energy_sram_pj": e_sram,
        "energy_dram_pj": e_dram,
        "energy_static_pj": tot_f * static_p,
        "weight_bits": at_t(weight_bits),
        "dram_bits": dram_ifmap + dram_filter + dram_ofmap,
        "utilization": util,
        "bops": at_t(macs * w_op * a),
        "dram_ifmap_bits": dram_ifmap,
        "dram_filter_bits": dram_filter,
        "dram_ofmap_bits": dram_ofmap,
        "sram_ifmap_bits": sram_ifmap,
        "sram_filter_bits": sram_filter,
        "sram_ofmap_bits": at_t(ofmap_reads + ofmap_writes) + 2 * sb,
        "folds": at_t(folds),
        "loop_order": order_code,
        "tile_m": at_t(tiles_mnk[0]),
        "tile_n": at_t(tiles_mnk[1]),
        "tile_k": at_t(tiles_mnk[2]),
    }


def _raise_infeasible(
    df: int, chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray, ok: np.ndarray, tile_bits: np.ndarray
) -> None:
    """One line naming the first (chip, layer, pair) whose stationary tile fits no double-buffered SRAM."""
    ci, li, pi = (int(v[0]) for v in np.nonzero(~ok))
    bits = float(np.broadcast_to(tile_bits, ok.shape + (np.asarray(tile_bits).shape[-1],))[ci, li, pi, 0])
    buffer = _BUFFER[df]
    have = float(np.asarray(getattr(chips, f"{buffer}_sram_bits"))[ci]) / _BITS_PER_KIB
    need = 2 * bits / _BITS_PER_KIB
    pair = format_pair((int(pairs[pi, 0]), int(pairs[pi, 1])))
    raise InputError(
        f"chip {chips.names[ci]!r}: layer {layers.names[li]!r} at {pair} "
        f"fits no mapping: one {int(chips.rows[ci])}x{int(chips.cols[ci])} stationary tile needs "
        f"memory.{buffer}_sram_kib >= {need:.4g} (double-buffered), the chip has {have:.4g}"
    )
