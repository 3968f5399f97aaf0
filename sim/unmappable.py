"""The one-line error for a layer that no mapping fits: its stationary tile exceeds a double-buffered SRAM."""

from __future__ import annotations

import numpy as np

from lowbit_core.errors import InputError
from lowbit_core.pairs import format_pair
from sim.chipbatch import DATAFLOW_CODES, ChipBatch
from sim.layerbatch import LayerBatch

__all__ = ["raise_unmappable"]

_BITS_PER_KIB = 8192
#: the SRAM that holds each dataflow's stationary tile
_BUFFER = {DATAFLOW_CODES["ws"]: "filter", DATAFLOW_CODES["os"]: "filter", DATAFLOW_CODES["is"]: "ifmap"}


def raise_unmappable(
    df: int, chips: ChipBatch, layers: LayerBatch, pairs: np.ndarray, ok: np.ndarray, tile_bits: np.ndarray
) -> None:
    """Raise one line naming the first (chip, layer, pair) where ``ok`` [C, L, P] is false, with the SRAM its
    stationary tile (``tile_bits``, [C, L, P, T] broadcastable) needs."""
    ci, li, pi = (int(v[0]) for v in np.nonzero(~ok))
    bits = float(np.broadcast_to(tile_bits, ok.shape + (np.asarray(tile_bits).shape[-1],))[ci, li, pi, 0])
    buffer = _BUFFER[df]
    have = float(np.asarray(getattr(chips, f"{buffer}_sram_bits"))[ci]) / _BITS_PER_KIB
    need = 2 * bits / _BITS_PER_KIB
    pair = format_pair((int(pairs[pi, 0]), int(pairs[pi, 1])))
    raise InputError(
        f"chip {chips.names[ci]!r}: layer {layers.names[li]!r} at {pair} "
        f"fits no mapping: one {int(chips.rows[ci])}x{int(chips.cols[ci])} stationary tile needs "
        f"memory.{buffer}_sram_kib >= {need:.4g} (double-buffered), the chip has {have:.4g}"
    )
