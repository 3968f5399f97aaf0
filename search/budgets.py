"""Budget expressions of the CLI: ``COLUMN=VALUE`` with VALUE absolute (``1200``, ``3e9``) or a percentage
of the column's total under the most expensive uniform assignment (``60%``)."""

from __future__ import annotations

import math
import re

from search.errors import SearchInputError
from search.problem import Problem

__all__ = ["parse_budget", "parse_budgets", "resolve_budgets"]

_BUDGET_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^%\s]+)\s*(%?)\s*$")


def parse_budget(text: str) -> tuple[str, float, bool]:
    """``'latency_us=1200'`` -> ``('latency_us', 1200.0, False)``; ``'energy_pj=60%'`` -> ``(.., 60.0, True)``."""
    m = _BUDGET_RE.match(text)
    if not m:
        raise SearchInputError(f"bad budget {text!r}: write COLUMN=VALUE, e.g. latency_us=1200 or energy_pj=60%")
    try:
        value = float(m.group(2))
    except ValueError:
        raise SearchInputError(f"bad budget {text!r}: {m.group(2)!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SearchInputError(f"bad budget {text!r}: the limit must be a finite number >= 0")
    return m.group(1), value, bool(m.group(3))


def parse_budgets(texts: list[str]) -> dict[str, tuple[float, bool]]:
    out: dict[str, tuple[float, bool]] = {}
    for text in texts:
        col, value, pct = parse_budget(text)
        if col in out:
            raise SearchInputError(f"budget {col!r} is given twice")
        out[col] = (value, pct)
    return out


def resolve_budgets(problem: Problem, budgets: dict[str, tuple[float, bool]]) -> dict[str, float]:
    """Absolute limits; percentages refer to the most expensive uniform assignment's total."""
    totals = problem.uniform_totals()[1] if any(pct for _, pct in budgets.values()) else {}
    return {
        col: float(totals[col].max() * value / 100.0) if pct else float(value) for col, (value, pct) in budgets.items()
    }
