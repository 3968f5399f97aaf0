"""Cycle-stepped reference engine: moves real operands through the array one cycle at a time.

It exists to prove :mod:`sim.engine` right on small shapes.  For one chip, layer and pair it

* lowers the layer to integer GEMM operands (im2col with the layer's real stride and padding),
* steps every fold of the systolic array cycle by cycle -- weights/ifmap tiles shifted in row by
  row, streamed operands entering with a one-cycle skew per row, bit-serial streams one bit-slice
  per cycle, Bit-Fusion PEs summing ``pack`` products per cycle, partial sums moving down --
* runs a layer with ``in_blocks`` > 1 (PTQ-SL input blocks) as one reduction per block, each block's
  folds packed from the block's first element, and sums the blocks' partial sums,
* checks the array's outputs against ``A @ B`` (so the dataflow really computes the layer),
* counts the SRAM words that enter or leave the array and replays the scratchpad policy fold by
  fold with explicit resident sets (and, for a streamed ws ifmap, the input planes of the
  channels each fold touches) to count DRAM traffic.

Slow by design (Python loop over cycles); keep shapes small.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair
from sim.chipbatch import DATAFLOW_CODES
from sim.config import Chip
from sim.mapping import ORDERS, SCALESIM_ORDER, Mapping, axis_halvings, operand_level, tile_halvings
from sim.precision import PE_KIND_CODES, pack_and_serial
from sim.workload.layer import Layer

__all__ = ["ReferenceResult", "run_reference", "lower_layer"]

BITS_PER_KIB = 8192


@dataclass(frozen=True)
class ReferenceResult:
    """Counts measured by stepping the array (cycles, bits) and the array's GEMM output [G, M, N]."""

    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    folds: int
    dram_ifmap_bits: int
    dram_filter_bits: int
    dram_ofmap_bits: int
    sram_ifmap_bits: int
    sram_filter_bits: int
    sram_ofmap_bits: int
    output: np.ndarray
    expected: np.ndarray

    @property
    def dram_bits(self) -> int:
        return self.dram_ifmap_bits + self.dram_filter_bits + self.dram_ofmap_bits


def _signed(rng: np.random.Generator, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape, dtype=np.int64)


