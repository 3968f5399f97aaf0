"""The fast engine's choice: the best candidate mapping per point, and that candidate's figures, exactly.

Chips that differ only in DRAM bandwidth, clock or static power form a group (:func:`sim.engine.point_groups`):
the terms of :mod:`sim.candidate_costs` are per group [U, L, P, T]; stalls, static energy and the selection
take a bandwidth axis of the group's points [U, B].  The selection runs in float over [U, B, L, P, T, O]; the
chosen candidate's figures are then recomputed from exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.candidate_costs import IS, OS, WS, CandidateCosts, per_chip
from sim.chipbatch import ChipBatch
from sim.layerbatch import LayerBatch
from sim.mapping import GEMM_ORDER_NAMES, OBJECTIVES, ORDERS, gemm_order_name
from sim.unmappable import raise_unmappable

__all__ = ["choose"]

LATENCY, ENERGY, EDP = (OBJECTIVES.index(x) for x in ("latency", "energy", "edp"))
#: index into GEMM_ORDER_NAMES of each (dataflow, ORDERS index)
_GEMM_ORDER = {
    (df, o): GEMM_ORDER_NAMES.index(gemm_order_name(df, o)) for df in (WS, OS, IS) for o in range(len(ORDERS))
}


def _f64(x: np.ndarray) -> np.ndarray:
    """One rounding to float, the same for int64 and exact integers."""
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class _Edges:
    """The layer's exposed DRAM transfers (eq. 10): double buffering overlaps DRAM with compute, except the first
    load and the last write-back."""

    bw: np.ndarray  # [U, B, 1, 1, 1]: a bandwidth axis after the chips
    edge: np.ndarray  # cycles of the two edges, [U, B, L, P, T]; 0 with unlimited bandwidth (inf)
    beyond_edges: np.ndarray  # DRAM bits other than the two edges, less the operands'


def _edges(costs: CandidateCosts, points: dict[str, np.ndarray]) -> _Edges:
    bw = points["bandwidth"][:, :, None, None, None]
    first, last = _f64(costs.first_bits)[:, None], _f64(costs.last_bits)[:, None]
    edge = np.where(np.isfinite(bw), np.ceil(first / bw) + np.ceil(last / bw), 0.0)
    return _Edges(bw, edge, costs.traffic.out_bits - costs.first_bits - costs.last_bits)


def _static_pj_per_cycle(points: dict[str, np.ndarray]) -> np.ndarray:
    return points["static_mw"] / points["clock_mhz"] * 1e3


def _primary(objectives: np.ndarray, total: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Each chip's objective over its candidates."""
    kinds = set(objectives.tolist())
    if kinds == {LATENCY}:
        return total
    if kinds == {ENERGY}:
        return energy
    if kinds == {EDP}:
        return energy * total
    obj = objectives[:, None, None, None, None, None]
    return np.where(obj == LATENCY, total, np.where(obj == ENERGY, energy, energy * total))


