"""One progress-bar helper for long quant jobs (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(enabled: bool, total: int, label: str, transient: bool = False) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callable: a rich bar of ``total`` steps on stderr, or a no-op if not ``enabled``."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=transient,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
