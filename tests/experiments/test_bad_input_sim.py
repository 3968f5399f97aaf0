"""A corpus of bad input to ``lowbit sim`` and ``lowbit sweep``: chip, technology, SCALE-Sim cfg, workload and
topology files, sweep specs, output paths and schedulers.

Every case must be refused as bad input (:func:`cli_run.assert_bad_input`: exit 2, one ``lowbit: error:`` line
naming the cause, no traceback, nothing under the case's directory created or changed), and before the work: the
engine (and the sweep's chip batch) is replaced by a tripwire that raises :class:`WorkStarted`, a
``BaseException`` the CLI cannot turn into an exit status.  Each case starts from files that
:func:`test_the_good_inputs_run` shows are accepted, changed in one place.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from cli_run import assert_bad_input, run_cli

ROOT = Path(__file__).resolve().parents[2]
#: Work a refused case must not reach.
ENGINE = ("sim.costs.evaluate", "sim.sweep.build_chip_batch")

CHIP = """\
name: c
array: {rows: 8, cols: 8, dataflow: ws, clock_mhz: 500}
pe: {kind: fixed, bits: 8}
memory:
  ifmap_sram_kib: 16
  filter_sram_kib: 16
  ofmap_sram_kib: 8
  dram_bw_bits_per_cycle: 64
technology: 45nm
"""
TECH = (ROOT / "sim" / "tech" / "45nm.yaml").read_text()
CFG = """\
[general]
run_name = c
[architecture_presets]
ArrayHeight: 8
ArrayWidth: 8
IfmapSramSzkB: 16
FilterSramSzkB: 16
OfmapSramSzkB: 8
Dataflow: ws
Bandwidth: 8
[run_presets]
InterfaceBandwidth: USER
"""
WORKLOAD = """\
name: tiny
layers:
  - {type: conv, name: c1, in_hw: 8, in_c: 3, out_c: 8, k: 3, pad: 1}
  - {type: gemm, name: fc, tokens: 1, in_features: 512, out_features: 10}
"""
TOPOLOGY = """\
Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1,8,8,3,3,3,8,1,
"""
SPEC = """\
name: s
chip: bitfusion_edge
grid:
  array.rows: [8, 16]
  array.dataflow: [ws, os]
