"""Reading and writing tables (CSV or Parquet by suffix) atomically, reading YAML, and checking output paths.

Every YAML file lowbit reads goes through :func:`read_yaml`, which refuses duplicate mapping keys.  The CLI
calls :func:`check_output_file` / :func:`check_output_dir` on ``--out`` before any work starts.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from sim.errors import InputError

__all__ = ["write_table", "read_table", "atomic_path", "read_yaml", "check_output_file", "check_output_dir",
           "missing_ancestors",
           "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
SUFFIXES = TABLE_SUFFIXES  # the former name


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
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
            try:
                os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
                os.replace(self.tmp, self.path)
            except BaseException:  # e.g. the target is a directory: leave no temp file behind
                self.tmp.unlink(missing_ok=True)
                raise
        else:
            self.tmp.unlink(missing_ok=True)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable_under(path: Path, what: str) -> None:
    """Refuse ``path`` if its nearest existing ancestor is not a directory or cannot be written."""
    anchor = _nearest_existing(path.parent if path.parent != path else path)
    if not anchor.is_dir():
        raise InputError(f"{path}: cannot create the {what}: {anchor} is a file, not a directory")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot create the {what}: no permission to write in {anchor}")


def missing_ancestors(directory: str | os.PathLike[str]) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, innermost first: what creating it would make (and
    what a failed run should remove again)."""
    missing = []
    d = Path(directory)
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing


def check_output_file(path: str | os.PathLike[str], suffixes: tuple[str, ...] | None = None) -> Path:
    """Check that an output file can be written at ``path`` without creating anything.

    Refuses (one-line :class:`InputError`) an existing directory, a suffix not in ``suffixes`` (when given,
    e.g. :data:`TABLE_SUFFIXES`), an ancestor that is a regular file, and an unwritable directory.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file path (e.g. {p / 'costs.csv'})")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise InputError(f"{p}: unknown file type {p.suffix or '(none)'!r}; use {', '.join(suffixes)}")
    _check_creatable_under(p, "file")  # an existing file is replaced by a rename in its directory
    return p


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is, or can be created as, a writable directory, without creating anything.

    Refuses (one-line :class:`InputError`) an existing non-directory, an ancestor that is a regular file,
    and an unwritable directory.
    """
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{p}: exists and is not a directory; give a directory path")
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{p}: cannot write in this directory (no permission)")
    else:
        _check_creatable_under(p, "directory")
    return p


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` (.csv or .parquet) atomically: temp file + rename."""
    path = check_output_file(path)
    suffix = _check_suffix(path)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


@lru_cache(maxsize=1)
def _unique_key_loader() -> type:
    """A safe YAML loader (libyaml's when available) that refuses a mapping key given twice."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first_line: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may override keys
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        if key in first_line:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"duplicate key {key!r} (first on line {first_line[key]})",
                                key_node.start_mark)
                        first_line[key] = key_node.start_mark.line + 1
                    except TypeError:  # unhashable: the base constructor reports it
                        continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file, or a mapping key given twice, is a
    one-line InputError naming the line.

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
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
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
