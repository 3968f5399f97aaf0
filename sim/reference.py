"""Cycle-stepped reference engine: moves real operands through the array one cycle at a time.

It exists to prove :mod:`sim.engine` right on small shapes.  For one chip, layer and pair it

* lowers the layer to integer GEMM operands (im2col with the layer's real stride and padding),
* steps every fold of the systolic array cycle by cycle (:mod:`sim.stepped_array`),
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair
from sim.chipbatch import DATAFLOW_CODES
from sim.config import Chip
from sim.mapping import ORDERS, SCALESIM_ORDER, Mapping, axis_halvings, operand_level, tile_halvings
from sim.precision import PE_KIND_CODES, pack_and_serial
from sim.stepped_array import output_stationary_fold, stationary_fold
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


#: Bits an operand role holds, given whether its two relevant loops are inside its level.
Footprint = Callable[[bool, bool], int]

#: The loops each input operand role is indexed by (sim.mapping).
_RELEVANT = {"stat": ("c", "r"), "stream": ("s", "r")}


def _levels(order: tuple[str, ...], fp: dict[str, Footprint], caps: dict[str, float]) -> dict[str, int]:
    """Buffer level of each input operand (docs/sim.md, "Mapping"): the outermost level whose footprint fits
    half its SRAM.  ``fp[op]`` maps (relevant loops inside the level) -> footprint bits."""
    out = {}
    for op in ("stat", "stream"):
        fits = []
        for level in range(3):
            inside = tuple(order.index(x) >= level for x in _RELEVANT[op])
            fits.append(fp[op](*inside) <= caps[op])
        out[op] = operand_level(fits)
    return out


def _reduction_order(
    layer: Layer, A: np.ndarray, B: np.ndarray, idx: np.ndarray, wp: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray]:
    """The operands in the array's reduction order, the size of each input block, and the input channel of each
    reduction position.  per_tap (``wp == 1``) orders the reduction tap-major inside each channel block, so that
    every (block, tap) is a contiguous block of its own; lowered keeps the channel-major im2col order."""
    window = layer.window
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
    return A[:, :, perm_arr], B[:, perm_arr, :], idx[:, :, perm_arr], block_k, perm_arr // window


@dataclass(frozen=True)
class _Block:
    """One input block: its first and end reduction element, its packed PE slots, and its operands packed
    ``pack`` to a slot, A [G, M, Kp, pack] and B [G, Kp, N, pack]."""

    k_a: int
    k_b: int
    kp: int
    Ap: np.ndarray
    Bp: np.ndarray


def _packed_blocks(A: np.ndarray, B: np.ndarray, block_k: list[int], pack: int) -> list[_Block]:
    """Input blocks: each is its own reduction over a channel-aligned range of K, packed from its start."""
    G, M, _ = A.shape
    N = B.shape[2]
    bounds = np.concatenate([[0], np.cumsum(block_k)]).tolist()
    blocks = []
    for k_a, k_b in zip(bounds[:-1], bounds[1:]):
        kp = -(-(k_b - k_a) // pack)
        Ap = np.zeros((G, M, kp * pack), dtype=np.int64)
        Ap[:, :, : k_b - k_a] = A[:, :, k_a:k_b]
        Bp = np.zeros((G, kp * pack, N), dtype=np.int64)
        Bp[:, : k_b - k_a, :] = B[:, k_a:k_b, :]
        blocks.append(
            _Block(k_a, k_b, kp, Ap.reshape(G, M, kp, pack), Bp.reshape(G, kp, pack, N).transpose(0, 1, 3, 2))
        )
    return blocks


@dataclass(frozen=True)
class _Dims:
    """The layer's GEMM, the array and the operand widths of one replay."""

    df: str
    M: int
    K: int
    N: int
    R: int  # array rows
    C: int  # array columns
    pack: int  # reduction elements per PE slot
    serial: int  # cycles per beat
    serial_mode: str  # "none", "activation" or "both"
    wp: int  # reduction elements per channel in one block
    a_bits: int
    w_op: int  # the second operand's width
    o_bits: int  # bits per output leaving the chip
    acc_bits: int


