"""The exact pipeline (LP, heuristic, Lagrangian pruning, HiGHS from a start) against the plain model, the Pyomo
reference model and brute force; the pairwise form and the min-marginal bound against enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from search import AssignmentModel, InfeasibleBudgetError, build_problem
from search.lagrange import min_marginals
from search.pairwise import pairwise_terms
from search.problem import Problem
from search.pyomo_model import PyomoAssignmentModel

COLUMNS = ("c0", "c1", "c2")


def random_problem(
    rng: np.random.Generator, n_layers: int, n_pairs: int, coupled: bool, tie: bool, skips: bool
) -> Problem:
    """Random costs (coupled or not), consumers (a chain or random later layers) and an optional tie."""
    pairs = [(w, a) for w in (8, 4, 2) for a in (8, 4, 2)][:n_pairs]
    outs = sorted({a for _, a in pairs}) if coupled else [None]
    consumer = [
        int(rng.integers(i + 1, n_layers)) if skips and i < n_layers - 1 else (i + 1 if i < n_layers - 1 else -1)
        for i in range(n_layers)
    ]
    group = list(range(n_layers))
    if tie and n_layers > 3:
        group[n_layers - 2] = 1
    rows, sens = [], []
    scale = rng.lognormal(0.0, 1.0, n_layers)
    for layer in range(n_layers):
        for w, a in pairs:
            for o in outs:
                row = {
                    "layer": layer,
                    "name": f"L{layer}",
                    "w_bits": w,
                    "a_bits": a,
                    "group": group[layer],
                    "consumer": consumer[layer],
                }
                if coupled:
                    row["out_bits"] = o
                base = scale[layer] * (w + a + (o or 0))
                row.update({c: float(base * rng.uniform(0.5, 1.5)) for c in COLUMNS})
                rows.append(row)
            sens.append(
                {
                    "layer": layer,
                    "w_bits": w,
                    "a_bits": a,
                    "sensitivity": float(scale[layer] * (4.0**-w + 0.5 * 4.0**-a) * rng.uniform(0.5, 2)),
                }
            )
    return build_problem(pd.DataFrame(rows), pd.DataFrame(sens), list(COLUMNS))


def limits_at(problem: Problem, budgets: list[str], fractions: list[float]) -> dict[str, float]:
    totals = problem.uniform_totals()[1]
    return {b: float(totals[b].min() + f * (totals[b].max() - totals[b].min())) for b, f in zip(budgets, fractions)}


def _instances(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        problem = random_problem(
            rng,
            n_layers=int(rng.integers(4, 14)),
            n_pairs=int(rng.integers(3, 10)),
            coupled=bool(rng.random() < 0.7),
            tie=bool(rng.random() < 0.3),
            skips=bool(rng.random() < 0.3),
        )
        budgets = list(COLUMNS[: int(rng.integers(1, 4))])
        yield problem, budgets, limits_at(problem, budgets, list(rng.uniform(0.05, 0.8, len(budgets))))


def _optimum(model, limits) -> float | None:
    try:
        return model.solve(limits).sensitivity
    except InfeasibleBudgetError:
        return None


@pytest.mark.parametrize("seed", range(4))
def test_the_pruned_model_has_the_plain_models_optimum(seed: int) -> None:
    """60 random instances per seed (240 in all): the same optimum (or the same infeasibility) with and without
    the pipeline, and pruning did remove choices on most of them."""
    pruned_some = 0
    for problem, budgets, limits in _instances(60, seed):
        fast = AssignmentModel(problem, budgets)
        plain = AssignmentModel(problem, budgets, prune=False)
        got, want = _optimum(fast, limits), _optimum(plain, limits)
        assert (got is None) == (want is None), (limits, got, want)
        if want is not None:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
            solution = fast.solve(limits)
            assert all(solution.totals[b] <= limits[b] * (1 + 1e-9) for b in budgets)
            pruned_some += fast.last_stats.pruned > 0
    assert pruned_some >= 20


def test_the_pipeline_agrees_with_the_pyomo_reference_model() -> None:
    for problem, budgets, limits in _instances(30, 7):
        got = _optimum(AssignmentModel(problem, budgets), limits)
        want = _optimum(PyomoAssignmentModel(problem, budgets), limits)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_the_pipeline_matches_brute_force_on_small_instances() -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        problem = random_problem(
            rng,
            n_layers=int(rng.integers(3, 6)),
            n_pairs=4,
            coupled=True,
            tie=bool(rng.random() < 0.4),
            skips=bool(rng.random() < 0.5),
        )
        limits = limits_at(problem, ["c0", "c1"], list(rng.uniform(0.1, 0.6, 2)))
        choices = np.array(list(itertools.product(range(problem.n_pairs), repeat=problem.n_units)))
        sens, totals = problem.evaluate(choices)
        ok = (totals["c0"] <= limits["c0"]) & (totals["c1"] <= limits["c1"])
        got = _optimum(AssignmentModel(problem, ["c0", "c1"]), limits)
        if not ok.any():
            assert got is None
        else:
            assert got == pytest.approx(float(sens[ok].min()), rel=1e-9, abs=1e-12)


def test_minimizing_a_cost_column_uses_the_pipeline_too() -> None:
    for problem, budgets, limits in _instances(20, 3):
        fast = AssignmentModel(problem, ["c0", *budgets])
        plain = AssignmentModel(problem, ["c0", *budgets], prune=False)
        others = {b: v for b, v in limits.items() if b != "c0"}
        assert fast.minimum("c0", others) == pytest.approx(plain.minimum("c0", others), rel=1e-9)


def _enumerate(problem: Problem, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    choices = np.array(list(itertools.product(range(problem.n_pairs), repeat=problem.n_units)))
    sens, totals = problem.evaluate(choices)
    values = weights[0] * sens + sum(w * totals[c] for w, c in zip(weights[1:], COLUMNS))
    return choices, values


@pytest.mark.parametrize("seed", range(8))
def test_pairwise_form_and_min_marginals_against_enumeration(seed: int) -> None:
    """The pairwise totals equal Problem.evaluate; the min-marginals are lower bounds everywhere and exact when
    the units' edges form a forest (a tie across a chain of six layers closes a cycle)."""
    rng = np.random.default_rng(seed)
    tie = seed % 2 == 1
    problem = random_problem(
        rng,
        n_layers=6 if tie else int(rng.integers(3, 6)),
        n_pairs=3 if tie else 4,
        coupled=True,
        tie=tie,
        skips=seed % 3 == 0,
    )
    tables = {"sensitivity": problem.sensitivity, **problem.costs}
    terms = pairwise_terms(problem, tables, {k: 1.0 for k in tables})
    weights = rng.uniform(0.0, 2.0, 1 + len(COLUMNS))
    choices, values = _enumerate(problem, weights)
    assert np.allclose([terms.combine(weights).totals(c)[0] for c in choices], values)
    bound = min_marginals(terms.combine(weights))
    exact = np.array(
        [[values[choices[:, u] == p].min() for p in range(problem.n_pairs)] for u in range(problem.n_units)]
    )
    assert (bound <= exact + 1e-9 * np.abs(exact).max()).all()
    if _is_forest(problem.n_units, terms.edges):
        assert np.allclose(bound, exact)


def _is_forest(n_units: int, edges: np.ndarray) -> bool:
    root = list(range(n_units))

    def find(a: int) -> int:
        while root[a] != a:
            a = root[a]
        return a

    for u, v in edges:
        ru, rv = find(int(u)), find(int(v))
        if ru == rv:
            return False
        root[ru] = rv
    return True
