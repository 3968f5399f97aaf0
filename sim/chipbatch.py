"""Struct-of-arrays view of many chips, for the vectorized engine and sweeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair, format_pair
from sim.config import Chip
from sim.mapping import MAPPING_MODES, OBJECTIVES
from sim.precision import PE_BITFUSION, PE_FIXED, PE_KIND_CODES, fusion_width_of

__all__ = ["ChipBatch", "CHIP_FIELDS", "DATAFLOW_CODES", "mac_energy_pj"]

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
    output_acc: np.ndarray
    scale_bits: np.ndarray
    mapping_mode: np.ndarray
    objective: np.ndarray
    overlapped: np.ndarray
    per_tap: np.ndarray
    e_sram_ifmap_r: np.ndarray
    e_sram_ifmap_w: np.ndarray
    e_sram_filter_r: np.ndarray
    e_sram_filter_w: np.ndarray
    e_sram_ofmap_r: np.ndarray
    e_sram_ofmap_w: np.ndarray
    e_reg: np.ndarray
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
        fields: dict[str, np.ndarray] = {
            name: np.array([fn(c) for c in chips], dtype=dtype) for name, (_, fn, dtype) in CHIP_FIELDS.items()
        }
        return cls(
            names=tuple(c.name for c in chips),
            static_mw=np.array([c.static_power_mw() for c in chips], dtype=np.float64),
            mac_pj=np.array([[mac_energy_pj(c, w, a) for w, a in pairs] for c in chips], dtype=np.float64),
            act_mac_pj=np.array([[mac_energy_pj(c, a, a) for _, a in pairs] for c in chips], dtype=np.float64),
            **fields,
        )

    def take(self, sel: slice | np.ndarray) -> ChipBatch:
        """The chips selected by a slice or an index array."""
        names = self.names[sel] if isinstance(sel, slice) else tuple(self.names[int(i)] for i in sel)
        return ChipBatch(
            names=tuple(names), **{k: getattr(self, k)[sel] for k in self.__dataclass_fields__ if k != "names"}
        )


def _sram_energy(buffer: str, rw: str) -> Callable[[Chip], float]:
    """pJ per bit read (``rw='r'``) or written (``'w'``) of one of a chip's SRAM buffers."""

    def energy(chip: Chip) -> float:
        kib = getattr(chip.memory, f"{buffer}_sram_kib")
        return chip.tech.sram_read_pj_per_bit(kib) if rw == "r" else chip.tech.sram_write_pj_per_bit(kib)

    return energy


#: Per-chip fields of a batch: name -> (the dotted chip fields it depends on, how to compute it
#: from one chip, dtype).  Sweeps evaluate each once per distinct value of its dependencies.
CHIP_FIELDS: dict[str, tuple[tuple[str, ...], Callable[[Chip], Any], type]] = {
    "rows": (("array.rows",), lambda c: c.array.rows, np.int64),
    "cols": (("array.cols",), lambda c: c.array.cols, np.int64),
    "dataflow": (("array.dataflow",), lambda c: DATAFLOW_CODES[c.array.dataflow], np.int64),
    "pe_kind": (("pe.kind",), lambda c: PE_KIND_CODES[c.pe.kind], np.int64),
    "serial_both": (("pe.serial",), lambda c: c.pe.serial == "both", bool),
    "ifmap_sram_bits": (("memory.ifmap_sram_kib",), lambda c: c.memory.ifmap_sram_kib * BITS_PER_KIB, np.float64),
    "filter_sram_bits": (("memory.filter_sram_kib",), lambda c: c.memory.filter_sram_kib * BITS_PER_KIB, np.float64),
    "ofmap_sram_bits": (("memory.ofmap_sram_kib",), lambda c: c.memory.ofmap_sram_kib * BITS_PER_KIB, np.float64),
    "bandwidth": (("memory.dram_bw_bits_per_cycle",), lambda c: c.memory.bandwidth, np.float64),
    "clock_mhz": (("array.clock_mhz",), lambda c: c.array.clock_mhz, np.float64),
    "acc_bits": (("memory.acc_bits",), lambda c: c.memory.acc_bits, np.int64),
    "output_acc": (("memory.output_width",), lambda c: c.memory.output_width == "accumulator", bool),
    "scale_bits": (("weight_scale_bits",), lambda c: c.weight_scale_bits, np.int64),
    "mapping_mode": (("mapping",), lambda c: MAPPING_MODES.index(c.mapping), np.int64),
    "objective": (("mapping_objective",), lambda c: OBJECTIVES.index(c.mapping_objective), np.int64),
    "overlapped": (("array.weight_preload",), lambda c: c.array.weight_preload == "overlapped", bool),
    "per_tap": (("array.reduction",), lambda c: c.array.reduction == "per_tap", bool),
    **{
        f"e_sram_{buf}_{rw}": (("technology", f"memory.{buf}_sram_kib"), _sram_energy(buf, rw), np.float64)
        for buf in ("ifmap", "filter", "ofmap")
        for rw in ("r", "w")
    },
    "e_reg": (("technology",), lambda c: c.tech.register_pj_per_bit, np.float64),
    "e_dram": (("technology",), lambda c: c.tech.dram_pj_per_bit, np.float64),
}


def mac_energy_pj(chip: Chip, w: int, a: int) -> float:
    """Energy of one MAC (pJ) of operand widths (w, a) on ``chip``'s PE."""
    tech = chip.tech
    kind = PE_KIND_CODES[chip.pe.kind]
    if kind == PE_FIXED:
        if chip.pe.bits not in tech.fixed_mac_pj:
            raise InputError(f"chip {chip.name!r}: technology {tech.name!r} has no fixed {chip.pe.bits}-bit MAC")
        return tech.fixed_mac_pj[chip.pe.bits]
    if kind == PE_BITFUSION:
        key = (fusion_width_of(w), fusion_width_of(a))
        if key not in tech.bitfusion_mac_pj:
            raise InputError(
                f"chip {chip.name!r}: technology {tech.name!r} lacks bitfusion energy for {format_pair(key)}"
            )
        return tech.bitfusion_mac_pj[key]
    mode = "both" if chip.pe.serial == "both" else "activation"
    steps = a * w if mode == "both" else a
    return tech.serial_step_pj[mode] * steps