def _loops(layer: Layer, dims: _Dims, blocks: list[_Block], tile: int) -> dict[str, list[Any]]:
    """The three loops (sim.mapping): column tiles, reduction folds (block, first and end element) and stream
    tiles."""
    df, R, pack = dims.df, dims.R, dims.pack
    cols_of = dims.M if df == "is" else dims.N
    col_loop = [np.arange(x0, min(cols_of, x0 + dims.C)) for x0 in range(0, cols_of, dims.C)]
    if df == "os":  # one fold per input block; the reduction stays in the PEs
        red_loop = [(h, b.k_a, b.k_b) for h, b in enumerate(blocks)]
    else:  # the row folds of every block in turn, each block's folds packed from its own start
        red_loop = [
            (h, b.k_a + k0 * pack, min(b.k_b, b.k_a + (k0 + R) * pack))
            for h, b in enumerate(blocks)
            for k0 in range(0, b.kp, R)
        ]
    return {"c": col_loop, "r": red_loop, "s": _stream_tiles(layer, df, dims.M, dims.N, R, tile)}


def _stationary_footprint(dims: _Dims, used_g0: int, k_big: int, c_max: int) -> Footprint:
    """Bits the stationary-like role holds, given whether its two relevant loops (c, r) are inside its level."""
    M, K, N = dims.M, dims.K, dims.N
    k_tile = min(k_big, dims.R * dims.pack)
    if dims.df in ("ws", "os"):
        k_fold = k_tile if dims.df == "ws" else k_big
        return lambda ci, ri: (N if ci else c_max) * (K if ri else k_fold) * dims.w_op
    return lambda ci, ri: (used_g0 if ci and ri else (M if ci else c_max) * (K if ri else k_tile)) * dims.a_bits


