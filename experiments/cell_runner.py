"""Independent experiment cells, run in this process or on Dask workers, each written as soon as it is done.

``lowbit quant-table`` computes a grid of cells (model x method x bits x seed) that do not depend on each other.
:func:`run_cells` runs the missing ones in order in this process (the default), or on a Dask cluster: ``local:N``
starts N worker processes on this machine, an address such as ``tcp://host:8786`` uses a running scheduler
(the same scheduler forms as ``lowbit sweep``).  Workers run one cell at a time with one torch thread, so a cell's
numbers do not depend on how many workers there are.  Every finished cell goes to ``write`` in the calling process
at once, so a killed run keeps what it finished and a rerun computes only the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CellJob", "run_cells", "format_eta"]


@dataclass(frozen=True)
class CellJob:
    """One cell to compute: ``fn(**kwargs)`` returns the cell; ``label`` names it in progress lines."""

    key: str
    label: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any]


def format_eta(seconds: float | None) -> str:
    """``ETA 3 min 05 s`` (or ``ETA unknown`` before anything was timed)."""
    if seconds is None:
        return "ETA unknown"
    seconds = max(0, round(seconds))
    return f"ETA {seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"ETA {seconds} s"


def _in_worker(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A cell on a Dask worker: one torch thread, whatever the worker's machine has."""
    import torch

    torch.set_num_threads(1)
    return fn(**kwargs)


def run_cells(
    jobs: Sequence[CellJob],
    write: Callable[[CellJob, dict[str, Any]], None],
    scheduler: str | None = None,
    status: Callable[[str], None] | None = None,
    eta: Callable[[int, float], float | None] | None = None,
) -> None:
    """Compute ``jobs``; ``write(job, cell)`` as each one finishes (in this process).

    ``status(line)`` is called as cells start (in-process) or finish (Dask) with the count and an ETA;
    ``eta(done, elapsed_s)`` may give a better estimate than the default (elapsed / done x remaining).
    ``scheduler``: None (in this process, in order), ``local[:N]`` or a scheduler address."""
    from sim.scheduler import parse_scheduler

    mode, address, workers = ("inline", None, None) if scheduler is None else parse_scheduler(scheduler, None)
    if mode in ("threads", "synchronous"):
        mode = "inline"
    total = len(jobs)
    start = time.perf_counter()

    def estimate(done: int) -> float | None:
        elapsed = time.perf_counter() - start
        if eta is not None:
            return eta(done, elapsed)
        return elapsed / done * (total - done) if done else None

    if mode == "inline":
        for k, job in enumerate(jobs):
            if status is not None:
                status(f"[{k + 1}/{total}] {job.label} ({format_eta(estimate(k))})")
            write(job, job.fn(**job.kwargs))
        return
    _run_dask(jobs, write, address, workers, status, estimate)


def _run_dask(
    jobs: Sequence[CellJob],
    write: Callable[[CellJob, dict[str, Any]], None],
    address: str | None,
    workers: int | None,
    status: Callable[[str], None] | None,
    estimate: Callable[[int], float | None],
) -> None:
    from distributed import as_completed

    from sim.scheduler import connect_scheduler, start_local_cluster

    cluster = None
    if address is not None:
        client = connect_scheduler(address)
    else:
        client, cluster = start_local_cluster(workers)
    try:
        futures = {
            client.submit(_in_worker, job.fn, job.kwargs, key=f"lowbit-cell-{job.key}", pure=False): job for job in jobs
        }
        done = 0
        try:
            for future in as_completed(futures):
                job = futures[future]
                write(job, future.result())  # raises the cell's exception here
                done += 1
                if status is not None:
                    status(f"[{done}/{len(jobs)}] {job.label} done ({format_eta(estimate(done))})")
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
