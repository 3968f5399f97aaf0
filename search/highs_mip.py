"""The assignment MIP as arrays, solved by HiGHS through highspy's core binding.

Columns: ``x[u, p]`` (binary, unit ``u`` takes pair ``p``), the product variables ``y[k, p, o]`` of the coupled
layers whose cost is not separable (continuous in [0, 1]; module docstring of :mod:`search.ilp` for why the two
transport equalities make them exact), and one elastic violation ``e_b`` per budget (fixed at 0 except in the
infeasibility diagnosis).  Rows: one pair per unit, the transport equalities, one row per budget.

Every objective column (sensitivity, each cost column, the elastic sum) is kept as a cost vector; bounds, limits
and the objective are pushed to HiGHS before each run, so one built model serves every solve.  The solver state
is cleared before each MIP run: HiGHS 1.16 re-solving a MIP after a row bound changed returned the previous
optimum (docs/search.md, "Solver notes"); a start is given explicitly instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from search.interrupts import sigint_kept
from search.problem import Problem

__all__ = ["HighsMip", "RunResult", "ELASTIC", "column_scale", "product_layers"]

#: Name of the objective that sums the elastic violations.
ELASTIC = "elastic"
_INF = 1e30  # HiGHS reads bounds >= 1e20 as infinite
_FEAS_TOL = 1e-9
_OPTIONS: dict[str, object] = {
    "output_flag": False,
    "threads": 1,
    "random_seed": 0,
    "mip_rel_gap": 0.0,
    "mip_abs_gap": 0.0,
    "mip_feasibility_tolerance": _FEAS_TOL,
    "primal_feasibility_tolerance": _FEAS_TOL,
    "dual_feasibility_tolerance": 1e-10,
}
#: With a start (the pipeline's runs), chosen on held-out instances (docs/search.md, "Speed"): HiGHS gets a
#: near-optimal incumbent and a pruned model, so its root heuristics that hunt for incumbents and its restarts only
#: cost time.  Without a start HiGHS keeps its defaults, which it needs there.
_WITH_START: dict[str, bool] = {
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_allow_restart": False,
}


@dataclass(frozen=True)
class RunResult:
    """What one HiGHS run found: ``status`` optimal | infeasible | time_limit | no_solution."""

    status: str
    choice: np.ndarray | None  # [U] pair per unit when a solution exists
    columns: np.ndarray | None  # every column's value
    objective: float  # scaled objective of the solution (nan without one)
    bound: float  # scaled dual bound
    row_duals: np.ndarray | None  # LP runs only


class HighsMip:
    """The MIP of ``problem`` with ``budgets`` as limit rows; objectives are the sensitivity and every cost
    column, each scaled as :meth:`scale_of` says."""

    def __init__(self, problem: Problem, budgets: Sequence[str]) -> None:
        import highspy  # lazy: only solves need it

        self._hs = highspy
        self.problem = pr = problem
        self.budgets = list(budgets)
        self.scales = {b: column_scale(pr.costs[b], pr.n_layers) for b in pr.columns}
        s_max = float(pr.sensitivity.max()) if pr.sensitivity.size else 0.0
        self.scales["sensitivity"] = 1.0 / s_max if s_max > 0 else 1.0
        self.product_layers = product_layers(pr)
        n_x = pr.n_units * pr.n_pairs
        n_o = pr.n_widths
        self.n_x, self._n_o = n_x, n_o
        self._y0 = n_x
        n_y = len(self.product_layers) * pr.n_pairs * n_o
        self._e0 = n_x + n_y
        self.n_cols = self._e0 + len(self.budgets)
        rows: list[tuple[list[int], list[float], float, float]] = []
        for u in range(pr.n_units):  # one pair per unit
            rows.append(([u * pr.n_pairs + p for p in range(pr.n_pairs)], [1.0] * pr.n_pairs, 1.0, 1.0))
        own = pr.out_index()[0] if pr.coupled else np.zeros(0, dtype=np.int64)  # indexed only when coupled
        for k, layer in enumerate(self.product_layers):  # transport equalities
            u, c = int(pr.unit_of[layer]), int(pr.unit_of[pr.consumer[layer]])
            for p in range(pr.n_pairs):
                idx = [self._y(k, p, o) for o in range(n_o)] + [u * pr.n_pairs + p]
                rows.append((idx, [1.0] * n_o + [-1.0], 0.0, 0.0))
            for o in range(n_o):
                qs = [q for q in range(pr.n_pairs) if own[q] == o]
                idx = [self._y(k, p, o) for p in range(pr.n_pairs)] + [c * pr.n_pairs + q for q in qs]
                rows.append((idx, [1.0] * pr.n_pairs + [-1.0] * len(qs), 0.0, 0.0))
        self._costs = {
            name: self._cost_vector(table, self.scales[name])
            for name, table in {"sensitivity": pr.sensitivity, **pr.costs}.items()
        }
        elastic = np.zeros(self.n_cols)
        elastic[self._e0 :] = 1.0
        self._costs[ELASTIC] = elastic
        self._budget_row0 = len(rows)
        for j, b in enumerate(self.budgets):
            vec = self._costs[b]
            idx = [int(i) for i in np.flatnonzero(vec[: self._e0])] + [self._e0 + j]
            rows.append((idx, [float(vec[i]) for i in idx[:-1]] + [-1.0], -_INF, _INF))
        self._rows = rows
        self.col_upper = np.ones(self.n_cols)
        self.col_upper[self._e0 :] = 0.0
        self.rhs = np.full(len(self.budgets), _INF)
        self.objective = "sensitivity"
        self._mip = self._new_solver(integer=True)
        self._lp = self._new_solver(integer=False)

    # --- construction -------------------------------------------------------------------------------------
    def _y(self, k: int, p: int, o: int) -> int:
        return self._y0 + (k * self.problem.n_pairs + p) * self._n_o + o

    def _cost_vector(self, table: np.ndarray, scale: float) -> np.ndarray:
        """Per-column coefficients of a per-layer table ([L, P] or [L, P, O]) over x and y."""
        pr = self.problem
        vec = np.zeros(self.n_cols)
        unit_coef = np.zeros((pr.n_units, pr.n_pairs))
        if table.ndim == 2:
            np.add.at(unit_coef, pr.unit_of, table)
        else:
            own = pr.out_index()[0]
            pairs = np.arange(pr.n_pairs)
            product = {layer: k for k, layer in enumerate(self.product_layers)}
            for layer in range(pr.n_layers):
                u, c = int(pr.unit_of[layer]), int(pr.consumer[layer])
                if layer in product:
                    k = product[layer]
                    for p in pairs:
                        for o in range(self._n_o):
                            vec[self._y(k, int(p), o)] += table[layer, p, o] * scale
                elif c < 0:
                    unit_coef[u] += table[layer, pairs, own]
                else:  # separable: cost[p, o] = cost[p, 0] + (cost[0, o] - cost[0, 0])
                    unit_coef[u] += table[layer, :, 0]
                    unit_coef[int(pr.unit_of[c])] += table[layer, 0, own] - table[layer, 0, 0]
        vec[: self.n_x] = unit_coef.ravel() * scale
        return vec

    def _new_solver(self, integer: bool):
        hs = self._hs
        lp = hs.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = len(self._rows)
        lp.col_cost_ = self._costs[self.objective]
        lp.col_lower_ = np.zeros(self.n_cols)
        lp.col_upper_ = self.col_upper
        lp.row_lower_ = np.array([r[2] for r in self._rows])
        lp.row_upper_ = np.array([r[3] for r in self._rows])
        # column-wise matrix from the row lists
        entries = [(col, i, val) for i, (idx, vals, _, _) in enumerate(self._rows) for col, val in zip(idx, vals)]
        entries.sort()
        cols = np.array([e[0] for e in entries], dtype=np.int64)
        lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.searchsorted(cols, np.arange(self.n_cols + 1)).astype(np.int32)
        lp.a_matrix_.index_ = np.array([e[1] for e in entries], dtype=np.int32)
        lp.a_matrix_.value_ = np.array([e[2] for e in entries], dtype=np.float64)
        if integer:
            kinds = [hs.HighsVarType.kInteger] * self.n_x + [hs.HighsVarType.kContinuous] * (self.n_cols - self.n_x)
            lp.integrality_ = kinds
        solver = hs._core._Highs()  # noqa: SLF001 - highspy's array interface (addRows/addCols without per-call Python objects)
        for key, value in _OPTIONS.items():
            solver.setOptionValue(key, value)
        solver.passModel(lp)
        return solver

    # --- state ---------------------------------------------------------------------------------------------
    def scale_of(self, name: str) -> float:
        return self.scales[name]

    def set_limits(self, limits_scaled: Mapping[str, float]) -> None:
        """Scaled right-hand sides; a budget not named is unlimited."""
        self.rhs = np.array([min(float(limits_scaled.get(b, _INF)), _INF) for b in self.budgets])

    def set_objective(self, name: str) -> None:
        self.objective = name

    def set_elastic(self, on: bool) -> None:
        self.col_upper[self._e0 :] = _INF if on else 0.0

    def set_allowed(self, allowed: np.ndarray | None) -> None:
        """[U, P] booleans: x[u, p] may be 1 only where allowed (None: everywhere)."""
        self.col_upper[: self.n_x] = 1.0 if allowed is None else np.asarray(allowed, dtype=np.float64).ravel()

    def start_columns(self, choice: np.ndarray) -> np.ndarray:
        """Every column's value for a per-unit choice (elastic violations 0)."""
        pr = self.problem
        values = np.zeros(self.n_cols)
        values[np.arange(pr.n_units) * pr.n_pairs + choice] = 1.0
        own = pr.out_index()[0] if pr.coupled else np.zeros(0, dtype=np.int64)  # indexed only when coupled
        for k, layer in enumerate(self.product_layers):
            p = int(choice[pr.unit_of[layer]])
            o = int(own[choice[pr.unit_of[pr.consumer[layer]]]])
            values[self._y(k, p, o)] = 1.0
        return values

    def elastic_values(self, columns: np.ndarray) -> dict[str, float]:
        """Each budget's (scaled) elastic violation in a solution's ``columns``."""
        return {b: float(columns[self._e0 + j]) for j, b in enumerate(self.budgets)}

    def coupling_residual(self, columns: np.ndarray) -> float:
        """Largest |y[k, p, o] - x[unit(l), p] * z[c, o]| in ``columns`` (0 when the coupling is exact)."""
        pr = self.problem
        x = columns[: self.n_x].reshape(pr.n_units, pr.n_pairs)
        own = pr.out_index()[0] if pr.coupled else np.zeros(0, dtype=np.int64)  # indexed only when coupled
        worst = 0.0
        for k, layer in enumerate(self.product_layers):
            z = np.array([x[pr.unit_of[pr.consumer[layer]], own == o].sum() for o in range(self._n_o)])
            y = columns[self._y(k, 0, 0) : self._y(k, 0, 0) + pr.n_pairs * self._n_o].reshape(pr.n_pairs, self._n_o)
            worst = max(worst, float(np.abs(y - np.outer(x[pr.unit_of[layer]], z)).max()))
        return worst

    def _push(self, solver) -> None:
        n = self.n_cols
        idx = np.arange(n, dtype=np.int32)
        solver.changeColsCost(n, idx, self._costs[self.objective])
        solver.changeColsBounds(n, idx, np.zeros(n), self.col_upper)
        nb = len(self.budgets)
        if nb:
            rows = np.arange(self._budget_row0, self._budget_row0 + nb, dtype=np.int32)
            solver.changeRowsBounds(nb, rows, np.full(nb, -_INF), self.rhs)

    # --- runs ------------------------------------------------------------------------------------------------
    def run_lp(self) -> RunResult:
        """The LP relaxation under the current state (with row duals)."""
        solver = self._lp
        self._push(solver)
        with sigint_kept():
            solver.run()
        return self._result(solver, lp=True)

    def run_mip(
        self, start: np.ndarray | None = None, time_limit: float | None = None, presolve: bool = True
    ) -> RunResult:
        """The MIP under the current state, from ``start`` (a per-unit choice) if given."""
        solver = self._mip
        solver.clearSolver()
        self._push(solver)
        solver.setOptionValue("time_limit", float(time_limit) if time_limit is not None else float("inf"))
        solver.setOptionValue("presolve", "choose" if presolve else "off")
        for key, value in _WITH_START.items():  # the defaults are all True
            solver.setOptionValue(key, value if start is not None else True)
        if start is not None:
            values = self.start_columns(start)
            solver.setSolution(self.n_cols, np.arange(self.n_cols, dtype=np.int32), values)
        with sigint_kept():
            solver.run()
        return self._result(solver, lp=False)

    def _result(self, solver, lp: bool) -> RunResult:
        hs = self._hs
        status = solver.getModelStatus()
        info = solver.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if status == hs.HighsModelStatus.kOptimal:
            name = "optimal"
        elif status in (hs.HighsModelStatus.kInfeasible, hs.HighsModelStatus.kUnboundedOrInfeasible):
            name = "infeasible"
        elif status == hs.HighsModelStatus.kTimeLimit:
            name = "time_limit" if has_solution else "no_solution"
        elif status == hs.HighsModelStatus.kInterrupt:
            raise KeyboardInterrupt
        else:
            raise RuntimeError(f"HiGHS stopped with status {solver.modelStatusToString(status)}")
        if not has_solution or name == "infeasible":
            return RunResult(name, None, None, float("nan"), float("nan"), None)
        sol = solver.getSolution()
        columns = np.asarray(sol.col_value)
        x = columns[: self.n_x].reshape(self.problem.n_units, self.problem.n_pairs)
        bound = info.objective_function_value if lp else info.mip_dual_bound
        duals = np.asarray(sol.row_dual)[self._budget_row0 :] if lp else None
        return RunResult(
            name, x.argmax(axis=1).astype(np.int64), columns, float(info.objective_function_value), float(bound), duals
        )

    def version(self) -> str:
        solver = self._mip
        return f"{solver.versionMajor()}.{solver.versionMinor()}.{solver.versionPatch()}"


def column_scale(table: np.ndarray, n_layers: int) -> float:
    """1 / the largest total ``table`` can reach (1 if that is 0)."""
    worst = table.reshape(n_layers, -1).max(axis=1).sum()
    return 1.0 / worst if worst > 0 else 1.0


def product_layers(pr: Problem) -> list[int]:
    """Coupled layers whose cost is not separable in (own pair, consumer's width) for some column: only these
    need product variables.  ``cost[p, o]`` is separable iff ``cost[p, o] - cost[p, 0] - cost[0, o] + cost[0, 0]
    == 0`` for all p, o."""
    if not pr.coupled or pr.n_widths < 2:
        return []
    need = np.zeros(pr.n_layers, dtype=bool)
    for table in pr.costs.values():
        interaction = table - table[:, :, :1] - table[:, :1, :] + table[:, :1, :1]
        size = np.abs(table).max(axis=(1, 2))
        need |= np.abs(interaction).max(axis=(1, 2)) > 1e-12 * size
    return [int(v) for v in np.flatnonzero(need & (pr.consumer >= 0))]
