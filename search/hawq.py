"""The HAWQ-V3 ILP (Yao et al., ICML 2021) on its released per-layer data, solved by lowbit's ILP.

Facts checked against their notebook (``ILP.ipynb`` in github.com/Zhen-Dong/HAWQ):

* Every layer is 4-bit or 8-bit (PuLP integer x ∈ {1, 2}), read here as w4a4 or w8a8.
* Sensitivity Ω = Hutchinson trace × ‖W − Q(W)‖² at the layer's bits.  The trace is already divided
  by the layer's parameter count.  The notebook minimizes Σ (x − 1)·trace·(Δ8 − Δ4), which is
  Σ Ω − Σ Ω(4-bit), a constant offset.
* The instance columns map to costs as follows:
  * size = 0.5·params (int4) or 1.0·params (int8), with params in millions;
  * bops = bops_fp/64 (int4) or bops_fp/16 (int8), where ``bops_fp`` is the layer's MAC count in
    millions;
  * latency = the TVM latency measured on a T4 at int4 or int8, in ms.
* One budget at a time (three separate problems).  The limit is the all-4-bit total + f·(all-8-bit
  total − all-4-bit total).  The notebook sets f = 0.5 and describes 0.25.
* The ties hold in all three problems.  The downsample conv takes the bits of its block's *first* conv:
  the two read the same input.  Ties are x4=x6, x9=x11, x14=x16 (ResNet-18) and x0=x3, x10=x13,
  x23=x26, x42=x45 (ResNet-50).  The instance's ``group`` column carries them.
* Solver: PuLP with GLPK (``--tmlim 10000 --simplex``).

Run ``python -m search.hawq --table PATH...`` for the table of all 18 solves in docs/search.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lowbit_core.tables import read_table
from search.errors import SearchInputError
from search.ilp import AssignmentModel
from search.problem import Problem, build_problem
from search.solution import Solution

__all__ = [
    "load_hawq_instance",
    "hawq_problem",
    "hawq_limit",
    "solve_hawq",
    "hawq_table",
    "markdown_table",
    "HAWQ_BUDGETS",
    "HAWQ_FRACTIONS",
]

#: The budgets of the notebook, one at a time: the cost-table column each one limits.
HAWQ_BUDGETS = ("size", "bops", "latency")
#: The fractions f of the limit (all-4-bit total + f·(all-8-bit − all-4-bit)).
HAWQ_FRACTIONS = (0.25, 0.5, 0.75)
_COLUMNS = (
    "layer",
    "group",
    "hutchinson_trace",
    "delta_w4_sq",
    "delta_w8_sq",
    "parameters",
    "bops_fp",
    "latency_int4",
    "latency_int8",
)


def load_hawq_instance(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The instance CSV -> (cost table, sensitivity table), with pairs w4a4 and w8a8.

    The cost table has the columns ``layer, w_bits, a_bits, size, bops, latency, group``.  The
    sensitivity table has ``layer, w_bits, a_bits, sensitivity, method`` (the module docstring gives
    the units)."""
    frame = read_table(path, "HAWQ-V3 instance", error=SearchInputError)
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise SearchInputError(f"{path}: HAWQ-V3 instance is missing column(s) {', '.join(missing)}")
    values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64) for c in _COLUMNS}
    for c, v in values.items():
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SearchInputError(
                f"{path}: column {c!r} must be finite and >= 0; row {row} has {frame[c].iloc[row]!r}"
            )
    layer, group = values["layer"].astype(np.int64), values["group"].astype(np.int64)
    costs, sens = [], []
    for bits, size, bops_div in ((8, 1.0, 16.0), (4, 0.5, 64.0)):
        costs.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "w_bits": bits,
                    "a_bits": bits,
                    "size": size * values["parameters"],
                    "bops": values["bops_fp"] / bops_div,
                    "latency": values[f"latency_int{bits}"],
                    "group": group,
                }
            )
        )
        sens.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "w_bits": bits,
                    "a_bits": bits,
                    "sensitivity": values["hutchinson_trace"] * values[f"delta_w{bits}_sq"],
                    "method": "hawq_v3",
                }
            )
        )
    return pd.concat(costs, ignore_index=True), pd.concat(sens, ignore_index=True)


