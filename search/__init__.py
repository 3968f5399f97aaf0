"""Mixed-precision search over cost and sensitivity tables: the exact multi-budget ILP, Pareto fronts and
baselines.  Imports without torch."""

from search.baselines import greedy_at_budget, greedy_front, uniform_solutions
from search.errors import InfeasibleBudgetError, SearchInputError
from search.ilp import AssignmentModel, solve
from search.pareto import front_frame, pareto_front
from search.problem import Problem, build_problem, pair_label
from search.solution import SENSITIVITY, Solution

__all__ = ["AssignmentModel", "InfeasibleBudgetError", "Problem", "SENSITIVITY", "SearchInputError", "Solution",
           "build_problem", "front_frame", "greedy_at_budget", "greedy_front", "pair_label", "pareto_front", "solve",
           "uniform_solutions"]
