"""Exact Pareto fronts of total sensitivity against one or two cost columns (the ε-constraint method).

Each point minimizes total sensitivity with the swept column(s) capped at ε (and any other ``limits``
held), so every point is a proven-optimal assignment.  All points come from one persistent
:class:`~search.ilp.AssignmentModel`: only its mutable budget limits change between solves.

The sweep runs from the loosest ε down.  The optimum under a looser cap stays optimal under a tighter
one when it still fits, so such points are reused and not solved again.  Duplicates (the same choice, or
the same totals) and dominated points are dropped.  A point is dominated when another has sensitivity and
every swept total less than or equal, with at least one strictly less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd

from search.errors import InfeasibleBudgetError, SearchInputError
from search.ilp import AssignmentModel
from search.problem import Problem
from search.solution import Solution
from search.validate import MAX_POINTS, check_count, check_time_limit

__all__ = ["pareto_front", "front_frame", "nondominated_mask"]

#: Relative step of the exact sweep, as a fraction of the largest total the swept column can reach.  It
#: must exceed the ILP's scaled feasibility tolerance (1e-9) so the previous point is always cut off.
EXACT_STEP = 1e-7
_BLOCK = 1024  # rows per block of the pairwise dominance test


def nondominated_mask(values: np.ndarray) -> np.ndarray:
    """Boolean [n]: True where row ``i`` of ``values`` [n, k] is not dominated (minimization on all k).

    Row ``j`` dominates row ``i`` when ``values[j] <= values[i]`` everywhere and ``<`` somewhere.  Equal
    rows do not dominate each other, so both stay True."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise SearchInputError(f"nondominated_mask needs a 2-D array [points, objectives], got shape {v.shape}")
    if np.isnan(v).any():
        raise SearchInputError("nondominated_mask: values contain NaN")
    keep = np.ones(len(v), dtype=bool)
    for start in range(0, len(v), _BLOCK):
        block = v[start : start + _BLOCK]  # [b, k] candidates to test
        le = (v[:, None, :] <= block[None, :, :]).all(-1)  # [n, b]: row j <= candidate i everywhere
        lt = (v[:, None, :] < block[None, :, :]).any(-1)
        keep[start : start + _BLOCK] = ~(le & lt).any(0)
    return keep


def _model_for(problem: Problem, needed: Sequence[str], model: AssignmentModel | None) -> AssignmentModel:
    if model is None:
        return AssignmentModel(problem, needed)
    if model.problem is not problem:
        raise SearchInputError("pareto_front: the model was built for another problem")
    missing = [b for b in needed if b not in model.budgets]
    if missing:
        raise SearchInputError(
            f"pareto_front: the model does not declare budget(s) {', '.join(missing)} "
            f"(it has: {', '.join(model.budgets) or 'none'})"
        )
    return model


def _largest_total(problem: Problem, column: str) -> float:
    """The largest total ``column`` can reach (each layer at its most expensive row)."""
    return float(problem.costs[column].reshape(problem.n_layers, -1).max(axis=1).sum())


def _unique_front(solutions: list[Solution], swept: Sequence[str]) -> list[Solution]:
    """Drop repeated choices, repeated totals and dominated points; sort by the swept totals."""
    seen_choice: set[bytes] = set()
    seen_values: set[tuple[float, ...]] = set()
    unique: list[Solution] = []
    for s in solutions:
        key = s.choice.tobytes()
        values = (s.sensitivity, *(s.totals[c] for c in swept))
        if key in seen_choice or values in seen_values:
            continue
        seen_choice.add(key)
        seen_values.add(values)
        unique.append(s)
    if not unique:
        return []
    points = np.array([[s.sensitivity, *(s.totals[c] for c in swept)] for s in unique])
    kept = [s for s, k in zip(unique, nondominated_mask(points)) if k]
    return sorted(kept, key=lambda s: (*(s.totals[c] for c in swept), s.sensitivity))


def _fits(solution: Solution, limits: Mapping[str, float]) -> bool:
    return all(solution.totals[b] <= lim for b, lim in limits.items())


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callable: a transient rich progress bar, or a no-op."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("Pareto front", total=total)
        yield lambda: bar.advance(task)


