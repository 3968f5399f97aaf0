"""Baselines for the exact ILP: uniform assignments and the greedy walk of Pandey et al. 2023 (AIMET AMP).

**AIMET's phase 2** (``aimet_common/amp/mixed_precision_algo.py``: ``_create_pareto_front_list``;
the list order is ``aimet_common/amp/utils.py``: ``sort_accuracy_list``):

* Every quantizer group starts at the baseline candidate.
* Phase 1 scores each (group, candidate) pair, the baseline candidate excluded, with only that group
  quantized.  The list is sorted from least to most sensitive.  Ties go to the larger bit sum w + a,
  then the larger BOPs reduction, then the group that comes first in the model.
* Point i applies entries 0..i in order.  Each entry *overwrites* its group's candidate, with no cost
  check: a group that an earlier entry moved to a cheaper candidate can be moved back up, and a
  candidate that is not cheaper is applied anyway.  AIMET's running BOPs simply follow.
* A binary search over that sequence picks the cheapest point within ``allowed_accuracy_drop``.

lowbit's :func:`greedy_front` walks the same sorted list from the most expensive uniform assignment
in ``cost``.  A unit's score is its sensitivity-table total at the candidate, the analogue of AIMET's
"only this group quantized" score.  By default (``rule="cheaper"``) a step is taken only when it
strictly lowers the exact total of ``cost``, so the curve always moves down in cost.  ``rule="aimet"``
applies every entry as AIMET does.  The cost change of a step comes from :meth:`Problem.evaluate`,
so it is exact under coupling: moving a unit also changes what its producers pay to store their outputs.

**Known AIMET bug:** with ``allowed_accuracy_drop=None`` the drop becomes ∞ and the search target
``fp32_accuracy - ∞`` becomes −∞.  The binary search then returns on its first comparison, so only one
point of the curve is evaluated (AIMET issues #3996, #4005).  lowbit returns the whole curve, every
point with exact totals.  :func:`greedy_at_budget` then picks from it per budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.errors import SearchInputError
from search.problem import Problem
from search.solution import Solution

__all__ = ["uniform_solutions", "greedy_front", "greedy_at_budget", "GREEDY_RULES"]

#: ``cheaper``: take a step only if it lowers the total cost; ``aimet``: take every step (AIMET's walk).
GREEDY_RULES = ("cheaper", "aimet")


def uniform_solutions(problem: Problem) -> list[Solution]:
    """Every candidate pair applied to all layers, in ``problem.pairs`` order (status ``uniform``)."""
    return [
        Solution.of(problem, problem.uniform_choice(p), "uniform", solver="uniform") for p in range(problem.n_pairs)
    ]


def _baseline_pair(problem: Problem, cost: str) -> int:
    """The uniform pair with the largest total ``cost``; ties go to the lower total sensitivity, then
    the earlier pair (highest precision first)."""
    sens, totals = problem.uniform_totals([cost])
    return int(np.lexsort((np.arange(problem.n_pairs), sens, -totals[cost]))[0])


def _walk_order(problem: Problem, cost: str, base: int) -> list[tuple[int, int]]:
    """(unit, pair) entries without the baseline pair, least sensitive first, with AIMET's tie-breaks."""
    unit_sens = np.zeros((problem.n_units, problem.n_pairs))
    np.add.at(unit_sens, problem.unit_of, problem.sensitivity)
    units, pairs = (
        g.ravel() for g in np.meshgrid(np.arange(problem.n_units), np.arange(problem.n_pairs), indexing="ij")
    )
    keep = pairs != base
    units, pairs = units[keep], pairs[keep]
    # the cost reduction of each entry alone, from the all-baseline assignment (exact under coupling)
    moved = np.full((len(units), problem.n_units), base, dtype=np.int64)
    moved[np.arange(len(units)), units] = pairs
    _, start = problem.evaluate(problem.uniform_choice(base), [cost])
    _, alone = problem.evaluate(moved, [cost])
    reduction = start[cost] - alone[cost]
    bit_sum = problem.pairs[pairs].sum(axis=1)
    order = np.lexsort((units, -reduction, -bit_sum, unit_sens[units, pairs]))
    return [(int(units[k]), int(pairs[k])) for k in order]


def greedy_front(problem: Problem, cost: str = "bops", rule: str = "cheaper") -> list[Solution]:
    """The greedy walk (module docstring): the distinct assignments it visits, starting with the
    most expensive uniform one, each with exact totals (status ``greedy``).

    ``cost`` is any cost column of the problem, e.g. ``bops`` or ``latency_us``.  With ``rule="cheaper"``
    the totals of ``cost`` strictly decrease along the list."""
    if cost not in problem.costs:
        raise SearchInputError(f"greedy: unknown cost column {cost!r} (problem columns: {', '.join(problem.columns)})")
    if rule not in GREEDY_RULES:
        raise SearchInputError(f"greedy: unknown rule {rule!r} (one of: {', '.join(GREEDY_RULES)})")
    base = _baseline_pair(problem, cost)
    current = problem.uniform_choice(base)
    current_cost = float(problem.evaluate(current, [cost])[1][cost])
    walk = [Solution.of(problem, current, "greedy", solver="greedy")]
    for unit, pair in _walk_order(problem, cost, base):
        if current[unit] == pair:
            continue
        step = current.copy()
        step[unit] = pair
        step_cost = float(problem.evaluate(step, [cost])[1][cost])
        if rule == "cheaper" and not step_cost < current_cost:
            continue
        current, current_cost = step, step_cost
        walk.append(Solution.of(problem, current, "greedy", solver="greedy"))
    return walk


def greedy_at_budget(front: Sequence[Solution], column: str, limit: float) -> Solution | None:
    """The least-sensitivity point of ``front`` whose ``column`` total is ``<= limit`` (the first on a
    tie), or None when no point fits."""
    if front and column not in front[0].totals:
        raise SearchInputError(f"greedy: unknown column {column!r} (columns: {', '.join(front[0].totals)})")
    fitting = [s for s in front if s.totals[column] <= limit]
    return min(fitting, key=lambda s: s.sensitivity) if fitting else None
