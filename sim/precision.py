"""How each PE kind turns a bit pair into throughput and MAC energy.

Every PE kind is described by two integers per (chip, pair):

* ``pack`` -- products one PE sums per cycle along the reduction (Bit Fusion: floor(8/a)*floor(8/w)
  after rounding bits up to 2/4/8; otherwise 1);
* ``serial`` -- cycles one streamed element occupies (bit-serial: ``a`` for activation-serial
  Stripes-style PEs, ``a*w`` for Loom-style both-serial PEs; otherwise 1).

Arrays broadcast: chip fields have shape [C, 1, 1], operand bits [1, L, P].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PE_FIXED",
    "PE_BITFUSION",
    "PE_BITSERIAL",
    "PE_KIND_CODES",
    "FUSION_WIDTHS",
    "fusion_width",
    "fusion_width_of",
    "pack_and_serial",
]

PE_FIXED, PE_BITFUSION, PE_BITSERIAL = 0, 1, 2
PE_KIND_CODES = {"fixed": PE_FIXED, "bitfusion": PE_BITFUSION, "bitserial": PE_BITSERIAL}


FUSION_WIDTHS = (2, 4, 8)


def fusion_width_of(bits: int) -> int:
    """Round one bit width up to the Bit-Fusion widths 2, 4 or 8 (scalar; hot in chip-batch building)."""
    return next(w for w in FUSION_WIDTHS if bits <= w)


def fusion_width(bits: np.ndarray) -> np.ndarray:
    """:func:`fusion_width_of` over an array."""
    bits = np.asarray(bits)
    return np.where(bits <= 2, 2, np.where(bits <= 4, 4, 8))


def pack_and_serial(
    kind: np.ndarray, serial_both: np.ndarray, w_op: np.ndarray, a_op: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Products per PE per cycle (``pack``) and cycles per streamed element (``serial``).

    ``w_op``/``a_op`` are the operand widths actually multiplied (for activation x activation
    products both are activation widths).
    """
    fused = (8 // fusion_width(a_op)) * (8 // fusion_width(w_op))
    pack = np.where(kind == PE_BITFUSION, fused, 1)
    bits_serial = np.where(serial_both, a_op * w_op, a_op)
    serial = np.where(kind == PE_BITSERIAL, bits_serial, 1)
    return pack.astype(np.int64), serial.astype(np.int64)
