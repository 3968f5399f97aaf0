"""Atomic file writes for quant (no torch import, so quant.integer stays light)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from quant.errors import QuantInputError

__all__ = ["atomic_write", "check_output_path"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path`` atomically: ``write(f)`` fills a temporary file in the same directory, which then replaces it.

    Readers never see a partially written file; on any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; cache files are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def check_output_path(path: str | os.PathLike[str], what: str, *, directory: bool = False) -> Path:
    """Refuse, before any work starts, an output ``path`` that could not be written: a file where a directory is
    needed (``directory=True``) or a directory where a file is, or a first existing ancestor that is a file or is not
    writable.  Returns ``path`` as a :class:`~pathlib.Path`; raises :class:`QuantInputError` naming ``what``."""
    out = Path(path)
    if out.exists() and out.is_dir() != directory:
        kind = "a directory" if out.is_dir() else "a file"
        raise QuantInputError(f"{out}: is {kind}; the {what} needs {'a directory' if directory else 'a file'} path")
    parent = out if directory else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise QuantInputError(f"{parent}: is a file, so the {what} {out} cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise QuantInputError(f"{parent}: not writable, so the {what} {out} cannot be created")
    return out
