"""The exact multi-budget ILP, solved by HiGHS through highspy.

Variables: ``x[u, p]`` = 1 when unit ``u`` (a layer or a tied group) takes candidate pair ``p``, with
one pair per unit.  Objective: total sensitivity.  Budgets: for every budgeted column ``b``,
``sum_l cost_b(l) <= limit_b``.

Exact coupling (coupled cost tables): layer ``l``'s cost depends on its own pair ``p`` and on the width
``o`` its consumer ``c`` reads.  With ``z[c, o] = sum_{q : a_q = o} x[unit(c), q]`` (binary whenever x
is), the product variables ``y[l, p, o] = x[unit(l), p] * z[c, o]`` are linearized by the two
transport equalities ``sum_o y[l, p, o] = x[unit(l), p]`` and ``sum_p y[l, p, o] = z[c, o]``, ``y >= 0``.
For binary x these force ``y`` to the product exactly (the row and column sums of a non-negative matrix
with a single 1 in each marginal), so ``y`` may stay continuous; the LP relaxation is at least as tight
as McCormick's.  Costs of coupled layers are then ``sum_{p,o} cost[l, p, o] * y[l, p, o]``.
Product variables are only made where they are needed: when every column's ``cost[l, p, o]`` is
separable as ``f(p) + g(o)`` (traffic that is linear in the stored width, a layer that stays compute-
or memory-bound), the exact cost is ``sum_p f(p) x[l, p] + sum_q g(a_q) x[c, q]`` without products.

Rows are scaled (each budget by its largest possible total, the objective by its largest coefficient)
so HiGHS's absolute tolerances act as relative ones; every reported number is re-evaluated exactly in
float64 from the chosen pairs.  Relative and absolute MIP gaps are 0: "optimal" means proven.

The model is built as arrays (:mod:`search.highs_mip`) and solved by the exact pipeline of :mod:`search.exact`
(LP relaxation, heuristic incumbent, Lagrangian pruning, HiGHS from the incumbent); ``prune=False`` solves the
full model with HiGHS alone.  :mod:`search.pyomo_model` builds the same model in Pyomo as a reference.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping, Sequence

import numpy as np

from search.errors import InfeasibleBudgetError, SearchInputError
from search.exact import ExactSolver, PipelineStats
from search.highs_mip import ELASTIC, HighsMip, RunResult
from search.infeasible import raise_infeasible
from search.problem import Problem
from search.solution import SENSITIVITY, Solution, relative_gap
from search.validate import check_limits, check_time_limit

__all__ = ["AssignmentModel", "Solution", "solve", "SENSITIVITY"]


class AssignmentModel:
    """A persistent model of ``problem`` with ``budgets`` as mutable limits; re-solving with new limits or
    another objective reuses it (the Pareto sweep's inner loop).  ``prune=False`` skips the pipeline."""

    def __init__(self, problem: Problem, budgets: Sequence[str] = (), prune: bool = True) -> None:
        self.problem = problem
        self.budgets = list(dict.fromkeys(budgets))
        for b in self.budgets:
            if b not in problem.costs:
                raise SearchInputError(f"unknown budget column {b!r} (problem columns: {', '.join(problem.columns)})")
        if importlib.util.find_spec("highspy") is None:
            raise SearchInputError("the HiGHS solver is not available: pip install highspy")
        self._mip = HighsMip(problem, self.budgets)
        self._exact = ExactSolver(self._mip)
        self.prune = prune
        self._columns: np.ndarray | None = None
        #: Where the last solve's time went (None before the first).
        self.last_stats: PipelineStats | None = None

    # --- limits ----------------------------------------------------------------------------------------------
    def set_limits(self, limits: Mapping[str, float]) -> dict[str, float]:
        """Check ``limits`` (declared budgets, not NaN, not -inf); the finite ones, unscaled."""
        return check_limits(self.budgets, limits)

    def _scaled(self, limits: Mapping[str, float]) -> dict[str, float]:
        return {b: lim * self._mip.scale_of(b) for b, lim in limits.items()}

    def _check_objective(self, name: str) -> None:
        if name != SENSITIVITY and name not in self.problem.costs:
            raise SearchInputError(
                f"unknown objective {name!r} (sensitivity or one of: {', '.join(self.problem.columns)})"
            )

    # --- solving ---------------------------------------------------------------------------------------------
    def solve(
        self,
        limits: Mapping[str, float] | None = None,
        objective: str = SENSITIVITY,
        time_limit: float | None = None,
        diagnose: bool = True,
    ) -> Solution:
        """Minimize ``objective`` (total sensitivity, or a cost column) under ``limits``.

        Raises :class:`~search.errors.InfeasibleBudgetError` naming each budget that cannot be met and
        the smallest limit at which it could be (see :mod:`search.infeasible`).  ``time_limit`` is None or a
        finite number of seconds > 0 (:func:`~search.validate.check_time_limit`)."""
        time_limit = check_time_limit(time_limit)
        limits = self.set_limits(limits or {})
        self._check_objective(objective)
        start = time.perf_counter()
        result, stats = self._exact.solve(objective, self._scaled(limits), time_limit, prune=self.prune)
        if result.status == "infeasible":
            # an infeasibility verdict is confirmed on the full model without presolve before anyone is told:
            # HiGHS 1.12-1.15 presolve has declared feasible models infeasible (docs/search.md)
            result = self._mip.run_mip(time_limit=time_limit, presolve=False)
        seconds = time.perf_counter() - start
        self.last_stats = stats
        if result.status == "infeasible":
            if diagnose:
                raise_infeasible(self, limits)
            raise InfeasibleBudgetError("no assignment meets every budget", {})
        if result.status == "no_solution":
            raise SearchInputError(f"no assignment found within the time limit of {time_limit} s")
        return self._solution(result, objective, limits, seconds)

    def _solution(self, result: RunResult, objective: str, limits: dict[str, float], seconds: float) -> Solution:
        assert result.choice is not None
        self._columns = result.columns
        optimal = result.status == "optimal"
        return Solution.of(
            self.problem,
            result.choice,
            "optimal" if optimal else "time_limit",
            limits,
            seconds,
            f"highs {self._mip.version()}",
            objective_name=objective,
            gap=0.0 if optimal else relative_gap(result.objective, result.bound),
        )

    def elastic_solve(self, limits: Mapping[str, float]) -> tuple[dict[str, float], np.ndarray]:
        """Minimize the summed violations of ``limits``, each relative to its column's largest possible total:
        those relative violations and the per-unit choice that reaches them (the first step of
        :func:`search.infeasible.diagnose`)."""
        limits = self.set_limits(limits)
        mip = self._mip
        mip.set_objective(ELASTIC)
        mip.set_limits(self._scaled(limits))
        mip.set_allowed(None)
        mip.set_elastic(True)
        try:
            result = mip.run_mip()
        finally:
            mip.set_elastic(False)
        if result.choice is None or result.columns is None:
            raise RuntimeError(f"the elastic model has no solution ({result.status})")
        violation = mip.elastic_values(result.columns)
        return ({b: float(violation[b]) for b in limits}, result.choice)

    def coupling_residual(self) -> float:
        """Largest |y[l, p, o] - x[unit(l), p] * z[c, o]| in the last solution (0 for exact coupling)."""
        if self._columns is None:
            return 0.0
        return self._mip.coupling_residual(self._columns)

    def minimum(self, column: str, limits: Mapping[str, float] | None = None) -> float | None:
        """Smallest total of ``column`` under ``limits`` (None when they are infeasible)."""
        try:
            return self.solve(limits, objective=column, diagnose=False).totals[column]
        except InfeasibleBudgetError:
            return None


def solve(
    problem: Problem, limits: Mapping[str, float], objective: str = SENSITIVITY, time_limit: float | None = None
) -> Solution:
    """Build the model for ``limits``' columns and solve it once."""
    time_limit = check_time_limit(time_limit)
    return AssignmentModel(problem, list(limits)).solve(limits, objective=objective, time_limit=time_limit)
