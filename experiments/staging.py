"""All-or-nothing output directories for the CLI verbs that write several files.

A verb builds its files in a temporary sibling of ``--out``; only when it finishes are they moved into ``--out``,
each with an atomic rename.  A run that fails, is refused or is interrupted removes the temporary directory and
leaves ``--out`` exactly as it was (absent, or with its earlier files).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lowbit_core.files import check_output_path, missing_ancestors

__all__ = ["staged_dir", "STAGE_PREFIX"]

#: Temporary directories start with this (beside ``--out``), so a crash that skips the clean-up is recognisable.
STAGE_PREFIX = ".lowbit-stage-"


def _commit(stage: Path, out: Path, last: tuple[str, ...]) -> None:
    """Move every file under ``stage`` to the same relative path under ``out``; names in ``last`` go last."""
    files = sorted(p for p in stage.rglob("*") if not p.is_dir())
    files.sort(key=lambda p: p.name in last)  # stable: everything else keeps its order, the markers follow
    for src in files:
        dst = out / src.relative_to(stage)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _hold_sigint() -> set | None:
    """Block SIGINT in the main thread (POSIX); the previous mask, or None when nothing was blocked."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _release_sigint(previous: set | None) -> None:
    """Restore the mask saved by :func:`_hold_sigint` (a held Ctrl-C is then raised where the code is)."""
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def staged_dir(out: str | os.PathLike[str], last: tuple[str, ...] = ("metrics.json",)) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``out``; on success move its files into ``out``.

    ``last`` names files moved after all others (a reader that waits for them sees a complete directory).  On any
    exception, ``KeyboardInterrupt`` included, the temporary directory is removed and ``out`` is untouched.
    An ``out`` that cannot become a writable directory is refused first (:func:`lowbit_core.files.check_output_path`).
    """
    target = check_output_path(out, "output directory", directory=True)
    created = missing_ancestors(target.parent)
    stage: Path | None = None
    # Ctrl-C is held back while the directories are made, so that it cannot land between their creation and
    # the clean-up below (it is delivered inside the try block instead)
    masked = _hold_sigint()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{target.name}-", dir=target.parent))
        _release_sigint(masked)
        yield stage
        # the moves into ``out`` are not interrupted half-way: a Ctrl-C during them is delivered after them
        masked = _hold_sigint()
        target.mkdir(exist_ok=True)
        _commit(stage, target, last)
        created = []
    finally:
        _release_sigint(masked)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for directory in created:  # innermost first; only what this run made, and only if still empty
            try:
                directory.rmdir()
            except OSError:
                break
