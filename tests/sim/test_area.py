"""Chip area from the technology's synthesized figures."""

from __future__ import annotations

import math

import pytest

from sim import load_chip
from sim.area import chip_area, fixed_pe_key
from sim.config import chip_from_dict
from sim.technology import load_technology

BASE = {
    "array": {"rows": 8, "cols": 8, "dataflow": "ws"},
    "pe": {"kind": "fixed"},
    "pairs": ["w8a8"],
    "memory": {"ifmap_sram_kib": 16, "filter_sram_kib": 16, "ofmap_sram_kib": 16, "dram_bw_bits_per_cycle": 64},
}


def chip(**over):
    doc = {**BASE, **over}
    return chip_from_dict(doc)


def test_parts_add_up_and_scale_with_the_array() -> None:
    small, big = chip_area(chip()), chip_area(chip(array={"rows": 16, "cols": 8, "dataflow": "ws"}))
    assert small.total_mm2 == pytest.approx(small.pe_mm2 + small.requant_mm2 + small.sram_mm2)
    assert big.pe_mm2 == pytest.approx(2 * small.pe_mm2) and big.requant_mm2 == small.requant_mm2
    area = load_technology("45nm").area
    assert small.pe_mm2 == pytest.approx(64 * area.fixed_pe_nand2["w8a8"] * area.nand2_um2 * 1e-6)
    assert small.sram_mm2 == pytest.approx(48 * 8192 * area.sram_um2_per_bit * 1e-6)


def test_fixed_pe_is_sized_for_the_widest_pair() -> None:
    synthesized = load_technology("45nm").area.fixed_pe_nand2
    assert fixed_pe_key(chip(pairs=["w4a4", "w2a2"]), synthesized) == "w4a4"
    assert fixed_pe_key(chip(pairs=["w2a8"]), synthesized) == "w4a8"  # smallest PE that covers w2a8
    assert fixed_pe_key(chip(pairs=["w8a8", "w2a2"]), synthesized) == "w8a8"
    assert chip_area(chip(pairs=["w4a4"])).pe_mm2 < chip_area(chip(pairs=["w8a8"])).pe_mm2


def test_presets() -> None:
    area = load_technology("45nm").area
    edge = load_chip("bitfusion_edge")  # overlapped weight preload: double-buffered 32-bit weight slots
    fusion = chip_area(edge)
    assert edge.array.weight_preload == "overlapped"
    assert fusion.total_mm2 > 0 and fusion.pe_nand2 == pytest.approx(
        area.bitfusion_pe_nand2 + area.overlap_per_pe_nand2 + 32 * area.overlap_per_weight_bit_nand2
    )
    for preset, serial in (("bitserial_stripes", "activation"), ("bitserial_loom", "both")):
        a = chip_area(load_chip(preset))
        assert a.total_mm2 > 0 and a.pe_nand2 == area.bitserial_pe_nand2[serial]
    # Stripes on an is array serializes its stationary activation: its own netlist; Loom's is the same either way
    for serial, key in (("activation", "activation_stationary"), ("both", "both")):
        is_chip = chip(pe={"kind": "bitserial", "serial": serial}, array={"rows": 8, "cols": 8, "dataflow": "is"})
        assert chip_area(is_chip).pe_nand2 == area.bitserial_pe_nand2[key]
    # the synthesized bit-serial PE covers widths up to 8: a chip with 16-bit pairs has no area figure
    loom = load_chip("bitserial_loom")
    wide = loom.model_copy(update={"pairs": ("w16a16",)})
    assert math.isnan(chip_area(wide).total_mm2)


def test_overlapped_preload_adds_the_double_buffered_slot() -> None:
    """ws adds the weight slot's registers, is the activation slot's; an os chip adds its array's per-PE logic
    whatever the profile (lowbit's os array serves both)."""
    area = load_technology("45nm").area
    for pair, dataflow, slot in (("w8a8", "ws", 8), ("w2a8", "ws", 4), ("w2a8", "is", 8), ("w2a2", "is", 2)):
        serial = chip(pairs=[pair], array={"rows": 8, "cols": 8, "dataflow": dataflow})
        over = chip(pairs=[pair], array={"rows": 8, "cols": 8, "dataflow": dataflow, "weight_preload": "overlapped"})
        extra = chip_area(over).pe_nand2 - chip_area(serial).pe_nand2
        assert extra == pytest.approx(area.overlap_per_pe_nand2 + slot * area.overlap_per_weight_bit_nand2), pair
    os_over = chip(array={"rows": 8, "cols": 8, "dataflow": "os", "weight_preload": "overlapped"})
    os_serial = chip(array={"rows": 8, "cols": 8, "dataflow": "os"})
    ws = chip()
    assert (
        chip_area(os_over).pe_nand2
        == chip_area(os_serial).pe_nand2
        == pytest.approx(chip_area(ws).pe_nand2 + area.os_per_pe_nand2)
    )
