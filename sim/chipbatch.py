"""Struct-of-arrays view of many chips, for the vectorized engine and sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.config import Chip
from sim.errors import InputError
from sim.pairs import Pair
from sim.precision import PE_BITFUSION, PE_FIXED, PE_KIND_CODES, fusion_width

__all__ = ["ChipBatch", "DATAFLOW_CODES"]

DATAFLOW_CODES = {"ws": 0, "os": 1, "is": 2}
BITS_PER_KIB = 8192


@dataclass(frozen=True)
class ChipBatch:
    """``C`` chips as parallel arrays (all shape [C]).

    SRAM sizes are in bits; energies in pJ per bit or per MAC; ``bandwidth`` in bits per cycle
    (``inf`` = unlimited); ``static_mw`` in mW.  ``mac_pj`` holds pJ/MAC for each requested pair,
    shape [C, P], and ``act_mac_pj`` the same for activation x activation products (a, a).
    """

    names: tuple[str, ...]
    rows: np.ndarray
    cols: np.ndarray
    dataflow: np.ndarray
    pe_kind: np.ndarray
    serial_both: np.ndarray
    ifmap_sram_bits: np.ndarray
    filter_sram_bits: np.ndarray
    ofmap_sram_bits: np.ndarray
    bandwidth: np.ndarray
    clock_mhz: np.ndarray
    acc_bits: np.ndarray
    scale_bits: np.ndarray
    e_sram_ifmap: np.ndarray
    e_sram_filter: np.ndarray
    e_sram_ofmap: np.ndarray
    e_dram: np.ndarray
    static_mw: np.ndarray
    mac_pj: np.ndarray
    act_mac_pj: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_chips(cls, chips: Sequence[Chip], pairs: Sequence[Pair]) -> ChipBatch:
        """Build from validated chips; every pair must be supported by every chip."""
        if not chips:
            raise InputError("no chips given")
        for chip in chips:
            chip.check_pairs(list(pairs))
        f64 = np.float64

        def arr(fn, dtype=np.int64) -> np.ndarray:
            return np.array([fn(c) for c in chips], dtype=dtype)

        return cls(
            names=tuple(c.name for c in chips),
            rows=arr(lambda c: c.array.rows),
            cols=arr(lambda c: c.array.cols),
            dataflow=arr(lambda c: DATAFLOW_CODES[c.array.dataflow]),
            pe_kind=arr(lambda c: PE_KIND_CODES[c.pe.kind]),
            serial_both=arr(lambda c: c.pe.serial == "both", bool),
            ifmap_sram_bits=arr(lambda c: c.memory.ifmap_sram_kib * BITS_PER_KIB, f64),
            filter_sram_bits=arr(lambda c: c.memory.filter_sram_kib * BITS_PER_KIB, f64),
            ofmap_sram_bits=arr(lambda c: c.memory.ofmap_sram_kib * BITS_PER_KIB, f64),
            bandwidth=arr(lambda c: c.memory.bandwidth, f64),
            clock_mhz=arr(lambda c: c.array.clock_mhz, f64),
            acc_bits=arr(lambda c: c.memory.acc_bits),
            scale_bits=arr(lambda c: c.weight_scale_bits),
            e_sram_ifmap=arr(lambda c: c.tech.sram_pj_per_bit(c.memory.ifmap_sram_kib), f64),
            e_sram_filter=arr(lambda c: c.tech.sram_pj_per_bit(c.memory.filter_sram_kib), f64),
            e_sram_ofmap=arr(lambda c: c.tech.sram_pj_per_bit(c.memory.ofmap_sram_kib), f64),
            e_dram=arr(lambda c: c.tech.dram_pj_per_bit, f64),
            static_mw=arr(lambda c: c.static_power_mw(), f64),
            mac_pj=np.array([[mac_energy_pj(c, w, a) for w, a in pairs] for c in chips], dtype=f64),
            act_mac_pj=np.array([[mac_energy_pj(c, a, a) for _, a in pairs] for c in chips], dtype=f64),
        )

    def replace(self, **arrays: np.ndarray) -> ChipBatch:
        """A batch with some fields replaced (used by sweeps to vary parameters)."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields.update(arrays)
        return ChipBatch(**fields)


def mac_energy_pj(chip: Chip, w: int, a: int) -> float:
    """Energy of one MAC (pJ) of operand widths (w, a) on ``chip``'s PE."""
    tech = chip.tech
    kind = PE_KIND_CODES[chip.pe.kind]
    if kind == PE_FIXED:
        if chip.pe.bits not in tech.fixed_mac_pj:
            raise InputError(f"chip {chip.name!r}: technology {tech.name!r} has no fixed {chip.pe.bits}-bit MAC")
        return tech.fixed_mac_pj[chip.pe.bits]
    if kind == PE_BITFUSION:
        key = (int(fusion_width(w)), int(fusion_width(a)))
        if key not in tech.bitfusion_mac_pj:
            raise InputError(f"chip {chip.name!r}: technology {tech.name!r} lacks bitfusion energy for "
                             f"w{key[0]}a{key[1]}")
        return tech.bitfusion_mac_pj[key]
    mode = "both" if chip.pe.serial == "both" else "activation"
    steps = a * w if mode == "both" else a
    return tech.serial_step_pj[mode] * steps


