"""The requantization constants of a layer from its scales: multipliers ``M[v][h]``, shifts ``S[v]``, int32 biases
``B[r]`` and bias shifts ``T[v]`` for one output scale (:func:`requant_constants`), and the scale and constants of the
last layer's int32 logits (:func:`logit_scale`), in exact rational arithmetic (:mod:`quant.requant`).

The export computes a layer's constants with them (:mod:`quant.export_layer`); the loader
(:mod:`quant.integer.loading`) computes them again to check that a stored export's constants are the ones its scales
and real bias give.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from quant.errors import QuantInputError
from quant.requant import INT32_MAX, INT32_MIN, exact, quantize_multipliers, round_half_even

__all__ = ["requant_constants", "logit_scale"]

_MAX_LOGIT_FRAC_BITS = 24  #: at most 24 extra fractional bits below s_x * max(s_w) for the logits


def requant_constants(
    sx: Fraction, eff: np.ndarray, out_scale: float, bias_real: np.ndarray, rows: np.ndarray, where: str
) -> tuple[list[list[int]], list[int], list[int], list[int]]:
    """Multipliers ``M[v][h]``, shifts ``S[v]``, int32 biases ``B[r]`` and bias shifts ``T[v]`` for one output scale.

    ``B_r = rint(b_r / s_y * 2^F_v)`` with the most fractional bits ``F_v <= S_v`` that keep every ``B_r`` of row
    block ``v`` in int32; ``T_v = S_v - F_v``."""
    sy = exact(out_scale)
    mults, shifts = map(list, zip(*(quantize_multipliers([sx * exact(s) / sy for s in row]) for row in eff)))
    bias_lsb = [exact(b) / sy for b in bias_real]
    bias = [0] * len(bias_real)
    bias_shifts = []
    for v, shift in enumerate(shifts):
        members = np.flatnonzero(rows == v)
        for frac in range(shift, -1, -1):
            vals = [round_half_even(bias_lsb[r] * (1 << frac)) for r in members]
            if all(INT32_MIN <= b <= INT32_MAX for b in vals):
                break
        else:
            raise QuantInputError(
                f"{where}: bias of {float(max(abs(bias_lsb[r]) for r in members)):.3g} output LSBs does not fit int32"
            )
        for r, b in zip(members, vals):
            bias[r] = b
        bias_shifts.append(shift - frac)
    return mults, shifts, bias, bias_shifts


def logit_scale(
    sx: Fraction, eff: np.ndarray, pmax: np.ndarray, rows: np.ndarray, bias_real: np.ndarray, where: str
) -> tuple[float, list[list[int]], list[int], list[int], list[int]]:
    """Scale and requantization constants of the int32 logits: ``s_out = s_x * max(s_w_eff) * 2^-F`` with the
    largest ``F`` in 0..24 such that no logit code can leave int32 for any input (``F = 0`` if none does: the
    clamp then saturates exactly)."""
    top = exact(float(eff.max()))
    for frac_bits in range(_MAX_LOGIT_FRAC_BITS, -1, -1):
        s_out = float(sx * top / 2**frac_bits)  # rounded to float64; the constants use this stored value
        try:
            mults, shifts, bias, bias_shifts = requant_constants(sx, eff, s_out, bias_real, rows, where)
        except QuantInputError:
            if frac_bits == 0:
                raise
            continue
        worst = max(
            (
                sum(int(m) * int(p) for m, p in zip(mults[rows[r]], pmax[r]))
                + (abs(bias[r]) << bias_shifts[rows[r]])
                + (1 << (shifts[rows[r]] - 1))
            )
            >> shifts[rows[r]]
            for r in range(len(rows))
        )
        if worst <= INT32_MAX or frac_bits == 0:
            return s_out, mults, shifts, bias, bias_shifts
    raise AssertionError("unreachable")
