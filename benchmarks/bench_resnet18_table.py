"""ResNet-18 cost table on SCALE-Sim's own 32x32 ws cfg: lowbit's fast engine vs SCALE-Sim.

Run: ``python benchmarks/bench_resnet18_table.py``

Baselines:
* SCALE-Sim v3.0.0 on the same cfg and topology took 337 s here (REFERENCES.md section 1; it
  needs its own numpy<2 venv, so it is not re-run in this process).  Compute cycles are checked
  equal to its COMPUTE_REPORT.csv below, so the comparison is like for like.
* In-process baseline: the cycle-stepped reference engine on the same chip, timed on ResNet-18's
  FC layer (the only layer small enough to step), scaled per MAC to the whole network.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from sim import load_chip, simulate
from sim.chipbatch import ChipBatch
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.reference import run_reference
from sim.workload import read_topology_csv

REF = Path(__file__).resolve().parents[1] / "tests" / "sim" / "data" / "scalesim_resnet18_ws32"
SCALESIM_SECONDS = 337.0


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    chip = load_chip(REF / "scale_32x32_ws.cfg")
    workload = read_topology_csv(REF / "Resnet18.csv")
    expected = [int(r[2]) for r in list(csv.reader((REF / "COMPUTE_REPORT.csv").open()))[1:] if r]
    table = simulate(chip, workload, ["w8a8"])
    assert table.compute_cycles.tolist() == expected, "compute cycles differ from SCALE-Sim"

    t_table = best_of(lambda: simulate(chip, workload, ["w8a8"]), 50)
    batch = ChipBatch.from_chips([chip], [(8, 8)])
    layers = LayerBatch.from_workload(workload)
    pairs = np.array([[8, 8]])
    t_core = best_of(lambda: evaluate(batch, layers, pairs), 200)
    nine = [(w, a) for w in (8, 4, 2) for a in (8, 4, 2)]
    fusion = load_chip("bitfusion_edge")
    t_nine = best_of(lambda: simulate(fusion, workload, nine), 50)

    fc = workload.layers[-1]
    t_ref = best_of(lambda: run_reference(chip, fc, (8, 8)), 1)
    t_ref_net = t_ref * workload.macs / fc.macs

    print("ResNet-18 (21 layers), SCALE-Sim cfg 32x32 ws, compute cycles identical to SCALE-Sim: yes")
    print(f"  lowbit simulate() -> DataFrame, 1 pair : {t_table * 1e3:8.3f} ms")
    print(f"  lowbit evaluate() core arrays, 1 pair  : {t_core * 1e3:8.3f} ms")
    print(f"  lowbit simulate(), 9 pairs (bitfusion) : {t_nine * 1e3:8.3f} ms")
    print(f"  SCALE-Sim v3.0.0 (measured here)       : {SCALESIM_SECONDS:8.1f} s")
    print(f"  reference engine, scaled from FC layer : {t_ref_net:8.1f} s (FC alone {t_ref:.2f} s)")
    print(f"ratio vs SCALE-Sim: {SCALESIM_SECONDS / t_table:,.0f}x (table), {SCALESIM_SECONDS / t_core:,.0f}x (core)")
    print(f"ratio vs in-process reference engine: {t_ref_net / t_table:,.0f}x")


if __name__ == "__main__":
    main()
