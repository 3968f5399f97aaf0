"""What one RTL run may ask for, checked before any operand is drawn or any build starts.

The limits:

- the array: at most :data:`MAX_ARRAY_PES` PEs (e.g. 32x32) and :data:`MAX_ARRAY_SIDE` per side -- Verilator
  builds one module per PE, and the largest arrays verified are 8x8 and 4x16;
- a run: at most :data:`MAX_RUN_CYCLES` estimated clock cycles (the bench drives every cycle from Python) and
  :data:`MAX_HOST_BYTES` of estimated host memory (operands, expected outputs, stream beats and their JSON copy,
  the simulated psum buffer);
- the hardware's own counters: at most :data:`MAX_FOLDS` row or column folds (``FOLD_BITS = 16`` in
  ``lowbit_gemm_top``);
- stream gap and stall probabilities in [0, 1), seeds non-negative integers.

Every refusal is one :class:`~rtl.tools.RtlError` line that names the argument, the estimate and the limit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from rtl import gemm_plan
from rtl.runner import SIMULATORS
from rtl.tools import RtlError

__all__ = [
    "MAX_ARRAY_PES",
    "MAX_ARRAY_SIDE",
    "MAX_RUN_CYCLES",
    "MAX_HOST_BYTES",
    "MAX_FOLDS",
    "RunEstimate",
    "check_array",
    "check_probability",
    "check_seed",
    "check_simulator",
    "check_operand_sizes",
    "gemm_estimate",
    "check_run",
]

MAX_ARRAY_PES = 1024  #: PEs of one array (rows x cols)
MAX_ARRAY_SIDE = 256  #: rows or columns of one array
MAX_RUN_CYCLES = 10_000_000  #: estimated clock cycles of one run (about minutes of cocotb)
MAX_HOST_BYTES = 1 << 30  #: estimated host memory of one run (1 GiB)
MAX_FOLDS = (1 << 16) - 1  #: row or column folds the top's 16-bit fold counters hold

_ACC_BYTES = 4  #: one 32-bit accumulator of the psum buffer
_OUTPUT_BYTES = 64  #: one expected output: numpy, Python list, JSON text, the bench's parsed copy
_INT_OVERHEAD = 32  #: bytes of a Python int object beyond its digits


@dataclass(frozen=True)
class RunEstimate:
    """Estimated cost of one run: clock cycles (busy cycles and stream beats, divided by 1 - the gap or stall
    probability), host bytes, and the most row or column folds of one GEMM."""

    cycles: int
    host_bytes: int
    folds: int = 0

    def __add__(self, other: RunEstimate) -> RunEstimate:
        return RunEstimate(self.cycles + other.cycles, self.host_bytes + other.host_bytes, max(self.folds, other.folds))


def check_array(rows: object, cols: object) -> tuple[int, int]:
    """``(rows, cols)`` as ints when the array is within the limits (module docstring)."""
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise RtlError(f"array {name} must be a positive integer, got {v!r}")
    r, c = int(rows), int(cols)  # type: ignore[call-overload]
    if r > MAX_ARRAY_SIDE or c > MAX_ARRAY_SIDE or r * c > MAX_ARRAY_PES:
        raise RtlError(
            f"array {r}x{c} has {r * c:,} PEs; the RTL runs at most {MAX_ARRAY_PES:,} PEs "
            f"(e.g. 32x32) and {MAX_ARRAY_SIDE} per side"
        )
    return r, c


def check_probability(value: object, name: str) -> float:
    """A stream gap or stall probability: a finite number in [0, 1) (1 would never move a beat)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RtlError(f"{name} must be a number in [0, 1), got {value!r}")
    p = float(value)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        raise RtlError(f"{name} must be in [0, 1), got {p!r}")
    return p


def check_seed(value: object, name: str = "seed") -> int:
    """A non-negative integer seed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise RtlError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_simulator(value: object) -> str:
    """One of :data:`rtl.runner.SIMULATORS`."""
    if value not in SIMULATORS:
        raise RtlError(f"simulator must be one of {', '.join(SIMULATORS)}, got {value!r}")
    return str(value)


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB" if n_bytes >= 2**20 else f"{n_bytes:,} bytes"


def check_operand_sizes(M: object, K: object, N: object) -> tuple[int, int, int]:
    """Positive sizes whose int64 operands ``A [M, K]`` and ``B [K, N]`` fit :data:`MAX_HOST_BYTES` (checked before
    they are drawn)."""
    for name, v in (("M", M), ("K", K), ("N", N)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise RtlError(f"{name} must be a positive integer, got {v!r}")
    m, k, n = int(M), int(K), int(N)  # type: ignore[call-overload]
    need = 8 * (m * k + k * n)
    if need > MAX_HOST_BYTES:
        raise RtlError(
            f"GEMM {m}x{k}x{n}: its operands alone need about {_mib(need)}; the limit of one RTL run is "
            f"{_mib(MAX_HOST_BYTES)}"
        )
    return m, k, n


def gemm_estimate(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    tile_m: int | None = None,
    dataflow: str = "ws",
) -> RunEstimate:
    """Estimated clock cycles and host bytes of ``[M, K] x [K, N]`` on a ``rows x cols`` ``dataflow`` array of
    ``pe_kind`` PEs with stream tiles of ``tile_m`` rows (default untiled; serial preload, an upper bound for
    overlapped)."""
    try:
        plan = gemm_plan.plan_gemm(M, K, N, rows, cols, pe_kind, w_bits, a_bits, tile_m=tile_m, dataflow=dataflow)
    except ValueError as exc:
        raise RtlError(str(exc)) from None
    beats = plan.w_beats + plan.in_beats
    busy = plan.busy_cycles_bound + beats + plan.out_beats
    cycles = math.ceil(busy / (1.0 - max(gap_prob, stall_prob)))

    def beat_bytes(bits: int) -> int:
        return 2 * (bits // 8 + _INT_OVERHEAD) + math.ceil(bits * math.log10(2)) + 2

    psum_rows = max(256, 1 << (M - 1).bit_length())
    host = (
        8 * (M * K + K * N)
        + _OUTPUT_BYTES * M * N
        + plan.in_beats * beat_bytes(plan.rows * plan.a_slot)
        + plan.w_beats * beat_bytes(plan.cols * plan.w_slot)
        + psum_rows * plan.cols * _ACC_BYTES
    )
    counts = (plan.row_folds, plan.col_folds, plan.tiles) + ((plan.Kp,) if dataflow == "os" else ())
    return RunEstimate(cycles=cycles, host_bytes=host, folds=max(counts))


def check_run(what: str, estimate: RunEstimate) -> None:
    """Refuse a run whose estimate exceeds the limits, naming ``what``, the estimate and the limit."""
    if estimate.folds > MAX_FOLDS:
        raise RtlError(
            f"{what} needs {estimate.folds:,} folds; the top's fold counters hold at most {MAX_FOLDS:,} "
            f"(use a larger array)"
        )
    if estimate.cycles > MAX_RUN_CYCLES:
        raise RtlError(
            f"{what} needs about {estimate.cycles:,} clock cycles; the limit of one RTL run is "
            f"{MAX_RUN_CYCLES:,} (use a smaller GEMM, a larger array or fewer gaps)"
        )
    if estimate.host_bytes > MAX_HOST_BYTES:
        raise RtlError(
            f"{what} needs about {_mib(estimate.host_bytes)} of host memory; the limit of one RTL run is "
            f"{_mib(MAX_HOST_BYTES)}"
        )