def lower_layer(
    layer: Layer, a_bits: int, w_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random integer operands in GEMM form: A [G, M, K], B [G, K, N] and the ifmap index map
    idx [G, M, K] (unique ifmap element id, or -1 for padding / out-of-range positions)."""
    G, M, K, N = layer.groups, layer.M, layer.K, layer.N
    if layer.kind in ("conv", "dwconv"):
        cg = layer.in_c // G
        b, oh, ow = np.meshgrid(np.arange(layer.batch), np.arange(layer.out_h), np.arange(layer.out_w), indexing="ij")
        # channel-major reduction order, as PyTorch's [out, in * k_h * k_w] weight layout
        ci, kh, kw = np.meshgrid(np.arange(cg), np.arange(layer.k_h), np.arange(layer.k_w), indexing="ij")
        r = oh.reshape(-1, 1) * layer.stride - layer.pad + kh.reshape(1, -1)
        c = ow.reshape(-1, 1) * layer.stride - layer.pad + kw.reshape(1, -1)
        valid = (r >= 0) & (r < layer.in_h) & (c >= 0) & (c < layer.in_w)
        base = ((b.reshape(-1, 1) * layer.in_h + r) * layer.in_w + c) * layer.in_c + ci.reshape(1, -1)
        idx = np.stack([np.where(valid, base + g * cg, -1) for g in range(G)])
        n_unique = layer.batch * layer.in_h * layer.in_w * layer.in_c
    else:
        idx = np.arange(G * M * K, dtype=np.int64).reshape(G, M, K)
        n_unique = G * M * K
    ifmap = _signed(rng, a_bits, (n_unique,))
    A = np.where(idx >= 0, ifmap[np.maximum(idx, 0)], 0)
    B = _signed(rng, w_bits, (G, K, N))
    return A, B, idx


def _place(j: np.ndarray | int, bits: int) -> np.ndarray | int:
    """Weight of bit j in a two's-complement number of ``bits`` bits."""
    return np.where(j == bits - 1, -(1 << (bits - 1)), 1 << j)


def _beat_term(
    act: np.ndarray, wgt: np.ndarray, beat: np.ndarray, serial_mode: str, a_bits: int, w_bits: int
) -> np.ndarray:
    """Partial product of one beat; act/wgt are [..., pack] vectors, beat is [...] (bit-slice index)."""
    if serial_mode == "none":
        return (act * wgt).sum(-1)
    if serial_mode == "activation":
        bit = (act >> beat[..., None]) & 1
        return (bit * wgt).sum(-1) * _place(beat, a_bits)
    ja, jw = beat % a_bits, beat // a_bits
    bit_a = (act >> ja[..., None]) & 1
    bit_w = (wgt >> jw[..., None]) & 1
    return (bit_a * bit_w).sum(-1) * _place(ja, a_bits) * _place(jw, w_bits)


def _stationary_fold(
    S: np.ndarray, X: np.ndarray, s: int, stationary_is_act: bool, serial_mode: str, a_bits: int, w_bits: int
) -> tuple[np.ndarray, int]:
    """One ws/is fold.  S [R, C, p] is shifted in from the top, one row per cycle; X [T, R, p] streams
    in from the left with one cycle of skew per row.  Returns (Y [T, C], cycles of the fold)."""
    R, C, p = S.shape
    T = X.shape[0]
    held = np.zeros_like(S)
    for load_step in range(R):  # load: rows shift down, the new row enters at the top
        held[1:] = held[:-1].copy()
        held[0] = S[R - 1 - load_step]
    reg_val = np.zeros((R, C, p), dtype=np.int64)
    reg_beat = np.full((R, C), -1, dtype=np.int64)
    local = np.zeros((R, C), dtype=np.int64)
    psum = np.zeros((R, C), dtype=np.int64)
    Y = np.zeros((T, C), dtype=np.int64)
    beats = s * T
    done, tau = 0, 0
    rows = np.arange(R)
    while done < T * C:
        reg_val[:, 1:] = reg_val[:, :-1].copy()
        reg_beat[:, 1:] = reg_beat[:, :-1].copy()
        edge = tau - rows
        live = (edge >= 0) & (edge < beats)
        reg_val[:, 0] = np.where(live[:, None], X[np.clip(edge // s, 0, T - 1), rows], 0)
        reg_beat[:, 0] = np.where(live, edge, -1)
        active = reg_beat >= 0
        j = np.where(active, reg_beat % s, 0)
        if stationary_is_act:
            term = _beat_term(held, reg_val, j, serial_mode, a_bits, w_bits)
        else:
            term = _beat_term(reg_val, held, j, serial_mode, a_bits, w_bits)
        local = local + np.where(active, term, 0)
        finishing = active & (j == s - 1)
        above = np.vstack([np.zeros((1, C), dtype=np.int64), psum[:-1]])
        new_psum = np.where(finishing, above + local, psum)
        local = np.where(finishing, 0, local)
        psum = new_psum
        for c in np.nonzero(finishing[R - 1])[0]:
            Y[reg_beat[R - 1, c] // s, c] = psum[R - 1, c]
            done += 1
        tau += 1
    return Y, R + tau


def _output_stationary_fold(
    A: np.ndarray, B: np.ndarray, s: int, serial_mode: str, a_bits: int, w_bits: int
) -> tuple[np.ndarray, int]:
    """One os fold: A [R, Kp, p] streams in from the left, B [Kp, C, p] from the top, one cycle of
    skew per row/column; each PE accumulates its own output.  Returns (Y [R, C], cycles)."""
    R, Kp, p = A.shape
    C = B.shape[1]
    a_val = np.zeros((R, C, p), dtype=np.int64)
    a_beat = np.full((R, C), -1, dtype=np.int64)
    b_val = np.zeros((R, C, p), dtype=np.int64)
    acc = np.zeros((R, C), dtype=np.int64)
    beats = s * Kp
    rows, cols = np.arange(R), np.arange(C)
    tau, last = 0, -1
    while True:
        a_val[:, 1:] = a_val[:, :-1].copy()
        a_beat[:, 1:] = a_beat[:, :-1].copy()
        b_val[1:] = b_val[:-1].copy()
        ea, eb = tau - rows, tau - cols
        la, lb = (ea >= 0) & (ea < beats), (eb >= 0) & (eb < beats)
        a_val[:, 0] = np.where(la[:, None], A[rows, np.clip(ea // s, 0, Kp - 1)], 0)
        a_beat[:, 0] = np.where(la, ea, -1)
        b_val[0] = np.where(lb[:, None], B[np.clip(eb // s, 0, Kp - 1), cols], 0)
        active = a_beat >= 0
        if active.any():
            last = tau
        j = np.where(active, a_beat % s, 0)
        acc += np.where(active, _beat_term(a_val, b_val, j, serial_mode, a_bits, w_bits), 0)
        if tau > beats + R + C:
            break
        tau += 1
    return acc, last + 1


def _stream_tiles(layer: Layer, df: str, M: int, N: int, R: int, tile: int) -> list[np.ndarray]:
    """The ``s`` loop: index arrays into M (ws: blocks of output rows x columns, row tiles outer; os: row
    folds of R pixels) or into N (is)."""
    if df == "os":
        return [np.arange(m0, min(M, m0 + R)) for m0 in range(0, M, R)]
    if df == "is":
        size = -(-N // (1 << tile_halvings(axis_halvings(N))[tile]))
        return [np.arange(n0, min(N, n0 + size)) for n0 in range(0, N, size)]
    conv = layer.kind in ("conv", "dwconv")
    rows, width = (layer.batch * layer.out_h, layer.out_w) if conv else (M, 1)
    halvings = tile_halvings(axis_halvings(rows) + axis_halvings(width))[tile]
    by_rows = min(halvings, axis_halvings(rows))
    h, wt = -(-rows // (1 << by_rows)), -(-width // (1 << (halvings - by_rows)))
    tiles = []
    for r0 in range(0, rows, h):
        for x0 in range(0, width, wt):
            r, x = np.arange(r0, min(rows, r0 + h)), np.arange(x0, min(width, x0 + wt))
            tiles.append((r[:, None] * width + x[None, :]).reshape(-1))
    return tiles


#: The loops each input operand role is indexed by (sim.mapping).
_RELEVANT = {"stat": ("c", "r"), "stream": ("s", "r")}


def _levels(order: tuple[str, ...], fp: dict[str, object], caps: dict[str, float]) -> dict[str, int]:
    """Buffer level of each input operand (docs/sim.md, "Mapping"): the outermost level whose footprint fits
    half its SRAM.  ``fp[op]`` maps (relevant loops inside the level) -> footprint bits."""
    out = {}
    for op in ("stat", "stream"):
        fits = []
        for level in range(3):
            inside = tuple(order.index(x) >= level for x in _RELEVANT[op])
            fits.append(fp[op](*inside) <= caps[op])  # type: ignore[operator]
        out[op] = operand_level(fits)
    return out


def run_reference(  # noqa: C901 - to split: the cycle-stepped reference's fold loop
    chip: Chip,
    layer: Layer,
    pair: Pair,
    seed: int = 0,
    max_macs: int = 1_000_000,
    out_bits: int | None = None,
    mapping: Mapping | None = None,
) -> ReferenceResult:
    """Step ``layer`` through ``chip``'s array at ``pair`` under ``mapping`` (default: SCALE-Sim's schedule)
    and count cycles and traffic.

    Outputs are stored at ``out_bits`` (default: the pair's activation bits), or at ``acc_bits`` on a chip
    with ``memory.output_width: accumulator``.  Layers above ``max_macs`` are refused: stepping costs about a
    numpy call per cycle."""
    w_bits, a_bits = pair
    o_bits = a_bits if out_bits is None else int(out_bits)
    if chip.memory.output_width == "accumulator":
        o_bits = chip.memory.acc_bits
    chip.check_pairs([pair])
    w_op = a_bits if not layer.has_weights else w_bits
    if layer.macs > max_macs:
        raise InputError(
            f"layer {layer.name!r}: {layer.macs} MACs is too large for the reference engine (max_macs={max_macs})"
        )
    df = chip.array.dataflow
    mapping = mapping if mapping is not None else Mapping(SCALESIM_ORDER[DATAFLOW_CODES[df]])
    order = ORDERS[mapping.order]
    rng = np.random.default_rng(seed)
    A, B, idx = lower_layer(layer, a_bits, w_op, rng)
    G, M, K = A.shape
    window = layer.window
    # per_tap: reorder the reduction tap-major inside each channel block, so that every (block, tap) is a
    # contiguous block of its own; lowered keeps the channel-major im2col order
    wp = 1 if chip.array.reduction == "per_tap" else window  # reduction elements per channel in one block
    block_k: list[int] = []
    perm: list[int] = []
    ch0 = 0
    for size in layer.block_k:
        chans = size // window
        taps = [range(window)] if wp == window else [[t] for t in range(window)]
        for tap_set in taps:
            perm += [c * window + t for c in range(ch0, ch0 + chans) for t in tap_set]
            block_k.append(chans * len(tap_set))
        ch0 += chans
    perm_arr = np.array(perm, dtype=np.int64)
    A, B, idx = A[:, :, perm_arr], B[:, perm_arr, :], idx[:, :, perm_arr]
    chan_of_k = perm_arr // window  # the input channel of each reduction position
    N = B.shape[2]
    R, C = chip.array.rows, chip.array.cols
    pack, serial = (
        int(v)
        for v in pack_and_serial(
            np.array(PE_KIND_CODES[chip.pe.kind]), np.array(chip.pe.serial == "both"), np.array(w_op), np.array(a_bits)
        )
    )
    serial_mode = chip.pe.serial if chip.pe.kind == "bitserial" else "none"
    # input blocks: each is its own reduction over a channel-aligned range of K, packed from its start
    bounds = np.concatenate([[0], np.cumsum(block_k)]).tolist()
    blocks = []  # (first element, end element, packed slots, A [G, M, Kp, pack], B [G, Kp, N, pack])
    for k_a, k_b in zip(bounds[:-1], bounds[1:]):
        kp = -(-(k_b - k_a) // pack)
        Ap = np.zeros((G, M, kp * pack), dtype=np.int64)
        Ap[:, :, : k_b - k_a] = A[:, :, k_a:k_b]
        Bp = np.zeros((G, kp * pack, N), dtype=np.int64)
        Bp[:, : k_b - k_a, :] = B[:, k_a:k_b, :]
        blocks.append((k_a, k_b, kp, Ap.reshape(G, M, kp, pack), Bp.reshape(G, kp, pack, N).transpose(0, 1, 3, 2)))
    acc_bits = chip.memory.acc_bits
    half = {k: getattr(chip.memory, f"{k}_sram_kib") * BITS_PER_KIB / 2 for k in ("ifmap", "filter", "ofmap")}
    C_g = K // window

    # --- the three loops (sim.mapping) -------------------------------------------------------------
    col_loop = [np.arange(x0, min(M if df == "is" else N, x0 + C)) for x0 in range(0, M if df == "is" else N, C)]
    if df == "os":  # one fold per input block; the reduction stays in the PEs
        red_loop = [(h, blocks[h][0], blocks[h][1]) for h in range(len(blocks))]
    else:  # the row folds of every block in turn, each block's folds packed from its own start
        red_loop = [
            (h, b[0] + k0 * pack, min(b[1], b[0] + (k0 + R) * pack))
            for h, b in enumerate(blocks)
            for k0 in range(0, b[2], R)
        ]
    stream_loop = _stream_tiles(layer, df, M, N, R, mapping.tile)
    loops: dict[str, list[Any]] = {"c": col_loop, "r": red_loop, "s": stream_loop}

    # --- the buffer policy: footprints (bits) of the operand roles, as documented ----------------------
    used_g = [np.unique(idx[g][idx[g] >= 0]).size for g in range(G)]
    k_big = bounds[1] - bounds[0]  # the first block is the largest
    k_tile = min(k_big, R * pack)
    s_max = max(len(t) for t in stream_loop)
    c_max = max(len(t) for t in col_loop)
    if df in ("ws", "os"):
        k_fold = k_tile if df == "ws" else k_big
        fp_stat = lambda ci, ri: (N if ci else c_max) * (K if ri else k_fold) * w_op
    else:
        fp_stat = lambda ci, ri: (used_g[0] if ci and ri else (M if ci else c_max) * (K if ri else k_tile)) * a_bits
    if df == "ws":
        plane = used_g[0] // C_g
        big = max(np.unique(idx[0][t][idx[0][t] >= 0]).size for t in stream_loop) // C_g if C_g else 0
        share = math.gcd(R * pack, wp)
        chunk_ch = min(-(-k_big // wp), (wp - share + R * pack - 1) // wp + 1)
        fp_stream = lambda si, ri: (plane if si else big) * (C_g if ri else chunk_ch) * a_bits
    elif df == "os":
        fp_stream = lambda si, ri: (
            (used_g[0] if si and ri else (M if si else min(M, R)) * (K if ri else k_big)) * a_bits
        )
    else:
        fp_stream = lambda si, ri: (N if si else s_max) * (K if ri else k_tile) * w_op
    stat_buf, stream_buf = ("ifmap", "filter") if df == "is" else ("filter", "ifmap")
    levels = _levels(
        order, {"stat": fp_stat, "stream": fp_stream}, {"stat": half[stat_buf], "stream": half[stream_buf]}
    )
    if df == "os":
        psum_foot = 0
    else:
        s_in, c_in = order.index("s") > order.index("r"), order.index("c") > order.index("r")
        psum_foot = (
            (M if df == "ws" and s_in else N if s_in else s_max)
            * ((N if df == "ws" else M) if c_in else c_max)
            * acc_bits
        )
    spill = df != "os" and psum_foot > half["ofmap"]

    out = np.zeros((G, M, N), dtype=np.int64)
    d = {"ifmap": 0, "filter": 0, "ofmap": 0}
    s = {"ifmap": 0, "filter": 0, "ofmap": 0}
    fold_times: list[tuple[int, int]] = []  # (stream cycles, stepped fold cycles), in execution order
    folds = 0
    last_r = len(red_loop) - 1
    for g in range(G):
        # what each operand role holds: ids loaded in the current epoch (the loops outside its level)
        ids_seen = {"stat": set(), "stream": set()}  # type: dict[str, set[int]]
        epoch: dict[str, tuple[int, ...] | None] = {"stat": None, "stream": None}
        positions = [range(len(loops[x])) for x in order]
        for point in itertools.product(*positions):
            at = dict(zip(order, point))
            cols, (h, k_lo, k_hi), tile = loops["c"][at["c"]], loops["r"][at["r"]], loops["s"][at["s"]]
            k_a, k_b, Kp, Ap, Bp = blocks[h]
            folds += 1
            # --- step the fold and note its output tile (rows of M, columns of N) -------------------
            if df == "os":
                At = np.zeros((R, Kp, pack), dtype=np.int64)
                At[: len(tile)] = Ap[g, tile]
                Bt = np.zeros((Kp, C, pack), dtype=np.int64)
                Bt[:, : len(cols)] = Bp[g][:, cols]
                Y, fc = _output_stationary_fold(At, Bt, serial, serial_mode, a_bits, w_op)
                out[g][np.ix_(tile, cols)] += Y[: len(tile), : len(cols)]
                m_idx, n_idx, stream_cycles = tile, cols, serial * Kp
                s["ifmap"] += len(tile) * (k_hi - k_lo) * a_bits
                s["filter"] += (k_hi - k_lo) * len(cols) * w_op
            else:
                k0 = (k_lo - k_a) // pack
                kr = -(-(k_hi - k_lo) // pack)
                S = np.zeros((R, C, pack), dtype=np.int64)
                if df == "ws":
                    S[:kr, : len(cols)] = Bp[g, k0 : k0 + kr][:, cols]
                    X = np.zeros((len(tile), R, pack), dtype=np.int64)
                    X[:, :kr] = Ap[g, tile, k0 : k0 + kr]
                    Y, fc = _stationary_fold(S, X, serial, False, serial_mode, a_bits, w_op)
                    out[g][np.ix_(tile, cols)] += Y[:, : len(cols)]
                    m_idx, n_idx = tile, cols
                    s["filter"] += (k_hi - k_lo) * len(cols) * w_op
                    s["ifmap"] += len(tile) * (k_hi - k_lo) * a_bits
                else:
                    S[:kr, : len(cols)] = Ap[g, cols, k0 : k0 + kr].transpose(1, 0, 2)
                    X = np.zeros((len(tile), R, pack), dtype=np.int64)
                    X[:, :kr] = Bp[g, k0 : k0 + kr][:, tile].transpose(1, 0, 2)
                    Y, fc = _stationary_fold(S, X, serial, True, serial_mode, a_bits, w_op)
                    out[g][np.ix_(cols, tile)] += Y[:, : len(cols)].T
                    m_idx, n_idx = cols, tile
                    s["ifmap"] += len(cols) * (k_hi - k_lo) * a_bits
                    s["filter"] += (k_hi - k_lo) * len(tile) * w_op
                stream_cycles = serial * len(tile)
            fold_times.append((stream_cycles, fc))
            # --- outputs: accumulate, spill and reload partial sums, write the finished tile --------------
            n_out = len(m_idx) * len(n_idx)
            s["ofmap"] += n_out * acc_bits * (1 if at["r"] == 0 else 2)
            if spill and at["r"] > 0:
                d["ofmap"] += 2 * n_out * acc_bits
                s["ofmap"] += 2 * n_out * acc_bits
            if at["r"] == last_r:
                s["ofmap"] += n_out * o_bits
                d["ofmap"] += n_out * o_bits
            # --- inputs: each role loads what its epoch has not seen -------------------------------------
            for role in ("stat", "stream"):
                level = levels[role]
                key = tuple(point[i] for i in range(level))
                if key != epoch[role]:
                    epoch[role], ids_seen[role] = key, set()
                whole = all(order.index(x) >= level for x in _RELEVANT[role])  # no relevant loop split
                operand = "filter" if (role == "stat") == (df != "is") else "ifmap"
                if operand == "filter":
                    kk, nn = np.meshgrid(np.arange(k_lo, k_hi), n_idx, indexing="ij")
                    ids = (kk * N + nn).reshape(-1)
                    bits = w_op
                elif df == "ws":  # the input planes of the chunk's channels under the tile's windows
                    chunk_chans = np.unique(chan_of_k[k_lo:k_hi])
                    plane_idx = idx[g][m_idx][:, np.isin(chan_of_k, chunk_chans)]
                    ids = plane_idx[plane_idx >= 0]
                    bits = a_bits
                elif whole:  # the whole ifmap stays: each distinct element once
                    t_idx = idx[g][np.ix_(m_idx, np.arange(k_lo, k_hi))]
                    ids = t_idx[t_idx >= 0]
                    bits = a_bits
                else:  # lowered (im2col) tiles, padding positions included
                    mm, kk = np.meshgrid(m_idx, np.arange(k_lo, k_hi), indexing="ij")
                    ids = (mm * K + kk).reshape(-1)
                    bits = a_bits
                new = set(np.unique(ids).tolist()) - ids_seen[role]
                ids_seen[role] |= new
                d[operand] += len(new) * bits
    for k in ("ifmap", "filter"):
        s[k] += d[k]

    # --- the timeline: folds back to back (serial) or overlapped with the next tile's preload ------------
    if chip.array.weight_preload == "serial":
        end = sum(fc for _, fc in fold_times)
    elif df == "os":  # double-buffered output registers: the next fold starts once its rows' results cannot meet
        start = 0  # this fold's on the result buses (R rows, one per cycle): stream + max(0, R - next stream)
        for (stream_cycles, _), (next_stream, _) in zip(fold_times, fold_times[1:]):
            start += stream_cycles + max(0, R - next_stream)
        end = start + fold_times[-1][1]
    else:  # double-buffered stationary registers: a tile shifts in (R cycles) while the previous one streams
        start = R
        for stream_cycles, _ in fold_times[:-1]:
            start += max(stream_cycles, R)
        end = start + fold_times[-1][1] - R
    compute = end - 1

    # --- stalls: the first fold's load and the last tile's write-back are exposed ------------------------
    bw = chip.memory.bandwidth
    dram = d["ifmap"] + d["filter"] + d["ofmap"]
    if bw == float("inf"):
        stall = 0
    else:
        first_cols = loops["c"][0]
        first_k = loops["r"][0][2] - loops["r"][0][1]
        if df == "ws":
            first = first_k * len(first_cols) * w_op
            last = len(stream_loop[-1]) * len(col_loop[-1]) * o_bits
        elif df == "is":
            first = first_k * len(first_cols) * a_bits
            last = len(col_loop[-1]) * len(stream_loop[-1]) * o_bits
        else:
            first = (len(stream_loop[0]) * a_bits + len(first_cols) * w_op) * min(K, pack)
            last = len(stream_loop[-1]) * len(col_loop[-1]) * o_bits
        edge = math.ceil(first / bw) + math.ceil(last / bw)
        middle = math.ceil(max(0, dram - first - last) / bw)
        stall = edge + max(0, middle - compute)
    expected = np.einsum("gmk,gkn->gmn", A, B)
    return ReferenceResult(
        compute,
        stall,
        compute + stall,
        folds,
        d["ifmap"],
        d["filter"],
        d["ofmap"],
        s["ifmap"],
        s["filter"],
        s["ofmap"],
        out,
        expected,
    )
