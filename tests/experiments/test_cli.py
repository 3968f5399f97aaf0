"""The lowbit CLI: outputs, one-line errors with exit status 2, help examples, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_run import run_cli as run

from sim import simulate


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_sim_writes_the_cost_table(tmp_path: Path, capsys, suffix: str) -> None:
    out = tmp_path / f"costs{suffix}"
    code, stdout, _ = run(
        ["sim", "--chip", "bitfusion_edge", "--workload", "resnet18", "--pairs", "w8a8,w2a2", "--out", str(out)], capsys
    )
    assert code == 0 and "wrote 42 rows" in stdout
    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected = simulate("bitfusion_edge", "resnet18", "w8a8,w2a2")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)


def test_sim_in_blocks_runs_one_reduction_per_block(tmp_path: Path, capsys) -> None:
    """`--in-blocks 2` costs each weighted layer as two channel-aligned reductions: never fewer cycles, more on
    layers whose half-K does not fill the row folds; the clamp keeps the 3-channel stem at its 3 channels."""
    out = tmp_path / "costs.csv"
    code, _, _ = run(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            "resnet18",
            "--pairs",
            "w4a4",
            "--in-blocks",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    blocked = pd.read_csv(out)
    plain = simulate("bitfusion_edge", "resnet18", "w4a4")
    assert (blocked.compute_cycles >= plain.compute_cycles).all()
    assert (blocked.compute_cycles > plain.compute_cycles).any()
    assert (blocked.macs == plain.macs).all()
    code, _, err = run(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            "resnet18",
            "--in-blocks",
            "0",
            "--out",
            str(tmp_path / "bad.csv"),
        ],
        capsys,
    )
    assert code == 2 and "in_blocks" in err and not (tmp_path / "bad.csv").exists()


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_CASES = {
    "unknown chip": (["--chip", "no_chip", "--workload", "resnet18"], "unknown chip"),
    "unknown workload": (["--chip", "bitfusion_edge", "--workload", "alexnet9000"], "alexnet9000"),
    "unsupported pair": (["--chip", "bitfusion_edge", "--workload", "resnet18", "--pairs", "w3a3"], "not supported"),
    "pair out of range": (["--chip", "tpu_like_int8", "--workload", "resnet18", "--pairs", "w1a8"], "2..16"),
    "garbage pair": (["--chip", "tpu_like_int8", "--workload", "resnet18", "--pairs", "int4"], "bad bit pair"),
    "missing option": (["--chip", "tpu_like_int8"], "--workload"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, case: str) -> None:
    args, needle = BAD_CASES[case]
    out = tmp_path / "costs.csv"
    argv = ["sim", *args] + (["--out", str(out)] if "--out" not in args and case != "missing option" else [])
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lowbit: error:") and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        (
            "chip.yaml",
            "array: {rows: -1, cols: 4}\nmemory: {ifmap_sram_kib: 1, filter_sram_kib: 1, ofmap_sram_kib: 1}\n",
            "array.rows",
        ),
        ("chip.yaml", "array: [\n", "malformed YAML"),
        ("chip.cfg", "[architecture_presets]\nArrayHeight: 8\n", "is missing"),
    ],
)
def test_bad_chip_files_through_the_cli(tmp_path: Path, capsys, name: str, text: str, needle: str) -> None:
    chip = _write(tmp_path, name, text)
    code, _, err = run(["sim", "--chip", chip, "--workload", "resnet18", "--out", str(tmp_path / "c.csv")], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1


HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        (HEADER, "no layer lines"),
        ("\x00\x01garbage,,,\n1,2\n", "topology"),
        (
            "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
            "c1,8,8,3,3,-4,8,1,\n",
            "Channels",
        ),
    ],
)
def test_bad_topology_csv_through_the_cli(tmp_path: Path, capsys, text: str, needle: str) -> None:
    topo = _write(tmp_path, "topo.csv", text)
    code, _, err = run(["sim", "--chip", "tpu_like_int8", "--workload", topo, "--out", str(tmp_path / "c.csv")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert needle.lower() in err.lower(), err


def test_unwritable_output_suffix(tmp_path: Path, capsys) -> None:
    code, _, err = run(
        ["sim", "--chip", "tpu_like_int8", "--workload", "resnet18", "--out", str(tmp_path / "c.xlsx")], capsys
    )
    assert code == 2 and "unknown file type" in err


@pytest.mark.slow
@pytest.mark.rtl
def test_demo_writes_tables_and_figures_deterministically(tmp_path: Path, capsys) -> None:
    for sub in ("a", "b"):
        code, out, _ = run(["demo", "--out", str(tmp_path / sub)], capsys)
        assert code == 0
    a, b = tmp_path / "a", tmp_path / "b"
    files = [
        "costs_tpu_like_int8.csv",
        "costs_bitfusion_edge.csv",
        "summary.csv",
        "layer_costs.pdf",
        "layer_costs.png",
        "search/sensitivity.csv",
        "search/costs.csv",
        "search/assignment.csv",
        "search/pareto/points.csv",
        "search/pareto/quality.csv",
        "search/pareto/accuracy_fronts.pdf",
        "search/pareto/accuracy_fronts.png",
        "search/bit_allocation.pdf",
        "search/bit_allocation.png",
        "search/sensitivity_heatmap.pdf",
        "search/sensitivity_heatmap.png",
        "search/rtl_check.json",
        "resnet/sensitivity.csv",
        "resnet/costs.csv",
        "resnet/assignment.csv",
        "resnet/quality.csv",
        "resnet/export/meta.json",
        "resnet/export/model.npz",
        "resnet/rtl_check.json",
    ]
    for name in files:
        assert (a / name).stat().st_size > 0, name
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    summary = pd.read_csv(a / "summary.csv")
    assert set(summary.chip) == {"tpu_like_int8", "bitfusion_edge"}
    meta = json.loads((a / "search" / "assignment.json").read_text())
    assert meta["status"] == "optimal" and all(v["slack"] >= 0 for v in meta["budgets"].values())
    for part in ("search", "resnet"):  # one chosen layer of each through Verilator
        rtl = json.loads((a / part / "rtl_check.json").read_text())
        assert rtl["mismatches"] == 0 and rtl["measured_cycles"] == rtl["predicted_cycles"] > 0
    quality = pd.read_csv(a / "resnet" / "quality.csv").set_index("assignment")
    # the golden integer model of the mixed GPFQ assignment is the fake-quant model's, on the test set
    assert abs(quality.loc["ilp", "fakequant_accuracy"] - quality.loc["ilp", "integer_accuracy"]) <= 1.0
    meta = json.loads((a / "resnet" / "assignment.json").read_text())
    assert meta["status"] == "optimal" and all(v["slack"] >= 0 for v in meta["budgets"].values())
    points = pd.read_csv(a / "search" / "pareto" / "points.csv")
    assert set(points.kind) == {"ilp", "greedy", "uniform"} and points.accuracy.between(0, 100).all()
    # at every latency budget the exact front is at least as good as greedy in total sensitivity
    for budget in points.latency_us.unique():
        best = {
            k: points[(points.kind == k) & (points.latency_us <= budget)].sensitivity.min() for k in ("ilp", "greedy")
        }
        assert not best["greedy"] < best["ilp"] - 1e-12, budget


def test_console_script_exit_status(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "sim",
            "--chip",
            "nope",
            "--workload",
            "resnet18",
            "--out",
            str(tmp_path / "c.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_sim_and_search_import_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "import sim, sim.workload, sim.reference, sim.sweep, search, search.pareto, search.baselines\n"
        "costs = sim.simulate('bitfusion_edge', 'resnet18', 'w4a4,w8a8', coupled=True)\n"
        "sens = costs[['layer', 'w_bits', 'a_bits']].drop_duplicates().assign(sensitivity=1.0)\n"
        "p = search.build_problem(costs, sens, ['latency_us'])\n"
        "assert search.solve(p, {'latency_us': 1e12}).status == 'optimal'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_quantize_exports_and_measures(tmp_path: Path, capsys) -> None:
    import json

    from accuracy_stats import unpaired_margin

    from quant.integer import load_export

    out = tmp_path / "q"
    code, stdout, _ = run(
        [
            "quantize",
            "--model",
            "digits-cnn",
            "--method",
            "ptq-sl",
            "--bits",
            "w4a8",
            "--granularity",
            "4x2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "integer" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["integer_agreement"] >= 99.0
    # PTQ-SL w4a8 does not lose accuracy beyond what the 397 test images resolve
    fq, fl = metrics["fakequant_accuracy"], metrics["float_accuracy"]
    assert fl - fq <= unpaired_margin(fq, fl, 397), (fq, fl)
    assert load_export(out).layers  # the export loads back


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "resnet", "--method", "rtn", "--bits", "w4a8"], "unknown model"),
        (["--model", "digits-cnn", "--method", "magic", "--bits", "w4a8"], "unknown method"),
        (["--model", "digits-cnn", "--method", "rtn", "--bits", "w4a9"], "2..8"),
        (["--model", "digits-cnn", "--method", "rtn", "--bits", "w4a8", "--granularity", "99x1"], "n_V=99"),
        (["--model", "digits-cnn", "--method", "rtn", "--bits", "w4a8", "--granularity", "rows"], "bad granularity"),
    ],
)
def test_quantize_bad_input(tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    out = tmp_path / "q"
    code, _, err = run(["quantize", *args, "--out", str(out)], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not out.exists()
