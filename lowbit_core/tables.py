"""Tables on disk, CSV or Parquet by suffix: one reader and one atomic writer for every package."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lowbit_core.errors import InputError
from lowbit_core.files import atomic_path, check_output_path

__all__ = ["TABLE_SUFFIXES", "read_table", "write_table"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _suffix(path: Path, what: str, error: type[InputError]) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise error(f"{path}: unknown {what} format {suffix or '(none)'!r}; use .csv or .parquet")
    return suffix


def read_table(
    path: str | os.PathLike[str],
    what: str = "table",
    *,
    allow_empty: bool = False,
    error: type[InputError] = InputError,
) -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` table; a missing, unreadable or malformed file (or, unless
    ``allow_empty``, one without rows) is a one-line ``error`` naming the file and ``what`` it should be."""
    p = Path(path)
    suffix = _suffix(p, what, error)
    if not p.is_file():
        raise error(f"{p}: no such {what}")
    try:
        frame = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types; all mean "malformed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{p}: cannot read {what} ({first})") from None
    if frame.empty and not allow_empty:
        raise error(f"{p}: {what} has no rows")
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], *, error: type[InputError] = InputError) -> Path:
    """Write ``frame`` (without its index) to ``path`` as CSV or Parquet by suffix, atomically."""
    p = check_output_path(path, "table", error=error)
    suffix = _suffix(p, "table", error)
    with atomic_path(p) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return p
