"""Uniform and greedy (Pandey et al. / AIMET phase 2) baselines: hand-predicted walks and ILP >= greedy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import AssignmentModel, SearchInputError, build_problem
from search.baselines import greedy_at_budget, greedy_front, uniform_solutions
from search.problem import Problem

W8A8, W4A8, W4A4 = 0, 1, 2  # pair indices: build_problem orders pairs by (-w_bits, -a_bits)


def table_problem(sens: dict[int, dict[tuple[int, int], float]], macs: list[int]) -> Problem:
    pairs = list(sens[0])
    costs = pd.DataFrame(
        [
            {"layer": l, "w_bits": w, "a_bits": a, "bops": m * w * a, "latency_us": float(m)}
            for l, m in enumerate(macs)
            for w, a in pairs
        ]
    )
    s = pd.DataFrame(
        [
            {"layer": l, "w_bits": w, "a_bits": a, "sensitivity": v}
            for l, row in sens.items()
            for (w, a), v in row.items()
        ]
    )
    return build_problem(costs, s, ["bops", "latency_us"])


@pytest.fixture
def walk_problem() -> Problem:
    """Layer 2 is *less* sensitive at w4a4 than at w4a8, so AIMET moves it down to w4a4 first and later
    back up to w4a8."""
    return table_problem(
        {
            0: {(8, 8): 0.0, (4, 8): 1.0, (4, 4): 5.0},
            1: {(8, 8): 0.0, (4, 8): 2.0, (4, 4): 3.0},
            2: {(8, 8): 0.0, (4, 8): 4.0, (4, 4): 0.5},
        },
        macs=[10, 20, 30],
    )


def choices(front) -> list[list[int]]:
    return [s.choice.tolist() for s in front]


def test_greedy_walk_by_hand(walk_problem: Problem) -> None:
    # list: (2,w4a4) .5, (0,w4a8) 1, (1,w4a8) 2, (1,w4a4) 3, (2,w4a8) 4, (0,w4a4) 5; start all w8a8
    front = greedy_front(walk_problem, "bops")
    assert choices(front) == [
        [W8A8, W8A8, W8A8],
        [W8A8, W8A8, W4A4],
        [W4A8, W8A8, W4A4],
        [W4A8, W4A8, W4A4],
        [W4A8, W4A4, W4A4],
        [W4A4, W4A4, W4A4],
    ]  # (2, w4a8) is skipped: not cheaper
    assert [s.totals["bops"] for s in front] == [3840, 2400, 2080, 1440, 1120, 960]
    assert [s.sensitivity for s in front] == [0.0, 0.5, 1.5, 3.5, 4.5, 8.5]
    assert {s.status for s in front} == {"greedy"}
    aimet = greedy_front(walk_problem, "bops", rule="aimet")  # every entry overwrites, as AIMET does
    assert choices(aimet) == [*choices(front)[:5], [W4A8, W4A4, W4A8], [W4A4, W4A4, W4A8]]
    assert [s.totals["bops"] for s in aimet][4:] == [1120, 1600, 1440]


def test_greedy_tie_breaks() -> None:
    # equal sensitivity: the larger bit sum first (layer 1's w4a8 before layer 0's w4a4), then the larger
    # cost reduction (layer 0's w4a8 before layer 2's: 10x the MACs), then the earlier unit
    problem = table_problem(
        {
            0: {(8, 8): 0.0, (4, 8): 1.0, (4, 4): 1.0},
            1: {(8, 8): 0.0, (4, 8): 1.0, (4, 4): 2.0},
            2: {(8, 8): 0.0, (4, 8): 1.0, (4, 4): 2.0},
        },
        macs=[100, 50, 10],
    )
    front = greedy_front(problem, "bops", rule="aimet")
    moves = [
        tuple(np.flatnonzero(b.choice != a.choice)) + (int(b.choice[b.choice != a.choice][0]),)
        for a, b in zip(front, front[1:])
    ]
    assert moves[:4] == [(0, W4A8), (1, W4A8), (2, W4A8), (0, W4A4)]
    assert moves[4:] == [(1, W4A4), (2, W4A4)]  # sensitivity 2 tie: larger reduction (layer 1) first


def test_greedy_cost_change_is_exact_under_coupling() -> None:
    """Moving layer 1 to a4 saves 1 on layer 1 but costs layer 0 (its producer) 2 to store its output at
    4 bits: the exact walk skips it, the per-layer view would take it."""
    rows = [
        (0, 8, 8, 8, 10),
        (0, 8, 8, 4, 12),
        (0, 8, 4, 8, 9),
        (0, 8, 4, 4, 11),
        (1, 8, 8, 8, 10),
        (1, 8, 8, 4, 100),
        (1, 8, 4, 4, 9),
        (1, 8, 4, 8, 100),
    ]  # 100: rows never paid
    costs = pd.DataFrame(rows, columns=["layer", "w_bits", "a_bits", "out_bits", "energy_pj"])
    sens = pd.DataFrame(
        [(0, 8, 8, 0.0), (0, 8, 4, 0.2), (1, 8, 8, 0.0), (1, 8, 4, 0.1)],
        columns=["layer", "w_bits", "a_bits", "sensitivity"],
    )
    problem = build_problem(costs, sens, ["energy_pj"])
    front = greedy_front(problem, "energy_pj")
    assert choices(front) == [[0, 0], [1, 0]]
    assert [s.totals["energy_pj"] for s in front] == [20.0, 19.0]
    aimet = greedy_front(problem, "energy_pj", rule="aimet")
    assert [s.totals["energy_pj"] for s in aimet] == [20.0, 21.0, 20.0]


def test_uniform_solutions(walk_problem: Problem) -> None:
    sols = uniform_solutions(walk_problem)
    assert [s.choice.tolist() for s in sols] == [[p] * 3 for p in range(3)]
    assert [s.totals["bops"] for s in sols] == [3840, 1920, 960]
    assert {s.status for s in sols} == {"uniform"}


def test_greedy_at_budget(walk_problem: Problem) -> None:
    front = greedy_front(walk_problem, "bops")
    assert greedy_at_budget(front, "bops", 2100).choice.tolist() == [W4A8, W8A8, W4A4]
    assert greedy_at_budget(front, "bops", 1e9) is front[0]
    assert greedy_at_budget(front, "bops", 959) is None
    assert greedy_at_budget(front, "latency_us", 1e9) is front[0]  # latency is the same for all pairs here
    with pytest.raises(SearchInputError, match="unknown column"):
        greedy_at_budget(front, "area", 1.0)


def test_errors(walk_problem: Problem) -> None:
    with pytest.raises(SearchInputError, match="unknown cost column 'area'"):
        greedy_front(walk_problem, "area")
    with pytest.raises(SearchInputError, match="unknown rule"):
        greedy_front(walk_problem, "bops", rule="fastest")


@st.composite
def problems(draw) -> Problem:
    """Random small problems: 1-6 layers, 2-4 pairs, float costs and sensitivities, optional tie and
    optional coupling."""
    n = draw(st.integers(1, 6))
    pairs = draw(
        st.lists(st.sampled_from([(8, 8), (8, 4), (4, 8), (4, 4), (2, 2)]), min_size=2, max_size=4, unique=True)
    )
    coupled = draw(st.booleans())
    outs = sorted({a for _, a in pairs}) if coupled else [None]
    values = st.floats(0, 100, allow_nan=False, allow_subnormal=False)
    rows = [
        {
            "layer": l,
            "w_bits": w,
            "a_bits": a,
            **({"out_bits": o} if o else {}),
            "bops": draw(values),
            "latency_us": draw(values),
        }
        for l in range(n)
        for w, a in pairs
        for o in outs
    ]
    sens = [{"layer": l, "w_bits": w, "a_bits": a, "sensitivity": draw(values)} for l in range(n) for w, a in pairs]
    costs = pd.DataFrame(rows)
    if n >= 2 and draw(st.booleans()):
        costs["group"] = costs.layer.where(costs.layer != 1, 0)
    return build_problem(costs, pd.DataFrame(sens), ["bops", "latency_us"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.sampled_from(["bops", "latency_us"]))
def test_greedy_invariants_and_ilp_dominates(problem: Problem, cost: str) -> None:
    front = greedy_front(problem, cost)
    uniform = [s.totals[cost] for s in uniform_solutions(problem)]
    assert front[0].totals[cost] == max(uniform)  # starts at the most expensive uniform assignment
    costs = [s.totals[cost] for s in front]
    assert all(b < a for a, b in zip(costs, costs[1:]))  # strictly cheaper at every step
    for a, b in zip(front, front[1:]):
        assert (a.choice != b.choice).sum() == 1  # one unit moves per step
    aimet = greedy_front(problem, cost, rule="aimet")
    assert len(aimet) == 1 + problem.n_units * (problem.n_pairs - 1)  # AIMET applies every list entry
    # the exact ILP at each greedy point's cost is never worse than the greedy point
    model = AssignmentModel(problem, [cost])
    # the ILP's tolerances: feasibility 1e-9 of the largest total; HiGHS's dual feasibility tolerance (1e-7)
    # on the objective, which search.ilp scales by the largest sensitivity entry
    feasibility = 2e-9 * problem.costs[cost].reshape(problem.n_layers, -1).max(axis=1).sum()
    optimality = 1e-7 * problem.sensitivity.max() * problem.n_units
    for s in front + aimet:
        best = model.solve({cost: s.totals[cost]})
        assert best.sensitivity <= s.sensitivity + optimality + 1e-12
        assert best.totals[cost] <= s.totals[cost] + feasibility
