"""Mixed-precision search over cost and sensitivity tables: the exact multi-budget ILP, Pareto fronts and
baselines.  Imports without torch."""

from search.errors import InfeasibleBudgetError, SearchInputError
from search.ilp import SENSITIVITY, AssignmentModel, Solution, solve
from search.problem import Problem, build_problem, pair_label

__all__ = ["AssignmentModel", "InfeasibleBudgetError", "Problem", "SENSITIVITY", "SearchInputError", "Solution",
           "build_problem", "pair_label", "solve"]
