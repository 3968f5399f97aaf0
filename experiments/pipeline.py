"""End-to-end jobs.  ``run_demo``: the main job on a built-in default."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from sim import load_chip, load_workload, simulate
from sim.io import write_table

__all__ = ["run_demo", "DEMO_WORKLOAD", "DEMO_CHIPS", "DEMO_PAIRS"]

DEMO_WORKLOAD = "resnet18"
DEMO_CHIPS = ("tpu_like_int8", "bitfusion_edge")
DEMO_PAIRS = ("w8a8", "w8a4", "w4a4", "w2a2")


def run_demo(out_dir: str | Path = "results/demo", console: Console | None = None) -> dict[str, Path]:
    """Cost tables of ResNet-18 on two presets, a per-layer latency/energy plot and a summary."""
    from experiments.plots import plot_layer_costs

    console = console or Console()
    out = Path(out_dir)
    workload = load_workload(DEMO_WORKLOAD)
    tables: dict[str, pd.DataFrame] = {}
    written: dict[str, Path] = {}
    for name in DEMO_CHIPS:
        chip = load_chip(name)
        tables[name] = simulate(chip, workload, DEMO_PAIRS)
        written[f"costs_{name}"] = write_table(tables[name], out / f"costs_{name}.csv")
    summary = pd.concat(
        [t.groupby(["w_bits", "a_bits"], sort=False)[["total_cycles", "latency_us", "energy_pj", "dram_bits",
                                                       "weight_bits"]].sum().reset_index().assign(chip=c)
         for c, t in tables.items()], ignore_index=True)
    summary = summary[["chip", "w_bits", "a_bits", "total_cycles", "latency_us", "energy_pj", "dram_bits",
                       "weight_bits"]]
    written["summary"] = write_table(summary, out / "summary.csv")
    pdf, png = plot_layer_costs(tables, out / "layer_costs")
    written["plot_pdf"], written["plot_png"] = pdf, png

    table = Table(title=f"{DEMO_WORKLOAD}: whole-network cost per chip and pair")
    for col in ("chip", "pair", "latency (ms)", "energy (mJ)", "DRAM (MiB)", "weights (KiB)"):
        table.add_column(col, justify="right" if col != "chip" else "left")
    for r in summary.itertuples():
        table.add_row(r.chip, f"w{r.w_bits}a{r.a_bits}", f"{r.latency_us / 1e3:.3f}", f"{r.energy_pj / 1e9:.3f}",
                      f"{r.dram_bits / 8 / 2**20:.2f}", f"{r.weight_bits / 8 / 1024:.0f}")
    console.print(table)
    for key, path in written.items():
        console.print(f"  {key}: {path}")
    return written
