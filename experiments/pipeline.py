"""End-to-end jobs.  ``run_demo``: the main job on a built-in default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.table import Table

from lowbit_core.pairs import format_pair
from lowbit_core.tables import write_table
from sim import load_chip, load_workload, simulate

if TYPE_CHECKING:
    from search import Solution

__all__ = [
    "run_demo",
    "run_search_demo",
    "DEMO_WORKLOAD",
    "DEMO_CHIPS",
    "DEMO_PAIRS",
    "SEARCH_MODEL",
    "SEARCH_CHIP",
    "SEARCH_BUDGETS",
]

DEMO_WORKLOAD = "resnet18"
DEMO_CHIPS = ("tpu_like_int8", "bitfusion_edge")
DEMO_PAIRS = ("w8a8", "w8a4", "w4a4", "w2a2")
#: The search part: the digits CNN on the Bit-Fusion-like preset, under these budgets (percent of uniform w8a8).
SEARCH_MODEL = "digits-cnn"
SEARCH_CHIP = "bitfusion_edge"
SEARCH_BUDGETS = ("latency_us=45%", "energy_pj=60%")
SEARCH_POINTS = 30


def run_demo(
    out_dir: str | Path = "results/demo", console: Console | None = None, shown_as: str | Path | None = None
) -> dict[str, Path]:
    """Cost tables of ResNet-18 on two presets, a per-layer latency/energy plot and a summary; then the
    mixed-precision search on the digits CNN (:func:`run_search_demo`) into ``out_dir/search``; then the closed
    loop on the built-in residual net (:func:`experiments.real_demo.run_real_network_demo`) into ``out_dir/resnet``.

    ``shown_as`` is the directory printed in place of ``out_dir`` (the CLI writes into a staging directory that
    it moves to ``--out`` at the end)."""
    from experiments.plots import plot_layer_costs

    console = console or Console()
    out = Path(out_dir)
    shown = Path(shown_as) if shown_as is not None else out
    workload = load_workload(DEMO_WORKLOAD)
    tables: dict[str, pd.DataFrame] = {}
    written: dict[str, Path] = {}
    for name in DEMO_CHIPS:
        chip = load_chip(name)
        tables[name] = simulate(chip, workload, DEMO_PAIRS)
        written[f"costs_{name}"] = write_table(tables[name], out / f"costs_{name}.csv")
    summary = pd.concat(
        [
            t.groupby(["w_bits", "a_bits"], sort=False)[
                ["total_cycles", "latency_us", "energy_pj", "dram_bits", "weight_bits"]
            ]
            .sum()
            .reset_index()
            .assign(chip=c)
            for c, t in tables.items()
        ],
        ignore_index=True,
    )
    from sim.area import chip_area

    summary["area_mm2"] = [chip_area(load_chip(c)).total_mm2 for c in summary.chip]
    summary = summary[
        ["chip", "w_bits", "a_bits", "total_cycles", "latency_us", "energy_pj", "dram_bits", "weight_bits", "area_mm2"]
    ]
    written["summary"] = write_table(summary, out / "summary.csv")
    pdf, png = plot_layer_costs(tables, out / "layer_costs")
    written["plot_pdf"], written["plot_png"] = pdf, png

    table = Table(title=f"{DEMO_WORKLOAD}: whole-network cost per chip and pair")
    for col in ("chip", "pair", "latency (ms)", "energy (mJ)", "DRAM (MiB)", "weights (KiB)", "area (mm²)"):
        table.add_column(col, justify="right" if col != "chip" else "left")
    for r in summary.itertuples():
        table.add_row(
            r.chip,
            format_pair((r.w_bits, r.a_bits)),
            f"{r.latency_us / 1e3:.3f}",
            f"{r.energy_pj / 1e9:.3f}",
            f"{r.dram_bits / 8 / 2**20:.2f}",
            f"{r.weight_bits / 8 / 1024:.0f}",
            f"{r.area_mm2:.2f}",
        )
    console.print(table)
    for key, path in written.items():
        console.print(f"  {key}: {shown / path.relative_to(out)}")
    written.update(run_search_demo(out / "search", console, shown_as=shown / "search"))
    from experiments.real_demo import run_real_network_demo

    written.update(run_real_network_demo(out / "resnet", console, shown_as=shown / "resnet"))
    return written


def run_search_demo(
    out_dir: str | Path, console: Console | None = None, shown_as: str | Path | None = None
) -> dict[str, Path]:
    """Sensitivity of the digits CNN (SQNR), its coupled costs on the Bit-Fusion-like preset, the ILP under
    :data:`SEARCH_BUDGETS`, the measured Pareto front against the greedy and uniform baselines, and plots.
    ``shown_as``: the directory printed in place of ``out_dir``."""
    from experiments.pareto_study import run_pareto_study
    from experiments.plots import plot_bit_allocation, plot_sensitivity_heatmap
    from experiments.workloads import resolve_workload
    from quant.models import get_model, model_split
    from quant.sensitivity import sensitivity_table
    from search import AssignmentModel, build_problem
    from search.assignment import write_assignment
    from search.budgets import parse_budgets, resolve_budgets

    console = console or Console()
    out = Path(out_dir)
    shown = Path(shown_as) if shown_as is not None else out
    chip = load_chip(SEARCH_CHIP)
    pairs = list(chip.supported_pairs)
    console.print(f"[bold]search[/]: {SEARCH_MODEL} on {SEARCH_CHIP}, {len(pairs)} pairs")
    sens = sensitivity_table(
        get_model(SEARCH_MODEL, seed=0),
        model_split(SEARCH_MODEL).calib_x,
        pairs,
        method="sqnr",
        quantizer="rtn",
        seed=0,
        progress=True,
    )
    costs = simulate(chip, resolve_workload(SEARCH_MODEL), pairs, coupled=True)
    written = {
        "search_sensitivity": write_table(sens, out / "sensitivity.csv"),
        "search_costs": write_table(costs, out / "costs.csv"),
    }
    asked = parse_budgets(list(SEARCH_BUDGETS))
    problem = build_problem(costs, sens, [*asked, "weight_bits"])
    limits = resolve_budgets(problem, asked)
    solution = AssignmentModel(problem, list(limits)).solve(limits)
    written["search_assignment"], written["search_assignment_json"] = write_assignment(
        solution, out, extra={"chip": SEARCH_CHIP, "model": SEARCH_MODEL, "budgets_asked": list(SEARCH_BUDGETS)}
    )
    written.update(_verify_chosen_layer(solution, out / "export", console))
    study = run_pareto_study(
        costs,
        sens,
        out / "pareto",
        x="latency_us",
        n_points=SEARCH_POINTS,
        model_name=SEARCH_MODEL,
        method="rtn",
        seed=0,
        progress=True,
    )
    written.update({f"pareto_{k}": v for k, v in study.paths.items()})
    written["allocation_pdf"], written["allocation_png"] = plot_bit_allocation(
        solution.assignment(),
        out / "bit_allocation",
        title=f"{SEARCH_MODEL} on {SEARCH_CHIP}: {', '.join(SEARCH_BUDGETS)}",
    )
    written["heatmap_pdf"], written["heatmap_png"] = plot_sensitivity_heatmap(
        sens, out / "sensitivity_heatmap", title=f"{SEARCH_MODEL}: SQNR sensitivity (noise-to-signal ratio)"
    )

    table = Table(title=f"{SEARCH_MODEL} on {SEARCH_CHIP}: ILP under {', '.join(SEARCH_BUDGETS)}")
    for col in ("layer", "pair", "out bits", "sensitivity", "latency (us)", "energy (nJ)"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for r in solution.assignment().itertuples():
        table.add_row(
            str(r.name),
            format_pair((r.w_bits, r.a_bits)),
            str(r.out_bits),
            f"{r.sensitivity:.3g}",
            f"{r.latency_us:.3f}",
            f"{r.energy_pj / 1e3:.1f}",
        )
    console.print(table)
    b = solution.budgets()
    console.print(
        f"  {solution.status} in {solution.solve_seconds * 1e3:.0f} ms; "
        + "; ".join(f"{k} {v['used']:.4g} of {v['limit']:.4g}" for k, v in b.items())
    )
    if study.quality is not None:
        q = study.quality
        gap = q["ilp_minus_greedy_accuracy"].dropna()
        best = study.points[study.points.kind == "ilp"]
        console.print(
            f"  Pareto: {len(best)} ILP points, measured accuracy {best.accuracy.min():.1f}-"
            f"{best.accuracy.max():.1f}%; ILP minus greedy over {len(gap)} latency budgets: "
            f"min {gap.min():+.2f}, mean {gap.mean():+.2f} points"
        )
    for key, path in written.items():
        console.print(f"  {key}: {shown / path.relative_to(out)}")
    return written


#: The layer of the ILP's assignment that the demo runs through the RTL, and the array it uses.
RTL_LAYER, RTL_ARRAY = "3", (4, 4)


def _verify_chosen_layer(solution: Solution, export_dir: Path, console: Console) -> dict[str, Path]:
    """Quantize the digits CNN with the ILP's per-layer pairs (RTN), export it, and run one layer through the
    Bit-Fusion RTL in Verilator: mismatches against the golden integer model, measured against sim's cycles."""
    from experiments.quantize import quantize_model
    from experiments.rtl_record import write_rtl_check
    from quant.export import export_model
    from quant.models import get_model, model_split
    from rtl.layer import verify_layer

    table = solution.assignment()
    names = table["name"].astype(str)
    w_bits = dict(zip(names, table.w_bits.astype(int), strict=True))
    a_bits = dict(zip(names, table.a_bits.astype(int), strict=True))
    split = model_split(SEARCH_MODEL)
    q = quantize_model(get_model(SEARCH_MODEL, seed=0), split.calib_x, w_bits, a_bits, "rtn")
    export_model(q, split.calib_x[:1], export_dir, name=SEARCH_MODEL)
    check = verify_layer(export_dir, RTL_LAYER, rows=RTL_ARRAY[0], cols=RTL_ARRAY[1], pe_kind="bitfusion", images=1)
    path = export_dir.parent / "rtl_check.json"
    record = write_rtl_check(path, check, (w_bits[RTL_LAYER], a_bits[RTL_LAYER]))
    verdict = "equal" if check.measured_cycles == check.predicted_cycles else "DIFFERENT"
    console.print(
        f"  RTL (Verilator, Bit-Fusion {record['array']}): layer {RTL_LAYER} at {record['pair']}: "
        f"{check.mismatches} mismatches over {check.macs:,} MACs; cycles measured "
        f"{check.measured_cycles:,}, sim predicts {check.predicted_cycles:,} ({verdict})"
    )
    return {"rtl_check": path}
