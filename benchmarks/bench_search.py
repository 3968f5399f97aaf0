"""Benchmark the exact search on a ResNet-50-sized instance: one solve per budget tightness and 50-point Pareto
fronts, the exact pipeline against the plain model, in CPU seconds.

Run: ``python benchmarks/bench_search.py`` (options: ``--help``).  The last line is JSON:
``{"solve_cpu_s": {"0.3": ..}, "front_cpu_s": .., "front_held_cpu_s": .., "baseline_solve_cpu_s": {..}, ..}``.

Instance:
* Costs: ``sim.simulate("bitfusion_edge", "resnet50", coupled=True)``: 54 layers x 9 pairs
  w{8,4,2}a{8,4,2}, each layer charged at its consumer's activation width.
* Consumers: the real dataflow.  Block convs feed the next conv; a block's last conv and its
  downsample feed the next block's first conv.
* Ties (HAWQ-V3's rule): each ``downsample.0`` conv takes the pair of its block's first conv,
  because the two read the same input.  That gives 4 ties and 50 decision units.
* Sensitivity: synthetic, seeded: per-layer lognormal scale x (4^-w + 0.5 * 4^-a).
* Budgets: latency_us, energy_pj and weight_bits together, each at min + f * (max - min) of the
  uniform assignments' totals, for f = 0.3, 0.5, 0.7.

Measured, all in one process, CPU seconds (``time.process_time``; HiGHS runs single-threaded), min over
``--repeats``:
* solve: a fresh model's first solve of the three budgets to proven optimality, with the exact pipeline
  (``AssignmentModel``), with HiGHS alone on the same arrays (``prune=False``) and with the Pyomo reference
  model (``search.pyomo_model``, the code path before the pipeline: the baseline).  The optima are asserted equal.
* front: ``search.pareto.pareto_front(latency_us, 50 points)``, alone and with energy_pj and weight_bits held
  at f = 0.5, with the pipeline and with HiGHS alone; every point's sensitivity is asserted equal.
* held-out: ``--held-out N`` further seeds of the synthetic sensitivity (1..N), the three solves each: the
  largest pipeline solve time and the number of solves over 0.5 s with either model.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import AssignmentModel, build_problem  # noqa: E402
from search.baselines import greedy_front  # noqa: E402
from search.pareto import pareto_front  # noqa: E402
from search.problem import Problem  # noqa: E402
from search.pyomo_model import PyomoAssignmentModel  # noqa: E402
from sim import simulate  # noqa: E402

BUDGETS = ("latency_us", "energy_pj", "weight_bits")
FRACTIONS = (0.3, 0.5, 0.7)


def resnet50_dataflow(names: list[str]) -> tuple[list[int], list[int]]:
    """Per layer (execution order): the consumer index (-1 for fc) and the group label (the downsample conv
    joins its block's first conv)."""
    index = {n: i for i, n in enumerate(names)}
    blocks = sorted(
        {m.group(1) for n in names if (m := re.match(r"(layer\d+\.\d+)\.", n))}, key=lambda b: index[f"{b}.conv1"]
    )
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
    sens["sensitivity"] = sens.layer.map(scale) * (4.0**-sens.w_bits + 0.5 * 4.0**-sens.a_bits)
    return costs, sens


def limits_at(problem: Problem, f: float) -> dict[str, float]:
    totals = problem.uniform_totals()[1]
    return {b: float(totals[b].min() + f * (totals[b].max() - totals[b].min())) for b in BUDGETS}


def cpu(fn):
    """(result, CPU seconds) of ``fn()``."""
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def best_of(repeats: int, fn) -> tuple[object, float]:
    results = [cpu(fn) for _ in range(repeats)]
    return results[-1][0], min(t for _, t in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (default 3)")
    ap.add_argument("--points", type=int, default=50, help="Pareto points (default 50)")
    ap.add_argument("--held-out", type=int, default=10, help="further sensitivity seeds solved (default 10)")
    args = ap.parse_args()

    costs, sens = instance()
    columns = [*BUDGETS, "bops"]
    problem = build_problem(costs, sens, columns)
    print(
        f"instance: ResNet-50 on bitfusion_edge, coupled, {problem.n_layers} layers, {problem.n_units} units, "
        f"{problem.n_pairs} pairs; budgets {', '.join(BUDGETS)}; CPU seconds, min of {args.repeats}"
    )
    _, t_build = best_of(args.repeats, lambda: AssignmentModel(problem, BUDGETS))
    _, t_pyomo_build = best_of(args.repeats, lambda: PyomoAssignmentModel(problem, BUDGETS))
    print(f"  model build: arrays + highspy {t_build:.3f} s, Pyomo {t_pyomo_build:.3f} s (pyomo imported)")

    solve_cpu, plain_cpu, pyomo_cpu, pruned = {}, {}, {}, {}
    print(f"  {'f':>4} {'pipeline':>9} {'HiGHS alone':>12} {'Pyomo':>8}  {'pruned':>7}  sensitivity")
    for f in FRACTIONS:
        limits = limits_at(problem, f)

        def fresh(prune: bool = True, limits=limits):
            model = AssignmentModel(problem, BUDGETS, prune=prune)
            return model.solve(limits), model.last_stats

        (sol, stats), solve_cpu[f] = best_of(args.repeats, fresh)
        (plain, _), plain_cpu[f] = best_of(args.repeats, lambda: fresh(False))
        ref, pyomo_cpu[f] = best_of(args.repeats, lambda lim=limits: PyomoAssignmentModel(problem, BUDGETS).solve(lim))
        for other in (plain, ref):
            assert other.status == "optimal" and abs(other.sensitivity - sol.sensitivity) <= 1e-9 * sol.sensitivity
        assert sol.status == "optimal" and sol.gap == 0.0
        pruned[f] = stats.pruned
        print(
            f"  {f:>4} {solve_cpu[f]:>8.3f}s {plain_cpu[f]:>11.3f}s {pyomo_cpu[f]:>7.3f}s  "
            f"{stats.pruned:>3}/{stats.choices}  {sol.sensitivity:.6g} (same optimum)"
        )

    held = {b: v for b, v in limits_at(problem, 0.5).items() if b != "latency_us"}
    fronts: dict[str, dict[str, float]] = {}
    for label, hold in (("alone", {}), ("held", held)):

        def front(prune: bool, hold=hold):
            model = AssignmentModel(problem, ["latency_us", *hold], prune=prune)
            return pareto_front(problem, "latency_us", n_points=args.points, limits=hold, model=model)

        fast, t_fast = best_of(args.repeats, lambda: front(True))
        slow, t_slow = best_of(1, lambda: front(False))
        assert [round(s.sensitivity, 9) for s in fast] == [round(s.sensitivity, 9) for s in slow]
        fronts[label] = {"pipeline": t_fast, "plain": t_slow}
        what = "latency_us alone" if not hold else "latency_us, energy+weight held at f=0.5"
        print(
            f"  front {args.points} ε, {what}: pipeline {t_fast:.2f} s, HiGHS alone {t_slow:.2f} s "
            f"({t_slow / t_fast:.1f}x); {len(fast)} nondominated points, the same with both"
        )

    worst, slow_plain, slow_fast, n_held = 0.0, 0, 0, 0
    for seed in range(1, args.held_out + 1):
        c, s = instance(seed)
        p = build_problem(c, s, columns)
        for f in FRACTIONS:
            limits = limits_at(p, f)
            a, t_a = cpu(lambda p=p, lim=limits: AssignmentModel(p, BUDGETS).solve(lim))
            b, t_b = cpu(lambda p=p, lim=limits: AssignmentModel(p, BUDGETS, prune=False).solve(lim))
            assert abs(a.sensitivity - b.sensitivity) <= 1e-9 * b.sensitivity
            worst = max(worst, t_a)
            slow_fast += t_a > 0.5
            slow_plain += t_b > 0.5
            n_held += 1
    if n_held:
        print(
            f"  held-out: {n_held} solves (seeds 1..{args.held_out}), same optima; pipeline max {worst:.3f} s; "
            f"over 0.5 s: pipeline {slow_fast}, HiGHS alone {slow_plain}"
        )

    walk = greedy_front(problem, "latency_us")
    model = AssignmentModel(problem, ["latency_us"])
    ratios = [
        f"{g.sensitivity / model.solve({'latency_us': g.totals['latency_us']}).sensitivity:.2f}x"
        for g in walk[len(walk) // 4 :: len(walk) // 4][:3]
    ]
    print(
        f"  greedy walk on latency_us: {len(walk)} points; its total sensitivity over the ILP's at the same "
        f"latency: {', '.join(ratios)}"
    )
    print(
        json.dumps(
            {
                "solve_cpu_s": {str(f): round(t, 4) for f, t in solve_cpu.items()},
                "front_cpu_s": round(fronts["alone"]["pipeline"], 3),
                "front_held_cpu_s": round(fronts["held"]["pipeline"], 3),
                "baseline_solve_cpu_s": {str(f): round(t, 4) for f, t in pyomo_cpu.items()},
                "plain_solve_cpu_s": {str(f): round(t, 4) for f, t in plain_cpu.items()},
                "plain_front_cpu_s": round(fronts["alone"]["plain"], 3),
                "plain_front_held_cpu_s": round(fronts["held"]["plain"], 3),
                "held_out_max_solve_cpu_s": round(worst, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
