"""Reading and writing tables (CSV or Parquet by suffix), atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from sim.errors import InputError

__all__ = ["write_table", "read_table", "atomic_path", "read_yaml"]

SUFFIXES = (".csv", ".parquet", ".pq")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unknown table format {suffix or '(none)'!r}; use .csv or .parquet")
    return suffix


class atomic_path:  # noqa: N801 - used as a context manager
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` (.csv or .parquet) atomically: temp file + rename."""
    path = Path(path)
    suffix = _check_suffix(path)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file is a one-line InputError.

    ``what`` names the file's role in messages, e.g. ``"chip file"``.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read {what} ({exc})".replace("\n", " ")) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{p}: malformed YAML: {at}{problem}".replace("\n", " ")) from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a .csv or .parquet table; errors are one-line InputErrors."""
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read table ({str(exc).splitlines()[0]})") from None
