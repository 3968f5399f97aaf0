"""Chip configs: presets, SCALE-Sim cfg import, and a corpus of bad inputs (one-line InputError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import InputError, load_chip, preset_names
from sim.config import chip_from_dict
from sim.pairs import parse_pair, parse_pairs
from sim.technology import load_technology

GOOD = {"array": {"rows": 8, "cols": 4, "dataflow": "os", "clock_mhz": 200},
        "pe": {"kind": "fixed", "bits": 8},
        "memory": {"ifmap_sram_kib": 16, "filter_sram_kib": 16, "ofmap_sram_kib": 8, "dram_bw_bits_per_cycle": 64}}


def test_presets_load_and_name_their_kinds() -> None:
    names = preset_names()
    assert {"tpu_like_int8", "bitfusion_edge", "bitserial_loom", "bitserial_stripes"} <= set(names)
    kinds = {load_chip(n).pe.kind for n in names}
    assert kinds == {"fixed", "bitfusion", "bitserial"}
    assert load_chip("bitfusion-edge").name == "bitfusion_edge"


def test_default_pairs_follow_the_pe() -> None:
    assert len(load_chip("tpu_like_int8").supported_pairs) == 49  # every w, a in 2..8
    assert set(load_chip("bitfusion_edge").supported_pairs) == {(w, a) for w in (2, 4, 8) for a in (2, 4, 8)}
    fixed4 = chip_from_dict({**GOOD, "pe": {"kind": "fixed", "bits": 4}})
    assert max(max(p) for p in fixed4.supported_pairs) == 4


def test_scalesim_cfg_reads_unchanged() -> None:
    cfg = Path(__file__).parent / "data" / "scalesim_resnet18_ws32" / "scale_32x32_ws.cfg"
    chip = load_chip(cfg)
    assert (chip.array.rows, chip.array.cols, chip.array.dataflow) == (32, 32, "ws")
    assert chip.memory.ifmap_sram_kib == 64 and chip.memory.bandwidth == float("inf")


def test_technology_sources_are_the_reference_numbers() -> None:
    tech = load_technology("45nm")
    assert tech.fixed_mac_pj == {2: 0.058, 4: 0.120, 8: 0.298, 16: 0.947}
    assert tech.bitfusion_mac_pj[(8, 8)] == pytest.approx(1.9 * 0.298, rel=1e-3)
    assert tech.bitfusion_mac_pj[(2, 2)] == pytest.approx(0.035, rel=0.02)
    assert tech.sram_pj_per_bit(8) == pytest.approx(10 / 64)
    assert tech.sram_pj_per_bit(8) < tech.sram_pj_per_bit(16) < tech.sram_pj_per_bit(32)
    assert tech.dram_pj_per_bit == 15.0


def _bad(update: dict) -> dict:
    doc = {k: dict(v) for k, v in GOOD.items()}
    for dotted, value in update.items():
        section, _, key = dotted.partition(".")
        if key:
            doc.setdefault(section, {})[key] = value
        elif value is None:
            doc.pop(section)
        else:
            doc[section] = value
    return doc


@pytest.mark.parametrize(("update", "needle"), [
    ({"array.rows": -4}, "array.rows"),
    ({"array.rows": 0}, "array.rows"),
    ({"array.cols": "wide"}, "array.cols"),
    ({"array.dataflow": "rs"}, "array.dataflow: must be one of"),
    ({"array.clock_mhz": 0}, "array.clock_mhz"),
    ({"pe.kind": "analog"}, "pe.kind"),
    ({"pe.serial": "weight"}, "pe.serial"),
    ({"memory.ifmap_sram_kib": -1}, "memory.ifmap_sram_kib"),
    ({"memory.dram_bw_bits_per_cycle": 0}, "memory.dram_bw_bits_per_cycle"),
    ({"memory.dram_bw_bits_per_cycle": "fast"}, "memory.dram_bw_bits_per_cycle"),
    ({"memory.colour": "red"}, "memory.colour: unknown field"),
    ({"memory": None}, "memory: missing field"),
    ({"pairs": ["w8a8", "w9a8"]}, "weight bits must be in 2..8"),
    ({"pairs": ["w8a8", "8x8"]}, "bad bit pair"),
    ({"pairs": []}, "pairs"),
    ({"pe": {"kind": "fixed", "bits": 4}, "pairs": ["w8a8"]}, "does not fit a fixed 4-bit PE"),
    ({"technology": "3nm"}, "unknown technology '3nm'"),
])
def test_bad_chip_fields_give_one_line_errors(update: dict, needle: str) -> None:
    with pytest.raises(InputError) as info:
        chip_from_dict(_bad(update), where="chip.yaml")
    message = str(info.value)
    assert "\n" not in message and needle in message, message


@pytest.mark.parametrize(("text", "needle"), [
    ("array: [1, 2\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_bad_chip_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=needle):
        load_chip(path)


@pytest.mark.parametrize(("text", "needle"), [
    ("not an ini file", "malformed SCALE-Sim cfg"),
    ("[general]\nrun_name = x\n", "missing section [architecture_presets]"),
    ("[architecture_presets]\nArrayHeight: 8\n", "is missing ArrayWidth"),
    ("[architecture_presets]\nArrayHeight: eight\nArrayWidth: 8\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\n"
     "OfmapSramSzkB: 1\nDataflow: ws\n", "ArrayHeight must be a number"),
    ("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: -1\nFilterSramSzkB: 1\n"
     "OfmapSramSzkB: 1\nDataflow: ws\n", "memory.ifmap_sram_kib"),
    ("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\n"
     "OfmapSramSzkB: 1\nDataflow: rs\n", "array.dataflow"),
])
def test_bad_scalesim_cfgs(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_chip(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_chip_lists_presets() -> None:
    with pytest.raises(InputError, match="bitfusion_edge"):
        load_chip("no_such_chip")


def test_pairs_parse_and_reject() -> None:
    assert parse_pair("w4a8") == (4, 8) and parse_pair("W2A2") == (2, 2)
    assert parse_pairs("w8a8, w4a4,w8a8") == [(8, 8), (4, 4)]
    for bad in ("w1a8", "w4a9", "4,8", "wa", ""):
        with pytest.raises(InputError):
            parse_pairs(bad)
    chip = load_chip("bitfusion_edge")
    with pytest.raises(InputError, match="not supported by chip 'bitfusion_edge'"):
        chip.check_pairs([(3, 3)])
