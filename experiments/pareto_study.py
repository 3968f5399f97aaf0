"""The Pareto study behind ``lowbit pareto``: the exact ILP front, the greedy and uniform baselines, each
point measured on the real model, and the comparison at every budget tried."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lowbit_core.files import atomic_path
from lowbit_core.tables import write_table
from search import AssignmentModel, InfeasibleBudgetError, Solution, build_problem
from search.baselines import greedy_front, uniform_solutions
from search.pareto import pareto_front
from search.validate import MAX_POINTS, check_count, check_seed

__all__ = ["ParetoStudy", "run_pareto_study", "compare_at_budgets", "REPORT_COLUMNS"]

#: Cost columns reported with every point when the cost table has them.
REPORT_COLUMNS = ("latency_us", "energy_pj", "weight_bits", "bops")


@dataclass
class ParetoStudy:
    """``points``: one row per ILP / greedy / uniform assignment; ``quality``: best measured accuracy of
    each method within each budget tried (None when nothing was measured)."""

    points: pd.DataFrame
    quality: pd.DataFrame | None
    solutions: dict[str, list[Solution]] = field(repr=False)
    paths: dict[str, Path] = field(default_factory=dict)


def _points_frame(kinds: Mapping[str, Sequence[Solution]], columns: Sequence[str]) -> pd.DataFrame:
    rows = []
    for kind, sols in kinds.items():
        for i, s in enumerate(sols):
            rows.append(
                {
                    "kind": kind,
                    "point": i,
                    "sensitivity": s.sensitivity,
                    **{c: s.totals[c] for c in columns},
                    "status": s.status,
                    "pairs": s.pairs_string(),
                    "label": s.problem.pair_labels[int(s.choice[0])] if kind == "uniform" else f"{kind}{i}",
                }
            )
    return pd.DataFrame(rows)


def compare_at_budgets(points: pd.DataFrame, column: str, metric: str = "accuracy") -> pd.DataFrame:
    """Best ``metric`` of each kind among its points with ``column`` total <= each budget tried; the
    budgets are every point's ``column`` total.  NaN where a kind has no point within the budget."""
    budgets = np.unique(points[column].to_numpy())
    kinds = list(dict.fromkeys(points["kind"]))
    out = {"budget": budgets}
    for kind in kinds:
        part = points[points.kind == kind]
        best = [part.loc[part[column] <= b, metric].max() if (part[column] <= b).any() else np.nan for b in budgets]
        out[f"{kind}_{metric}"] = np.asarray(best, dtype=np.float64)
    frame = pd.DataFrame(out).rename(columns={"budget": f"{column}_budget"})
    if {"ilp", "greedy"} <= set(kinds):
        frame[f"ilp_minus_greedy_{metric}"] = frame[f"ilp_{metric}"] - frame[f"greedy_{metric}"]
    return frame


def _check_measurable(model_name: str, method: str, user: bool = False) -> None:
    """A built-in model (or a user's, already loaded) and a quantizer the measurement knows (imports torch, so
    only when measuring)."""
    from experiments.quantize import METHODS
    from quant.errors import QuantInputError
    from quant.models import MODELS

    if not user and model_name not in MODELS:
        raise QuantInputError(f"unknown model {model_name!r} (built-in: {', '.join(MODELS)})")
    if method not in METHODS:
        raise QuantInputError(f"unknown quantizer {method!r} (allowed: {', '.join(METHODS)})")


