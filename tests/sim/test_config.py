"""Chip configs: presets, SCALE-Sim cfg import, and a corpus of bad inputs (one-line InputError)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit_core.pairs import parse_pair, parse_pairs
from sim import InputError, load_chip, preset_names
from sim.config import chip_from_dict
from sim.technology import load_technology

GOOD = {
    "array": {"rows": 8, "cols": 4, "dataflow": "os", "clock_mhz": 200},
    "pe": {"kind": "fixed", "bits": 8},
    "memory": {"ifmap_sram_kib": 16, "filter_sram_kib": 16, "ofmap_sram_kib": 8, "dram_bw_bits_per_cycle": 64},
}


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
    # CACTI 7.0 at 45 nm: Bit Fusion's own sweep (8 KiB, 32-bit words) and Accelergy's logs (64 KiB, 64-bit)
    assert tech.sram_read_pj_per_bit(8) == pytest.approx(6.39163 / 32, rel=1e-4)
    assert tech.sram_write_pj_per_bit(8) == pytest.approx(5.56268 / 32, rel=1e-4)
    assert tech.sram_read_pj_per_bit(64) == pytest.approx(25.8695 / 64, rel=1e-4)
    assert tech.sram_read_pj_per_bit(8) < tech.sram_read_pj_per_bit(16) < tech.sram_read_pj_per_bit(32)
    assert tech.register_pj_per_bit == pytest.approx(8.999495e-03, rel=1e-3)
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


@pytest.mark.parametrize(
    ("update", "needle"),
    [
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
        # a misspelt key is reported as the unknown field, not as the missing one
        ({"array": {"rows": 8, "colz": 8}}, "array.colz: unknown field (allowed: rows, cols, dataflow"),
        ({"memory": None}, "memory: missing field"),
        ({"pairs": ["w8a8", "w17a8"]}, "weight bits must be in 2..16"),
        ({"pe": {"kind": "bitfusion"}, "pairs": ["w16a8"]}, "exceeds a Bit-Fusion PE's 8 bits"),
        ({"mapping": "timeloop"}, "mapping"),
        ({"mapping_objective": "area"}, "mapping_objective"),
        ({"array.weight_preload": "double"}, "weight_preload"),
        ({"array.reduction": "sideways"}, "array.reduction: must be one of"),
        ({"memory.output_width": "wide"}, "memory.output_width: must be one of"),
        ({"pairs": ["w8a8", "8x8"]}, "bad bit pair"),
        ({"pairs": []}, "pairs"),
        ({"pe": {"kind": "fixed", "bits": 4}, "pairs": ["w8a8"]}, "does not fit a fixed 4-bit PE"),
        ({"technology": "3nm"}, "unknown technology '3nm'"),
    ],
)
def test_bad_chip_fields_give_one_line_errors(update: dict, needle: str) -> None:
    with pytest.raises(InputError) as info:
        chip_from_dict(_bad(update), where="chip.yaml")
    message = str(info.value)
    assert "\n" not in message and needle in message, message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("array: [1, 2\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_bad_chip_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=needle):
        load_chip(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not an ini file", "malformed SCALE-Sim cfg"),
        ("[general]\nrun_name = x\n", "missing section [architecture_presets]"),
        ("[architecture_presets]\nArrayHeight: 8\n", "is missing ArrayWidth"),
        (
            "[architecture_presets]\nArrayHeight: eight\nArrayWidth: 8\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\n"
            "OfmapSramSzkB: 1\nDataflow: ws\n",
            "ArrayHeight must be a number",
        ),
        (
            "[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: -1\nFilterSramSzkB: 1\n"
            "OfmapSramSzkB: 1\nDataflow: ws\n",
            "memory.ifmap_sram_kib",
        ),
        (
            "[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\n"
            "OfmapSramSzkB: 1\nDataflow: rs\n",
            "array.dataflow",
        ),
    ],
)
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
    assert parse_pair("w16a16") == (16, 16)
    for bad in ("w1a8", "w4a17", "4,8", "wa", ""):
        with pytest.raises(InputError):
            parse_pairs(bad)
    chip = load_chip("bitfusion_edge")
    with pytest.raises(InputError, match="not supported by chip 'bitfusion_edge'"):
        chip.check_pairs([(3, 3)])


# Bounds: every number finite, not boolean and in a physical range; the message names field and range ----------
BOUNDS = [  # dotted field, lowest, highest, text of the range
    ("array.rows", 1, 4096, "must be an integer in [1, 4096] PEs"),
    ("array.cols", 1, 4096, "must be an integer in [1, 4096] PEs"),
    ("array.clock_mhz", 1e-3, 1e5, "must be a finite number in [0.001, 100000] MHz (1 kHz to 100 GHz)"),
    ("pe.bits", 2, 16, "must be an integer in [2, 16] bits"),
    (
        "memory.ifmap_sram_kib",
        1 / 8192,
        2.0**30,
        "must be a finite number in [0.0001220703125, 1073741824] KiB (1 bit to 1 TiB)",
    ),
    (
        "memory.filter_sram_kib",
        1 / 8192,
        2.0**30,
        "must be a finite number in [0.0001220703125, 1073741824] KiB (1 bit to 1 TiB)",
    ),
    (
        "memory.ofmap_sram_kib",
        1 / 8192,
        2.0**30,
        "must be a finite number in [0.0001220703125, 1073741824] KiB (1 bit to 1 TiB)",
    ),
    (
        "memory.dram_bw_bits_per_cycle",
        0.01,
        2.0**20,
        "must be 'calc' (unlimited) or a finite number in [0.01, 1048576] bits per cycle",
    ),
    ("memory.acc_bits", 8, 64, "must be an integer in [8, 64] bits"),
    ("weight_scale_bits", 0, 64, "must be an integer in [0, 64] bits"),
    ("static_mw", 0.0, 1e6, "must be a finite number in [0, 1000000] mW"),
]


def _step_out(x: float, up: bool) -> float:
    if isinstance(x, int):
        return x + 1 if up else x - 1
    return math.nextafter(x, math.inf if up else -math.inf)


@pytest.mark.parametrize(("field", "lo", "hi", "text"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_numbers_at_their_bounds(field: str, lo: float, hi: float, text: str) -> None:
    for ok in (lo, hi):
        chip = chip_from_dict(_bad({field: ok}))
        value = chip
        for part in field.split("."):
            value = getattr(value, part)
        assert value == ok
    bad = [_step_out(lo, False), _step_out(hi, True), True, float("inf"), -float("inf"), float("nan"), 10**400]
    if lo > 0:
        bad.append(5e-324)  # a denormal
    for value in bad:
        with pytest.raises(InputError) as info:
            chip_from_dict(_bad({field: value}), where="chip.yaml")
        message = str(info.value)
        assert message.startswith(f"chip.yaml: {field}: {text}") and "\n" not in message, (value, message)


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_clock_outside_1khz_to_100ghz_is_refused(clock: float) -> None:
    inside = math.isfinite(clock) and 1e-3 <= clock <= 1e5
    try:
        chip = chip_from_dict(_bad({"array.clock_mhz": clock}))
    except InputError as exc:
        assert not inside and "array.clock_mhz" in str(exc)
    else:
        assert inside and chip.array.clock_mhz == clock


TECH_TEXT = (Path(__file__).parents[2] / "sim" / "tech" / "45nm.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("dram_pj_per_bit: 15.0", "dram_pj_per_bit: .inf", "dram_pj_per_bit: must be a finite number in [0, 10000] pJ"),
        ("dram_pj_per_bit: 15.0", "dram_pj_per_bit: -1", "dram_pj_per_bit"),
        ("fixed: {2: 0.058", "fixed: {2: .nan", "mac_pj.fixed[2]: must be a finite number"),
        ("fixed: {2: 0.058", "fixed: {32: 0.058", "mac_pj.fixed[32] (key): must be an integer in [2, 16]"),
        ("w8a8: 0.566", "w9a9: 0.566", "mac_pj.bitfusion.w9a9 (key)"),
        ("both: 0.00466}", "both: 0.00466, weight: 1.0}", "mac_pj.bitserial_step.weight: unknown field"),
        ("both: 0.00466}", "}", "mac_pj.bitserial_step.both: missing field"),
        ("{1: 0.035414,", "{1: 0.0,", "sram_pj_per_bit[1]: must be a finite number in (0, 10000] pJ per bit"),
        ("{1: 0.035414,", "{1.0e+20: 0.035414,", "sram_pj_per_bit.1e+20 (key)"),
        ("{1: 0.10300,", "{1: -1.0,", "sram_write_pj_per_bit[1]: must be a finite number"),
        ("register_pj_per_bit: 0.009", "register_pj_per_bit: .inf", "register_pj_per_bit: must be a finite number"),
        ("fixed16: 48.0", "fixed99: 48.0", "leakage_uw.pe.fixed99 (key): must be fixed2 .. fixed16"),
        (
            "sram_per_kib: 2.0",
            "sram_per_kib: 1.0e+30",
            "leakage_uw.sram_per_kib: must be a finite number in [0, 1000000]",
        ),
        ("nand2_um2: 0.798", "nand2_um2: 0", "area.nand2_um2: must be a finite number in (0, 1000] um^2"),
        ("requant_nand2: 13005", "requant_nand2: true", "area.requant_nand2"),
        (
            "dram_pj_per_bit: 15.0",
            "dram_pj_per_bit: 15.0\nvoltage: 1.1",
            "voltage: unknown field (allowed: name, mac_pj",
        ),
    ],
)
def test_bad_technology_numbers_and_keys(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert old in TECH_TEXT
    path = tmp_path / "tech.yaml"
    path.write_text(TECH_TEXT.replace(old, new))
    with pytest.raises(InputError) as info:
        load_technology(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and needle in message and "\n" not in message, message


def test_bad_technology_through_a_chip_names_the_technology_file(tmp_path: Path) -> None:
    (tmp_path / "tech.yaml").write_text(TECH_TEXT.replace("dram_pj_per_bit: 15.0", "dram_pj_per_bit: .nan"))
    with pytest.raises(InputError, match=r"tech\.yaml: dram_pj_per_bit: must be a finite number"):
        chip_from_dict({**GOOD, "technology": str(tmp_path / "tech.yaml")})


def test_the_technology_table_is_unchanged_by_the_schema() -> None:
    tech = load_technology("45nm")
    assert tech.serial_step_pj == {"activation": 0.03725, "both": 0.00466}
    assert tech.sram_pj_per_bit_by_kib[0] == (1.0, 0.035414) and tech.sram_pj_per_bit_by_kib[-1] == (512.0, 0.54725)
    assert tech.sram_write_pj_per_bit_by_kib is not None and tech.sram_write_pj_per_bit_by_kib[4] == (16.0, 0.26315)
    assert tech.pe_leakage_uw["bitfusion"] == 37.5 and tech.sram_leakage_uw_per_kib == 2.0
    assert tech.area is not None and tech.area.fixed_pe_nand2["w4a8"] == 931 and tech.area.requant_nand2 == 13005


def test_scalesim_cfg_numbers_are_bounded(tmp_path: Path) -> None:
    base = (
        "[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\n"
        "OfmapSramSzkB: 1\nDataflow: ws\nBandwidth: 4\n[run_presets]\nInterfaceBandwidth: USER\n"
    )
    for old, new, needle in (
        ("IfmapSramSzkB: 1", "IfmapSramSzkB: inf", "memory.ifmap_sram_kib"),
        ("FilterSramSzkB: 1", "FilterSramSzkB: 1e-310", "memory.filter_sram_kib"),
        ("ArrayWidth: 8", "ArrayWidth: 100000", "array.cols: must be an integer in [1, 4096]"),
        ("Bandwidth: 4", "Bandwidth: nan", "memory.dram_bw_bits_per_cycle"),
    ):
        path = tmp_path / "c.cfg"
        path.write_text(base.replace(old, new))
        with pytest.raises(InputError, match=re.escape(needle)):
            load_chip(path)
