"""Fixed-point requantization primitives of the integer datapath (exact; numpy int64 or Python ints).

The integer datapath (``docs/formats.md``, "Integer export") uses only these operations, which the RTL
reproduces bit for bit:

* ``P_h = sum_k (x_k - z_x) * w_k`` -- one **32-bit partial sum** per input block ``h``;
* ``A = (B << T_v) + sum_h M_{v,h} * P_h`` -- 32 x 32 -> 64-bit products summed in a **64-bit accumulator** that
  starts at the int32 bias ``B`` shifted left by ``T_v``; ``0 <= M_{v,h} <= 2^31 - 1`` and all blocks of row
  block ``v`` share one shift ``S_v`` in ``1..62``;
* ``y = clamp(((A + 2^(S_v - 1)) >> S_v) + z_y, lo, hi)`` -- one **rounding arithmetic right shift**
  (round half up, i.e. towards +inf on ties: ``floor(A / 2^S + 1/2)``), the output zero point, saturation.

This module has the scalar/array primitives and the bounds; :mod:`quant.integer` builds layers from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from quant.errors import QuantInputError

__all__ = [
    "PSUM_BITS",
    "MULT_BITS",
    "ACC_BITS",
    "MULT_MIN",
    "MULT_MAX",
    "MIN_SHIFT",
    "MAX_SHIFT",
    "INT32_MIN",
    "INT32_MAX",
    "INT64_MAX",
    "exact",
    "round_half_up",
    "round_half_even",
    "rounding_shift",
    "requantize",
    "quantize_multipliers",
    "max_abs_offset",
    "worst_case_psum",
    "max_reduction_length",
    "multiplier_error_lsb",
]

PSUM_BITS = 32  #: width of one block's partial sum P_h (signed)
MULT_BITS = 32  #: width of a multiplier M (signed register; M itself is in 0 .. 2^31 - 1)
ACC_BITS = 64  #: width of the rescaled accumulator A (signed)
MULT_MIN = 1 << 30  #: the largest multiplier of a row block is normalised into [MULT_MIN, MULT_MAX]
MULT_MAX = (1 << 31) - 1
MIN_SHIFT, MAX_SHIFT = 1, 62
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MAX = (1 << 63) - 1


def exact(value: float | int | Fraction | np.floating | np.integer) -> Fraction:
    """The exact rational value of a finite float64 (or int / Fraction)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    v = float(value)
    if not math.isfinite(v):
        raise QuantInputError(f"non-finite value {v!r} in the requantization constants")
    return Fraction(v)


def round_half_up(x: Fraction) -> int:
    """``floor(x + 1/2)``: the rounding of the datapath's shift (ties towards +inf)."""
    return math.floor(x + Fraction(1, 2))


def round_half_even(x: Fraction) -> int:
    """Round to nearest, ties to even (numpy ``rint``), used for offline constants such as the int32 bias."""
    return round(x)


def rounding_shift(acc: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """``(acc + 2^(shift-1)) >> shift`` in int64, i.e. ``floor(acc / 2^shift + 1/2)`` exactly.

    ``shift`` (scalar or broadcastable array) must be in ``1..62``; the caller guarantees
    ``|acc| + 2^(shift-1) <= 2^63 - 1`` (:func:`quant.export.export_model` proves it per layer)."""
    a = np.asarray(acc, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if s.size and (s.min() < MIN_SHIFT or s.max() > MAX_SHIFT):
        raise QuantInputError(f"shift must be in {MIN_SHIFT}..{MAX_SHIFT}, got {s.min()}..{s.max()}")
    return (a + (np.int64(1) << (s - 1))) >> s


def requantize(acc: np.ndarray, shift: np.ndarray | int, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """Output codes ``clamp(rounding_shift(acc, shift) + zero_point, qmin, qmax)`` (int64)."""
    return np.clip(rounding_shift(acc, shift) + np.int64(zero_point), qmin, qmax)


def quantize_multipliers(reals: Sequence[Fraction | float]) -> tuple[list[int], int]:
    """32-bit multipliers ``M_h`` and one common shift ``S`` with ``M_h / 2^S ~= reals[h]`` (all > 0).

    ``S`` is chosen so that the largest multiplier is normalised, ``2^30 <= max_h M_h <= 2^31 - 1``, and
    ``M_h = floor(reals[h] * 2^S + 1/2)``; hence ``|M_h / 2^S - reals[h]| <= 2^-(S+1)``, a relative error
    ``<= 2^-31`` for the largest one.  ``S`` is capped at 62 (a multiplier below 2^-32 then loses its
    normalisation but keeps the absolute error ``2^-63``); a multiplier ``>= 2^30`` is refused."""
    ms = [exact(r) for r in reals]
    if not ms or min(ms) <= 0:
        raise QuantInputError("requantization multipliers must be positive")
    top = max(ms)
    e = top.numerator.bit_length() - top.denominator.bit_length()  # 2^(e-1) < top < 2^(e+1)
    if Fraction(2) ** e > top:
        e -= 1  # now 2^e <= top < 2^(e+1)
    shift = 30 - e
    if round_half_up(top * Fraction(2) ** shift) > MULT_MAX:  # top * 2^S rounds up to 2^31
        shift -= 1
    if shift < MIN_SHIFT:
        raise QuantInputError(
            f"requantization multiplier {float(top):.6g} >= 2^30 cannot be represented "
            f"(input scale x weight scale >> output scale)"
        )
    shift = min(shift, MAX_SHIFT)
    scale = Fraction(2) ** shift
    return [round_half_up(m * scale) for m in ms], shift


def max_abs_offset(qmin: int, qmax: int, zero_point: int) -> int:
    """``max |x - z|`` over codes ``x`` in ``qmin..qmax``."""
    return max(abs(qmin - zero_point), abs(qmax - zero_point))


def worst_case_psum(k: int, a_bits: int, w_bits: int) -> int:
    """Generic bound on ``|P|`` for ``k`` products of an a-bit activation offset and a signed w-bit weight code.

    ``|x - z_x| <= 2^a - 1`` for any zero point inside an unsigned a-bit range, ``|w| <= 2^(w-1)``."""
    return k * ((1 << a_bits) - 1) * (1 << (w_bits - 1))


def max_reduction_length(a_bits: int = 8, w_bits: int = 8, bias_abs: int = 0) -> int:
    """Largest reduction length ``K`` whose worst-case partial sum (plus ``|bias|``) fits int32.

    For 8 x 8 bits and no bias: ``(2^31 - 1) // (255 * 128) = 65793``."""
    return (INT32_MAX - bias_abs) // (((1 << a_bits) - 1) * (1 << (w_bits - 1)))


def multiplier_error_lsb(
    multipliers: Sequence[int], shift: int, reals: Sequence[Fraction | float], psum_abs: Sequence[int]
) -> Fraction:
    """Exact bound ``sum_h |M_h / 2^S - m_h| * |P_h|`` on the multiplier-rounding error, in output LSBs."""
    scale = Fraction(2) ** shift
    return sum(
        (abs(Fraction(mh) / scale - exact(r)) * int(p) for mh, r, p in zip(multipliers, reals, psum_abs)), Fraction(0)
    )
