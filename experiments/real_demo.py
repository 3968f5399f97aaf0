"""The demo's closed loop on a real network: the built-in residual net (``digits-resnet``) from sensitivity to a
layer running bit-exact in RTL.

Steps, each on the same model definition: SQNR sensitivity of every quantizer group and pair; coupled costs of
the same model on the Bit-Fusion-like preset (each layer's output width charged at its true consumers, from the
traced graph); the ILP under :data:`REAL_BUDGETS`; GPFQ at the chosen per-layer pairs, measured on the test set
(fake-quant and golden integer model) against the float model and against the best uniform pair that fits the
same budgets; the integer export of that mixed model; and one residual-block conv (:data:`REAL_RTL_LAYER`)
through the Bit-Fusion RTL in Verilator, with mismatches and measured cycles against sim's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from experiments.rtl_record import write_rtl_check
from lowbit_core.pairs import format_pair
from lowbit_core.tables import write_table
from sim import load_chip, simulate

__all__ = [
    "run_real_network_demo",
    "REAL_MODEL",
    "REAL_CHIP",
    "REAL_BUDGETS",
    "REAL_METHOD",
    "REAL_RTL_LAYER",
    "REAL_RTL_ARRAY",
]

REAL_MODEL = "digits-resnet"
REAL_CHIP = "bitfusion_edge"
#: budgets in percent of uniform w8a8 (weights bound the on-chip storage as well)
REAL_BUDGETS = ("latency_us=40%", "weight_bits=40%")
REAL_METHOD = "gpfq"
#: the second conv of the block whose shortcut is a downsample: its output meets the residual add
REAL_RTL_LAYER, REAL_RTL_ARRAY = "layer2.conv2", (4, 4)


def _best_uniform(problem, limits: dict[str, float]):  # noqa: ANN001, ANN202 - search types, imported lazily
    """The uniform pair of least total sensitivity that fits every limit (None if none does)."""
    from search.baselines import uniform_solutions

    fits = [s for s in uniform_solutions(problem) if all(s.totals[k] <= v * (1 + 1e-12) for k, v in limits.items())]
    return min(fits, key=lambda s: s.sensitivity) if fits else None


def run_real_network_demo(
    out_dir: str | Path, console: Console | None = None, shown_as: str | Path | None = None
) -> dict[str, Path]:
    """Run the loop above into ``out_dir`` (``shown_as`` is printed in its place); returns the files written."""
    from experiments.measure import ModelBench
    from experiments.workloads import resolve_workload
    from quant.export import export_model
    from quant.sensitivity import sensitivity_table
    from rtl.layer import verify_layer
    from search import AssignmentModel, build_problem
    from search.assignment import write_assignment
    from search.budgets import parse_budgets, resolve_budgets

    console = console or Console()
    out = Path(out_dir)
    shown = Path(shown_as) if shown_as is not None else out
    chip = load_chip(REAL_CHIP)
    pairs = list(chip.supported_pairs)
    console.print(f"[bold]real network[/]: {REAL_MODEL} on {REAL_CHIP}, {len(pairs)} pairs")
    bench = ModelBench(REAL_MODEL, seed=0)
    sens = sensitivity_table(bench.model, bench.calib_x, pairs, method="sqnr", quantizer="rtn", seed=0, progress=True)
    costs = simulate(chip, resolve_workload(REAL_MODEL), pairs, coupled=True)
    written = {
        "real_sensitivity": write_table(sens, out / "sensitivity.csv"),
        "real_costs": write_table(costs, out / "costs.csv"),
    }
    asked = parse_budgets(list(REAL_BUDGETS))
    problem = build_problem(costs, sens, list(asked))
    limits = resolve_budgets(problem, asked)
    solution = AssignmentModel(problem, list(limits)).solve(limits)
    written["real_assignment"], written["real_assignment_json"] = write_assignment(
        solution, out, extra={"chip": REAL_CHIP, "model": REAL_MODEL, "budgets_asked": list(REAL_BUDGETS)}
    )

    chosen = solution.assignment()
    mixed = {str(n): (int(w), int(a)) for n, w, a in zip(chosen["name"], chosen.w_bits, chosen.a_bits, strict=True)}
    rows = [
        {
            "assignment": "float",
            "pairs": "",
            "fakequant_accuracy": bench.float_accuracy,
            "integer_accuracy": float("nan"),
            "weight_size_bits": float("nan"),
            **{k: float("nan") for k in limits},
        }
    ]
    point = bench.measure(mixed, REAL_METHOD, integer=True)
    rows.append(
        {
            "assignment": "ilp",
            "pairs": point.pairs,
            "fakequant_accuracy": point.accuracy,
            "integer_accuracy": point.integer_accuracy,
            "weight_size_bits": point.weight_size_bits,
            **{k: solution.totals[k] for k in limits},
        }
    )
    uniform = _best_uniform(problem, limits)
    if uniform is not None:
        w, a = problem.pairs[int(uniform.choice[0])]
        base = bench.measure(bench.uniform(int(w), int(a)), REAL_METHOD, integer=True)
        rows.append(
            {
                "assignment": f"uniform {format_pair((w, a))}",
                "pairs": base.pairs,
                "fakequant_accuracy": base.accuracy,
                "integer_accuracy": base.integer_accuracy,
                "weight_size_bits": base.weight_size_bits,
                **{k: uniform.totals[k] for k in limits},
            }
        )
    quality = pd.DataFrame(rows)
    written["real_quality"] = write_table(quality, out / "quality.csv")

    q = bench.quantize(mixed, REAL_METHOD)
    export_dir = out / "export"
    export_model(q, bench.calib_x[:1], export_dir, name=REAL_MODEL)
    check = verify_layer(
        export_dir, REAL_RTL_LAYER, rows=REAL_RTL_ARRAY[0], cols=REAL_RTL_ARRAY[1], pe_kind="bitfusion", images=1
    )
    path = out / "rtl_check.json"
    record = write_rtl_check(path, check, mixed[REAL_RTL_LAYER], model=REAL_MODEL)
    written["real_rtl_check"] = path

    table = Table(title=f"{REAL_MODEL} on {REAL_CHIP}: ILP under {', '.join(REAL_BUDGETS)}, {REAL_METHOD} weights")
    for col in ("assignment", "test accuracy (fake-quant / integer)", "latency (us)", "weights (KiB)"):
        table.add_column(col, justify="right" if col != "assignment" else "left")
    for r in quality.itertuples():
        acc = f"{r.fakequant_accuracy:.1f}%" + ("" if pd.isna(r.integer_accuracy) else f" / {r.integer_accuracy:.1f}%")
        lat = "" if pd.isna(r.latency_us) else f"{r.latency_us:.2f}"
        size = "" if pd.isna(r.weight_bits) else f"{r.weight_bits / 8 / 1024:.1f}"
        table.add_row(r.assignment, acc, lat, size)
    console.print(table)
    console.print(f"  ILP pairs: {point.pairs} ({solution.status}, {solution.solve_seconds * 1e3:.0f} ms)")
    verdict = "equal" if check.measured_cycles == check.predicted_cycles else "DIFFERENT"
    console.print(
        f"  RTL (Verilator, Bit-Fusion {record['array']}): {REAL_MODEL} layer {REAL_RTL_LAYER} at "
        f"{record['pair']}: {check.mismatches} mismatches over {check.macs:,} MACs; cycles measured "
        f"{check.measured_cycles:,}, sim predicts {check.predicted_cycles:,} ({verdict})"
    )
    for key, p in written.items():
        console.print(f"  {key}: {shown / p.relative_to(out)}")
    return written
