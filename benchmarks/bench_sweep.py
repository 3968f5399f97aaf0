"""Benchmark ``lowbit sweep``: ResNet-50 x 9 Bit-Fusion pairs x ~10 000 chip variants, in-process.

Run: ``python benchmarks/bench_sweep.py`` (options: ``--help``).

Prints the end-to-end wall time (spec expansion + chip batch + evaluation + Parquet writing),
layer-design points per second (points = chips x layers x pairs), peak RSS, where the time
went, and the ratio against a baseline measured in the same process: a per-chip Python loop
calling :func:`sim.simulate` on a sample of chips, extrapolated per point.  The baseline is
given the loaded workload object (it does not rebuild ResNet-50 per chip) and writes nothing,
so the ratio understates the sweep's advantage.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lowbit_core.pairs import format_pair  # noqa: E402
from sim.costs import simulate  # noqa: E402
from sim.sweep import run_sweep  # noqa: E402
from sim.sweep_plan import plan_partitions  # noqa: E402
from sim.sweep_spec import sweep_spec_from_dict  # noqa: E402
from sim.sweep_store import load_sweep_chips  # noqa: E402

PAIRS = [format_pair((w, a)) for w in (8, 4, 2) for a in (8, 4, 2)]


def spec_doc(chips_per_partition: int | None) -> dict:
    """5 x 5 x 3 x 3 x 3 x 3 x 5 = 10 125 variants of the Bit-Fusion edge chip."""
    doc = {
        "name": "bench",
        "chip": "bitfusion_edge",
        "grid": {
            "array.rows": [8, 16, 32, 64, 128],
            "array.cols": [8, 16, 32, 64, 128],
            "array.dataflow": ["ws", "os", "is"],
            # every variant must hold one stationary tile (128 x 128 PEs x 16 packed 2-bit weights is 64 KiB)
            "memory.ifmap_sram_kib": [128, 256, 512],
            "memory.filter_sram_kib": [128, 512, 2048],
            "memory.ofmap_sram_kib": [16, 64, 256],
            "memory.dram_bw_bits_per_cycle": {"range": [32, 160], "step": 32},
        },
        "workloads": ["resnet50"],
        "pairs": PAIRS,
    }
    if chips_per_partition:
        doc["chips_per_partition"] = chips_per_partition
    return doc


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if platform.system() != "Darwin" else kib / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-chips", type=int, default=50, help="chips in the sim.simulate loop (default 50)")
    ap.add_argument("--chips-per-partition", type=int, default=None)
    ap.add_argument("--scheduler", default=None, help="threads (default), synchronous, local:N, tcp://...")
    ap.add_argument("--out", default=None, help="output directory (default: a temp dir, removed after)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_")) if args.out is None else None
    out = tmp / "sweep" if tmp else Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    try:
        # --- the sweep, end to end -------------------------------------------------------------
        t0 = time.perf_counter()
        spec = sweep_spec_from_dict(spec_doc(args.chips_per_partition), where="bench spec")
        t_spec = time.perf_counter() - t0
        stats: dict = {}
        run_sweep(spec, out, scheduler=args.scheduler, progress=False, stats=stats)
        wall = time.perf_counter() - t0
        rss = peak_rss_mib()
        n_chips, n_layers, n_pairs = spec.n_chips, len(spec.workloads[0].layers), len(PAIRS)
        points = n_chips * n_layers * n_pairs
        size_mib = sum(f.stat().st_size for f in out.rglob("*.parquet")) / 2**20

        # --- baseline: a per-chip loop over sim.simulate ------------------------------------------
        rng = np.random.default_rng(0)
        sample = sorted(rng.choice(n_chips, size=min(args.baseline_chips, n_chips), replace=False).tolist())
        chips = [spec.expansion.chip(i) for i in sample]
        workload = spec.workloads[0]
        tb = time.perf_counter()
        frames = [simulate(chip, workload, PAIRS) for chip in chips]
        t_base = time.perf_counter() - tb
        base_rate = len(sample) * n_layers * n_pairs / t_base

        # --- spot check: the sweep's rows equal sim.simulate's for the sampled chips -------------
        parts = {p.start: p for p in plan_partitions(spec)}
        mismatches = 0
        for cid, frame in zip(sample, frames):
            part = parts[max(s for s in parts if s <= cid)]
            table = pq.read_table(out / part.path, filters=[("chip_id", "=", cid)])
            for col in frame.columns[4:]:
                a = frame[col].to_numpy()
                b = table.column(col).to_numpy()
                if a.dtype == object:  # strings (the loop order): compare the values, not the object pointers
                    mismatches += int(a.tolist() != b.tolist())
                    continue
                mismatches += int(a.dtype != b.dtype or a.tobytes() != b.tobytes())
            mismatches += int(not pc.all(pc.equal(table.column("layer"), frame["layer"].to_numpy())).as_py())
        assert len(load_sweep_chips(out)) == n_chips
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    rate = points / wall
    print(
        f"sweep: {n_chips} chips x {n_layers} layers (ResNet-50) x {n_pairs} pairs = {points:,} points, "
        f"{stats['partitions']} partitions, {size_mib:.0f} MiB Parquet"
    )
    print(f"  wall time            {wall:8.2f} s   ({rate:,.0f} points/s end to end)")
    print(f"  spec + expansion     {t_spec:8.2f} s   (validates every variant)")
    print(f"  prepare dir + chips  {stats['prepare_s']:8.2f} s")
    print(f"  chip batch           {stats['chip_batch_s']:8.2f} s")
    print(
        f"  run (scheduler)      {stats['run_s']:8.2f} s   wall; summed over partitions: evaluate "
        f"{stats['evaluate_s']:.2f} s, flatten {stats['flatten_s']:.2f} s, "
        f"Parquet write {stats['write_s']:.2f} s"
    )
    print(f"  peak RSS             {rss:8.0f} MiB")
    print(
        f"baseline: sim.simulate loop on {len(sample)} chips: {t_base:.2f} s = {base_rate:,.0f} points/s "
        f"(extrapolated to the sweep: {points / base_rate:.0f} s)"
    )
    print(
        f"check: sweep rows == sim.simulate for {len(sample)} sampled chips: "
        f"{'OK' if mismatches == 0 else f'{mismatches} MISMATCHES'}"
    )
    print(
        f"SUMMARY bench_sweep: {rate:,.0f} points/s end to end ({points:,} points in {wall:.2f} s, "
        f"peak RSS {rss:.0f} MiB) vs {base_rate:,.0f} points/s for the sim.simulate loop: "
        f"{rate / base_rate:.0f}x; target 1,000,000 points/s {'met' if rate >= 1e6 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
