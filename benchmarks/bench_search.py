"""Benchmark the exact search on a ResNet-50-sized instance: model build, one solve, a 50-point Pareto front.

Run: ``python benchmarks/bench_search.py`` (options: ``--help``).

Instance:
* Costs: ``sim.simulate("bitfusion_edge", "resnet50", coupled=True)``: 54 layers x 9 pairs
  w{8,4,2}a{8,4,2}, each layer charged at its consumer's activation width.
* Consumers: the real dataflow.  Block convs feed the next conv; a block's last conv and its
  downsample feed the next block's first conv.
* Ties (HAWQ-V3's rule): each ``downsample.0`` conv takes the pair of its block's first conv,
  because the two read the same input.  That gives 4 ties and 50 decision units.
* Sensitivity: synthetic, seeded: per-layer lognormal scale x (4^-w + 0.5 * 4^-a).
* Budgets: latency_us, energy_pj and weight_bits together, each at min + f * (max - min) of the
  uniform assignments' totals, for several f.

Measured (min and median over ``--repeats``):
* build: build_problem, and the AssignmentModel (Pyomo model) build once pyomo is imported.
* solve: a fresh model's first solve of the three budgets, to proven optimality (status optimal,
  gap 0).
* front: ``search.pareto.pareto_front(latency_us, 50 points)`` on one persistent model, alone and
  with energy_pj and weight_bits held.
* quality, not speed: the greedy walk (search.baselines) against the ILP at the same latency.

Baseline, in the same process: the same 50 ε values, each solved on a model rebuilt from scratch
(``search.ilp.solve``, the non-persistent path) and without reusing points.  With ``--baseline-points
N < 50`` it runs on N evenly spread ε values and is extrapolated to 50.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import AssignmentModel, build_problem  # noqa: E402
from search.baselines import greedy_front  # noqa: E402
from search.ilp import solve  # noqa: E402
from search.pareto import pareto_front  # noqa: E402
from search.problem import Problem  # noqa: E402
from sim import simulate  # noqa: E402

BUDGETS = ("latency_us", "energy_pj", "weight_bits")
FRACTIONS = (0.3, 0.5, 0.7)


def resnet50_dataflow(names: list[str]) -> tuple[list[int], list[int]]:
    """Per layer (execution order): the consumer index (-1 for fc) and the group label (the downsample conv
    joins its block's first conv)."""
    index = {n: i for i, n in enumerate(names)}
    blocks = sorted({m.group(1) for n in names if (m := re.match(r"(layer\d+\.\d+)\.", n))},
                    key=lambda b: index[f"{b}.conv1"])
    consumer = [-1] * len(names)
    group = list(range(len(names)))
    consumer[index["conv1"]] = index[f"{blocks[0]}.conv1"]
    for k, b in enumerate(blocks):
        nxt = index[f"{blocks[k + 1]}.conv1"] if k + 1 < len(blocks) else index["fc"]
        consumer[index[f"{b}.conv1"]] = index[f"{b}.conv2"]
        consumer[index[f"{b}.conv2"]] = index[f"{b}.conv3"]
        consumer[index[f"{b}.conv3"]] = nxt
        if f"{b}.downsample.0" in index:
            consumer[index[f"{b}.downsample.0"]] = nxt
            group[index[f"{b}.downsample.0"]] = index[f"{b}.conv1"]
    return consumer, group


def instance(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    costs = simulate("bitfusion_edge", "resnet50", coupled=True)
    names = costs.drop_duplicates("layer").sort_values("layer").name.tolist()
    consumer, group = resnet50_dataflow(names)
    costs["consumer"] = costs.layer.map(dict(enumerate(consumer)))
    costs["group"] = costs.layer.map(dict(enumerate(group)))
    rng = np.random.default_rng(seed)
    scale = dict(enumerate(rng.lognormal(0.0, 1.0, len(names))))
    sens = costs.drop_duplicates(["layer", "w_bits", "a_bits"])[["layer", "name", "w_bits", "a_bits"]].copy()
    sens["sensitivity"] = sens.layer.map(scale) * (4.0 ** -sens.w_bits + 0.5 * 4.0 ** -sens.a_bits)
    return costs, sens


def limits_at(problem: Problem, f: float) -> dict[str, float]:
    totals = problem.uniform_totals()[1]
    return {b: float(totals[b].min() + f * (totals[b].max() - totals[b].min())) for b in BUDGETS}


def count_solves(model: AssignmentModel) -> list[int]:
    """Count ``model.solve`` calls (the returned one-element list is updated in place)."""
    calls, solve_once = [0], model.solve

    def counted(*args, **kwargs):
        calls[0] += 1
        return solve_once(*args, **kwargs)

    model.solve = counted
    return calls


def stats(values: list[float]) -> str:
    return f"min {min(values):7.3f} s  median {statistics.median(values):7.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (default 3)")
    ap.add_argument("--points", type=int, default=50, help="Pareto points (default 50)")
    ap.add_argument("--baseline-points", type=int, default=50,
                    help="ε values solved by the rebuild-per-point baseline, extrapolated to --points (default 50)")
    args = ap.parse_args()

    costs, sens = instance()
    columns = [*BUDGETS, "bops"]
    problem = build_problem(costs, sens, columns)
    print(f"instance: ResNet-50 on bitfusion_edge, coupled, {problem.n_layers} layers, {problem.n_units} units, "
          f"{problem.n_pairs} pairs; budgets {', '.join(BUDGETS)}")

    # --- build ------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    AssignmentModel(problem, BUDGETS)
    t_cold = time.perf_counter() - t0
    t_problem, t_model = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        problem = build_problem(costs, sens, columns)
        t1 = time.perf_counter()
        model = AssignmentModel(problem, BUDGETS)
        t_problem.append(t1 - t0)
        t_model.append(time.perf_counter() - t1)
    print(f"  build_problem           {stats(t_problem)}")
    print(f"  AssignmentModel build   {stats(t_model)}   (first in the process {t_cold:.2f} s: imports pyomo; "
          f"{len(model._product_layers)} layers need product variables)")

    # --- one solve of all three budgets, fresh model each time ------------------------------------------
    solve_times: dict[float, list[float]] = {}
    for f in FRACTIONS:
        limits = limits_at(problem, f)
        for _ in range(args.repeats):
            s = AssignmentModel(problem, BUDGETS).solve(limits)
            assert s.status == "optimal" and s.gap == 0.0, (s.status, s.gap)
            solve_times.setdefault(f, []).append(s.solve_seconds)
        pairs = s.assignment().groupby(["w_bits", "a_bits"]).size().sort_index(ascending=False)
        print(f"  solve, 3 budgets at f={f}: {stats(solve_times[f])}  optimal, gap 0; sensitivity "
              f"{s.sensitivity:.4g}; " + " ".join(f"w{w}a{a}x{n}" for (w, a), n in pairs.items()))
    all_solves = [t for ts in solve_times.values() for t in ts]

    # --- Pareto fronts on one persistent model -------------------------------------------------------------
    held = {b: v for b, v in limits_at(problem, 0.5).items() if b != "latency_us"}
    fronts: dict[str, list[float]] = {}
    for label, hold in (("latency_us alone", {}), ("latency_us, energy+weight held at f=0.5", held)):
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model = AssignmentModel(problem, ["latency_us", *hold])
            calls = count_solves(model)
            front = pareto_front(problem, "latency_us", n_points=args.points, limits=hold, model=model)
            fronts.setdefault(label, []).append(time.perf_counter() - t0)
        print(f"  front {args.points} ε, {label}: {stats(fronts[label])} (model build included); {calls[0]} solves "
              f"(2 for the range's ends), {len(front)} nondominated points")

    # --- quality: the greedy walk (Pandey et al. / AIMET phase 2) against the ILP at the same latency ---------
    t0 = time.perf_counter()
    walk = greedy_front(problem, "latency_us")
    t_greedy = time.perf_counter() - t0
    model = AssignmentModel(problem, ["latency_us"])
    ratios = []
    for g in walk[len(walk) // 4::len(walk) // 4][:3]:
        best = model.solve({"latency_us": g.totals["latency_us"]})
        ratios.append(f"{g.totals['latency_us'] / 1e3:.1f} ms: greedy {g.sensitivity:.4g}, ILP {best.sensitivity:.4g} "
                      f"({g.sensitivity / best.sensitivity:.2f}x)")
    print(f"  greedy walk on latency_us: {len(walk)} points in {t_greedy:.2f} s; total sensitivity at the greedy "
          f"point's latency: " + "; ".join(ratios))

    # --- baseline: rebuild the model for every ε, no reuse ---------------------------------------------------
    label = "latency_us alone"
    lo = AssignmentModel(problem, ["latency_us"]).minimum("latency_us")
    hi = AssignmentModel(problem, ["latency_us"]).solve({}).totals["latency_us"]
    eps = np.linspace(hi, lo, args.points)
    pick = np.unique(np.linspace(0, args.points - 1, min(args.baseline_points, args.points)).round().astype(int))
    t0 = time.perf_counter()
    for k in pick:
        solve(problem, {"latency_us": float(eps[k])})
    t_base = (time.perf_counter() - t0) * args.points / len(pick)
    extrapolated = "" if len(pick) == args.points else f" (extrapolated from {len(pick)} ε)"
    print(f"baseline: {args.points} ε solved on a model rebuilt from scratch each time: {t_base:.2f} s{extrapolated}")

    best_front = min(fronts[label])
    front_goal = "met" if best_front <= 15 else "NOT met"
    print(f"SUMMARY bench_search: build {min(t_model):.2f} s; one 3-budget solve to proven optimality "
          f"min {min(all_solves):.2f} s, median {statistics.median(all_solves):.2f} s, max {max(all_solves):.2f} s "
          f"(goal 0.5 s: {'met' if statistics.median(all_solves) <= 0.5 else 'NOT met'}); "
          f"{args.points}-point latency front {best_front:.2f} s (goal 15 s: {front_goal}) "
          f"vs {t_base:.2f} s rebuilding per point: {t_base / best_front:.1f}x; with energy+weight held "
          f"{min(fronts[list(fronts)[1]]):.2f} s")


if __name__ == "__main__":
    main()
