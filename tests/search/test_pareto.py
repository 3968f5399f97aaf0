"""Pareto fronts: ε-constraint sweeps against brute-force fronts of small problems."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import AssignmentModel, InfeasibleBudgetError, SearchInputError, build_problem
from search.pareto import front_frame, nondominated_mask, pareto_front
from search.problem import Problem

PAIRS = [(8, 8), (8, 4), (4, 8), (4, 4), (2, 2)]
COLUMNS = ("bops", "latency_us", "energy_pj")


@st.composite
def problems(draw, coupled: bool | None = None, max_layers: int = 5) -> Problem:
    """Small problems with integer costs and sensitivities (so ties and exact comparisons are meaningful),
    optional ties between two layers, optional coupling (one row per consumer width)."""
    n_layers = draw(st.integers(1, max_layers))
    pairs = draw(st.lists(st.sampled_from(PAIRS), min_size=2, max_size=3, unique=True))
    coupled = draw(st.booleans()) if coupled is None else coupled
    outs = sorted({a for _, a in pairs}) if coupled else [None]
    rows, sens = [], []
    for layer in range(n_layers):
        for w, a in pairs:
            sens.append((layer, w, a, draw(st.integers(0, 30))))
            for o in outs:
                row = {"layer": layer, "w_bits": w, "a_bits": a}
                if o is not None:
                    row["out_bits"] = o
                row.update({c: draw(st.integers(0, 20)) for c in COLUMNS})
                rows.append(row)
    costs = pd.DataFrame(rows)
    if n_layers >= 3 and draw(st.booleans()):
        costs["group"] = costs.layer.where(costs.layer != 2, 0)  # tie layers 0 and 2
    return build_problem(costs, pd.DataFrame(sens, columns=["layer", "w_bits", "a_bits", "sensitivity"]), COLUMNS)


def everything(problem: Problem) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every assignment of the problem with its exact totals."""
    choices = np.array(list(itertools.product(range(problem.n_pairs), repeat=problem.n_units)), dtype=np.int64)
    sens, totals = problem.evaluate(choices)
    return choices, sens, totals


def brute_front(problem: Problem, swept: list[str], limits: dict[str, float]) -> np.ndarray:
    """Unique rows (swept totals..., sensitivity) of the exhaustive nondominated set, sorted by the first."""
    _, sens, totals = everything(problem)
    ok = np.all([totals[b] <= v for b, v in limits.items()], axis=0) if limits else np.ones(len(sens), bool)
    values = np.column_stack([*(totals[c][ok] for c in swept), sens[ok]])
    return sort_rows(np.unique(values[nondominated_mask(values)], axis=0))


def sort_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


def as_rows(front: list, swept: list[str]) -> np.ndarray:
    return sort_rows(np.array([[*(s.totals[c] for c in swept), s.sensitivity] for s in front]))


# --- nondominated_mask ------------------------------------------------------------------------------------


def test_nondominated_mask_by_hand() -> None:
    v = np.array([[1, 5], [2, 2], [3, 3], [2, 2], [5, 1], [1, 6], [4, 1]])
    assert nondominated_mask(v).tolist() == [True, True, False, True, False, False, True]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=40))
def test_nondominated_mask_invariants(points: list[tuple[int, int, int]]) -> None:
    v = np.array(points, dtype=float)
    keep = nondominated_mask(v)
    dominates = lambda a, b: (a <= b).all() and (a < b).any()
    for i in range(len(v)):
        dominated = any(dominates(v[j], v[i]) for j in range(len(v)))
        assert keep[i] == (not dominated)
        if dominated:  # some kept point dominates it (finite sets have nondominated dominators)
            assert any(dominates(v[j], v[i]) for j in np.flatnonzero(keep))


def test_nondominated_mask_blocks_and_errors() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(0, 60, size=(2500, 2)).astype(float)  # more rows than one block of the pairwise test
    expected = np.array([not ((v <= row).all(1) & (v < row).any(1)).any() for row in v])
    assert (nondominated_mask(v) == expected).all() and 1 < expected.sum() < 100
    with pytest.raises(SearchInputError, match="2-D"):
        nondominated_mask(np.zeros(3))
    with pytest.raises(SearchInputError, match="NaN"):
        nondominated_mask(np.array([[np.nan, 1.0]]))


# --- the sweep ----------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.booleans(), st.data())
def test_exact_front_equals_brute_force(problem: Problem, hold: bool, data) -> None:
    limits = {}
    if hold:  # hold energy at a limit some assignment meets
        _, _, totals = everything(problem)
        limits = {"energy_pj": float(data.draw(st.sampled_from(sorted(set(totals["energy_pj"].tolist())))))}
    front = pareto_front(problem, "latency_us", limits=limits, exact=True)
    expected = brute_front(problem, ["latency_us"], limits)
    np.testing.assert_allclose(as_rows(front, ["latency_us"]), expected, rtol=1e-12)
    assert all(s.status == "optimal" and s.totals["energy_pj"] <= limits.get("energy_pj", np.inf) for s in front)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(1, 12))
