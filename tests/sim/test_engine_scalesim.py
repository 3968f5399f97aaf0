"""SCALE-Sim compatibility: fixed 8-bit PE, same cfg + topology -> compute_cycles == "Total Cycles"."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sim import load_chip, simulate
from sim.workload import read_topology_csv

DATA = Path(__file__).parent / "data" / "scalesim"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "scalesim_resnet18_ws32"


def _cases() -> list[tuple[str, Path, Path, Path]]:
    cases = [
        (d.name, d / "config.cfg", d / "topology.csv", d / "COMPUTE_REPORT.csv")
        for d in sorted(DATA.iterdir())
        if d.is_dir()
    ]
    # the ResNet-18 reference is copied into the repo so CI does not depend on ../shared
    rn = DATA.parent / "scalesim_resnet18_ws32"
    cases.append(("resnet18_ws_32x32", rn / "scale_32x32_ws.cfg", rn / "Resnet18.csv", rn / "COMPUTE_REPORT.csv"))
    return cases


def _report_cycles(path: Path) -> list[int]:
    rows = list(csv.reader(path.open()))[1:]
    return [int(r[2]) for r in rows if r]


def test_cases_cover_all_dataflows_and_rectangular_arrays() -> None:
    names = [c[0] for c in _cases()]
    for df in ("ws", "os", "is"):
        assert any(n.startswith(df) for n in names)
        shapes = {load_chip(c[1]).array.rows != load_chip(c[1]).array.cols for c in _cases() if c[0].startswith(df)}
        assert True in shapes, f"{df} has no non-square array case"


@pytest.mark.parametrize(("name", "cfg", "topology", "report"), _cases(), ids=[c[0] for c in _cases()])
def test_compute_cycles_equal_scalesim_total_cycles(name: str, cfg: Path, topology: Path, report: Path) -> None:
    chip = load_chip(cfg)
    assert chip.pe.kind == "fixed" and chip.pe.bits == 8
    table = simulate(chip, read_topology_csv(topology), ["w8a8"])
    assert table.compute_cycles.tolist() == _report_cycles(report)


def test_calc_bandwidth_means_no_stalls() -> None:
    rn = DATA.parent / "scalesim_resnet18_ws32"
    table = simulate(load_chip(rn / "scale_32x32_ws.cfg"), read_topology_csv(rn / "Resnet18.csv"), ["w8a8"])
    assert (table.stall_cycles == 0).all()


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared not present")
def test_in_repo_copy_matches_shared_reference() -> None:
    rn = DATA.parent / "scalesim_resnet18_ws32"
    for f in ("scale_32x32_ws.cfg", "Resnet18.csv", "COMPUTE_REPORT.csv"):
        assert (rn / f).read_bytes() == (SHARED / f).read_bytes()
