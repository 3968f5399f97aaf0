"""One GEMM through ``lowbit_gemm_top`` in a simulator: mismatches, measured cycles and sim's prediction.

``lowbit rtl gemm`` and the demo use this; ``tests/rtl/test_gemm.py`` runs many GEMMs per build the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rtl import encoding, gemm_plan, kinds, prediction
from rtl.limits import (
    check_array,
    check_operand_sizes,
    check_probability,
    check_run,
    check_seed,
    check_simulator,
    gemm_estimate,
)
from rtl.runner import SRC_DIR, TOP_PARTS, run_job
from rtl.tools import RtlError

__all__ = [
    "GemmCheck",
    "check_gemm",
    "check_mapping",
    "psum_rows_for",
    "check_pair_supported",
    "gemm_job",
    "verify_gemm",
    "random_operands",
    "TOP",
    "BENCH",
    "SOURCES",
]

TOP = "lowbit_gemm_top"
BENCH = "rtl.benches.gemm_bench"
SOURCES = [
    SRC_DIR / f
    for f in (
        "lowbit_mac_pe.v",
        "lowbit_fusion_pe.v",
        "lowbit_serial_pe.v",
        "lowbit_systolic_ws.v",
        "lowbit_gemm_top.v",
        "lowbit_systolic_os.v",
        "lowbit_gemm_os_top.v",
        *TOP_PARTS,
    )
]


@dataclass(frozen=True)
class GemmCheck:
    """Result of one GEMM: ``mismatches`` (outputs that differ from ``A @ B``), cycles in clock cycles."""

    M: int
    K: int
    N: int
    w_bits: int
    a_bits: int
    rows: int
    cols: int
    pe_kind: str
    simulator: str
    macs: int
    mismatches: int
    measured_cycles: int  # index of the last busy cycle (sim's compute_cycles convention)
    predicted_cycles: int  # sim's compute_cycles for the same GEMM, array, pair, mapping and preload
    clock_cycles: int  # wall-clock cycles including stalls from gaps and backpressure
    messages: tuple[str, ...] = ()
    loop_order: str = "NKM"  # the mapping: loop order, outer to inner, in GEMM dimensions
    tile_m: int = 0  # rows of M per stream tile
    preload: str = "serial"  # weight-preload timing profile of the build
    dataflow: str = "ws"  # the array: weight- or output-stationary

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.measured_cycles == self.predicted_cycles

    def as_dict(self) -> dict:
        """The fields, the PE kind under the key ``pe`` of ``lowbit rtl gemm``'s JSON line."""
        return {("pe" if k == "pe_kind" else k): v for k, v in asdict(self).items()}


def _check_widths(w_bits: object, a_bits: object) -> None:
    """Both operand widths are integers in 2..8 (RtlError naming the first that is not)."""
    for name, bits in (("w_bits", w_bits), ("a_bits", a_bits)):
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
            raise RtlError(f"{name} must be an integer in 2..8, got {bits!r}")


