"""Argument checks shared by the solvers: each returns the cleaned value or raises a one-line
:class:`~search.errors.SearchInputError` naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

from search.errors import SearchInputError

__all__ = ["check_time_limit", "check_count", "check_seed", "check_limits", "MAX_POINTS"]

#: Most ε values one Pareto sweep may ask for: each can be one ILP solve, and a front of a few hundred points is
#: already finer than any budget a user sets.
MAX_POINTS = 10_000


def check_time_limit(value: object, name: str = "time_limit") -> float | None:
    """``None`` (no limit) or a finite number of seconds > 0, as a float.

    NaN, infinities, zero, negative numbers and non-numbers are refused: HiGHS would run unbounded, stop at
    once with nothing, or fail inside the solver."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SearchInputError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise SearchInputError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
    return seconds


def check_count(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``minimum..maximum`` (no upper bound when ``maximum`` is None), as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SearchInputError(f"{name} must be an integer, got {value!r}")
    count = int(value)
    if count < minimum or (maximum is not None and count > maximum):
        allowed = f"{minimum}..{maximum:,}" if maximum is not None else f">= {minimum}"
        raise SearchInputError(f"{name} must be in {allowed}, got {count:,}")
    return count


def check_seed(value: object, name: str = "seed") -> int:
    """A non-negative integer seed."""
    return check_count(value, name, minimum=0)


def check_limits(budgets: Sequence[str], limits: Mapping[str, float]) -> dict[str, float]:
    """Limits of a model's declared ``budgets``: none undeclared, none NaN or -inf; the finite ones, as floats
    (an absent or +inf limit leaves its budget unlimited)."""
    unknown = [b for b in limits if b not in budgets]
    if unknown:
        raise SearchInputError(f"budget {unknown[0]!r} was not declared for this model ({', '.join(budgets)})")
    clean: dict[str, float] = {}
    for b in budgets:
        lim = float(limits.get(b, math.inf))
        if math.isnan(lim):
            raise SearchInputError(f"budget {b}: limit is NaN")
        if math.isfinite(lim):
            clean[b] = lim
        elif lim < 0:
            raise SearchInputError(f"budget {b}: limit is -inf")
    return clean
