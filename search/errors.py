"""Error types for bad input to the search (tables, budgets) and for budgets no assignment meets."""

from __future__ import annotations

from lowbit_core.errors import InputError

__all__ = ["SearchInputError", "InfeasibleBudgetError"]


class SearchInputError(InputError):
    """A user-facing, one-line error naming the table, column or budget at fault (CLI exit status 2)."""


class InfeasibleBudgetError(SearchInputError):
    """No assignment meets every budget.

    ``needed`` maps each budget that cannot be met to the smallest limit at which it could be (from the
    elastic re-solve described in :mod:`search.infeasible`).
    """

    def __init__(self, message: str, needed: dict[str, float]) -> None:
        super().__init__(message)
        self.needed = needed