def random_operands(
    M: int, K: int, N: int, w_bits: int, a_bits: int, seed: int, w_signed: bool = True, a_signed: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random ``A [M, K]`` (activations) and ``B [K, N]`` (weights) over their full integer ranges.

    Sizes whose operands exceed :data:`rtl.limits.MAX_HOST_BYTES` and negative seeds raise :class:`RtlError` before
    anything is drawn."""
    M, K, N = check_operand_sizes(M, K, N)
    _check_widths(w_bits, a_bits)
    rng = np.random.default_rng(check_seed(seed))
    a_lo, a_hi = kinds.operand_range(a_bits, a_signed)
    w_lo, w_hi = kinds.operand_range(w_bits, w_signed)
    return (
        rng.integers(a_lo, a_hi + 1, size=(M, K), dtype=np.int64),
        rng.integers(w_lo, w_hi + 1, size=(K, N), dtype=np.int64),
    )


def check_gemm(
    M: int,
    K: int,
    N: int,
    w_bits: int,
    a_bits: int,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "bitfusion",
    simulator: str = "verilator",
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    mapping: str | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
) -> None:
    """Everything about one GEMM run that can be checked before operands are drawn or anything is built: the PE
    kind, the simulator, the array and the stream probabilities (:mod:`rtl.limits`), and the run's estimated clock
    cycles, host memory and folds against the limits.  Raises :class:`RtlError` naming the argument, the estimate
    and the limit."""
    if pe_kind not in kinds.PE_KINDS:
        raise RtlError(f"unknown PE kind {pe_kind!r} ({', '.join(kinds.PE_KINDS)})")
    check_simulator(simulator)
    rows, cols = check_array(rows, cols)
    check_pair_supported(rows, cols, pe_kind, w_bits, a_bits)
    gap_prob, stall_prob = check_probability(gap_prob, "gap_prob"), check_probability(stall_prob, "stall_prob")
    M, K, N = check_operand_sizes(M, K, N)
    _, tile = check_mapping(M, mapping, preload, dataflow, pe_kind, N)
    if dataflow == "is":  # the ws GEMM of the transpose
        estimate = gemm_estimate(
            N, K, M, rows, cols, kinds.transposed_kind(pe_kind), a_bits, w_bits, gap_prob, stall_prob, tile, "ws"
        )
    else:
        estimate = gemm_estimate(
            M,
            K,
            N,
            rows,
            cols,
            pe_kind,
            w_bits,
            a_bits,
            gap_prob,
            stall_prob,
            tile if dataflow == "ws" else None,
            dataflow,
        )
    check_run(f"GEMM {M}x{K}x{N} on a {rows}x{cols} {pe_kind} array", estimate)


def check_mapping(
    M: int,
    mapping: str | None,
    preload: str = "serial",
    dataflow: str = "ws",
    pe_kind: str | None = None,
    N: int | None = None,
) -> tuple[int, int]:
    """(loop order index, tile length) of ``mapping`` (``ORDER[:TILE]``, :func:`rtl.gemm_plan.parse_mapping`; None is
    SCALE-Sim's untiled schedule: ``NKM`` for ws, ``NMK`` for os, ``MKN`` for is) for a GEMM of ``M`` rows and
    ``N`` columns on a ``dataflow`` array of ``pe_kind`` PEs (the tile cuts M, or N for is), and the preload profile;
    RtlError naming the bad part."""
    stream = int(N if dataflow == "is" and N is not None else M)
    try:
        kinds.check_preload(preload)
        kinds.check_dataflow(dataflow, pe_kind if pe_kind in kinds.PE_KINDS else None)
    except ValueError as exc:
        raise RtlError(str(exc)) from None
    if mapping is None:
        return (1 if dataflow == "os" else 0), stream
    try:
        return gemm_plan.parse_mapping(mapping, stream, dataflow)
    except ValueError as exc:
        raise RtlError(f"mapping: {exc}") from None


def psum_rows_for(plan: gemm_plan.GemmPlan) -> int:
    """The ``PSUM_ROWS`` of the build that runs ``plan``: the rows its mapping needs rounded up to a power of two,
    at least 256, so that builds are shared between GEMMs."""
    return max(256, 1 << (gemm_plan.psum_rows_needed(plan) - 1).bit_length())


def check_pair_supported(rows: int, cols: int, pe_kind: str, w_bits: int, a_bits: int) -> None:
    """Refuse a pair that sim refuses on the same array and PE, with sim's own message (a Bit-Fusion array runs
    only widths 2, 4 and 8, so sim's cost tables have no w3a3 row to compare the RTL's cycles with)."""
    from lowbit_core.errors import InputError  # sim is only needed for this check and the prediction

    _check_widths(w_bits, a_bits)
    try:
        prediction.rtl_chip(rows, cols, pe_kind).check_pairs([(int(w_bits), int(a_bits))])
    except InputError as exc:
        raise RtlError(str(exc)) from None


def gemm_job(
    name: str,
    A: np.ndarray,
    B: np.ndarray,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    w_signed: bool = True,
    a_signed: bool = True,
    *,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    order: str | int | None = None,
    tile_m: int | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
    n_blocks: int = 1,
) -> tuple[dict, gemm_plan.GemmPlan]:
    """The ``gemm_bench`` job for ``A @ B`` at the mapping (``order``, ``tile_m``): both input streams, the
    configuration, the output order, the expected product, stream knobs and a generous cycle limit; and its fold
    plan.  An input-stationary GEMM (``dataflow="is"``) runs as the ws GEMM of its transpose, ``Y^T = B^T A^T``:
    the activations are the stationary operand, the weights stream, ``tile_m`` cuts N and the PE is
    :func:`rtl.kinds.transposed_kind`'s; the job's outputs are ``Y^T``.  ``n_blocks > 1`` splits the reduction
    into blocks (:func:`rtl.gemm_plan.block_split`; a build with ``MAX_BLOCKS >= n_blocks``): the top then sends every
    block's own product, ``A[:, block] @ B[block]``.  Bad operands, mappings, probabilities or seeds raise
    :class:`RtlError`."""
    if dataflow == "is":
        return gemm_job(
            name,
            np.asarray(B).T,
            np.asarray(A).T,
            rows,
            cols,
            kinds.transposed_kind(pe_kind),
            a_bits,
            w_bits,
            a_signed,
            w_signed,
            gap_prob=gap_prob,
            stall_prob=stall_prob,
            seed=seed,
            order=order,
            tile_m=tile_m,
            preload=preload,
            dataflow="ws",
            n_blocks=n_blocks,
        )
    gap_prob, stall_prob = check_probability(gap_prob, "gap_prob"), check_probability(stall_prob, "stall_prob")
    seed = check_seed(seed)
    try:
        M, K = np.shape(A)
        blocks = gemm_plan.block_split(K, n_blocks) if n_blocks > 1 else None
        w_beats, beats, expected = encoding.gemm_streams(
            A,
            B,
            rows,
            cols,
            pe_kind,
            w_bits,
            a_bits,
            w_signed,
            a_signed,
            order,
            tile_m,
            dataflow=dataflow,
            blocks=blocks,
        )
        plan = gemm_plan.plan_gemm(
            M,
            K,
            np.shape(B)[1],
            rows,
            cols,
            pe_kind,
            w_bits,
            a_bits,
            w_signed,
            a_signed,
            order,
            tile_m,
            preload,
            dataflow=dataflow,
            blocks=blocks,
        )
    except ValueError as exc:
        raise RtlError(str(exc)) from None
    job = {
        "name": name,
        "M": plan.M,
        "N": plan.N,
        "cfg": encoding.top_config(plan),
        "w_beats": w_beats,
        "beats": beats,
        "outputs": [list(o) for o in encoding.output_order(plan)],
        "expected": expected.tolist(),
        "gap_prob": gap_prob,
        "stall_prob": stall_prob,
        "seed": seed,
        "max_cycles": plan.cycle_limit,
    }
    if blocks is not None:
        bounds = np.cumsum((0, *blocks))
        A64, B64 = np.asarray(A, dtype=np.int64), np.asarray(B, dtype=np.int64)
        job.update(
            {
                "blocks": len(blocks),
                "outputs": [list(o) for o in encoding.block_output_order(plan)],
                "expected": [(A64[:, k0:k1] @ B64[k0:k1]).tolist() for k0, k1 in zip(bounds, bounds[1:])],
            }
        )
    return job, plan


def verify_gemm(
    A: np.ndarray,
    B: np.ndarray,
    w_bits: int,
    a_bits: int,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "bitfusion",
    simulator: str = "verilator",
    w_signed: bool = True,
    a_signed: bool = True,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    mapping: str | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
    build_root: Path | None = None,
) -> GemmCheck:
    """Run ``A @ B`` through the RTL at ``mapping`` (``ORDER[:TILE_M]``, default SCALE-Sim's untiled ``NKM``) on
    an array with the ``preload`` profile; compare with the exact product and with sim's cycle prediction.

    A mismatch does not raise: it is counted and its messages (output index, expected, actual, cycle) returned.
    Arguments beyond :mod:`rtl.limits` raise :class:`RtlError` before anything is built (:func:`check_gemm`).
    """
    A, B = np.asarray(A), np.asarray(B)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise RtlError(f"need A [M, K] and B [K, N] with matching K, got {A.shape} and {B.shape}")
    check_gemm(
        A.shape[0],
        A.shape[1],
        B.shape[1],
        w_bits,
        a_bits,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=simulator,
        gap_prob=gap_prob,
        stall_prob=stall_prob,
        mapping=mapping,
        preload=preload,
        dataflow=dataflow,
    )
    order, tile_m = check_mapping(A.shape[0], mapping, preload, dataflow, pe_kind, B.shape[1])
    tile = tile_m if dataflow != "os" else None
    job, plan = gemm_job(
        "gemm",
        A,
        B,
        rows,
        cols,
        pe_kind,
        w_bits,
        a_bits,
        w_signed,
        a_signed,
        gap_prob=gap_prob,
        stall_prob=stall_prob,
        seed=seed,
        order=order,
        tile_m=tile,
        preload=preload,
        dataflow=dataflow,
    )
    M, K, N = A.shape[0], A.shape[1], B.shape[1]
    swap = dataflow == "is"  # the array holds the activations: its "weights" are a_bits wide
    params = encoding.top_parameters(
        rows,
        cols,
        kinds.transposed_kind(pe_kind) if swap else pe_kind,
        a_bits if swap else w_bits,
        w_bits if swap else a_bits,
        a_signed if swap else w_signed,
        w_signed if swap else a_signed,
        psum_rows=psum_rows_for(plan),
        preload=preload,
        dataflow="ws" if swap else dataflow,
    )
    record, failure = run_job(
        kinds.DATAFLOWS[dataflow],
        SOURCES,
        BENCH,
        params,
        job,
        simulator=simulator,
        build_root=build_root,
        what="GEMM bench",
    )
    return GemmCheck(
        M=M,
        K=K,
        N=N,
        w_bits=w_bits,
        a_bits=a_bits,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=simulator,
        macs=M * K * N,
        mismatches=int(record["mismatches"]),
        measured_cycles=int(record["measured_cycles"]),
        predicted_cycles=(
            prediction.predicted_is_cycles(M, K, N, rows, cols, pe_kind, w_bits, a_bits, order, tile, preload)
            if swap
            else prediction.predicted_cycles(
                M, K, N, rows, cols, pe_kind, w_bits, a_bits, order, tile, preload, dataflow
            )
        ),
        clock_cycles=int(record["clock_cycles"]),
        messages=tuple(record.get("messages", ())) or ((failure,) if failure else ()),
        loop_order=_is_order_name(plan.order) if swap else plan.order_name,
        tile_m=plan.tile_elements,
        preload=preload,
        dataflow=dataflow,
    )


def _is_order_name(order: int) -> str:
    """An is loop order in GEMM dimensions (columns hold M, the stream is N): sim's ``loop_order``."""
    from sim.mapping import gemm_order_name

    return gemm_order_name(2, order)
