"""The mapping search's speed: ResNet-18 cost tables and sweep throughput, mapper on vs SCALE-Sim's schedule.

Run: ``python benchmarks/bench_mapper.py``

* ResNet-18 (batch 1) on ``bitfusion_edge``: the cost table with the mapping search (every candidate of
  every layer and pair evaluated, the best kept), against the same table on SCALE-Sim's fixed schedule in
  this process, and against ZigZag 3.9.1's mapping search of the same layers (its wall time recorded by
  ``benchmarks/zigzag``; 117 s for the latency objective on this machine, REFERENCES.md section 5).
* Sweep throughput: ``evaluate`` over a batch of chip variants x ResNet-18's layers x 9 pairs, in
  layer-design points per second (one point = one chip, layer and pair, its mapping searched).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sim import load_chip, simulate
from sim.chipbatch import ChipBatch
from sim.config import chip_from_dict
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.workload import zoo

ZIGZAG_REF = Path(__file__).resolve().parent / "zigzag" / "reference"
ZIGZAG_FALLBACK_S = 117.0  # REFERENCES.md section 5: ResNet-18's 12 distinct layers, latency objective
NINE = [(w, a) for w in (8, 4, 2) for a in (8, 4, 2)]


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def zigzag_seconds() -> tuple[float, str]:
    """ZigZag's recorded search time for ResNet-18 (latency objective), and where it comes from."""
    for path in sorted(ZIGZAG_REF.glob("*resnet18*latency*.json")):
        doc = json.loads(path.read_text())
        seconds = doc.get("provenance", {}).get("run_seconds") or doc.get("run_seconds")
        if seconds:
            return float(seconds), str(path.relative_to(ZIGZAG_REF.parents[1]))
    return ZIGZAG_FALLBACK_S, "REFERENCES.md section 5"


def sweep_batch(n: int) -> list:
    """``n`` bitfusion_edge variants: array sides, SRAM sizes, bandwidth, objective and timing profile."""
    rng = np.random.default_rng(0)
    chips = []
    for i in range(n):
        chips.append(
            chip_from_dict(
                {
                    "name": f"v{i}",
                    "array": {
                        "rows": int(rng.choice([8, 16, 32])),
                        "cols": int(rng.choice([16, 32, 64])),
                        "dataflow": "ws",
                        "clock_mhz": 500,
                        "weight_preload": str(rng.choice(["serial", "overlapped"])),
                    },
                    "pe": {"kind": "bitfusion"},
                    "mapping_objective": str(rng.choice(["latency", "energy", "edp"])),
                    "memory": {
                        "ifmap_sram_kib": int(rng.choice([32, 64, 128])),
                        "filter_sram_kib": int(rng.choice([64, 128])),
                        "ofmap_sram_kib": int(rng.choice([16, 32, 64])),
                        "dram_bw_bits_per_cycle": float(rng.choice([64, 128, 256])),
                    },
                }
            )
        )
    return chips


def main() -> None:
    workload = zoo.resnet18()
    chip = load_chip("bitfusion_edge")
    fixed = chip.model_copy(update={"mapping": "scalesim"})
    t_search = median_time(lambda: simulate(chip, workload, ["w8a8"]), 30)
    t_fixed = median_time(lambda: simulate(fixed, workload, ["w8a8"]), 30)
    t_nine = median_time(lambda: simulate(chip, workload, NINE), 15)
    zz, source = zigzag_seconds()
    print("ResNet-18 (21 layers) on bitfusion_edge, w8a8, median wall time in this process")
    print(f"  cost table, mapping search            : {t_search * 1e3:8.2f} ms")
    print(
        f"  cost table, SCALE-Sim's schedule      : {t_fixed * 1e3:8.2f} ms   (search / fixed: "
        f"{t_search / t_fixed:.2f}x)"
    )
    print(f"  cost table, mapping search, 9 pairs   : {t_nine * 1e3:8.2f} ms")
    print(f"  ZigZag 3.9.1 mapping search (recorded): {zz:8.1f} s    ({source})")
    print(f"ratio vs ZigZag: {zz / t_search:,.0f}x (1 pair), {zz / t_nine:,.0f}x (9 pairs)")

    layers = LayerBatch.from_workload(workload)
    pairs = np.array(NINE)
    for n in (64, 512):
        variants = sweep_batch(n)
        batch = ChipBatch.from_chips(variants, NINE)
        fixed_batch = ChipBatch.from_chips([c.model_copy(update={"mapping": "scalesim"}) for c in variants], NINE)
        points = n * len(layers) * len(NINE)
        t_on = median_time(lambda b=batch: evaluate(b, layers, pairs), 3)
        t_off = median_time(lambda b=fixed_batch: evaluate(b, layers, pairs), 3)
        print(
            f"sweep, {n} chips x {len(layers)} layers x {len(NINE)} pairs = {points:,} points: mapper on "
            f"{points / t_on / 1e6:.2f} M points/s, SCALE-Sim schedule {points / t_off / 1e6:.2f} M points/s "
            f"(on / off time: {t_on / t_off:.1f}x)"
        )


if __name__ == "__main__":
    main()
