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

from dataclasses import dataclass

import numpy as np

from sim.config import Chip
from sim.errors import InputError
from sim.pairs import Pair
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


def lower_layer(layer: Layer, a_bits: int, w_bits: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random integer operands in GEMM form: A [G, M, K], B [G, K, N] and the ifmap index map
    idx [G, M, K] (unique ifmap element id, or -1 for padding / out-of-range positions)."""
    G, M, K, N = layer.groups, layer.M, layer.K, layer.N
    if layer.kind in ("conv", "dwconv"):
        cg = layer.in_c // G
        b, oh, ow = np.meshgrid(np.arange(layer.batch), np.arange(layer.out_h), np.arange(layer.out_w),
                                indexing="ij")
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


def _beat_term(act: np.ndarray, wgt: np.ndarray, beat: np.ndarray, serial_mode: str, a_bits: int,
               w_bits: int) -> np.ndarray:
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


def _stationary_fold(S: np.ndarray, X: np.ndarray, s: int, stationary_is_act: bool, serial_mode: str,
                     a_bits: int, w_bits: int) -> tuple[np.ndarray, int]:
    """One ws/is fold.  S [R, C, p] is shifted in from the top, one row per cycle; X [T, R, p] streams
    in from the left with one cycle of skew per row.  Returns (Y [T, C], cycles of the fold)."""
    R, C, p = S.shape
    T = X.shape[0]
    held = np.zeros_like(S)
    for j in range(R):  # load: rows shift down, the new row enters at the top
        held[1:] = held[:-1].copy()
        held[0] = S[R - 1 - j]
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


def _output_stationary_fold(A: np.ndarray, B: np.ndarray, s: int, serial_mode: str, a_bits: int,
                            w_bits: int) -> tuple[np.ndarray, int]:
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


def run_reference(chip: Chip, layer: Layer, pair: Pair, seed: int = 0, max_macs: int = 1_000_000,
                  out_bits: int | None = None) -> ReferenceResult:
    """Step ``layer`` through ``chip``'s array at ``pair`` and count cycles and traffic.

    Outputs are stored at ``out_bits`` (default: the pair's activation bits).  Layers above
    ``max_macs`` are refused: stepping costs about a numpy call per cycle."""
    w_bits, a_bits = pair
    o_bits = a_bits if out_bits is None else int(out_bits)
    chip.check_pairs([pair])
    w_op = a_bits if not layer.has_weights else w_bits
    if layer.macs > max_macs:
        raise InputError(f"layer {layer.name!r}: {layer.macs} MACs is too large for the reference engine "
                         f"(max_macs={max_macs})")
    rng = np.random.default_rng(seed)
    A, B, idx = lower_layer(layer, a_bits, w_op, rng)
    G, M, K = A.shape
    N = B.shape[2]
    R, C = chip.array.rows, chip.array.cols
    pack, serial = (int(v) for v in pack_and_serial(np.array(PE_KIND_CODES[chip.pe.kind]),
                                                     np.array(chip.pe.serial == "both"),
                                                     np.array(w_op), np.array(a_bits)))
    serial_mode = chip.pe.serial if chip.pe.kind == "bitserial" else "none"
    # input blocks: each is its own reduction over a channel-aligned range of K, packed from its start
    bounds = np.concatenate([[0], np.cumsum(layer.block_k)]).tolist()
    blocks = []  # (first element, end element, packed slots, A [G, M, Kp, pack], B [G, Kp, N, pack])
    for k_a, k_b in zip(bounds[:-1], bounds[1:]):
        kp = -(-(k_b - k_a) // pack)
        Ap = np.zeros((G, M, kp * pack), dtype=np.int64)
        Ap[:, :, :k_b - k_a] = A[:, :, k_a:k_b]
        Bp = np.zeros((G, kp * pack, N), dtype=np.int64)
        Bp[:, :k_b - k_a, :] = B[:, k_a:k_b, :]
        blocks.append((k_a, k_b, kp, Ap.reshape(G, M, kp, pack),
                       Bp.reshape(G, kp, pack, N).transpose(0, 1, 3, 2)))
    df = chip.array.dataflow
    acc_bits = chip.memory.acc_bits
    half_i = chip.memory.ifmap_sram_kib * BITS_PER_KIB / 2
    half_f = chip.memory.filter_sram_kib * BITS_PER_KIB / 2
    half_o = chip.memory.ofmap_sram_kib * BITS_PER_KIB / 2

    out = np.zeros((G, M, N), dtype=np.int64)
    cycles = folds = 0
    d_if = d_f = d_of = s_if = s_f = s_of = 0
    used_counts = [np.unique(idx[g][idx[g] >= 0]).size for g in range(G)]
    window = layer.window
    if df == "ws":
        spill = M * min(N, C) * acc_bits > half_o
    elif df == "is":
        spill = min(M, C) * N * acc_bits > half_o
    else:
        spill = False
    for g in range(G):
        ifmap_resident = used_counts[g] * a_bits <= half_i
        loaded_if: set[int] = set()
        filt_resident = K * N * w_op <= half_f
        os_tile_resident = K * min(N, C) * w_op <= half_f
        filt_loaded = False
        if df == "os":  # each (output tile, block) is one fold: the PEs drain one partial sum per block
            outer = -(-N // C)
            inner = [(fi, h) for fi in range(-(-M // R)) for h in range(len(blocks))]
        else:  # the reduction folds of every block in turn, each block's folds from its own start
            outer = -(-N // C) if df == "ws" else -(-M // C)
            inner = [(fi, h) for h in range(len(blocks)) for fi in range(-(-blocks[h][2] // R))]
        for fo in range(outer):
            os_tile_loaded = False
            for step, (fi, h) in enumerate(inner):
                k_a, k_b, Kp, Ap, Bp = blocks[h]
                folds += 1
                if df == "os":
                    m0, n0 = fi * R, fo * C
                    mr, nc = min(R, M - m0), min(C, N - n0)
                    At = np.zeros((R, Kp, pack), dtype=np.int64)
                    At[:mr] = Ap[g, m0:m0 + mr]
                    Bt = np.zeros((Kp, C, pack), dtype=np.int64)
                    Bt[:, :nc] = Bp[g, :, n0:n0 + nc]
                    Y, fc = _output_stationary_fold(At, Bt, serial, serial_mode, a_bits, w_op)
                    out[g, m0:m0 + mr, n0:n0 + nc] += Y[:mr, :nc]
                    k_lo, k_hi, m_lo, m_hi = k_a, k_b, m0, m0 + mr
                    s_if += mr * (k_b - k_a) * a_bits
                    s_f += (k_b - k_a) * nc * w_op
                    # the block's partial sums enter the tile accumulator (read-modify-write after the first)
                    s_of += mr * nc * acc_bits * (1 if h == 0 else 2)
                    if h == len(blocks) - 1:
                        s_of += mr * nc * o_bits
                        d_of += mr * nc * o_bits
                    if os_tile_resident:
                        if not os_tile_loaded:
                            d_f += K * nc * w_op
                            os_tile_loaded = True
                    else:
                        d_f += (k_b - k_a) * nc * w_op
                else:
                    k0 = fi * R  # in packed slots of block h
                    kr = min(R, Kp - k0)
                    k_lo, k_hi = k_a + k0 * pack, min(k_b, k_a + (k0 + kr) * pack)
                    if df == "ws":
                        n0 = fo * C
                        nc = min(C, N - n0)
                        S = np.zeros((R, C, pack), dtype=np.int64)
                        S[:kr, :nc] = Bp[g, k0:k0 + kr, n0:n0 + nc]
                        X = np.zeros((M, R, pack), dtype=np.int64)
                        X[:, :kr] = Ap[g, :, k0:k0 + kr]
                        Y, fc = _stationary_fold(S, X, serial, False, serial_mode, a_bits, w_op)
                        out[g, :, n0:n0 + nc] += Y[:, :nc]
                        m_lo, m_hi, t_rows, t_cols = 0, M, M, nc
                        s_f += (k_hi - k_lo) * nc * w_op
                        d_f += (k_hi - k_lo) * nc * w_op
                        s_if += M * (k_hi - k_lo) * a_bits
                    else:  # is: the ifmap tile is stationary, filters stream
                        m0 = fo * C
                        mc = min(C, M - m0)
                        S = np.zeros((R, C, pack), dtype=np.int64)
                        S[:kr, :mc] = Ap[g, m0:m0 + mc, k0:k0 + kr].transpose(1, 0, 2)
                        X = np.zeros((N, R, pack), dtype=np.int64)
                        X[:, :kr] = Bp[g, k0:k0 + kr].transpose(1, 0, 2)
                        Y, fc = _stationary_fold(S, X, serial, True, serial_mode, a_bits, w_op)
                        out[g, m0:m0 + mc, :] += Y[:, :mc].T
                        m_lo, m_hi, t_rows, t_cols = m0, m0 + mc, mc, N
                        s_if += mc * (k_hi - k_lo) * a_bits
                        s_f += (k_hi - k_lo) * N * w_op
                        if filt_resident:
                            if not filt_loaded:
                                d_f += K * N * w_op
                                filt_loaded = True
                        else:
                            d_f += (k_hi - k_lo) * N * w_op
                    tile = t_rows * t_cols
                    s_of += tile * acc_bits * (1 if step == 0 else 2)
                    if step > 0 and spill:
                        d_of += 2 * tile * acc_bits
                        s_of += 2 * tile * acc_bits
                    if step == len(inner) - 1:
                        s_of += tile * o_bits
                        d_of += tile * o_bits
                cycles += fc
                # ifmap DRAM: resident operand loads each unique element once; otherwise the
                # fold's lowered tile is streamed (padding positions included)
                tile_idx = idx[g, m_lo:m_hi, k_lo:k_hi]
                if ifmap_resident:
                    ids = np.unique(tile_idx[tile_idx >= 0])
                    new = [i for i in ids.tolist() if i not in loaded_if]
                    loaded_if.update(new)
                    d_if += len(new) * a_bits
                elif df == "ws":  # whole input planes of the channels this chunk touches
                    chans = np.unique(np.arange(k_lo, k_hi) // window)
                    plane_idx = idx[g][:, np.isin(np.arange(K) // window, chans)]
                    d_if += np.unique(plane_idx[plane_idx >= 0]).size * a_bits
                else:
                    d_if += tile_idx.size * a_bits
    s_if += d_if
    s_f += d_f
    compute = cycles - 1
    bw = chip.memory.bandwidth
    dram = d_if + d_f + d_of
    transfer = 0 if bw == float("inf") else int(np.ceil(dram / bw))
    stall = max(0, transfer - compute)
    expected = np.einsum("gmk,gkn->gmn", A, B)
    return ReferenceResult(compute, stall, compute + stall, folds, d_if, d_f, d_of, s_if, s_f, s_of, out, expected)
