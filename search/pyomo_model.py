"""The assignment ILP written in Pyomo: the plain reference model.

The formulation is the one :mod:`search.ilp` documents, built term by term in Pyomo and solved by HiGHS with no
start and no pruning.  lowbit's own solves go through :class:`search.ilp.AssignmentModel` (arrays handed to
highspy, then the exact pipeline of :mod:`search.exact`); this model is the independent second builder the tests
and ``benchmarks/bench_search.py`` compare it with, and a way to export the model to the formats Pyomo writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from search.errors import InfeasibleBudgetError, SearchInputError
from search.highs_mip import column_scale, product_layers
from search.interrupts import sigint_kept
from search.problem import Problem
from search.solution import SENSITIVITY, Solution, relative_gap
from search.validate import check_limits, check_time_limit

__all__ = ["PyomoAssignmentModel"]

_INF_RHS = 1e30  # HiGHS reads bounds >= 1e20 as infinite
_FEAS_TOL = 1e-9


class PyomoAssignmentModel:
    """A persistent Pyomo model of ``problem`` with ``budgets`` as mutable limits (re-solves reuse it)."""

    def __init__(self, problem: Problem, budgets: Sequence[str] = ()) -> None:
        import pyomo.environ as pyo  # lazy: importing pyomo costs ~0.4 s
        from pyomo.contrib.solver.solvers.highs import Highs

        self.problem = problem
        self.budgets = list(dict.fromkeys(budgets))
        for b in self.budgets:
            if b not in problem.costs:
                raise SearchInputError(f"unknown budget column {b!r} (problem columns: {', '.join(problem.columns)})")
        self._pyo = pyo
        self._solver = Highs()
        if not self._solver.available():
            raise SearchInputError("the HiGHS solver is not available: pip install highspy")
        self._build()
        self._active: str | None = None

    # --- construction ---------------------------------------------------------------------------------------
    def _terms(self, table: np.ndarray, scale: float) -> list:
        """Linear terms of a per-layer table ([L, P] or [L, P, O]) over x and y."""
        pr, m = self.problem, self.m
        unit_coef = np.zeros((pr.n_units, pr.n_pairs))
        terms = []
        if table.ndim == 2:
            np.add.at(unit_coef, pr.unit_of, table)
        else:
            own = pr.out_index()[0]  # out-width index of each pair's own a_bits
            pairs = np.arange(pr.n_pairs)
            for layer in range(pr.n_layers):
                u, c = int(pr.unit_of[layer]), int(pr.consumer[layer])
                if layer in self._product_layers:
                    terms += [
                        table[layer, p, o] * scale * m.y[layer, p, o]
                        for p in pairs
                        for o in range(pr.n_widths)
                        if table[layer, p, o]
                    ]
                elif c < 0:
                    unit_coef[u] += table[layer, pairs, own]
                else:  # separable: cost[p, o] = cost[p, 0] + (cost[0, o] - cost[0, 0])
                    unit_coef[u] += table[layer, :, 0]
                    unit_coef[int(pr.unit_of[c])] += table[layer, 0, own] - table[layer, 0, 0]
        terms += [
            unit_coef[u, p] * scale * m.x[u, p] for u in range(pr.n_units) for p in range(pr.n_pairs) if unit_coef[u, p]
        ]
        return terms

    def _build(self) -> None:
        pyo, pr = self._pyo, self.problem
        m = self.m = pyo.ConcreteModel(name="lowbit-assignment")
        m.x = pyo.Var(range(pr.n_units), range(pr.n_pairs), domain=pyo.Binary)
        m.one = pyo.Constraint(range(pr.n_units), rule=lambda m, u: sum(m.x[u, p] for p in range(pr.n_pairs)) == 1)
        self._product_layers = product_layers(pr)
        if self._product_layers:
            n_o = pr.n_widths
            own = pr.out_index()[0]
            # bounded by 1 (implied anyway): HiGHS 1.12-1.15's presolve wrongly declared some models with
            # unbounded y infeasible (docs/search.md, "Solver notes")
            m.y = pyo.Var(self._product_layers, range(pr.n_pairs), range(n_o), bounds=(0.0, 1.0))
            m.y_rows = pyo.Constraint(
                self._product_layers,
                range(pr.n_pairs),
                rule=lambda m, l, p: sum(m.y[l, p, o] for o in range(n_o)) == m.x[int(pr.unit_of[l]), p],
            )
            m.y_cols = pyo.Constraint(
                self._product_layers,
                range(n_o),
                rule=lambda m, l, o: (
                    sum(m.y[l, p, o] for p in range(pr.n_pairs))
                    == sum(m.x[int(pr.unit_of[pr.consumer[l]]), q] for q in range(pr.n_pairs) if own[q] == o)
                ),
            )
        self._scales = {b: column_scale(pr.costs[b], pr.n_layers) for b in pr.columns}
        m.rhs = pyo.Param(self.budgets, mutable=True, initialize=_INF_RHS)
        m.elastic = pyo.Var(self.budgets, domain=pyo.NonNegativeReals)
        for b in self.budgets:
            m.elastic[b].fix(0)
        self._cost_expr = {b: sum(self._terms(pr.costs[b], self._scales[b])) for b in pr.columns}
        m.budget = pyo.Constraint(self.budgets, rule=lambda m, b: self._cost_expr[b] - m.elastic[b] <= m.rhs[b])
        s_max = float(pr.sensitivity.max())
        self._sens_scale = 1.0 / s_max if s_max > 0 else 1.0
        sens_expr = sum(self._terms(pr.sensitivity, self._sens_scale))
        m.obj_sensitivity = pyo.Objective(expr=sens_expr if not isinstance(sens_expr, int) else 0 * m.x[0, 0])
        m.obj_elastic = pyo.Objective(expr=sum(m.elastic[b] for b in self.budgets) if self.budgets else 0 * m.x[0, 0])
        m.obj_elastic.deactivate()
        self._objectives = {SENSITIVITY: m.obj_sensitivity, "elastic": m.obj_elastic}

    def _objective(self, name: str):
        if name not in self._objectives:
            if name not in self.problem.costs:
                raise SearchInputError(
                    f"unknown objective {name!r} (sensitivity or one of: {', '.join(self.problem.columns)})"
                )
            obj = self._pyo.Objective(expr=self._cost_expr[name])
            self.m.add_component(f"obj_cost_{len(self._objectives)}", obj)
            obj.deactivate()
            self._objectives[name] = obj
        return self._objectives[name]

    # --- solving ----------------------------------------------------------------------------------------------
    def _set_limits(self, limits: Mapping[str, float]) -> dict[str, float]:
        clean = check_limits(self.budgets, limits)
        for b in self.budgets:
            self.m.rhs[b] = clean[b] * self._scales[b] if b in clean else _INF_RHS
        return clean

    def _run(self, objective: str, time_limit: float | None):
        from pyomo.contrib.solver.common.results import TerminationCondition

        for name, obj in self._objectives.items():
            (obj.activate if name == objective else obj.deactivate)()
        # HiGHS 1.16 re-solving a MIP after a row bound changed can return the previous optimum as optimal for the
        # new bounds (docs/search.md, "Solver notes"): drop its solver state; the model itself stays built
        highs = getattr(self._solver, "_solver_model", None)
        if highs is not None:
            highs.clearSolver()
        options = {
            "mip_feasibility_tolerance": _FEAS_TOL,
            "primal_feasibility_tolerance": _FEAS_TOL,
            "dual_feasibility_tolerance": 1e-10,
            "random_seed": 0,
            "output_flag": False,
        }
        start = time.perf_counter()
        with sigint_kept():  # HiGHS's interrupt callback would swallow a Ctrl-C (search/interrupts.py)
            res = self._solver.solve(
                self.m,
                rel_gap=0.0,
                abs_gap=0.0,
                threads=1,
                time_limit=time_limit,
                solver_options=options,
                raise_exception_on_nonoptimal_result=False,
                load_solutions=False,
            )
            if res.termination_condition in (
                TerminationCondition.provenInfeasible,
                TerminationCondition.infeasibleOrUnbounded,
            ):
                # an infeasibility verdict is confirmed without presolve before anyone is told: HiGHS
                # 1.12-1.15 presolve has declared feasible models infeasible (docs/search.md)
                res = self._solver.solve(
                    self.m,
                    rel_gap=0.0,
                    abs_gap=0.0,
                    threads=1,
                    time_limit=time_limit,
                    solver_options={**options, "presolve": "off"},
                    raise_exception_on_nonoptimal_result=False,
                    load_solutions=False,
                )
        seconds = time.perf_counter() - start
        return res, seconds

    def _choice(self) -> np.ndarray:
        pr = self.problem
        vals = np.array([[self.m.x[u, p].value or 0.0 for p in range(pr.n_pairs)] for u in range(pr.n_units)])
        return vals.argmax(axis=1).astype(np.int64)

    def solve(
        self, limits: Mapping[str, float] | None = None, objective: str = SENSITIVITY, time_limit: float | None = None
    ) -> Solution:
        """Minimize ``objective`` (total sensitivity, or a cost column) under ``limits`` (no diagnosis of
        infeasible budgets: :class:`search.ilp.AssignmentModel` gives one)."""
        from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

        time_limit = check_time_limit(time_limit)
        limits = self._set_limits(limits or {})
        self._objective(objective)
        res, seconds = self._run(objective, time_limit)
        tc = res.termination_condition
        if tc in (TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded) or (
            res.solution_status == SolutionStatus.noSolution and tc != TerminationCondition.maxTimeLimit
        ):
            raise InfeasibleBudgetError("no assignment meets every budget", {})
        if res.solution_status == SolutionStatus.noSolution:
            raise SearchInputError(f"no assignment found within the time limit of {time_limit} s")
        res.solution_loader.load_vars()
        optimal = tc == TerminationCondition.convergenceCriteriaSatisfied
        return Solution.of(
            self.problem,
            self._choice(),
            "optimal" if optimal else "time_limit",
            limits,
            seconds,
            f"highs {'.'.join(map(str, self._solver.version()))} via pyomo",
            objective_name=objective,
            gap=0.0 if optimal else relative_gap(res.incumbent_objective, res.objective_bound),
        )

    def coupling_residual(self) -> float:
        """Largest |y[l, p, o] - x[unit(l), p] * z[c, o]| in the loaded solution (0 for exact coupling)."""
        pr = self.problem
        if not self._product_layers:
            return 0.0
        own = pr.out_index()[0]
        worst = 0.0
        for l in self._product_layers:
            c = pr.consumer[l]
            for o in range(pr.n_widths):
                z = sum(self.m.x[int(pr.unit_of[c]), q].value or 0.0 for q in range(pr.n_pairs) if own[q] == o)
                for p in range(pr.n_pairs):
                    x = self.m.x[int(pr.unit_of[l]), p].value or 0.0
                    worst = max(worst, abs((self.m.y[l, p, o].value or 0.0) - x * z))
        return worst

    def minimum(self, column: str, limits: Mapping[str, float] | None = None) -> float | None:
        """Smallest total of ``column`` under ``limits`` (None when they are infeasible)."""
        try:
            return self.solve(limits, objective=column).totals[column]
        except InfeasibleBudgetError:
            return None
