"""Explaining infeasible budgets: which ones cannot be met, and the smallest limit at which each could be.

1. An elastic re-solve adds a violation ``e_b >= 0`` to every budget row (rows are scaled by each
   column's largest total, so violations are comparable) and minimizes their sum.  The budgets with
   ``e_b > 0`` are the ones named.
2. For each named budget, a second solve minimizes its column with the *other* budgets held.  That
   minimum is the smallest limit at which the whole set becomes feasible, if the others can be met.
   If the others conflict too, the value the elastic solution needs is reported instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn, Protocol

import numpy as np

from search.errors import InfeasibleBudgetError
from search.problem import Problem

__all__ = ["raise_infeasible", "diagnose", "DiagnosableModel"]


class DiagnosableModel(Protocol):
    """What the diagnosis needs of a model (:class:`search.ilp.AssignmentModel` has it): the problem, an elastic
    solve and the minimum of a column under other limits."""

    problem: Problem

    def elastic_solve(self, limits: Mapping[str, float]) -> tuple[dict[str, float], np.ndarray]: ...

    def minimum(self, column: str, limits: Mapping[str, float] | None = None) -> float | None: ...


_VIOLATION_TOL = 1e-9


def diagnose(model: DiagnosableModel, limits: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """Budgets that cannot be met -> smallest feasible limit, and one phrase per budget."""
    violation, choice = model.elastic_solve(limits)
    _, relaxed = model.problem.evaluate(choice, limits)
    named = [b for b, v in violation.items() if v > _VIOLATION_TOL] or list(limits)
    needed: dict[str, float] = {}
    phrases: list[str] = []
    for b in named:
        others = {k: v for k, v in limits.items() if k != b}
        smallest = model.minimum(b, others)
        if smallest is not None:
            needed[b] = smallest
            held = " with the other budgets held" if others else ""
            phrases.append(
                f"{b} <= {limits[b]:.10g} cannot be met{held}; the smallest feasible limit is {smallest:.10g}"
            )
        else:
            needed[b] = float(relaxed[b])
            alone = model.minimum(b, {})
            phrases.append(
                f"{b} <= {limits[b]:.10g} cannot be met (its minimum alone is {alone:.10g}); relaxing "
                f"the conflicting budgets together needs {b} <= {needed[b]:.10g}"
            )
    return needed, phrases


def raise_infeasible(model: DiagnosableModel, limits: Mapping[str, float]) -> NoReturn:
    """Raise :class:`InfeasibleBudgetError` with the diagnosis of ``limits``."""
    needed, phrases = diagnose(model, limits)
    raise InfeasibleBudgetError("infeasible budgets: " + "; ".join(phrases), needed)
