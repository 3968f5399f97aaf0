"""The systolic array stepped cycle by cycle: one fold of each dataflow, with real operands.

Weights or ifmap tiles shift in row by row, streamed operands enter with a one-cycle skew per row, bit-serial
streams carry one bit-slice per cycle, Bit-Fusion PEs sum ``pack`` products per cycle, and partial sums move
down (ws/is) or stay in their PE (os).  :mod:`sim.reference` runs a whole layer through these folds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stationary_fold", "output_stationary_fold"]


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


def stationary_fold(
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


def output_stationary_fold(
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
