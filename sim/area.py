"""Chip area (mm^2) from synthesized PE and requantization-unit areas and an SRAM density.

``pe + requant + sram``: ``rows·cols`` PEs of the chip's kind, one requantization unit per column (shared per
column, as in lowbit's RTL), and the three SRAM buffers. The logic figures are NAND2-equivalents from ``lowbit rtl
synth`` recorded in the technology YAML (``area`` section). A fixed PE is the smallest synthesized one covering the
chip's widest pair; a bit-serial PE's figure covers widths up to 8, so a bit-serial chip with wider pairs has no
area (NaN); a Stripes PE on an is array serializes its stationary activation (its own figure,
``activation_stationary``; NaN when the YAML lacks it). A ws or is chip with ``weight_preload: overlapped`` adds the
double-buffered stationary registers to every PE: ``overlap_nand2.per_pe + overlap_nand2.per_weight_bit x`` the PE's
stationary slot (the fixed PE's weight bits -- activation bits for is --, 32 for Bit Fusion, 8 for bit-serial), both
from synthesized ws arrays (docs/rtl.md, "Synthesis"). An os chip adds ``os_nand2_per_pe`` to every PE (lowbit's
output-stationary array: flags, accumulator feedback, result bus; the same array serves both timing profiles).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sim.config import Chip
from sim.precision import fusion_width_of
from sim.technology import load_technology

__all__ = ["ChipArea", "chip_area", "fixed_pe_key", "stationary_slot_bits"]

BITS_PER_KIB = 8 * 1024
SERIAL_AREA_MAX_BITS = 8  #: the widest runtime width of the synthesized bit-serial PE
BITFUSION_SLOT_BITS = 32  #: a Bit-Fusion PE's weight register


@dataclass(frozen=True)
class ChipArea:
    """Areas in mm^2 (NaN when the technology has no figure for this PE kind)."""

    pe_nand2: float  # one PE, NAND2-equivalents
    pe_mm2: float  # all PEs
    requant_mm2: float
    sram_mm2: float
    total_mm2: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fixed_pe_key(chip: Chip, synthesized: dict[str, float]) -> str | None:
    """The smallest synthesized fixed PE ``wWaA`` covering the chip's widest weight and activation bits."""
    w = fusion_width_of(max(p[0] for p in chip.supported_pairs))
    a = fusion_width_of(max(p[1] for p in chip.supported_pairs))
    fits = [
        (area, key)
        for key, area in synthesized.items()
        if int(key[1 : key.index("a")]) >= w and int(key[key.index("a") + 1 :]) >= a
    ]
    return min(fits)[1] if fits else None


def stationary_slot_bits(chip: Chip, fixed_key: str | None) -> int:
    """Bits of one PE's stationary register: for a fixed PE its weight width (activation width for is) from its
    synthesized ``wWaA`` key, 32 for Bit Fusion, the widest runtime width for a bit-serial PE."""
    if chip.pe.kind == "fixed":
        if not fixed_key:
            return 0
        w_text, a_text = fixed_key[1:].split("a")
        return int(a_text if chip.array.dataflow == "is" else w_text)
    return BITFUSION_SLOT_BITS if chip.pe.kind == "bitfusion" else SERIAL_AREA_MAX_BITS


def chip_area(chip: Chip) -> ChipArea:
    """Area of ``chip`` from its technology's ``area`` section (all NaN if the section is absent)."""
    tech = load_technology(chip.technology)
    area = tech.area
    nan = float("nan")
    if area is None:
        return ChipArea(nan, nan, nan, nan, nan)
    pe: float = nan
    key = fixed_pe_key(chip, area.fixed_pe_nand2) if chip.pe.kind == "fixed" else None
    if chip.pe.kind == "fixed":
        pe = area.fixed_pe_nand2[key] if key else nan
    elif chip.pe.kind == "bitfusion":
        pe = area.bitfusion_pe_nand2
    elif max(max(p) for p in chip.supported_pairs) <= SERIAL_AREA_MAX_BITS:
        stationary = chip.pe.serial == "activation" and chip.array.dataflow == "is"
        pe = area.bitserial_pe_nand2.get("activation_stationary" if stationary else chip.pe.serial, nan)
    if chip.array.dataflow == "os":
        pe = nan if area.os_per_pe_nand2 is None else pe + area.os_per_pe_nand2
    elif chip.array.weight_preload == "overlapped":
        if area.overlap_per_pe_nand2 is None or area.overlap_per_weight_bit_nand2 is None:
            pe = nan
        else:
            pe += area.overlap_per_pe_nand2 + area.overlap_per_weight_bit_nand2 * stationary_slot_bits(chip, key)
    um2 = area.nand2_um2 * 1e-6  # mm^2 per NAND2
    n_pe = chip.array.rows * chip.array.cols
    pe_mm2 = n_pe * pe * um2
    requant_mm2 = chip.array.cols * area.requant_nand2 * um2
    kib = chip.memory.ifmap_sram_kib + chip.memory.filter_sram_kib + chip.memory.ofmap_sram_kib
    sram_mm2 = kib * BITS_PER_KIB * area.sram_um2_per_bit * 1e-6
    total = pe_mm2 + requant_mm2 + sram_mm2 if not math.isnan(pe) else nan
    return ChipArea(pe, pe_mm2, requant_mm2, sram_mm2, total)