def pareto_front(
    problem: Problem,
    x: str,
    y: str | None = None,
    n_points: int = 50,
    limits: Mapping[str, float] | None = None,
    model: AssignmentModel | None = None,
    progress: bool = False,
    exact: bool = False,
    time_limit: float | None = None,
) -> list[Solution]:
    """Nondominated assignments of total sensitivity against the total of cost column ``x`` (and ``y``).

    ``x`` alone: ε runs over ``n_points`` evenly spaced values, from the smallest feasible total of ``x``
    to the ``x`` total of the unconstrained sensitivity optimum (no larger ε changes anything).  With
    ``y``: a grid of about ``n_points`` (⌈√n⌉ values per column) over both ranges; infeasible grid
    points are skipped.  ``limits`` are further budgets held at every point (a limit on ``x`` or ``y``
    caps its range).  ``model`` must declare every budget used; by default one is built.

    ``exact=True`` (``x`` only) enumerates the whole front: after each point, ε becomes its ``x`` total
    minus :data:`EXACT_STEP` × the largest total ``x`` can reach, until nothing is feasible.  The number
    of solves equals the number of front points, so use it on small problems.  Two front points whose
    ``x`` totals differ by less than that step count as one.

    ``n_points`` is at most :data:`~search.validate.MAX_POINTS`.  ``progress`` shows a bar over the grid (not for
    ``exact``); ``time_limit`` (s, finite and > 0) applies to each solve.
    Returns the solutions sorted by ``x`` (then ``y``) total, each with ``limits`` set to the budgets it
    was solved under.  Raises :class:`~search.errors.InfeasibleBudgetError` if ``limits`` admit nothing.
    """
    limits = {b: float(v) for b, v in (limits or {}).items()}
    if y is not None and y == x:
        raise SearchInputError(f"pareto_front: x and y are the same column {x!r}")
    if exact and y is not None:
        raise SearchInputError("pareto_front: exact=True sweeps one column; leave y unset")
    if not exact:
        n_points = check_count(n_points, "pareto_front: n_points", 1, MAX_POINTS)
    time_limit = check_time_limit(time_limit, "pareto_front: time_limit")
    swept = [x] if y is None else [x, y]
    for c in swept:
        if c not in problem.costs:
            raise SearchInputError(
                f"pareto_front: unknown cost column {c!r} (problem columns: {', '.join(problem.columns)})"
            )
    model = _model_for(problem, list(dict.fromkeys([*swept, *limits])), model)

    def solve(caps: Mapping[str, float], diagnose: bool = False) -> Solution:
        merged = dict(limits)
        for c, cap in caps.items():
            merged[c] = min(cap, limits.get(c, math.inf))
        return model.solve(merged, time_limit=time_limit, diagnose=diagnose)

    top = solve({}, diagnose=True)  # the unconstrained optimum; raises with a diagnosis if limits conflict
    if exact:
        return _exact_sweep(problem, x, top, solve)

    # ranges: from each column's minimum to the loosest total that matters
    corners = {c: model.solve(limits, objective=c, time_limit=time_limit) for c in swept}
    lo = {c: corners[c].totals[c] for c in swept}
    hi = {c: max(top.totals[c], *(s.totals[c] for s in corners.values())) for c in swept}
    per_axis = n_points if y is None else max(1, math.ceil(math.sqrt(n_points)))
    grids = {c: np.linspace(hi[c], lo[c], per_axis) if hi[c] > lo[c] else np.array([hi[c]]) for c in swept}
    found: list[Solution] = [top]
    grid_x, grid_y = grids[x], (grids[y] if y is not None else np.array([math.inf]))
    done: dict[tuple[int, int], Solution | None] = {}
    with _progress(len(grid_x) * len(grid_y), progress) as advance:
        for j, ey in enumerate(grid_y):
            for i, ex in enumerate(grid_x):
                caps = {x: float(ex)} if y is None else {x: float(ex), y: float(ey)}
                # an optimum under a looser cap that fits the tighter one is optimal there too
                looser = [done.get((i - 1, j)) if i else top, done.get((i, j - 1)) if j else top]
                reuse = next((s for s in looser if s is not None and s.status == "optimal" and _fits(s, caps)), None)
                if reuse is not None:
                    done[(i, j)] = reuse
                else:
                    try:
                        solved = solve(caps)
                        done[(i, j)] = solved
                        found.append(solved)
                    except InfeasibleBudgetError:
                        done[(i, j)] = None
                advance()
    return _unique_front(found, swept)


def _exact_sweep(
    problem: Problem, x: str, top: Solution, solve: Callable[[Mapping[str, float]], Solution]
) -> list[Solution]:
    step = EXACT_STEP * _largest_total(problem, x)
    found = [top]
    while step > 0:
        try:
            point = solve({x: found[-1].totals[x] - step})
        except InfeasibleBudgetError:
            break
        if not point.totals[x] < found[-1].totals[x]:  # within the solver's tolerance of the last point
            break
        found.append(point)
    return _unique_front(found, [x])


def front_frame(solutions: Sequence[Solution], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per solution: ``point, sensitivity``, each cost total (``columns``, default all of the
    problem's), ``status, gap, solve_seconds, pairs``."""
    if not solutions:
        cols = list(columns or [])
        return pd.DataFrame(columns=["point", "sensitivity", *cols, "status", "gap", "solve_seconds", "pairs"])
    cols = list(columns) if columns is not None else list(solutions[0].problem.columns)
    unknown = [c for c in cols if c not in solutions[0].totals]
    if unknown:
        raise SearchInputError(
            f"front_frame: unknown column(s) {', '.join(unknown)} (columns: {', '.join(solutions[0].totals)})"
        )
    return pd.DataFrame(
        [
            {
                "point": k,
                "sensitivity": s.sensitivity,
                **{c: s.totals[c] for c in cols},
                "status": s.status,
                "gap": s.gap,
                "solve_seconds": s.solve_seconds,
                "pairs": s.pairs_string(),
            }
            for k, s in enumerate(solutions)
        ]
    )