def _streamed_footprint(
    dims: _Dims, layer: Layer, idx: np.ndarray, used_g0: int, k_big: int, stream_loop: list[np.ndarray]
) -> Footprint:
    """Bits the streamed role holds, given whether its two relevant loops (s, r) are inside its level; a streamed
    ws ifmap holds the input planes of its channels."""
    M, K, N, R, pack, wp = dims.M, dims.K, dims.N, dims.R, dims.pack, dims.wp
    if dims.df == "ws":
        C_g = K // layer.window
        plane = used_g0 // C_g
        big = max(np.unique(idx[0][t][idx[0][t] >= 0]).size for t in stream_loop) // C_g if C_g else 0
        share = math.gcd(R * pack, wp)
        chunk_ch = min(-(-k_big // wp), (wp - share + R * pack - 1) // wp + 1)
        return lambda si, ri: (plane if si else big) * (C_g if ri else chunk_ch) * dims.a_bits
    if dims.df == "os":
        return lambda si, ri: (used_g0 if si and ri else (M if si else min(M, R)) * (K if ri else k_big)) * dims.a_bits
    k_tile = min(k_big, R * pack)
    s_max = max(len(t) for t in stream_loop)
    return lambda si, ri: (N if si else s_max) * (K if ri else k_tile) * dims.w_op


def _spills(dims: _Dims, order: tuple[str, ...], loops: dict[str, list[Any]], half_ofmap_bits: float) -> bool:
    """Whether partial sums leave the ofmap SRAM between reduction folds: their footprint at the order's levels
    exceeds half of it (os keeps them in the PEs)."""
    if dims.df == "os":
        return False
    s_in, c_in = order.index("s") > order.index("r"), order.index("c") > order.index("r")
    s_max = max(len(t) for t in loops["s"])
    c_max = max(len(t) for t in loops["c"])
    psum_foot = (
        (dims.M if dims.df == "ws" and s_in else dims.N if s_in else s_max)
        * ((dims.N if dims.df == "ws" else dims.M) if c_in else c_max)
        * dims.acc_bits
    )
    return psum_foot > half_ofmap_bits


@dataclass(frozen=True)
class _Replay:
    """What replaying a layer's folds needs: the packed operands, the loops and the buffer policy."""

    dims: _Dims
    order: tuple[str, ...]
    blocks: list[_Block]
    idx: np.ndarray  # ifmap element ids [G, M, K], in reduction order
    chan_of_k: np.ndarray  # the input channel of each reduction position
    loops: dict[str, list[Any]]
    levels: dict[str, int]  # buffer level of each input operand role
    spill: bool


def _replay_plan(
    chip: Chip,
    layer: Layer,
    dims: _Dims,
    order: tuple[str, ...],
    tile: int,
    operands: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> _Replay:
    """Operands in reduction order and packed into blocks, the loops, and the buffer policy: the operand roles'
    levels (the outermost whose footprint fits half its SRAM) and whether partial sums spill."""
    A, B, idx, block_k, chan_of_k = _reduction_order(layer, operands[0], operands[1], operands[2], dims.wp)
    blocks = _packed_blocks(A, B, block_k, dims.pack)
    loops = _loops(layer, dims, blocks, tile)
    half = {k: getattr(chip.memory, f"{k}_sram_kib") * BITS_PER_KIB / 2 for k in ("ifmap", "filter", "ofmap")}
    used_g0 = np.unique(idx[0][idx[0] >= 0]).size
    k_big = blocks[0].k_b - blocks[0].k_a  # the first block is the largest
    c_max = max(len(t) for t in loops["c"])
    footprints = {
        "stat": _stationary_footprint(dims, used_g0, k_big, c_max),
        "stream": _streamed_footprint(dims, layer, idx, used_g0, k_big, loops["s"]),
    }
    stat_buf, stream_buf = ("ifmap", "filter") if dims.df == "is" else ("filter", "ifmap")
    levels = _levels(order, footprints, {"stat": half[stat_buf], "stream": half[stream_buf]})
    return _Replay(dims, order, blocks, idx, chan_of_k, loops, levels, _spills(dims, order, loops, half["ofmap"]))


def _step_fold(
    rp: _Replay, g: int, at: dict[str, int], out: np.ndarray, sram: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Step one fold, add its outputs to ``out`` and its array-side SRAM reads to ``sram``.  Returns the rows of
    M and columns of N of its output tile, its stream cycles and its stepped cycles."""
    dims = rp.dims
    R, C, pack, serial, a_bits, w_op = dims.R, dims.C, dims.pack, dims.serial, dims.a_bits, dims.w_op
    cols, (h, k_lo, k_hi), tile = rp.loops["c"][at["c"]], rp.loops["r"][at["r"]], rp.loops["s"][at["s"]]
    block = rp.blocks[h]
    Ap, Bp = block.Ap, block.Bp
    if dims.df == "os":
        At = np.zeros((R, block.kp, pack), dtype=np.int64)
        At[: len(tile)] = Ap[g, tile]
        Bt = np.zeros((block.kp, C, pack), dtype=np.int64)
        Bt[:, : len(cols)] = Bp[g][:, cols]
        Y, fc = output_stationary_fold(At, Bt, serial, dims.serial_mode, a_bits, w_op)
        out[g][np.ix_(tile, cols)] += Y[: len(tile), : len(cols)]
        sram["ifmap"] += len(tile) * (k_hi - k_lo) * a_bits
        sram["filter"] += (k_hi - k_lo) * len(cols) * w_op
        return tile, cols, serial * block.kp, fc
    k0 = (k_lo - block.k_a) // pack
    kr = -(-(k_hi - k_lo) // pack)
    S = np.zeros((R, C, pack), dtype=np.int64)
    X = np.zeros((len(tile), R, pack), dtype=np.int64)
    if dims.df == "ws":
        S[:kr, : len(cols)] = Bp[g, k0 : k0 + kr][:, cols]
        X[:, :kr] = Ap[g, tile, k0 : k0 + kr]
        Y, fc = stationary_fold(S, X, serial, False, dims.serial_mode, a_bits, w_op)
        out[g][np.ix_(tile, cols)] += Y[:, : len(cols)]
        sram["filter"] += (k_hi - k_lo) * len(cols) * w_op
        sram["ifmap"] += len(tile) * (k_hi - k_lo) * a_bits
        return tile, cols, serial * len(tile), fc
    S[:kr, : len(cols)] = Ap[g, cols, k0 : k0 + kr].transpose(1, 0, 2)
    X[:, :kr] = Bp[g, k0 : k0 + kr][:, tile].transpose(1, 0, 2)
    Y, fc = stationary_fold(S, X, serial, True, dims.serial_mode, a_bits, w_op)
    out[g][np.ix_(cols, tile)] += Y[:, : len(cols)].T
    sram["ifmap"] += len(cols) * (k_hi - k_lo) * a_bits
    sram["filter"] += (k_hi - k_lo) * len(tile) * w_op
    return cols, tile, serial * len(tile), fc


def _count_outputs(rp: _Replay, r: int, n_out: int, dram: dict[str, int], sram: dict[str, int]) -> None:
    """Outputs of a fold at reduction position ``r``: accumulate, spill and reload partial sums, write the
    finished tile."""
    acc_bits = rp.dims.acc_bits
    sram["ofmap"] += n_out * acc_bits * (1 if r == 0 else 2)
    if rp.spill and r > 0:
        dram["ofmap"] += 2 * n_out * acc_bits
        sram["ofmap"] += 2 * n_out * acc_bits
    if r == len(rp.loops["r"]) - 1:
        sram["ofmap"] += n_out * rp.dims.o_bits
        dram["ofmap"] += n_out * rp.dims.o_bits


def _fold_ids(
    rp: _Replay, role: str, whole: bool, g: int, k_range: tuple[int, int], m_idx: np.ndarray, n_idx: np.ndarray
) -> tuple[str, np.ndarray, int]:
    """The operand an input role holds, the element ids a fold reads from it, and their width in bits."""
    df, K, N = rp.dims.df, rp.dims.K, rp.dims.N
    k_lo, k_hi = k_range
    operand = "filter" if (role == "stat") == (df != "is") else "ifmap"
    if operand == "filter":
        kk, nn = np.meshgrid(np.arange(k_lo, k_hi), n_idx, indexing="ij")
        return operand, (kk * N + nn).reshape(-1), rp.dims.w_op
    if df == "ws":  # the input planes of the chunk's channels under the tile's windows
        chunk_chans = np.unique(rp.chan_of_k[k_lo:k_hi])
        plane_idx = rp.idx[g][m_idx][:, np.isin(rp.chan_of_k, chunk_chans)]
        return operand, plane_idx[plane_idx >= 0], rp.dims.a_bits
    if whole:  # the whole ifmap stays: each distinct element once
        t_idx = rp.idx[g][np.ix_(m_idx, np.arange(k_lo, k_hi))]
        return operand, t_idx[t_idx >= 0], rp.dims.a_bits
    mm, kk = np.meshgrid(m_idx, np.arange(k_lo, k_hi), indexing="ij")  # lowered (im2col) tiles, padding included
    return operand, (mm * K + kk).reshape(-1), rp.dims.a_bits


def _replay_group(
    rp: _Replay, g: int, out: np.ndarray, dram: dict[str, int], sram: dict[str, int], fold_times: list[tuple[int, int]]
) -> None:
    """Every fold of group ``g`` in the order's loop nest: step it, count its outputs, and load what each input
    role's epoch (the loops outside its level) has not seen yet."""
    order = rp.order
    ids_seen: dict[str, set[int]] = {"stat": set(), "stream": set()}
    epoch: dict[str, tuple[int, ...] | None] = {"stat": None, "stream": None}
    for point in itertools.product(*(range(len(rp.loops[x])) for x in order)):
        at = dict(zip(order, point))
        m_idx, n_idx, stream_cycles, fc = _step_fold(rp, g, at, out, sram)
        fold_times.append((stream_cycles, fc))
        _count_outputs(rp, at["r"], len(m_idx) * len(n_idx), dram, sram)
        k_range = rp.loops["r"][at["r"]][1:]
        for role in ("stat", "stream"):
            level = rp.levels[role]
            key = tuple(point[i] for i in range(level))
            if key != epoch[role]:
                epoch[role], ids_seen[role] = key, set()
            whole = all(order.index(x) >= level for x in _RELEVANT[role])  # no relevant loop split
            operand, ids, bits = _fold_ids(rp, role, whole, g, k_range, m_idx, n_idx)
            new = set(np.unique(ids).tolist()) - ids_seen[role]
            ids_seen[role] |= new
            dram[operand] += len(new) * bits


def _compute_cycles(weight_preload: str, df: str, R: int, fold_times: list[tuple[int, int]]) -> int:
    """The timeline: folds back to back (serial) or overlapped with the next tile's preload."""
    if weight_preload == "serial":
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
    return end - 1


def _stall_cycles(bw: float, dims: _Dims, loops: dict[str, list[Any]], dram_bits: int, compute: int) -> int:
    """Stalls: the first fold's load and the last tile's write-back are exposed; the rest of the DRAM traffic
    overlaps with compute."""
    if bw == float("inf"):
        return 0
    col_loop, stream_loop = loops["c"], loops["s"]
    first_cols = col_loop[0]
    first_k = loops["r"][0][2] - loops["r"][0][1]
    if dims.df == "ws":
        first = first_k * len(first_cols) * dims.w_op
    elif dims.df == "is":
        first = first_k * len(first_cols) * dims.a_bits
    else:
        first = (len(stream_loop[0]) * dims.a_bits + len(first_cols) * dims.w_op) * min(dims.K, dims.pack)
    last = len(stream_loop[-1]) * len(col_loop[-1]) * dims.o_bits
    edge = math.ceil(first / bw) + math.ceil(last / bw)
    middle = math.ceil(max(0, dram_bits - first - last) / bw)
    return edge + max(0, middle - compute)


def _dims(chip: Chip, layer: Layer, pair: Pair, out_bits: int | None, K: int, N: int) -> _Dims:
    w_bits, a_bits = pair
    o_bits = a_bits if out_bits is None else int(out_bits)
    if chip.memory.output_width == "accumulator":
        o_bits = chip.memory.acc_bits
    w_op = a_bits if not layer.has_weights else w_bits
    pack, serial = (
        int(v)
        for v in pack_and_serial(
            np.array(PE_KIND_CODES[chip.pe.kind]), np.array(chip.pe.serial == "both"), np.array(w_op), np.array(a_bits)
        )
    )
    return _Dims(
        df=chip.array.dataflow,
        M=layer.M,
        K=K,
        N=N,
        R=chip.array.rows,
        C=chip.array.cols,
        pack=pack,
        serial=serial,
        serial_mode=chip.pe.serial if chip.pe.kind == "bitserial" else "none",
        wp=1 if chip.array.reduction == "per_tap" else layer.window,
        a_bits=a_bits,
        w_op=w_op,
        o_bits=o_bits,
        acc_bits=chip.memory.acc_bits,
    )


def run_reference(
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
    chip.check_pairs([pair])
    if layer.macs > max_macs:
        raise InputError(
            f"layer {layer.name!r}: {layer.macs} MACs is too large for the reference engine (max_macs={max_macs})"
        )
    df = chip.array.dataflow
    mapping = mapping if mapping is not None else Mapping(SCALESIM_ORDER[DATAFLOW_CODES[df]])
    order = ORDERS[mapping.order]
    w_op = pair[1] if not layer.has_weights else pair[0]
    A, B, idx = lower_layer(layer, pair[1], w_op, np.random.default_rng(seed))
    G, M, K = A.shape
    rp = _replay_plan(chip, layer, _dims(chip, layer, pair, out_bits, K, B.shape[2]), order, mapping.tile, (A, B, idx))
    out = np.zeros((G, M, B.shape[2]), dtype=np.int64)
    dram = {"ifmap": 0, "filter": 0, "ofmap": 0}
    sram = {"ifmap": 0, "filter": 0, "ofmap": 0}
    fold_times: list[tuple[int, int]] = []  # (stream cycles, stepped fold cycles), in execution order
    for g in range(G):
        _replay_group(rp, g, out, dram, sram, fold_times)
    for k in ("ifmap", "filter"):
        sram[k] += dram[k]
    compute = _compute_cycles(chip.array.weight_preload, df, rp.dims.R, fold_times)
    stall = _stall_cycles(chip.memory.bandwidth, rp.dims, rp.loops, sum(dram.values()), compute)
    return ReferenceResult(
        compute,
        stall,
        compute + stall,
        len(fold_times),
        dram["ifmap"],
        dram["filter"],
        dram["ofmap"],
        sram["ifmap"],
        sram["filter"],
        sram["ofmap"],
        out,
        np.einsum("gmk,gkn->gmn", A, B),
    )