def _tie_break(objectives: np.ndarray, total: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """What breaks a tie of the objective: energy for latency chips, latency for the others."""
    kinds = set(objectives.tolist())
    if kinds == {LATENCY}:
        return energy
    if LATENCY not in kinds:
        return total
    return np.where(objectives[:, None, None, None, None, None] == LATENCY, energy, total)


def _select(
    df: int,
    chips: ChipBatch,
    points: dict[str, np.ndarray],
    layers: LayerBatch,
    pairs: np.ndarray,
    costs: CandidateCosts,
    edges: _Edges,
    n_t: int,
    check: bool,
) -> np.ndarray:
    """The chosen candidate per point, [U x B, L, P, 1] indices into ``n_t`` tiles x orders (float selection)."""
    tr, en = costs.traffic, costs.energy
    n_c, n_l, n_p, n_o = len(chips), len(layers), len(pairs), len(tr.per_s)
    n_b = points["bandwidth"].shape[1]
    if n_t * n_o == 1:
        if check and not np.all(tr.feasible):
            feasible = np.broadcast_to(tr.feasible, (n_c, n_l, n_p, 1))[..., 0]
            raise_unmappable(df, chips, layers, pairs, feasible, tr.unmappable_bits)
        return np.zeros((n_c * n_b, n_l, n_p, 1), dtype=np.int64)
    full = (n_c, n_l, n_p, n_t, n_o)
    # per candidate: DRAM bits beyond the layer's two exposed edges, and the energy but for static power
    beyond = np.empty(full)
    energy = np.empty(full)
    e_fixed_f, beyond_f = _f64(en.e_fixed), _f64(edges.beyond_edges)
    for k, (ds_k, dx_k, sp_k) in enumerate(zip(tr.per_s, tr.per_x, tr.per_spill)):
        beyond[..., k] = (ds_k + dx_k + 2 * sp_k) + beyond_f
        energy[..., k] = e_fixed_f + (ds_k * en.per_bit_s + dx_k * en.per_bit_x + sp_k * en.per_bit_spill)
    # total = edge + max(compute, transfer of the rest): (10) with compute + stall folded together
    np.maximum(beyond, 0.0, out=beyond)
    total = np.divide(beyond[:, None], edges.bw[..., None])  # [U, B, L, P, T, O]
    np.ceil(total, out=total)
    np.maximum(total, _f64(costs.compute)[:, None, ..., None], out=total)
    total += edges.edge[..., None]
    energy_ub = np.multiply(total, _static_pj_per_cycle(points)[:, :, None, None, None, None])
    energy_ub += energy[:, None]
    objectives = np.asarray(chips.objective)
    primary = _primary(objectives, total, energy_ub).reshape(n_c, n_b, n_l, n_p, n_t * n_o)
    ok = np.broadcast_to(tr.feasible, (n_c, n_l, n_p, n_t))
    if not ok.all():
        primary = np.where(np.repeat(ok, n_o, axis=-1)[:, None], primary, np.inf)
    best = primary.min(axis=-1, keepdims=True)
    if check and not np.all(np.isfinite(best)):
        raise_unmappable(df, chips, layers, pairs, np.isfinite(best[:, 0, ..., 0]), tr.unmappable_bits)
    secondary = _tie_break(objectives, total, energy_ub).reshape(primary.shape)  # overwritten in place
    np.copyto(secondary, np.inf, where=primary != best)
    return secondary.argmin(axis=-1).reshape(n_c * n_b, n_l, n_p, 1)


class _Gather:
    """Reads per-group arrays at each point's chosen candidate: the result has U x B rows, group by group."""

    def __init__(self, n_c: int, n_b: int, n_l: int, n_p: int, n_t: int, n_o: int, pick: np.ndarray) -> None:
        self.n_c, self.n_b, self.n_l, self.n_p, self.n_t, self.n_o = n_c, n_b, n_l, n_p, n_t, n_o
        self.n_pts = n_c * n_b
        self.pick, self.pick_t, self.pick_o = pick, pick // n_o, pick % n_o
        self.group = np.repeat(np.arange(n_c), n_b)[:, None, None]  # each point's group
        self.lix, self.pix = np.arange(n_l)[None, :, None], np.arange(n_p)[None, None, :]
        self.cell = (self.group * n_l + self.lix) * n_p + self.pix  # each point's (group, layer, pair) cell, flat

    def at_t(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """A per-group [U, L, P, T] (or [.., 1]) array at each point's chosen tile: [U x B, L, P]; ``rows``
        reads a per-point [U x B, ..] array instead."""
        x = np.asarray(x)
        by_group = rows is None
        at = self.group if rows is None else rows
        n_rows = self.n_c if by_group else self.n_pts
        if x.shape[-1] == 1:
            xb = np.broadcast_to(x[..., 0], (n_rows, self.n_l, self.n_p))
            return xb[at, self.lix, self.pix] if not by_group or self.n_b > 1 else xb
        xb = np.broadcast_to(x, (n_rows, self.n_l, self.n_p, self.n_t))
        return xb[at, self.lix, self.pix, self.pick_t[..., 0]]

    def at_o(self, per_order: list[np.ndarray]) -> np.ndarray:
        """Per-order [.., T] arrays at the chosen candidate."""
        if len(per_order) == 1:
            return self.at_t(per_order[0])
        shape = (self.n_c, self.n_l, self.n_p, self.n_t)
        stacked = np.stack([np.broadcast_to(x, shape) for x in per_order], axis=-1)
        return stacked.reshape(-1)[self.cell * (self.n_t * self.n_o) + self.pick[..., 0]]

    def per_point(self, x: np.ndarray) -> np.ndarray:
        """A per-point [U, B] field as [U x B, 1, 1]."""
        return np.asarray(x).reshape(self.n_pts, 1, 1)

    def chip_at_point(self, x: np.ndarray) -> np.ndarray:
        """A per-chip [U, 1, 1, 1] field at each point, [U x B, 1, 1]."""
        return x[..., 0][self.group[:, 0, 0]] if x.shape[0] > 1 else x[..., 0]

    def edge_at_t(self, edge: np.ndarray) -> np.ndarray:
        """The per-point edge cycles [U, B, L, P, T] at each point's chosen tile."""
        flat = np.broadcast_to(edge, (self.n_c, self.n_b) + edge.shape[2:]).reshape((self.n_pts,) + edge.shape[2:])
        return self.at_t(flat, rows=np.arange(self.n_pts)[:, None, None])


def _stall_cycles(
    dram_operands: np.ndarray, comp: np.ndarray, edge: np.ndarray, bw: np.ndarray, extra: np.ndarray
) -> np.ndarray:
    """Float stall cycles (10) for the operands' DRAM bits (float, exact below 2^53)."""
    middle = np.ceil(np.maximum(dram_operands + extra, 0.0) / bw)
    return edge + np.maximum(0.0, middle - comp)


def _tiles_mnk(df: int, costs: CandidateCosts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen mapping's tile of M, N and K."""
    op, lp, bl = costs.op, costs.loops, costs.blocks
    if df == WS:
        return lp.ts, np.minimum(op.N, op.C), bl.k_tile
    if df == IS:
        return np.minimum(op.M, op.C), lp.ts, bl.k_tile
    return np.minimum(op.M, op.R), np.minimum(op.N, op.C), bl.k_first


def _figures(
    df: int,
    chips: ChipBatch,
    points: dict[str, np.ndarray],
    orders: list[int],
    costs: CandidateCosts,
    edges: _Edges,
    at: _Gather,
) -> dict[str, np.ndarray]:
    """The chosen candidate's figures, exactly, in :data:`sim.engine.ARRAY_COLUMNS` order."""
    op, tr, en = costs.op, costs.traffic, costs.energy
    ds, dx, sb = at.at_o(tr.per_s), at.at_o(tr.per_x), at.at_o(tr.per_spill)
    compute_c = at.at_t(costs.compute)
    dram_ofmap = 2 * sb + at.at_t(tr.out_bits)
    bw_p = at.per_point(points["bandwidth"])
    stall = np.where(
        np.isfinite(bw_p),
        _stall_cycles(
            _f64(ds + dx + 2 * sb), _f64(compute_c), at.edge_at_t(edges.edge), bw_p, _f64(at.at_t(edges.beyond_edges))
        ),
        0.0,
    ).astype(np.int64)
    tot = compute_c + stall
    tot_f = _f64(tot)
    g = at.chip_at_point
    e_var_c = ds * g(en.per_bit_s) + dx * g(en.per_bit_x) + sb * g(en.per_bit_spill)
    static_p = at.per_point(_static_pj_per_cycle(points))
    energy_c = (_f64(at.at_t(en.e_fixed)) + e_var_c) + tot_f * static_p  # the selection's order
    e_sram = at.at_t(en.e_sram_fixed) + ds * g(en.e_s_w) + dx * g(en.e_x_w) + sb * g(en.e_o_r + en.e_o_w)
    e_dram = (ds + dx + dram_ofmap) * g(en.e_dram_bit)
    if df == IS:
        dram_ifmap, dram_filter, sram_ifmap, sram_filter = ds, dx, ds + at.at_t(tr.reads_s), dx + at.at_t(tr.reads_x)
    else:
        dram_ifmap, dram_filter, sram_ifmap, sram_filter = dx, ds, dx + at.at_t(tr.reads_x), ds + at.at_t(tr.reads_s)
    scale_bits = per_chip(chips.scale_bits)
    weight_bits = np.where(op.act_act, 0, op.G * op.K * op.N * op.w + op.G * op.N * costs.blocks.n_h * scale_bits)
    util = at.at_t(en.macs * op.serial) / (at.at_t(op.R * op.C * op.pack) * np.maximum(tot_f, 1.0))  # 1 cycle: 0
    order_code = np.array([_GEMM_ORDER[(df, x)] for x in orders])[at.pick_o[..., 0]]
    tile_m, tile_n, tile_k = _tiles_mnk(df, costs)
    return {
        "macs": at.at_t(en.macs),
        "compute_cycles": compute_c,
        "stall_cycles": stall,
        "total_cycles": tot,
        "latency_us": tot / at.per_point(points["clock_mhz"]),
        "energy_pj": energy_c,
        "energy_mac_pj": at.at_t(en.e_mac),
        "energy_reg_pj": at.at_t(en.e_reg),
        "energy_sram_pj": e_sram,
        "energy_dram_pj": e_dram,
        "energy_static_pj": tot_f * static_p,
        "weight_bits": at.at_t(weight_bits),
        "dram_bits": dram_ifmap + dram_filter + dram_ofmap,
        "utilization": util,
        "bops": at.at_t(en.macs * op.w_op * op.a),
        "dram_ifmap_bits": dram_ifmap,
        "dram_filter_bits": dram_filter,
        "dram_ofmap_bits": dram_ofmap,
        "sram_ifmap_bits": sram_ifmap,
        "sram_filter_bits": sram_filter,
        "sram_ofmap_bits": at.at_t(tr.ofmap_reads + tr.ofmap_writes) + 2 * sb,
        "folds": at.at_t(costs.folds),
        "loop_order": order_code,
        "tile_m": at.at_t(tile_m),
        "tile_n": at.at_t(tile_n),
        "tile_k": at.at_t(tile_k),
    }


def choose(
    df: int,
    chips: ChipBatch,
    points: dict[str, np.ndarray],
    layers: LayerBatch,
    pairs: np.ndarray,
    orders: list[int],
    tiles: list[int],
    costs: CandidateCosts,
    check: bool,
) -> dict[str, np.ndarray]:
    """The best candidate's figures per point.  ``chips`` are the groups' first chips [U]; ``points`` the
    per-point fields [U, B] of every chip of each group; the result has U x B rows, group by group.  With
    ``check``, a (chip, layer, pair) that no candidate can map raises a one-line InputError."""
    edges = _edges(costs, points)
    pick = _select(df, chips, points, layers, pairs, costs, edges, len(tiles), check)
    n_b = points["bandwidth"].shape[1]
    at = _Gather(len(chips), n_b, len(layers), len(pairs), len(tiles), len(orders), pick)
    return _figures(df, chips, points, orders, costs, edges, at)
