"""Reading cost and sensitivity tables (CSV or Parquet) without ``sim``: users bring tables from anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from search.errors import SearchInputError

__all__ = ["read_table", "write_table_atomic", "atomic_target"]


def read_table(path: str | Path, what: str = "table") -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` table; any failure is a one-line :class:`SearchInputError`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SearchInputError(f"{p}: unknown {what} format {suffix or '(none)'!r}; use .csv or .parquet")
    if not p.is_file():
        raise SearchInputError(f"{p}: no such {what}")
    try:
        frame = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types; all mean "malformed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SearchInputError(f"{p}: cannot read {what} ({first})") from None
    if frame.empty:
        raise SearchInputError(f"{p}: {what} has no rows")
    return frame


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (no partial files on failure)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        yield tmp
        tmp.replace(p)
    finally:
        tmp.unlink(missing_ok=True)


def write_table_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) through a temporary file and a rename."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SearchInputError(f"{p}: unknown table format {suffix or '(none)'!r}; use .csv or .parquet")
    with atomic_target(p) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return p
