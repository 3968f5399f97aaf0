"""SCALE-Sim v3 compatibility on the generated references (benchmarks/scalesim/run_scalesim.py).

Fixed 8-bit PE, SCALE-Sim's own cfg + topology, w8a8: every layer's ``compute_cycles`` equals SCALE-Sim's
compute cycles ("Total Cycles" - "Stall Cycles"; the stalls are 0 under CALC, and under USER bandwidth
"Total Cycles" includes them), and lowbit's array-side SRAM reads (SRAM bits minus DRAM fills, over 8)
equal SCALE-Sim's "SRAM IFMAP Reads" / "SRAM Filter Reads". Reads only the stored files.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pandas as pd
import pytest

from sim import Chip, load_chip, simulate
from sim.workload import read_topology_csv

DATA = Path(__file__).parent / "data" / "scalesim_gen"
FILES = ("config.cfg", "topology.csv", "COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")


def _runs() -> list[Path]:
    return sorted(d for d in DATA.iterdir() if d.is_dir() and not d.name.startswith(".")) if DATA.is_dir() else []


@functools.cache
def _report(path: Path) -> list[dict[str, str]]:
    """A SCALE-Sim report's rows keyed by the stripped header (lines end in a comma)."""
    with path.open(newline="") as fh:
        rows = [[c.strip() for c in row] for row in csv.reader(fh) if any(c.strip() for c in row)]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


@functools.cache
def _chip(run: Path) -> Chip:
    return load_chip(run / "config.cfg")


@functools.cache
def _lowbit(run: Path) -> pd.DataFrame:
    return simulate(_chip(run), read_topology_csv(run / "topology.csv"), ["w8a8"])


def _cases() -> list[tuple[Path, int]]:
    return [(run, i) for run in _runs() for i in range(len(_report(run / "COMPUTE_REPORT.csv")))]


def _id(case: tuple[Path, int]) -> str:
    run, i = case
    names = [line.split(",")[0] for line in (run / "topology.csv").read_text().splitlines()[1:] if line.strip()]
    return f"{run.name}-{names[i] if i < len(names) else f'L{i}'}"


CASES = _cases()


def test_references_cover_dataflows_arrays_and_bandwidths() -> None:
    runs = _runs()
    assert len(runs) >= 24
    for run in runs:
        assert all((run / f).is_file() for f in FILES), run.name
    seen = set()
    for run in runs:
        chip = _chip(run)
        assert chip.pe.kind == "fixed" and chip.pe.bits == 8
        assert chip.array.rows != chip.array.cols
        seen.add((chip.array.dataflow, chip.memory.dram_bw_bits_per_cycle == "calc"))
    assert seen == {(df, calc) for df in ("ws", "os", "is") for calc in (True, False)}


@pytest.mark.parametrize(("run", "layer"), CASES, ids=[_id(c) for c in CASES])
def test_layer_equals_scalesim(run: Path, layer: int) -> None:
    compute = _report(run / "COMPUTE_REPORT.csv")[layer]
    total, stall = int(compute["Total Cycles"]), int(compute["Stall Cycles"])
    if _chip(run).memory.dram_bw_bits_per_cycle == "calc":
        assert stall == 0, "CALC bandwidth must not stall"
    lowbit = _lowbit(run).iloc[layer]
    assert int(lowbit.compute_cycles) == total - stall, "compute cycles"
    access = _report(run / "DETAILED_ACCESS_REPORT.csv")[layer]
    for operand, column in (("ifmap", "SRAM IFMAP Reads"), ("filter", "SRAM Filter Reads")):
        array_side = int(lowbit[f"sram_{operand}_bits"] - lowbit[f"dram_{operand}_bits"])
        assert array_side % 8 == 0 and array_side // 8 == int(float(access[column])), f"{operand} SRAM reads"


def test_calc_dram_reads_equal_scalesim_when_the_operand_fits() -> None:
    """Under CALC, an ifmap or filter whose distinct words fit half its SRAM is read from DRAM once by both."""
    checked, wrong = 0, []
    for run in _runs():
        chip = _chip(run)
        if chip.memory.dram_bw_bits_per_cycle != "calc":
            continue
        layers = read_topology_csv(run / "topology.csv").layers
        for i, (layer, access) in enumerate(zip(layers, _report(run / "DETAILED_ACCESS_REPORT.csv"))):
            lowbit = _lowbit(run).iloc[i]
            for operand, column, distinct, kib in (
                ("ifmap", "DRAM IFMAP Reads", layer.ifmap_used_elems, chip.memory.ifmap_sram_kib),
                ("filter", "DRAM Filter Reads", layer.weight_elems, chip.memory.filter_sram_kib),
            ):
                if distinct <= kib * 1024 / 2:
                    checked += 1
                    if int(lowbit[f"dram_{operand}_bits"]) != 8 * int(float(access[column])):
                        wrong.append(f"{run.name} {layer.name} {operand}")
    assert checked >= 100 and not wrong
