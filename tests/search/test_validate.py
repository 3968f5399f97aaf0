"""Argument checks of the solvers (``search.validate``) and where they apply: before any model is solved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from search import AssignmentModel, SearchInputError, build_problem, solve
from search.highs_mip import HighsMip
from search.pareto import pareto_front
from search.validate import MAX_POINTS, check_count, check_seed, check_time_limit


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (1, 1.0), (0.25, 0.25), (np.float32(2.5), 2.5), (np.int64(3), 3.0)]
)
def test_time_limit_accepts_none_and_positive_finite_seconds(value, expected) -> None:
    assert check_time_limit(value) == expected


@pytest.mark.parametrize("value", [-1, 0, 0.0, -0.0, math.nan, math.inf, -math.inf, "5", True, [1]])
def test_time_limit_refuses_the_rest_naming_the_argument(value) -> None:
    with pytest.raises(SearchInputError, match=r"^--time-limit must be") as info:
        check_time_limit(value, "--time-limit")
    assert "\n" not in str(info.value)


def test_count_bounds_are_inclusive_and_named() -> None:
    assert check_count(1, "n", 1, 3) == 1 and check_count(np.int32(3), "n", 1, 3) == 3
    for bad in (0, 4, 10**12):
        with pytest.raises(SearchInputError, match=r"^n must be in 1\.\.3, got"):
            check_count(bad, "n", 1, 3)
    for bad in (2.0, True, "2", None):
        with pytest.raises(SearchInputError, match="must be an integer"):
            check_count(bad, "n", 1, 3)
    assert check_count(10**12, "n") == 10**12  # no upper bound unless asked


def test_seed_is_a_non_negative_integer() -> None:
    assert check_seed(0) == 0 and check_seed(np.uint8(7)) == 7
    for bad in (-1, 1.5, False):
        with pytest.raises(SearchInputError, match="seed"):
            check_seed(bad)


@pytest.fixture(scope="module")
def problem():
    costs = pd.DataFrame(
        [
            {"layer": lay, "w_bits": w, "a_bits": 8, "latency_us": float(w * (lay + 1))}
            for lay in range(3)
            for w in (8, 4, 2)
        ]
    )
    sens = costs[["layer", "w_bits", "a_bits"]].assign(sensitivity=lambda f: 4.0**-f.w_bits)
    return build_problem(costs, sens, ["latency_us"])


@pytest.mark.parametrize("time_limit", [-1.0, 0.0, math.nan, math.inf])
def test_solvers_refuse_a_bad_time_limit_before_solving(problem, monkeypatch, time_limit: float) -> None:
    def no_solve(*_args, **_kwargs):
        raise AssertionError("solved despite a bad time limit")

    monkeypatch.setattr(HighsMip, "run_mip", no_solve)
    monkeypatch.setattr(HighsMip, "run_lp", no_solve)
    model = AssignmentModel(problem, ["latency_us"])
    for call in (
        lambda: model.solve({"latency_us": 30.0}, time_limit=time_limit),
        lambda: solve(problem, {"latency_us": 30.0}, time_limit=time_limit),
        lambda: pareto_front(problem, "latency_us", n_points=3, time_limit=time_limit),
    ):
        with pytest.raises(SearchInputError, match="time_limit"):
            call()


def test_a_good_time_limit_still_solves(problem) -> None:
    solution = solve(problem, {"latency_us": 30.0}, time_limit=5.0)
    assert solution.status == "optimal" and solution.totals["latency_us"] <= 30.0


@pytest.mark.parametrize("n_points", [0, MAX_POINTS + 1, 10**11, 2.0])
def test_pareto_refuses_a_point_count_beyond_the_limit_before_solving(problem, monkeypatch, n_points) -> None:
    monkeypatch.setattr(AssignmentModel, "__init__", lambda *_a, **_k: pytest.fail("built a model"))
    with pytest.raises(SearchInputError, match="n_points"):
        pareto_front(problem, "latency_us", n_points=n_points)
