"""One solved assignment: the chosen pair per unit, its exact totals and the solver's facts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from search.problem import Problem

__all__ = ["Solution", "SENSITIVITY", "relative_gap"]

#: Name of the default objective.
SENSITIVITY = "sensitivity"


def relative_gap(incumbent: float | None, bound: float | None) -> float:
    """``|incumbent - bound| / |incumbent|`` of a solve stopped early; 0 when either is missing or not finite, or
    the incumbent is 0 (no relative gap to report)."""
    if incumbent is None or bound is None or not math.isfinite(bound) or not incumbent:
        return 0.0
    return abs(incumbent - bound) / max(abs(incumbent), 1e-300)


@dataclass(frozen=True, eq=False)
class Solution:
    """One solved assignment: the chosen pair per unit, exact totals and solver facts."""

    problem: Problem = field(repr=False)
    choice: np.ndarray  # [U] pair index per unit
    objective_name: str
    objective: float  # exact value of the objective column (total sensitivity by default)
    sensitivity: float
    totals: dict[str, float]  # every cost column of the problem, exact
    limits: dict[str, float]  # the budgets solved under
    status: str  # optimal | time_limit
    gap: float  # relative MIP gap (0 when proven optimal)
    solve_seconds: float
    solver: str = "highs"

    @classmethod
    def of(
        cls,
        problem: Problem,
        choice: np.ndarray,
        status: str,
        limits: Mapping[str, float] | None = None,
        solve_seconds: float = 0.0,
        solver: str = "",
        objective_name: str = SENSITIVITY,
        gap: float = 0.0,
    ) -> Solution:
        """A Solution for a given per-unit ``choice`` (a solver's, or a baseline's: uniform, greedy), evaluated
        exactly; ``objective`` is the exact total of ``objective_name``."""
        choice = np.asarray(choice, dtype=np.int64)
        sens, totals = problem.evaluate(choice)
        totals = {c: float(v) for c, v in totals.items()}
        return cls(
            problem=problem,
            choice=choice,
            objective_name=objective_name,
            objective=float(sens) if objective_name == SENSITIVITY else totals[objective_name],
            sensitivity=float(sens),
            totals=totals,
            limits=dict(limits or {}),
            status=status,
            gap=float(gap),
            solve_seconds=solve_seconds,
            solver=solver,
        )

    def pairs_string(self) -> str:
        """Per-layer pairs in execution order, e.g. ``w8a8,w4a4,w4a8``."""
        labels = self.problem.pair_labels
        return ",".join(labels[p] for p in self.problem.layer_choice(self.choice))

    def assignment(self) -> pd.DataFrame:
        """``layer, name, w_bits, a_bits, group`` [``out_bits``], per-layer sensitivity and costs."""
        return self.problem.assignment_frame(self.choice)

    def budgets(self) -> dict[str, dict[str, float]]:
        return {
            b: {"limit": lim, "used": self.totals[b], "slack": lim - self.totals[b]} for b, lim in self.limits.items()
        }

    def summary(self) -> dict:
        """The JSON sidecar of DESIGN.md."""
        return {
            "objective": {"name": self.objective_name, "value": self.objective},
            "sensitivity": self.sensitivity,
            "method": self.problem.method,
            "budgets": self.budgets(),
            "totals": self.totals,
            "status": self.status,
            "gap": self.gap,
            "solve_seconds": self.solve_seconds,
            "solver": self.solver,
            "coupled": self.problem.coupled,
            "layers": self.problem.n_layers,
            "units": self.problem.n_units,
            "pairs": self.problem.pair_labels,
        }
