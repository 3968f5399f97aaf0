"""Writing and reading the assignment (``search`` -> everything else): a table plus a JSON sidecar."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lowbit_core.files import atomic_path
from lowbit_core.tables import read_table, write_table
from search.errors import SearchInputError
from search.solution import Solution

__all__ = ["write_assignment", "read_assignment", "ASSIGNMENT_COLUMNS"]

#: The columns every assignment table starts with (DESIGN.md); per-layer sensitivity and costs follow.
ASSIGNMENT_COLUMNS = ("layer", "name", "w_bits", "a_bits")


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_assignment(solution: Solution, out_dir: str | Path, extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/assignment.csv`` and ``out_dir/assignment.json`` (each atomically)."""
    out = Path(out_dir)
    table = write_table(solution.assignment(), out / "assignment.csv")
    meta = {**solution.summary(), **(extra or {})}
    sidecar = out / "assignment.json"
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(_jsonable(meta), indent=2) + "\n")
    return table, sidecar


def read_assignment(path: str | Path) -> pd.DataFrame:
    """Read an assignment table (a directory holding ``assignment.csv``, or the table itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "assignment.csv"
    frame = read_table(p, "assignment", error=SearchInputError)
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns and c != "name"]
    if missing:
        raise SearchInputError(f"{p}: assignment is missing column(s) {', '.join(missing)}")
    return frame.sort_values("layer", kind="stable").reset_index(drop=True)