def test_sampled_front_points_are_optimal(problem: Problem, n_points: int) -> None:
    _, sens, totals = everything(problem)
    front = pareto_front(problem, "bops", n_points=n_points)
    assert 1 <= len(front) <= n_points + 1
    xs = [s.totals["bops"] for s in front]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert [s.sensitivity for s in front] == sorted((s.sensitivity for s in front), reverse=True)
    for s in front:  # each point is the exact optimum under the cap it was solved with
        cap = s.limits.get("bops", np.inf) + 1e-9
        assert s.sensitivity == pytest.approx(sens[totals["bops"] <= cap].min(), abs=1e-9)
    # the ends: the unconstrained optimum and the cheapest assignment's best sensitivity
    assert front[-1].sensitivity == pytest.approx(sens.min())
    cheapest = totals["bops"].min()
    if n_points > 1:  # (one point is the unconstrained optimum alone)
        assert front[0].totals["bops"] == cheapest
        assert front[0].sensitivity == pytest.approx(sens[totals["bops"] == cheapest].min())
    # weakly nondominated: nothing at most as expensive is less sensitive
    for s in front:
        assert s.sensitivity == pytest.approx(sens[totals["bops"] <= s.totals["bops"]].min(), abs=1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_layers=4))
def test_two_column_front(problem: Problem) -> None:
    _, sens, totals = everything(problem)
    front = pareto_front(problem, "latency_us", "energy_pj", n_points=16)
    values = np.array([[s.sensitivity, s.totals["latency_us"], s.totals["energy_pj"]] for s in front])
    assert nondominated_mask(values).all()
    for s in front:  # optimal under its own two caps
        ok = (totals["latency_us"] <= s.limits.get("latency_us", np.inf) + 1e-9) & (
            totals["energy_pj"] <= s.limits.get("energy_pj", np.inf) + 1e-9
        )
        assert s.sensitivity == pytest.approx(sens[ok].min(), abs=1e-9)
    # the sampled front contains the exact 3-D front's corner points: least sensitivity overall...
    assert min(values[:, 0]) == pytest.approx(sens.min())
    # ...and the cheapest latency and the cheapest energy reachable
    assert min(values[:, 1]) == totals["latency_us"].min()
    assert min(values[:, 2]) == totals["energy_pj"].min()


def _fixed_problem() -> Problem:
    rng = np.random.default_rng(3)
    n, pairs = 7, [(8, 8), (4, 8), (4, 4)]
    costs = pd.DataFrame(
        [
            {
                "layer": l,
                "w_bits": w,
                "a_bits": a,
                "bops": w * a * int(rng.integers(1, 9)),
                "latency_us": float(rng.uniform(1, 5)) * (w + a),
                "energy_pj": float(rng.uniform(1, 9)),
            }
            for l in range(n)
            for w, a in pairs
        ]
    )
    sens = pd.DataFrame(
        [
            {
                "layer": l,
                "w_bits": w,
                "a_bits": a,
                "sensitivity": float(rng.lognormal()) * 4.0**-w + float(rng.lognormal()) * 4.0**-a,
            }
            for l in range(n)
            for w, a in pairs
        ]
    )
    return build_problem(costs, sens, COLUMNS)


def test_deterministic_and_one_model() -> None:
    problem = _fixed_problem()
    model = AssignmentModel(problem, ["bops", "energy_pj"])
    first = pareto_front(problem, "bops", n_points=15, model=model, limits={"energy_pj": 30.0})
    again = pareto_front(problem, "bops", n_points=15, model=model, limits={"energy_pj": 30.0}, progress=True)
    fresh = pareto_front(problem, "bops", n_points=15, limits={"energy_pj": 30.0})
    key = lambda front: [s.choice.tolist() for s in front]
    assert key(first) == key(again) == key(fresh)
    assert len(first) > 3 and all(s.limits["energy_pj"] == 30.0 for s in first)


def test_front_frame() -> None:
    problem = _fixed_problem()
    front = pareto_front(problem, "bops", n_points=8)
    frame = front_frame(front)
    assert list(frame.columns) == ["point", "sensitivity", *COLUMNS, "status", "gap", "solve_seconds", "pairs"]
    assert frame.point.tolist() == list(range(len(front)))
    assert frame.pairs.iloc[0] == front[0].pairs_string() and frame.pairs.iloc[0].count(",") == problem.n_layers - 1
    assert frame.bops.tolist() == [s.totals["bops"] for s in front]
    assert list(front_frame(front, ["bops"]).columns)[2] == "bops"
    with pytest.raises(SearchInputError, match="unknown column"):
        front_frame(front, ["area"])
    assert front_frame([]).empty


def test_errors() -> None:
    problem = _fixed_problem()
    with pytest.raises(SearchInputError, match="unknown cost column 'area'"):
        pareto_front(problem, "area")
    with pytest.raises(SearchInputError, match="same column"):
        pareto_front(problem, "bops", "bops")
    with pytest.raises(SearchInputError, match="n_points"):
        pareto_front(problem, "bops", n_points=0)
    with pytest.raises(SearchInputError, match="exact=True"):
        pareto_front(problem, "bops", "energy_pj", exact=True)
    with pytest.raises(SearchInputError, match="does not declare budget"):
        pareto_front(problem, "bops", model=AssignmentModel(problem, ["energy_pj"]))
    with pytest.raises(SearchInputError, match="another problem"):
        pareto_front(problem, "bops", model=AssignmentModel(_fixed_problem(), ["bops"]))
    with pytest.raises(InfeasibleBudgetError, match="energy_pj"):
        pareto_front(problem, "bops", limits={"energy_pj": 0.5})