workloads: [tiny.yaml]
pairs: [w8a8, w4a4]
chips_per_partition: 2
"""
#: Files every case starts from (then changes one); the sweep spec names the workload relative to itself.
BASE = {
    "chip.yaml": CHIP,
    "tech.yaml": TECH,
    "chip.cfg": CFG,
    "tiny.yaml": WORKLOAD,
    "topo.csv": TOPOLOGY,
    "spec.yaml": SPEC,
    "somefile.txt": "not a directory\n",
}


class WorkStarted(BaseException):
    """Raised by a tripwire: a refused input reached the work it should have been refused before."""


def _tripwire(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    module, name = target.rsplit(".", 1)

    def tripped(*_args: object, **_kwargs: object) -> None:
        raise WorkStarted(f"{target} was called: the input was not refused before the work")

    monkeypatch.setattr(importlib.import_module(module), name, tripped)


def _files(root: Path, changes: dict[str, str]) -> None:
    for name, text in {**BASE, **changes}.items():
        (root / name).write_text(text)
    (root / "a_directory").mkdir()


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def _chip(old: str, new: str) -> dict[str, str]:
    return {"chip.yaml": _replace(CHIP, old, new)}


def _tech(old: str, new: str) -> dict[str, str]:
    return {
        "tech.yaml": _replace(TECH, old, new),
        "chip.yaml": _replace(CHIP, "technology: 45nm", "technology: {d}/tech.yaml"),
    }


def _cfg(old: str, new: str) -> dict[str, str]:
    return {"chip.cfg": _replace(CFG, old, new)}


def _workload(old: str, new: str) -> dict[str, str]:
    return {"tiny.yaml": _replace(WORKLOAD, old, new)}


def _spec(old: str, new: str) -> dict[str, str]:
    return {"spec.yaml": _replace(SPEC, old, new)}


SIM = ["sim", "--chip", "{d}/chip.yaml", "--workload", "{d}/tiny.yaml", "--out", "{d}/costs.csv"]
SIM_CFG = ["sim", "--chip", "{d}/chip.cfg", "--workload", "{d}/tiny.yaml", "--out", "{d}/costs.csv"]
SIM_TOPO = ["sim", "--chip", "{d}/chip.yaml", "--workload", "{d}/topo.csv", "--out", "{d}/costs.csv"]
SWEEP = ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--scheduler", "synchronous"]
BIG = 2**24 + 1  # one above the largest layer size (sim.workload.MAX_DIM)

# (id, argv, changed files, cause that must appear in the error line)
CASES = [
    # chip YAML: infinite, NaN, denormal, huge, boolean, unknown and repeated fields
    ("chip-clock-inf", SIM, _chip("clock_mhz: 500", "clock_mhz: .inf"), "array.clock_mhz: must be a finite number in"),
    ("chip-clock-denormal", SIM, _chip("clock_mhz: 500", "clock_mhz: 5.0e-324"), "array.clock_mhz"),
    ("chip-clock-too-fast", SIM, _chip("clock_mhz: 500", "clock_mhz: 1.0e+6"), "100 GHz"),
    ("chip-sram-inf", SIM, _chip("ifmap_sram_kib: 16", "ifmap_sram_kib: .inf"), "memory.ifmap_sram_kib"),
    (
        "chip-sram-denormal",
        SIM,
        _chip("filter_sram_kib: 16", "filter_sram_kib: 1.0e-310"),
        "memory.filter_sram_kib: must be a finite number in [0.0001220703125, 1073741824] KiB",
    ),
    ("chip-sram-nan", SIM, _chip("ofmap_sram_kib: 8", "ofmap_sram_kib: .nan"), "memory.ofmap_sram_kib"),
    ("chip-sram-petabyte", SIM, _chip("ofmap_sram_kib: 8", "ofmap_sram_kib: 1.0e+12"), "1 TiB"),
    ("chip-rows-huge", SIM, _chip("rows: 8", "rows: 1000000000000000000000000000000"), "array.rows"),
    ("chip-rows-bool", SIM, _chip("rows: 8", "rows: true"), "array.rows: must be an integer in [1, 4096]"),
    (
        "chip-bandwidth-tiny",
        SIM,
        _chip("dram_bw_bits_per_cycle: 64", "dram_bw_bits_per_cycle: 1.0e-300"),
        "memory.dram_bw_bits_per_cycle",
    ),
    (
        "chip-bandwidth-inf",
        SIM,
        _chip("dram_bw_bits_per_cycle: 64", "dram_bw_bits_per_cycle: .inf"),
        "'calc' (unlimited)",
    ),
    ("chip-static-inf", SIM, _chip("technology: 45nm", "technology: 45nm\nstatic_mw: .inf"), "static_mw"),
    ("chip-unknown-field", SIM, _chip("technology: 45nm", "technology: 45nm\nclock: 5"), "clock: unknown field"),
    (
        "chip-duplicate-key",
        SIM,
        _chip("  ofmap_sram_kib: 8\n", "  ofmap_sram_kib: 8\n  ifmap_sram_kib: 64\n"),
        "line 8: duplicate key 'ifmap_sram_kib' (first on line 5)",
    ),
    ("chip-duplicate-flow-key", SIM, _chip("rows: 8, cols: 8", "rows: 8, cols: 8, rows: 64"), "duplicate key 'rows'"),
    (
        "chip-duplicate-section",
        SIM,
        _chip("pe: {kind: fixed, bits: 8}", "pe: {kind: fixed}\npe: {kind: bitfusion}"),
        "duplicate key 'pe'",
    ),
    # technology YAML (named by the chip)
    ("tech-dram-nan", SIM, _tech("dram_pj_per_bit: 15.0", "dram_pj_per_bit: .nan"), "dram_pj_per_bit"),
    ("tech-mac-inf", SIM, _tech("fixed: {2: 0.058", "fixed: {2: .inf"), "mac_pj.fixed[2]: must be a finite number"),
    ("tech-mac-negative", SIM, _tech("both: 0.00466", "both: -0.00466"), "mac_pj.bitserial_step.both"),
    (
        "tech-bad-width-key",
        SIM,
        _tech("fixed: {2: 0.058", "fixed: {two: 0.058"),
        "mac_pj.fixed.two (key): must be an integer",
    ),
    ("tech-sram-point-denormal", SIM, _tech("{1: 0.035414,", "{1.0e-310: 0.035414,"), "sram_pj_per_bit"),
    ("tech-leakage-key", SIM, _tech("fixed16: 48.0", "fixed99: 48.0"), "leakage_uw.pe.fixed99"),
    (
        "tech-unknown-field",
        SIM,
        _tech("dram_pj_per_bit: 15.0", "dram_pj_per_bit: 15.0\nhbm_pj_per_bit: 3.0"),
        "hbm_pj_per_bit: unknown field",
    ),
    (
        "tech-duplicate-key",
        SIM,
        _tech("dram_pj_per_bit: 15.0", "dram_pj_per_bit: 15.0\ndram_pj_per_bit: 1.0"),
        "duplicate key 'dram_pj_per_bit'",
    ),
    ("tech-area-inf", SIM, _tech("nand2_um2: 0.798", "nand2_um2: .inf"), "area.nand2_um2"),
    # SCALE-Sim cfg
    ("cfg-sram-inf", SIM_CFG, _cfg("IfmapSramSzkB: 16", "IfmapSramSzkB: inf"), "memory.ifmap_sram_kib"),
    ("cfg-sram-denormal", SIM_CFG, _cfg("FilterSramSzkB: 16", "FilterSramSzkB: 1e-310"), "memory.filter_sram_kib"),
    ("cfg-array-huge", SIM_CFG, _cfg("ArrayHeight: 8", "ArrayHeight: 99999999999999999999"), "array.rows"),
    ("cfg-bandwidth-nan", SIM_CFG, _cfg("Bandwidth: 8", "Bandwidth: nan"), "memory.dram_bw_bits_per_cycle"),
    # workload YAML
    (
        "workload-channels-1e30",
        SIM,
        _workload("in_features: 512", "in_features: 1000000000000000000000000000000"),
        "in_features: must be an integer in [1, 16777216], got 1000000000000000000000000000000",
    ),
    (
        "workload-explicit-channels",
        SIM,
        _workload(
            "  - {type: gemm, name: fc, tokens: 1, in_features: 512, out_features: 10}",
            f"  - {{name: raw, kind: gemm, in_h: 1, in_w: 1, in_c: {BIG}, out_c: 4}}",
        ),
        "layers[1] (raw): in_c: must be an integer in [1, 16777216], got 16777217",
    ),
    (
        "workload-overflowing-product",
        SIM,
        _workload(
            "tokens: 1, in_features: 512, out_features: 10",
            "tokens: 16777216, in_features: 16777216, out_features: 16777216",
        ),
        "too large",
    ),
    (
        "workload-window-product",
        SIM,
        _workload(
            "{type: conv, name: c1, in_hw: 8, in_c: 3, out_c: 8, k: 3, pad: 1}",
            "{type: conv, name: c1, in_hw: 16777216, in_c: 1, out_c: 2, k: 1, stride: 16777216}",
        ),
        "input pixels x weights",
    ),
    (
        "workload-duplicate-key",
        SIM,
        _workload("out_c: 8, k: 3,", "out_c: 8, k: 3, out_c: 16,"),
        "duplicate key 'out_c'",
    ),
    ("workload-duplicate-layers", SIM, _workload("name: tiny\n", "name: tiny\nlayers: []\n"), "duplicate key 'layers'"),
    # SCALE-Sim topology CSV
    (
        "topology-huge-side",
        SIM_TOPO,
        {"topo.csv": _replace(TOPOLOGY, "c1,8,8,", "c1,100000000000000000000,8,")},
        "'IFMAP Height' must be positive and at most 16777216",
    ),
    (
        "topology-overflowing-product",
        SIM_TOPO,
        {"topo.csv": _replace(TOPOLOGY, "c1,8,8,3,3,3,8,1,", "c1,16777216,16777216,1,1,16777216,16777216,1,")},
        "too large",
    ),
    # --out of `lowbit sim`: checked before the work
    # the mapping: unknown modes, objectives and timing profiles; widths; an SRAM no mapping fits
    ("chip-mapping-unknown", SIM, _chip("technology: 45nm", "technology: 45nm\nmapping: timeloop"), "mapping"),
    (
        "chip-objective-unknown",
        SIM,
        _chip("technology: 45nm", "technology: 45nm\nmapping_objective: area"),
        "mapping_objective",
    ),
    (
        "chip-preload-unknown",
        SIM,
        _chip("clock_mhz: 500}", "clock_mhz: 500, weight_preload: double}"),
        "array.weight_preload",
    ),
    ("sim-mapping-option", SIM + ["--mapping", "timeloop"], {}, "mapping"),
    ("sim-objective-option", SIM + ["--objective", "area"], {}, "mapping_objective"),
    ("sim-preload-option", SIM + ["--weight-preload", "double"], {}, "weight_preload"),
    ("sim-pair-17-bits", SIM + ["--pairs", "w17a8"], {}, "weight bits must be in 2..16"),
    (
        "chip-bitfusion-16-bits",
        SIM,
        _chip("pe: {kind: fixed, bits: 8}", "pe: {kind: bitfusion}\npairs: [w16a16]"),
        "exceeds a Bit-Fusion PE's 8 bits",
    ),
    (
        "chip-sram-fits-no-mapping",
        SIM,
        _chip("filter_sram_kib: 16", "filter_sram_kib: 0.05"),
        "layer 'c1' at w8a8 fits no mapping: one 8x8 stationary tile needs memory.filter_sram_kib >= 0.125",
    ),
    ("sim-out-under-a-file", SIM[:-1] + ["{d}/somefile.txt/costs.csv"], {}, "somefile.txt is a file"),
    ("sim-out-is-a-directory", SIM[:-1] + ["{d}/a_directory"], {}, "is a directory"),
    ("sim-out-unknown-suffix", SIM[:-1] + ["{d}/costs.xlsx"], {}, ".xlsx"),
    # sweep specs
    ("spec-unknown-field", SWEEP, _spec("pairs:", "gird: {}\npairs:"), "unknown field 'gird'"),
    (
        "spec-duplicate-key",
        SWEEP,
        _spec("chips_per_partition: 2", "chips_per_partition: 2\nname: t"),
        "duplicate key 'name'",
    ),
    (
        "spec-duplicate-grid-key",
        SWEEP,
        _spec("  array.dataflow: [ws, os]", "  array.dataflow: [ws, os]\n  array.rows: [32]"),
        "line 6: duplicate key 'array.rows'",
    ),
    (
        "spec-clock-inf",
        SWEEP,
        _spec("  array.dataflow: [ws, os]", "  array.clock_mhz: [500, .inf]"),
        "grid.array.clock_mhz[1]",
    ),
    (
        "spec-sram-denormal",
        SWEEP,
        _spec("  array.dataflow: [ws, os]", "  memory.ifmap_sram_kib: [1.0e-310]"),
        "memory.ifmap_sram_kib",
    ),
    ("spec-rows-bool", SWEEP, _spec("array.rows: [8, 16]", "array.rows: [8, true]"), "grid.array.rows[1]"),
    (
        "spec-range-inf",
        SWEEP,
        _spec("array.rows: [8, 16]", "array.rows: {range: [8, .inf]}"),
        "grid.array.rows.range[1]: must be a finite number",
    ),
    (
        "spec-range-too-many",
        SWEEP,
        _spec("array.rows: [8, 16]", "array.rows: {range: [0, 1.0e+300], step: 1.0e-300}"),
        "range gives too many values",
    ),
    (
        "spec-range-extra-key",
        SWEEP,
        _spec("array.rows: [8, 16]", "array.rows: {range: [8, 16], stpe: 8}"),
        "range is written",
    ),
    (
        "spec-chips-per-partition-huge",
        SWEEP,
        _spec("chips_per_partition: 2", "chips_per_partition: 1.0e+30"),
        "chips_per_partition: must be an integer in [1, 10000000]",
    ),
    (
        "spec-point-unknown-field",
        SWEEP,
        _spec("workloads:", "points: [{array: {rows: 8, colz: 4}}]\nworkloads:"),
        "unknown chip field 'array.colz'",
    ),
    ("spec-pairs", SWEEP, _spec("pairs: [w8a8, w4a4]", "pairs: [w8a8, w99a1]"), "pairs"),
    (
        "spec-bad-chip-file",
        SWEEP,
        {**_chip("clock_mhz: 500", "clock_mhz: .inf"), **_spec("chip: bitfusion_edge", "chip: chip.yaml")},
        "array.clock_mhz",
    ),
    (
        "spec-bad-workload",
        SWEEP,
        _workload("in_features: 512", "in_features: 1000000000000000000000000000000"),
        "workloads[0]",
    ),
    # sweep output, workers and schedulers
    ("sweep-out-under-a-file", SWEEP[:3] + ["{d}/somefile.txt/sweep"], {}, "somefile.txt is a file"),
    ("sweep-out-is-a-file", SWEEP[:3] + ["{d}/somefile.txt"], {}, "not a directory"),
    ("sweep-workers-zero", ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--workers", "0"], {}, "--workers"),
    ("sweep-workers-huge", ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--workers", "1000000"], {}, "in 1..256"),
    (
        "sweep-local-zero",
        ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--scheduler", "local:0"],
        {},
        "worker count",
    ),
    (
        "sweep-address-and-workers",
        ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
        {},
        "own workers",
    ),
    (
        "sweep-malformed-address",
        ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--scheduler", "tcp://host:port"],
        {},
        "bad Dask scheduler address tcp://host:port",
    ),
    (
        "sweep-unreachable-scheduler",
        ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--scheduler", "tcp://127.0.0.1:1"],
        {},
        "scheduler at tcp://127.0.0.1:1",
    ),
]


@pytest.mark.parametrize(("argv", "changes", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_the_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    changes: dict[str, str],
    cause: str,
) -> None:
    d = tmp_path / "case"
    d.mkdir()
    _files(d, {name: text.replace("{d}", str(d)) for name, text in changes.items()})
    for target in ENGINE:
        _tripwire(monkeypatch, target)
    assert_bad_input([a.replace("{d}", str(d)) for a in argv], capsys, d, cause)


def test_the_good_inputs_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The unchanged files are accepted: every case above is refused for its one change."""
    d = tmp_path / "case"
    d.mkdir()
    _files(d, {"chip.yaml": _replace(CHIP, "technology: 45nm", f"technology: {d}/tech.yaml")})
    for i, argv in enumerate((SIM, SIM_CFG, SIM_TOPO)):
        out = [a.replace("{d}", str(d)).replace("costs.csv", f"costs{i}.csv") for a in argv]
        code, _, err = run_cli(out, capsys)
        assert code == 0, err
    code, _, err = run_cli([a.replace("{d}", str(d)) for a in SWEEP], capsys)
    assert code == 0, err
    assert len(list((d / "sweep" / "parts").rglob("*.parquet"))) == 2


def test_a_sweep_into_another_specs_directory_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "case"
    d.mkdir()
    _files(d, {})
    code, _, err = run_cli([a.replace("{d}", str(d)) for a in SWEEP], capsys)
    assert code == 0, err
    (d / "spec.yaml").write_text(_replace(SPEC, "[w8a8, w4a4]", "[w8a8]"))
    for target in ENGINE:
        _tripwire(monkeypatch, target)
    assert_bad_input([a.replace("{d}", str(d)) for a in SWEEP], capsys, d, "different sweep spec")
