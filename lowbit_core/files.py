"""Atomic file writes, and the checks of output paths that run before any work starts.

Every file lowbit publishes is written to a temporary file in the target's directory and renamed over the target
only when the write succeeded, so readers never see a partial file and a failed or interrupted run leaves the old
file (or nothing) in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from lowbit_core.errors import InputError

__all__ = [
    "atomic_path",
    "atomic_write",
    "missing_ancestors",
    "check_output_path",
]


class atomic_path:  # noqa: N801 - used as a context manager, named like one
    """``with atomic_path(p) as tmp``: a fresh temporary path beside ``p``, renamed over ``p`` if the block
    succeeds and removed if it raises (or if the rename fails, e.g. ``p`` is a directory)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tmp = self.path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
                os.replace(self.tmp, self.path)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
        else:
            self.tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path`` atomically: ``write(f)`` fills a temporary binary file (flushed to disk before the rename).

    On any error the temporary file is removed and ``path`` is untouched.  Returns ``path`` as a Path."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return target


def missing_ancestors(directory: str | os.PathLike[str]) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, innermost first: what creating it would make (and
    what a failed run should remove again)."""
    missing = []
    d = Path(directory)
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_path(
    path: str | os.PathLike[str],
    what: str,
    *,
    directory: bool = False,
    suffixes: tuple[str, ...] | None = None,
    error: type[InputError] = InputError,
) -> Path:
    """Check, creating nothing, that the ``what`` (its role, e.g. ``"cost table"``, ``"integer export"``) can be
    written at ``path``: a file, or with ``directory`` a directory, that exists or can be created.

    Refuses with one line of ``error`` naming ``path``, ``what`` and the cause: a directory where a file is needed or
    the reverse, a suffix not in ``suffixes`` (when given), a first existing ancestor that is a file, and a directory
    without write permission.  An existing file is accepted: it is replaced by a rename in its directory."""
    out = Path(path)
    if out.exists() and out.is_dir() != directory:
        if directory:
            raise error(f"{out}: is a file, not a directory; the {what} needs a directory path")
        raise error(f"{out}: is a directory; the {what} needs a file path")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise error(f"{out}: unknown file type {out.suffix or '(none)'!r} for the {what}; use {', '.join(suffixes)}")
    anchor = _nearest_existing(out if directory else out.parent)
    if not anchor.is_dir():
        raise error(f"{out}: cannot create the {what}: {anchor} is a file, not a directory")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise error(f"{out}: cannot write the {what}: {anchor} is not writable (no permission)")
    return out
