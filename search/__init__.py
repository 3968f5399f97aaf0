"""Mixed-precision search over cost and sensitivity tables: the exact multi-budget ILP, Pareto fronts and
baselines.  Imports without torch.

The names below are imported on first use, so that ``import search.errors`` (every CLI verb does it) does not
load pandas or the solver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowbit_core.lazy import lazy_exports

if TYPE_CHECKING:
    from search.baselines import greedy_at_budget, greedy_front, uniform_solutions
    from search.errors import InfeasibleBudgetError, SearchInputError
    from search.ilp import AssignmentModel, solve
    from search.pareto import front_frame, pareto_front
    from search.problem import Problem, build_problem
    from search.solution import SENSITIVITY, Solution

_EXPORTS = {
    "greedy_at_budget": "search.baselines",
    "greedy_front": "search.baselines",
    "uniform_solutions": "search.baselines",
    "InfeasibleBudgetError": "search.errors",
    "SearchInputError": "search.errors",
    "AssignmentModel": "search.ilp",
    "solve": "search.ilp",
    "front_frame": "search.pareto",
    "pareto_front": "search.pareto",
    "Problem": "search.problem",
    "build_problem": "search.problem",
    "SENSITIVITY": "search.solution",
    "Solution": "search.solution",
}

__all__ = [
    "AssignmentModel",
    "InfeasibleBudgetError",
    "Problem",
    "SENSITIVITY",
    "SearchInputError",
    "Solution",
    "build_problem",
    "front_frame",
    "greedy_at_budget",
    "greedy_front",
    "pareto_front",
    "solve",
    "uniform_solutions",
]


__getattr__, __dir__ = lazy_exports("search", _EXPORTS, globals())
