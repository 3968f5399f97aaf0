"""The fast engine: closed-form cycles, traffic and energy, vectorized over chips x layers x pairs.

All equations are documented in ``docs/sim.md``; :mod:`sim.reference` steps the same model cycle
by cycle and the tests assert that both agree exactly.
"""

from __future__ import annotations

import numpy as np

from sim.chipbatch import ChipBatch
from sim.layerbatch import LayerBatch
from sim.precision import pack_and_serial

__all__ = ["evaluate", "MODEL_VERSION"]

#: Bump when any equation changes: sweeps hash it, so a resumed sweep never mixes model versions.
MODEL_VERSION = "lowbit-sim/3"

WS, OS, IS = 0, 1, 2



def _cdiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-a // b)


def evaluate(chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Cost arrays of shape [C, L, P] for ``pairs``: int array [P, 2] of (w_bits, a_bits), or [P, 3] of
    (w_bits, a_bits, out_bits) when each layer's output is stored at the consumer's activation width
    ``out_bits`` instead of its own ``a_bits`` (the coupled table of ``search``).

    Cycles and bits are int64; energies (pJ), latency (us) and utilization are float64.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    pairs = pairs.reshape(-1, pairs.shape[-1] if pairs.ndim > 1 else 2)
    c = lambda x: np.asarray(x)[:, None, None]  # noqa: E731 - chip axis
    lay = lambda x: np.asarray(x)[None, :, None]  # noqa: E731 - layer axis
    R, C, df = c(chips.rows), c(chips.cols), c(chips.dataflow)
    M, K, N, G = lay(layers.M), lay(layers.K), lay(layers.N), lay(layers.G)
    act_act = lay(layers.act_act)
    w = pairs[None, None, :, 0]
    a = pairs[None, None, :, 1]
    o = pairs[None, None, :, 2] if pairs.shape[1] > 2 else a  # width of the stored output
    w_op = np.where(act_act, a, w)  # width of the second operand as stored and multiplied

    pack, serial = pack_and_serial(c(chips.pe_kind), c(chips.serial_both), w_op, a)

    # --- input blocks (docs/sim.md, "Input blocks") ------------------------------------------------
    # Each group's C_g = K / window input channels split into n_H channel-aligned blocks: ``extra``
    # blocks of base + 1 channels and n_H - extra of base (array_split).  Every block is its own
    # reduction, so a per-block term f is summed as extra*f(big) + (n_H - extra)*f(small); a block
    # size no layer uses is skipped (all layers unblocked: one size, K itself).
    window = lay(layers.window)
    n_h = lay(layers.blocks)
    chans = K // window
    base, extra = chans // n_h, chans % n_h
    sizes = [(count, ch, _cdiv(ch * window, pack)) for count, ch in ((extra, base + 1), (n_h - extra, base))
             if np.any(count)]  # (blocks of this size, channels per block, PE slots per block)
    red_folds = [_cdiv(kp, R) for _, _, kp in sizes]  # ws/is row folds of one block

    # --- compute cycles (SCALE-Sim's fold model; docs/sim.md, eq. 1-3) -------------------------
    is_ws, is_os = df == WS, df == OS
    Sc = np.where(df == IS, M, N)
    col_folds = _cdiv(Sc, C)
    m_folds = _cdiv(M, R)  # os row folds (output rows)
    reduction_folds = sum(count * rf for (count, _, _), rf in zip(sizes, red_folds))  # ws/is, all blocks
    row_folds = np.where(is_os, m_folds, reduction_folds)
    folds = G * col_folds * np.where(is_os, n_h * m_folds, row_folds)
    # ws/is folds all last 2R + C + serial*stream - 2; an os fold streams its block's slots
    stationary_fold = 2 * R + C + serial * np.where(is_ws, M, N) - 2
    os_block_cycles = sum(count * (R + C + serial * kp - 2) for count, _, kp in sizes)
    compute = G * col_folds * np.where(is_os, m_folds * os_block_cycles, reduction_folds * stationary_fold) - 1

    # --- memory traffic in bits (eq. 4-9) ---------------------------------------------------------
    acc = c(chips.acc_bits)
    half_i, half_f, half_o = c(chips.ifmap_sram_bits) / 2, c(chips.filter_sram_bits) / 2, c(chips.ofmap_sram_bits) / 2
    lowered = M * K  # im2col-lowered ifmap elements per group
    used_g = lay(layers.ifmap_used_g)
    ifmap_fits = used_g * a <= half_i
    filt_fits = K * N * w_op <= half_f
    out_elems = G * M * N
    # ifmap: resident if it fits.  Otherwise a ws fold streams the input planes of the channels its
    # reduction chunk touches (a line buffer forms the windows), once per column fold; os and is
    # stream the fold's lowered tile (eq. 4)
    passes_i = np.where(is_ws | is_os, col_folds, 1)
    chunk = R * pack  # reduction elements per ws row fold, from the start of a block
    share = np.gcd(chunk, window)
    # (row fold, input channel) touches of each block's ws folds, summed over the blocks
    planes = sum(count * (rf + ch - 1 - (rf - 1) * share // window) for (count, ch, _), rf in zip(sizes, red_folds))
    streamed = np.where(is_ws, planes * (used_g // chans), lowered)
    dram_ifmap = G * a * np.where(ifmap_fits, used_g, passes_i * streamed)
    # filter: ws reads each weight once; os re-reads a K x cols tile per row fold unless it fits;
    # is streams all filters once per column fold unless the whole filter fits
    os_tile_fits = K * np.minimum(N, C) * w_op <= half_f
    passes_f = np.where(is_ws, 1, np.where(is_os, np.where(os_tile_fits, 1, m_folds),
                                           np.where(filt_fits, 1, col_folds)))
    dram_filter = G * K * N * w_op * passes_f
    # ofmap: final outputs at o (= a_bits unless coupled); partial sums spill (write + read back at acc_bits) when the
    # accumulation tile does not fit half the ofmap SRAM (ws/is only: os keeps sums in the PEs, draining one
    # partial sum per input block into an output-tile accumulator)
    psum_tile = np.where(is_ws, M * np.minimum(N, C), np.minimum(M, C) * N) * acc
    spills = np.where(~is_os & (psum_tile > half_o), row_folds - 1, 0)
    dram_ofmap = out_elems * o + 2 * spills * out_elems * acc
    dram_bits = dram_ifmap + dram_filter + dram_ofmap

    # SRAM-side accesses: fills from DRAM + reads into the array + partial-sum traffic
    sram_ifmap = dram_ifmap + G * lowered * a * passes_i
    sram_filter = dram_filter + G * K * N * w_op * np.where(is_ws, 1, np.where(is_os, m_folds, col_folds))
    acc_rounds = np.where(is_os, 2 * n_h - 1, 2 * row_folds - 1)
    sram_ofmap = out_elems * (acc * acc_rounds + o) + 2 * spills * out_elems * acc

    # --- stalls: double buffering overlaps DRAM with compute (eq. 10) -----------------------------
    bw = c(chips.bandwidth)
    with np.errstate(invalid="ignore", divide="ignore"):
        transfer = np.where(np.isinf(bw), 0, np.ceil(dram_bits / np.where(np.isinf(bw), 1.0, bw)))
    stall = np.maximum(0, transfer.astype(np.int64) - compute)
    total = compute + stall

    # --- energy (eq. 11-14) ------------------------------------------------------------------------
    macs = G * M * K * N
    mac_pj = np.where(act_act, chips.act_mac_pj[:, None, :], chips.mac_pj[:, None, :])
    e_mac = macs * mac_pj
    e_sram = sram_ifmap * c(chips.e_sram_ifmap) + sram_filter * c(chips.e_sram_filter) \
        + sram_ofmap * c(chips.e_sram_ofmap)
    e_dram = dram_bits * c(chips.e_dram)
    latency_us = total / c(chips.clock_mhz)
    e_static = c(chips.static_mw) * latency_us * 1e3  # mW x us = nJ
    weight_bits = np.where(act_act, 0, G * K * N * w + G * N * n_h * c(chips.scale_bits))
    # peak MACs in float64: the int64 product R*C*pack*total can overflow; for products below 2^53 the float
    # product is exact, so the ratio is bit-identical to the integer one
    util = macs * serial / (R * C * pack * total.astype(np.float64))

    shape = compute.shape
    out = {
        "macs": macs, "compute_cycles": compute, "stall_cycles": stall, "total_cycles": total,
        "latency_us": latency_us, "energy_pj": e_mac + e_sram + e_dram + e_static,
        "energy_mac_pj": e_mac, "energy_sram_pj": e_sram, "energy_dram_pj": e_dram,
        "energy_static_pj": e_static, "weight_bits": weight_bits, "dram_bits": dram_bits,
        "utilization": util, "bops": macs * w_op * a, "dram_ifmap_bits": dram_ifmap,
        "dram_filter_bits": dram_filter, "dram_ofmap_bits": dram_ofmap, "sram_ifmap_bits": sram_ifmap,
        "sram_filter_bits": sram_filter, "sram_ofmap_bits": sram_ofmap, "folds": folds,
    }
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}