def run_pareto_study(
    costs: pd.DataFrame,
    sensitivity: pd.DataFrame,
    out_dir: str | Path,
    x: str,
    y: str | None = None,
    n_points: int = 50,
    limits: Mapping[str, float] | None = None,
    model_name: str | None = None,
    method: str = "rtn",
    seed: int = 0,
    greedy_cost: str | None = None,
    progress: bool = False,
    inputs: Any = None,
    scheduler: str | None = None,
) -> ParetoStudy:
    """Solve the front, build the baselines, measure every point on ``model_name`` (if given), write
    ``points.csv``, ``quality.csv``, ``pareto.json`` and the accuracy plot into ``out_dir``.

    The arguments are checked before anything is solved: ``n_points`` in 1..:data:`~search.validate.MAX_POINTS`,
    ``seed`` >= 0, and (when measuring) a built-in ``model_name`` (or a user's model and data, ``inputs`` from
    :func:`experiments.user_inputs.load_model_and_data`, named ``model_name``) and a known ``method``.  Without
    test labels a point's measured quality is its top-1 agreement with the float model (``metric`` in
    ``pareto.json``).  ``scheduler`` (``local:N`` or a Dask scheduler address) measures the points on Dask
    workers."""
    n_points = check_count(n_points, "n_points", 1, MAX_POINTS)
    if scheduler is not None:
        from sim.scheduler import connect_scheduler, parse_scheduler

        _, address, _ = parse_scheduler(scheduler, None)
        if address is not None:
            connect_scheduler(address).close()
    seed = check_seed(seed)
    if model_name is not None:
        _check_measurable(model_name, method, user=inputs is not None)
    limits = dict(limits or {})
    greedy_cost = greedy_cost or x
    report = [c for c in REPORT_COLUMNS if c in costs.columns]
    columns = list(dict.fromkeys([x, *([y] if y else []), *limits, greedy_cost, *report]))
    problem = build_problem(costs, sensitivity, columns)
    start = time.perf_counter()
    model = AssignmentModel(problem, list(dict.fromkeys([x, *([y] if y else []), *limits])))
    ilp = pareto_front(problem, x, y, n_points=n_points, limits=limits, model=model, progress=progress)
    front_seconds = time.perf_counter() - start
    greedy, uniform = greedy_front(problem, greedy_cost), uniform_solutions(problem)
    if y is None:
        # the ILP is also solved at every baseline point's cost, so each budget compared has its exact optimum
        seen = {s.pairs_string() for s in ilp}
        for b in sorted({s.totals[x] for s in (*greedy, *uniform)} - {s.totals[x] for s in ilp}):
            try:
                extra = model.solve({**limits, x: b}, diagnose=False)
            except InfeasibleBudgetError:
                continue
            if extra.pairs_string() not in seen:
                seen.add(extra.pairs_string())
                ilp.append(extra)
        ilp.sort(key=lambda s: (s.totals[x], s.sensitivity))
    kinds = {"ilp": ilp, "greedy": greedy, "uniform": uniform}
    points = _points_frame(kinds, columns)
    points["meets_limits"] = np.all([points[c] <= v for c, v in limits.items()], axis=0) if limits else True

    quality = None
    if model_name is not None:
        from experiments.measure import measure_many

        every = [s.assignment()[["name", "w_bits", "a_bits"]] for sols in kinds.values() for s in sols]
        measured = measure_many(
            model_name, every, method=method, seed=seed, progress=progress, inputs=inputs, scheduler=scheduler
        )
        points["accuracy"] = [m.accuracy for m in measured]
        points["float_accuracy"] = [m.float_accuracy for m in measured]
        quality = compare_at_budgets(points[points.meets_limits], x)

    out = Path(out_dir)
    paths = {"points": write_table(points, out / "points.csv")}
    summary = {
        "x": x,
        "y": y,
        "limits": limits,
        "n_points_asked": n_points,
        "ilp_points": len(ilp),
        "greedy_points": len(kinds["greedy"]),
        "greedy_cost": greedy_cost,
        "front_seconds": front_seconds,
        "sensitivity_method": problem.method,
        "coupled": problem.coupled,
        "model": model_name,
        "quantizer": method,
        "seed": seed,
    }
    if model_name is not None:
        summary["metric"] = "agreement" if inputs is not None and inputs.test_y is None else "accuracy"
    if quality is not None:
        paths["quality"] = write_table(quality, out / "quality.csv")
        gap = quality["ilp_minus_greedy_accuracy"].dropna()
        summary["ilp_vs_greedy"] = {
            "budgets": int(len(gap)),
            "ilp_better": int((gap > 0).sum()),
            "equal": int((gap == 0).sum()),
            "greedy_better": int((gap < 0).sum()),
            "worst_ilp_minus_greedy": float(gap.min()) if len(gap) else None,
        }
        from experiments.plots import plot_accuracy_fronts

        pdf, png = plot_accuracy_fronts(
            points[points.meets_limits], out / "accuracy_fronts", title=f"{model_name} ({method}), measured"
        )
        paths["plot_pdf"], paths["plot_png"] = pdf, png
    with atomic_path(out / "pareto.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    paths["summary"] = out / "pareto.json"
    return ParetoStudy(points=points, quality=quality, solutions=kinds, paths=paths)
