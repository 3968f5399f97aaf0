"""What goes on the GEMM tops' wires: the Verilog parameters of a build, the ``cfg_*`` inputs of a run, the weight
and activation beats, and the order and decoding of the output beats.

Pure Python + numpy (no cocotb import): the hosts (:mod:`rtl.gemm`, :mod:`rtl.layer`) build their jobs with it and
the cocotb benches (:mod:`rtl.benches.gemm_bench`, :mod:`rtl.benches.layer_bench`) decode the output beats with it.
The stream format is specified in ``docs/rtl.md`` (section "Array and top level"); in short, for
``Y[M, N] = A[M, K] @ B[K, N]`` on an ``R x C`` array with ``pack`` products per PE slot, folded as
:mod:`rtl.gemm_plan` plans:

- slot ``s`` holds elements ``k = s*pack + j``, ``j = 0 .. pack-1``, element ``j`` at bits ``[j*bits +: bits]``
  (LSB first, two's complement for signed operands);
- per fold the weight stream carries ``R`` beats (tile row ``R-1`` first, column ``c`` at bits
  ``[c*W_SLOT +: W_SLOT]``) and the activation stream one beat per row ``m`` of the tile (row ``r`` at bits
  ``[r*A_SLOT +: A_SLOT]``);
- after each fold of the last row fold the top emits one beat per row ``m`` of the tile, the ``C`` accumulators
  ``Y[m, cf*C + c]`` at bits ``[c*ACC_BITS +: ACC_BITS]`` (padding columns past ``N`` are 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from rtl.gemm_plan import GemmPlan, fold_sequence, plan_gemm
from rtl.kinds import (
    _SERIAL_ARRAY_KINDS,
    _SERIAL_SLOT_BITS,
    ARRAY_PE_KINDS,
    PE_KINDS,
    PRELOADS,
    _check_bits,
    _kind,
    check_dataflow,
    check_preload,
    fusion_mode,
    fusion_width,
    operand_range,
)

__all__ = [
    "FOLD_BITS",
    "gemm_streams",
    "top_config",
    "top_parameters",
    "output_order",
    "block_output_order",
    "decode_output_beat",
]

FOLD_BITS = 16  #: the tops' FOLD_BITS: the width of a fold count and of a block-table entry


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
        pe_kind: one of :data:`rtl.kinds.PE_KINDS` (a fixed PE's widths are the build's W_BITS / A_BITS).
        w_bits, a_bits: operand widths in bits (2..8).
        order, tile_m, tile_w, grid_w: the mapping (:func:`rtl.gemm_plan.plan_gemm`); the streams follow its fold
            order.
        dataflow: ``"ws"`` (weight tiles preloaded, one activation beat per element) or ``"os"`` (per fold ``Kp``
            beats on both streams: slot k's weights of the fold's columns and activations of its rows).
        blocks: the reduction blocks (:func:`rtl.gemm_plan.plan_gemm`): each block's slots and folds start at its
            first element.

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


def decode_output_beat(value: int, cols: int, acc_bits: int) -> list[int]:
    """The ``cols`` signed accumulators of one output beat (bit i = ``out_data[i]``)."""
    mask, half = (1 << acc_bits) - 1, 1 << (acc_bits - 1)
    out = []
    for c in range(cols):
        v = (value >> (c * acc_bits)) & mask
        out.append(v - (1 << acc_bits) if v & half else v)
    return out
