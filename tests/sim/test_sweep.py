"""Sweeps: spec validation, expansion order, equality with sim.simulate, schedulers and resume."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowbit_core.errors import InputError
from lowbit_core.yamlio import read_yaml
from sim.chipbatch import ChipBatch
from sim.costs import COST_COLUMNS, simulate
from sim.sweep import (
    FAIL_ENV,
    MAX_WORKERS,
    OUTPUT_COLUMNS,
    build_chip_batch,
    load_sweep,
    load_sweep_chips,
    plan_partitions,
    run_sweep,
)
from sim.sweep_spec import SWEEP_FIELDS, load_sweep_spec, sweep_spec_from_dict

# A base chip without a pairs list, so PE kinds can be swept; three small workloads.
SMALL = {
    "name": "t",
    "chip": "tpu_like_int8",
    "grid": {"array.rows": [4, 16], "array.dataflow": ["ws", "os", "is"]},
    "points": [
        {"array.rows": 8, "array.cols": 4},
        {"pe.kind": "bitfusion", "memory.dram_bw_bits_per_cycle": "calc"},
    ],
    "workloads": ["resnet18"],
    "pairs": ["w8a8", "w4a4", "w2a8"],
    "chips_per_partition": 3,
}


def spec_of(**changes):
    doc = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return sweep_spec_from_dict(doc)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def same_batch(a: ChipBatch, b: ChipBatch) -> None:
    for name in ChipBatch.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if name == "names":
            assert tuple(x) == tuple(y)
        else:
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), name


# Spec validation ------------------------------------------------------------------------------
BAD_SPECS = [
    ({"gird": {}}, ["unknown field 'gird'", "allowed:"]),
    ({"name": None}, ["missing field 'name'"]),
    ({"workloads": None}, ["missing field 'workloads'"]),
    ({"name": "a b"}, ["name: must be a non-empty string", "got 'a b'"]),
    ({"chip": "no_such_chip"}, ["chip:", "unknown chip 'no_such_chip'"]),
    ({"grid": {"array.row": [4]}}, ["grid", "unknown chip field 'array.row'", "array.rows"]),
    ({"grid": {"pairs": [["w8a8"]]}}, ["'pairs' cannot be swept"]),
    ({"grid": {"name": ["x"]}}, ["'name' cannot be swept"]),
    ({"grid": {"array.rows": []}}, ["grid.array.rows", "empty"]),
    ({"grid": {}}, ["grid: must be a non-empty mapping"]),
    ({"grid": {"array.rows": 8}}, ["grid.array.rows", "expected a list"]),
    ({"grid": {"array.rows": [8, -1]}}, ["grid.array.rows[1]", "array.rows = -1", "must be an integer in [1, 4096]"]),
    ({"grid": {"array.dataflow": ["ws", "xs"]}}, ["grid.array.dataflow[1]", "must be one of", "'ws'"]),
    ({"grid": {"memory.dram_bw_bits_per_cycle": [0]}}, ["memory.dram_bw_bits_per_cycle = 0"]),
    ({"grid": {"technology": ["7nm"]}}, ["technology=7nm", "unknown technology '7nm'"]),
    ({"grid": {"array.rows": [[4]]}}, ["grid.array.rows[0]", "single value"]),
    ({"grid": {"array.rows": {"range": [64, 4]}}}, ["grid.array.rows", "start must be <= stop"]),
    (
        {"grid": {"array.rows": {"range": [4, 64], "step": 0}}},
        ["grid.array.rows.step: must be a positive finite number"],
    ),
    ({"grid": {"array.rows": {"range": 4}}}, ["grid.array.rows.range: must be a list of two finite numbers"]),
    ({"grid": {"array.rows": {"from": 4}}}, ["grid.array.rows", "range is written"]),
    ({"points": [{"array.colz": 4}]}, ["points[0]", "unknown chip field 'array.colz'"]),
    ({"points": ["x"]}, ["points[0]", "expected a mapping"]),
    ({"points": [{}]}, ["points[0]", "empty point"]),
    ({"points": []}, ["points: must be a non-empty list"]),
    ({"points": [{"array.cols": 0}]}, ["points[0].array.cols", "array.cols = 0"]),
    ({"grid": None, "points": None}, ["nothing to sweep"]),
    ({"workloads": []}, ["workloads: must be a non-empty list"]),
    ({"workloads": ["resnet18", "nope_net"]}, ["workloads[1]", "unknown workload 'nope_net'"]),
    ({"workloads": ["resnet18", "resnet18"]}, ["workloads[1]", "repeats workloads[0]"]),
    ({"pairs": ["w9a9"]}, ["pairs:", "w9a9"]),
    ({"chips_per_partition": 0}, ["chips_per_partition: must be an integer in [1, 10000000]", "got 0"]),
    ({"chips_per_partition": "many"}, ["chips_per_partition: must be an integer in [1, 10000000]"]),
    # a variant the chip model rejects: pairs w8a8 on a fixed 4-bit PE (spec-level pairs check)
    (
        {"grid": {"pe.bits": [8, 4]}},
        ["pairs: w8a8 is not supported by chip 1 (pe.bits=4, ", "supported: w4a4"],
    ),
    # ... and the same through the base chip's own pairs list (Chip model validator)
    (
        {
            "chip": "bitfusion_edge",
            "grid": {"array.rows": [8], "pe.kind": ["bitfusion", "fixed"], "pe.bits": [4]},
            "points": None,
        },
        ["chip 1 (array.rows=8, pe.kind=fixed, pe.bits=4)", "pairs: w8a8 does not fit a fixed 4-bit PE"],
    ),
    # a point that is only invalid as a whole
    ({"points": [{"pe.kind": "fixed", "pe.bits": 4}]}, ["points[0] = chip 6", "w8a8 is not supported"]),
    # default pairs (the base chip's) that another PE kind cannot run
    (
        {
            "chip": "bitfusion_edge",
            "pairs": None,
            "grid": {"pe.kind": ["bitfusion", "fixed"], "pe.bits": [4]},
            "points": None,
        },
        ["pe.kind=fixed", "does not fit a fixed 4-bit PE"],
    ),
    (
        {"chip": "tpu_like_int8", "pairs": None, "grid": {"pe.kind": ["fixed", "bitfusion"]}, "points": None},
        ["pairs: w8a7 is not supported by chip 1 (pe.kind=bitfusion)", "base chip's pairs are used"],
    ),
    # numbers at the boundary: finite, not boolean, in range; ranges bounded
    (
        {"grid": {"array.clock_mhz": [500, float("inf")]}},
        ["grid.array.clock_mhz[1]", "must be a finite number in [0.001, 100000] MHz"],
    ),
    ({"grid": {"memory.ifmap_sram_kib": [1e-310]}}, ["memory.ifmap_sram_kib = 1e-310", "1 bit to 1 TiB"]),
    ({"grid": {"memory.dram_bw_bits_per_cycle": [float("nan")]}}, ["memory.dram_bw_bits_per_cycle = nan"]),
    ({"grid": {"array.rows": [8, True]}}, ["grid.array.rows[1]", "must be an integer in [1, 4096]"]),
    ({"grid": {"static_mw": [1e300]}}, ["grid.static_mw[0]", "[0, 1000000] mW"]),
    ({"points": [{"array.cols": 10**30}]}, ["points[0].array.cols", "must be an integer in [1, 4096]"]),
    ({"grid": {"array.rows": {"range": [4, float("inf")]}}}, ["grid.array.rows.range[1]: must be a finite number"]),
    ({"grid": {"array.rows": {"range": [4, True]}}}, ["grid.array.rows.range[1]: must be a finite number"]),
    ({"grid": {"array.rows": {"range": [0, 1e300], "step": 1e-300}}}, ["grid.array.rows", "too many values"]),
    ({"grid": {"array.rows": {"range": [1, 10**7]}}}, ["range gives 10000000 values (max 1000000)"]),
    ({"grid": {"array.rows": {"range": [1, 8], "step": float("nan")}}}, ["grid.array.rows.step", "finite"]),
    ({"grid": {"array.rows": {"range": [1, 8], "stpe": 2}}}, ["grid.array.rows", "range is written"]),
    ({"chips_per_partition": 10**30}, ["chips_per_partition: must be an integer in [1, 10000000]"]),
    ({"chips_per_partition": True}, ["chips_per_partition: must be an integer"]),
    ({"name": "x" * 129}, ["name: must be", "at most 128 characters"]),
    ({"points": [{"array": {"rows": 8, "colz": 4}}]}, ["points[0]", "unknown chip field 'array.colz'"]),
    ({"pairs": 8}, ["pairs: must be a list such as [w8a8, w4a4]"]),
    ({"workloads": [5]}, ["workloads[0]: must be a zoo name or a path"]),
    ({"chip": ""}, ["chip: must be a preset name"]),
]


@pytest.mark.parametrize(("changes", "needles"), BAD_SPECS, ids=[str(i) for i in range(len(BAD_SPECS))])
def test_bad_specs_raise_one_line_input_errors(changes, needles):
    with pytest.raises(InputError) as info:
        spec_of(**changes)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_bad_spec_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"bad\.yaml: malformed YAML: line"):
        load_sweep_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_sweep_spec(listy)
    with pytest.raises(InputError, match="no such sweep spec file"):
        load_sweep_spec(tmp_path / "missing.yaml")


def test_relative_paths_resolve_next_to_the_spec(tmp_path, monkeypatch):
    chip = read_yaml(Path(__file__).parents[2] / "sim" / "chips" / "tpu_like_int8.yaml", "chip file")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mychip.yaml").write_text(yaml.safe_dump({**chip, "name": "mine"}))
    (tmp_path / "specs" / "tiny.yaml").write_text(
        yaml.safe_dump({"layers": [{"type": "gemm", "name": "fc", "tokens": 4, "in_features": 16, "out_features": 8}]})
    )
    doc = {**SMALL, "chip": "mychip.yaml", "workloads": ["tiny.yaml"]}
    (tmp_path / "specs" / "s.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    spec = load_sweep_spec("specs/s.yaml")
    assert spec.base_chip.name == "mine" and spec.workloads[0].name == "tiny"


def test_sweep_fields_follow_the_chip_model():
    for name in (
        "array.rows",
        "array.cols",
        "array.dataflow",
        "array.clock_mhz",
        "pe.kind",
        "pe.bits",
        "pe.serial",
        "memory.ifmap_sram_kib",
        "memory.filter_sram_kib",
        "memory.ofmap_sram_kib",
        "memory.dram_bw_bits_per_cycle",
        "memory.acc_bits",
        "technology",
    ):
        assert name in SWEEP_FIELDS
    assert "name" not in SWEEP_FIELDS and "pairs" not in SWEEP_FIELDS


# Expansion -------------------------------------------------------------------------------------
def test_expansion_order_and_chip_ids():
    spec = spec_of()
    exp = spec.expansion
    grid = list(itertools.product([4, 16], ["ws", "os", "is"]))
    assert exp.n_chips == len(grid) + 2 == spec.n_chips
    assert exp.fields == (
        "array.rows",
        "array.dataflow",
        "array.cols",
        "pe.kind",
        "memory.dram_bw_bits_per_cycle",
    )
    for i, (rows, df) in enumerate(grid):
        chip = exp.chip(i)
        assert (chip.name, chip.array.rows, chip.array.dataflow) == (f"t-{i}", rows, df)
        assert (chip.array.cols, chip.pe.kind, chip.memory.dram_bw_bits_per_cycle) == (64, "fixed", 256.0)
    p0, p1 = exp.chip(6), exp.chip(7)
    assert (p0.name, p0.array.rows, p0.array.cols, p0.array.dataflow) == ("t-6", 8, 4, "ws")
    assert (p1.pe.kind, p1.memory.dram_bw_bits_per_cycle, p1.array.rows) == ("bitfusion", "calc", 64)
    assert (
        exp.describe(1) == "chip 1 (array.rows=4, array.dataflow=os, array.cols=64, pe.kind=fixed, "
        "memory.dram_bw_bits_per_cycle=256.0)"
    )
    assert exp.describe(7).startswith("points[1] = chip 7 (")
    assert spec.pairs == ((8, 8), (4, 4), (2, 8))


def test_range_shorthand_is_inclusive():
    spec = spec_of(
        grid={
            "array.rows": {"range": [4, 64], "step": 4},
            "array.clock_mhz": {"range": [0.5, 1.0], "step": 0.25},
        },
        points=None,
    )
    grid = dict(spec.grid)
    assert grid["array.rows"] == tuple(range(4, 65, 4))
    assert grid["array.clock_mhz"] == (0.5, 0.75, 1.0)
    assert spec.n_chips == 16 * 3
    assert spec_of(grid={"array.rows": {"range": [3, 3]}}, points=None).n_chips == 1


def test_chip_batch_matches_from_chips():
    spec = spec_of(
        grid={
            "array.rows": [4, 16],
            "pe.kind": ["fixed", "bitserial", "bitfusion"],
            "pe.serial": ["activation", "both"],
            "memory.ifmap_sram_kib": [8, 20.5, 2048],
            "memory.dram_bw_bits_per_cycle": ["calc", 64],
            "static_mw": [None, 3.5],
            "weight_scale_bits": [0, 16],
        }
    )
    exp = spec.expansion
    same_batch(
        build_chip_batch(spec),
        ChipBatch.from_chips([exp.chip(i) for i in range(exp.n_chips)], list(spec.pairs)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "array.rows",
                "array.cols",
                "array.dataflow",
                "array.clock_mhz",
                "pe.kind",
                "pe.serial",
                "memory.ifmap_sram_kib",
                "memory.ofmap_sram_kib",
                "memory.acc_bits",
                "static_mw",
            ]
        ),
        st.lists(st.integers(1, 300), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_chip_batch_matches_from_chips_on_random_grids(raw):
    choices = {
        "array.dataflow": ["ws", "os", "is"],
        "pe.kind": ["fixed", "bitserial", "bitfusion"],
        "pe.serial": ["activation", "both"],
    }
    grid = {}
    for key, values in raw.items():
        if key in choices:
            grid[key] = [choices[key][v % len(choices[key])] for v in values]
        elif key == "memory.acc_bits":
            grid[key] = [8 + v % 57 for v in values]
        elif key == "array.clock_mhz" or key.endswith("_kib") or key == "static_mw":
            grid[key] = [v / 7 for v in values]
        else:
            grid[key] = values
    spec = spec_of(grid=grid, points=None)
    exp = spec.expansion
    same_batch(
        build_chip_batch(spec),
        ChipBatch.from_chips([exp.chip(i) for i in range(exp.n_chips)], list(spec.pairs)),
    )


# Running ---------------------------------------------------------------------------------------
def check_against_simulate(spec, out: Path, chip_ids) -> None:
    frame = load_sweep(out)
    for wl in spec.workloads:
        for cid in chip_ids:
            got = frame[(frame.chip_id == cid) & (frame.workload == wl.name)].reset_index(drop=True)
            want = simulate(spec.expansion.chip(cid), wl, list(spec.pairs))
            assert list(got.columns) == list(OUTPUT_COLUMNS)
            assert (got["chip"].astype(str) == f"{spec.name}-{cid}").all()
            assert got["name"].astype(str).tolist() == want["name"].astype(str).tolist()
            for col in COST_COLUMNS:
                if col == "name":
                    continue
                a, b = got[col].to_numpy(), want[col].to_numpy()
                if a.dtype == object:  # strings (the loop order)
                    assert b.dtype == object and a.tolist() == b.tolist(), (cid, wl.name, col)
                    continue
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (cid, wl.name, col)


def test_results_equal_simulate_per_chip(tmp_path):
    spec = spec_of(
        workloads=["resnet18", "minilm_l6"],
        grid={
            "array.rows": [4, 32],
            "array.dataflow": ["ws", "os", "is"],
            "pe.kind": ["fixed", "bitserial", "bitfusion"],
            "pe.serial": ["activation", "both"],
            "memory.filter_sram_kib": [16, 512],
            "memory.dram_bw_bits_per_cycle": ["calc", 32],
            "mapping": ["search", "scalesim"],
            "array.weight_preload": ["serial", "overlapped"],
        },
    )
    out = run_sweep(spec, tmp_path / "out", progress=False)
    assert out == tmp_path / "out"
    rng = np.random.default_rng(1)
    check_against_simulate(spec, out, sorted(rng.choice(spec.n_chips, 6, replace=False).tolist()) + [144, 145])
    frame = load_sweep(out)
    n_rows = sum(len(w.layers) for w in spec.workloads) * spec.n_chips * len(spec.pairs)
    assert len(frame) == n_rows
    assert not frame.duplicated(["workload", "chip_id", "layer", "w_bits", "a_bits"]).any()


def test_output_layout_and_metadata(tmp_path):
    spec = spec_of(workloads=["resnet18", "mobilenet_v2"])
    stats: dict = {}
    out = run_sweep(spec, tmp_path / "o", progress=True, stats=stats)
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["n_chips"] == 8 and meta["pairs"] == ["w8a8", "w4a4", "w2a8"]
    assert [p["path"] for p in meta["partitions"]] == [
        f"parts/{w}/chips-{a}-{b}.parquet" for w in ("resnet18", "mobilenet_v2") for a, b in ((0, 2), (3, 5), (6, 7))
    ]
    assert [(p.start, p.stop) for p in plan_partitions(spec)][:3] == [(0, 3), (3, 6), (6, 8)]
    assert stats["partitions_run"] == stats["partitions"] == 6
    chips = load_sweep_chips(out)
    assert chips["chip_id"].tolist() == list(range(8))
    assert chips["chip"].tolist() == [f"t-{i}" for i in range(8)]
    assert chips["array.rows"].tolist() == [4, 4, 4, 16, 16, 16, 8, 64]
    assert chips["array.dataflow"].tolist() == ["ws", "os", "is"] * 2 + ["ws", "ws"]
    assert chips["pe.kind"].tolist() == ["fixed"] * 7 + ["bitfusion"]
    assert chips["memory.dram_bw_bits_per_cycle"].tolist() == [256.0] * 7 + [float("inf")]
    assert chips["array.cols"].tolist() == [64] * 6 + [4, 64]
    frame = load_sweep(out, columns=["chip_id", "workload", "energy_pj"])
    assert list(frame.columns) == ["chip_id", "workload", "energy_pj"]
    assert list(frame["workload"].unique()) == [w.name for w in spec.workloads]
    with pytest.raises(InputError, match="unknown sweep column 'bogus'"):
        load_sweep(out, columns=["bogus"])


def test_partition_size_is_capped_by_memory(monkeypatch):
    import sim.sweep_plan

    spec = spec_of(chips_per_partition=10**6, grid={"array.rows": {"range": [1, 100]}}, points=None)
    assert [p.stop - p.start for p in plan_partitions(spec)] == [100]
    monkeypatch.setattr(sim.sweep_plan, "PARTITION_BYTES", 2**20)  # 1 MiB / (21 layers x 3 pairs x 512 B) = 32 chips
    assert [p.stop - p.start for p in plan_partitions(spec)] == [32, 32, 32, 4]


def test_threads_and_synchronous_give_identical_files(tmp_path):
    spec = spec_of()
    a = run_sweep(spec, tmp_path / "a", scheduler="synchronous", progress=False)
    b = run_sweep(spec, tmp_path / "b", scheduler="threads", progress=False)
    assert all_files(a) == all_files(b)


@pytest.mark.slow
def test_local_cluster_gives_identical_results(tmp_path):
    spec = spec_of(workloads=["resnet18", "mobilenet_v2"])
    a = run_sweep(spec, tmp_path / "inproc", progress=False)
    b = run_sweep(spec, tmp_path / "cluster", scheduler="local:2", progress=True)
    pd.testing.assert_frame_equal(load_sweep(a), load_sweep(b))
    assert all_files(a) == all_files(b)


@pytest.mark.slow
def test_scheduler_address_and_distributed_resume(tmp_path, monkeypatch):
    from distributed import LocalCluster

    spec = spec_of()
    clean = run_sweep(spec, tmp_path / "clean", progress=False)
    monkeypatch.setenv(FAIL_ENV, "1")  # set before the workers start: they inherit it
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with pytest.raises(RuntimeError, match="injected failure"):
            run_sweep(spec, tmp_path / "o", scheduler=cluster.scheduler_address, progress=False)
        assert not (tmp_path / "o" / plan_partitions(spec)[1].path).exists()
    monkeypatch.delenv(FAIL_ENV)
    stats: dict = {}
    run_sweep(spec, tmp_path / "o", n_workers=2, progress=False, stats=stats)
    assert 1 <= stats["partitions_run"] < stats["partitions"] or stats["partitions_run"] == stats["partitions"]
    assert not [p for p in (tmp_path / "o").rglob("*") if p.name.endswith(".tmp")]
    assert all_files(tmp_path / "o") == all_files(clean)


# Resume and reuse of an output directory ------------------------------------------------------------
def test_resume_after_a_failed_partition(tmp_path, monkeypatch):
    spec = spec_of(workloads=["resnet18", "mobilenet_v2"])
    n_parts = len(plan_partitions(spec))
    out = tmp_path / "out"
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(spec, out, scheduler="synchronous", progress=False)
    # the synchronous scheduler stops at the failure: the partitions it finished are published whole
    done = sorted(p.relative_to(out).as_posix() for p in (out / "parts").rglob("*.parquet"))
    failed = plan_partitions(spec)[2].path
    assert 0 < len(done) < n_parts and failed not in done
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for path in done:
        assert len(pd.read_parquet(out / path)) > 0
    with pytest.raises(InputError, match=f"sweep unfinished: {n_parts - len(done)} of {n_parts} partitions missing"):
        load_sweep(out)
    # a run killed outright leaves its temp file behind: the rerun drops it
    stale = out / "parts" / "resnet18" / ".chips-6-7.parquet.123-abc.tmp"
    stale.write_bytes(b"partial")
    monkeypatch.delenv(FAIL_ENV)
    stats: dict = {}
    run_sweep(spec, out, progress=False, stats=stats)
    assert stats["partitions_run"] == n_parts - len(done)
    assert not stale.exists()
    clean = run_sweep(spec, tmp_path / "clean", progress=False)
    frame = load_sweep(out)
    assert not frame.duplicated(["workload", "chip_id", "layer", "w_bits", "a_bits"]).any()
    pd.testing.assert_frame_equal(frame, load_sweep(clean))
    assert all_files(out) == all_files(clean)
    # a finished sweep rerun does nothing
    again: dict = {}
    run_sweep(spec, out, progress=False, stats=again)
    assert again["partitions_run"] == 0


def test_threaded_failure_leaves_no_temp_files(tmp_path, monkeypatch):
    spec = spec_of()
    monkeypatch.setenv(FAIL_ENV, "1")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(spec, tmp_path / "o", scheduler="threads", progress=False)
    assert not [p for p in (tmp_path / "o").rglob("*") if p.name.endswith(".tmp")]
    assert not (tmp_path / "o" / plan_partitions(spec)[1].path).exists()


def test_a_different_spec_into_the_same_directory_is_refused(tmp_path):
    out = run_sweep(spec_of(), tmp_path / "o", progress=False)
    before = all_files(out)
    for changes in (
        {"pairs": ["w8a8"]},
        {"grid": {"array.rows": [4, 17]}},
        {"chips_per_partition": 4},
        {"name": "u"},
        {"workloads": ["resnet50"]},
    ):
        with pytest.raises(InputError, match="different sweep spec"):
            run_sweep(spec_of(**changes), out, progress=False)
    assert all_files(out) == before


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "o" / "parts").mkdir(parents=True)
    with pytest.raises(InputError, match="no sweep.json"):
        run_sweep(spec_of(), tmp_path / "o", progress=False)
    (tmp_path / "o" / "sweep.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read sweep metadata"):
        run_sweep(spec_of(), tmp_path / "o", progress=False)


@pytest.mark.parametrize("scheduler", ["bogus", "local:0", "threads:2", "local:100000"])
def test_bad_scheduler(tmp_path, scheduler):
    with pytest.raises(InputError, match="scheduler"):
        run_sweep(spec_of(), tmp_path / "o", scheduler=scheduler, progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("scheduler", "n_workers", "needle"),
    [
        (None, 0, r"worker count \(--workers\) must be an integer in 1..256, got 0"),
        (None, MAX_WORKERS + 1, "in 1..256"),
        ("threads", True, "must be an integer"),
        ("tcp://127.0.0.1:1", 2, "has its own workers"),
        ("tcp://host:port", None, "bad Dask scheduler address tcp://host:port"),
    ],
)
def test_bad_workers_and_addresses_create_nothing(tmp_path, scheduler, n_workers, needle):
    with pytest.raises(InputError, match=needle):
        run_sweep(spec_of(), tmp_path / "a" / "o", scheduler=scheduler, n_workers=n_workers, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_refused_quickly_and_creates_nothing(tmp_path, monkeypatch):
    import time

    import sim.scheduler

    monkeypatch.setattr(sim.scheduler, "CONNECT_TIMEOUT_S", 1)
    start = time.monotonic()
    with pytest.raises(InputError, match=r"cannot connect to the Dask scheduler at tcp://127.0.0.1:1 within 1 s"):
        run_sweep(spec_of(), tmp_path / "a" / "o", scheduler="tcp://127.0.0.1:1", progress=False)
    assert time.monotonic() - start < 15
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file.txt", "file.txt/o", "file.txt/a/o"])
def test_an_output_path_through_a_file_is_refused_before_the_spec(tmp_path, where):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="file.txt"):
        run_sweep({"not": "a spec"}, tmp_path / where, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_a_sweep_that_fails_before_any_partition_removes_what_it_created(tmp_path, monkeypatch):
    spec = spec_of(chips_per_partition=100)
    assert len(plan_partitions(spec)) == 1
    monkeypatch.setenv(FAIL_ENV, "0")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(spec, tmp_path / "a" / "b" / "o", scheduler="synchronous", progress=False)
    assert list(tmp_path.iterdir()) == []
    # an existing directory is never removed, even when the run published nothing
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(spec, tmp_path / "mine", scheduler="synchronous", progress=False)
    assert (tmp_path / "mine").is_dir()


def test_an_interrupt_before_any_partition_removes_what_it_created(tmp_path, monkeypatch):
    import sim.sweep_exec

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.sweep_exec, "_run_local", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec_of(), tmp_path / "o", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_run_sweep_accepts_a_spec_path(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SMALL, sort_keys=False))
    a = run_sweep(path, tmp_path / "a", progress=False)
    b = run_sweep(SMALL, tmp_path / "b", progress=False)
    assert all_files(a)["parts/resnet18/chips-0-2.parquet"] == all_files(b)["parts/resnet18/chips-0-2.parquet"]


def test_a_directory_in_use_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another lowbit sweep is writing"):
            run_sweep(spec_of(), out, progress=False)
    run_sweep(spec_of(), out, progress=False)
    assert len(load_sweep(out)) == spec_of().n_chips * 21 * 3


def test_a_variant_no_mapping_fits_is_refused_before_anything_is_written(tmp_path):
    spec = spec_of(workloads=["resnet18"], grid={"memory.filter_sram_kib": [64, 0.25], "array.rows": [8, 16]})
    with pytest.raises(InputError) as err:
        run_sweep(spec, tmp_path / "out", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "fits no mapping" in msg and "filter_sram_kib >=" in msg and "'conv1'" in msg
    assert not (tmp_path / "out").exists()
    # SCALE-Sim's schedule has no capacity check: the same variants run
    run_sweep(
        spec_of(workloads=["resnet18"], grid={"memory.filter_sram_kib": [64, 0.25], "mapping": ["scalesim"]}),
        tmp_path / "ok",
        progress=False,
    )
