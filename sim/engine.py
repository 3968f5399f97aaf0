"""The fast engine: closed-form cycles, traffic and energy, vectorized over chips x layers x pairs x mappings.

For every (chip, layer, pair) it evaluates every candidate mapping of :mod:`sim.mapping` at once (a fourth
array axis) and keeps the best for the chip's objective; ``mapping: scalesim`` chips evaluate only SCALE-Sim's
schedule.  This module groups and chunks the chips; :mod:`sim.candidate_costs` holds the equations (all in
``docs/sim.md``) and :mod:`sim.candidate_choice` the selection.  :mod:`sim.reference` replays any mapping fold by
fold and the tests assert that both agree exactly.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from sim.candidate_choice import choose
from sim.candidate_costs import IS, OS, WS, candidate_costs
from sim.chipbatch import ChipBatch
from sim.layerbatch import LayerBatch
from sim.mapping import MAPPING_MODES, SCALESIM_ORDER, Mapping, candidates
from sim.precision import pack_and_serial
from sim.unmappable import raise_unmappable

__all__ = ["evaluate", "check_mappable", "point_groups", "MODEL_VERSION", "ARRAY_COLUMNS"]

#: Bump when any equation changes: sweeps hash it, so a resumed sweep never mixes model versions.
MODEL_VERSION = "lowbit-sim/5"

SEARCH, SCALESIM = (MAPPING_MODES.index(x) for x in ("search", "scalesim"))

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
            raise_unmappable(df, sub, layers, pairs, ok, bits[..., None])


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
    parts = []
    for i in range(0, len(reps), step):  # each chunk: the groups' first chips [U] and their points' fields [U, B]
        chunk = reps.take(slice(i, i + step)) if len(reps) > step else reps
        costs = candidate_costs(df, chunk, layers, pairs, orders, tiles)
        chunk_points = {k: v[i : i + step] for k, v in points.items()}
        parts.append(choose(df, chunk, chunk_points, layers, pairs, orders, tiles, costs, check))
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