def hawq_problem(path: str | Path) -> Problem:
    """The :class:`Problem` of an instance CSV (columns ``size, bops, latency``; ties from ``group``)."""
    costs, sens = load_hawq_instance(path)
    return build_problem(costs, sens, HAWQ_BUDGETS, pairs=[(8, 8), (4, 4)])


def hawq_limit(problem: Problem, budget: str, f: float) -> float:
    """The notebook's limit: all-4-bit total + ``f``·(all-8-bit total − all-4-bit total) of ``budget``."""
    if budget not in HAWQ_BUDGETS:
        raise SearchInputError(f"unknown HAWQ-V3 budget {budget!r} (one of: {', '.join(HAWQ_BUDGETS)})")
    if not 0.0 <= float(f) <= 1.0:
        raise SearchInputError(f"HAWQ-V3 fraction f must be in [0, 1], got {f!r}")
    index = {(int(w), int(a)): p for p, (w, a) in enumerate(problem.pairs)}
    totals = {
        bits: float(problem.evaluate(problem.uniform_choice(index[(bits, bits)]), [budget])[1][budget])
        for bits in (4, 8)
    }
    return totals[4] + float(f) * (totals[8] - totals[4])


def solve_hawq(instance_csv: str | Path, budget: str, f: float) -> Solution:
    """Minimum total Ω with one budget (``size``, ``bops`` or ``latency``) at fraction ``f``."""
    problem = hawq_problem(instance_csv)
    limit = hawq_limit(problem, budget, f)
    return AssignmentModel(problem, [budget]).solve({budget: limit})


def hawq_table(paths: Sequence[str | Path], fractions: Sequence[float] = HAWQ_FRACTIONS) -> pd.DataFrame:
    """Every instance × budget × fraction, one model per instance: ``network, budget, f, limit, used,
    objective`` (Σ Ω), ``layers_4bit`` (of ``layers``), ``status`` and ``solve_seconds``."""
    rows = []
    for path in paths:
        problem = hawq_problem(path)
        model = AssignmentModel(problem, HAWQ_BUDGETS)
        four = int(np.flatnonzero((problem.pairs == 4).all(axis=1))[0])
        for budget in HAWQ_BUDGETS:
            for f in fractions:
                limit = hawq_limit(problem, budget, f)
                s = model.solve({budget: limit})
                rows.append(
                    {
                        "network": Path(path).stem,
                        "budget": budget,
                        "f": float(f),
                        "limit": limit,
                        "used": s.totals[budget],
                        "objective": s.sensitivity,
                        "layers_4bit": int((problem.layer_choice(s.choice) == four).sum()),
                        "layers": problem.n_layers,
                        "status": s.status,
                        "solve_seconds": s.solve_seconds,
                    }
                )
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """The table of docs/search.md (solve times left out: they vary from run to run)."""
    lines = [
        "| network | budget | f | limit | used | Σ Ω (objective) | layers at 4 bits | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.network} | {r.budget} | {r.f:g} | {r.limit:.6g} | {r.used:.6g} | {r.objective:.6g} | "
            f"{r.layers_4bit} of {r.layers} | {r.status} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.hawq", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="HAWQ-V3 instance CSVs (e.g. resnet18.csv resnet50.csv)")
    parser.add_argument("--table", action="store_true", help="print the markdown table of docs/search.md")
    args = parser.parse_args(argv)
    try:
        table = hawq_table(args.paths)
    except SearchInputError as exc:
        sys.stderr.write(f"search.hawq: error: {exc}\n")
        return 2
    print(markdown_table(table) if args.table else table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
