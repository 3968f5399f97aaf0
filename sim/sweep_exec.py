"""Running a sweep's partition tasks: on threads or synchronously in-process, or on a Dask cluster (a new local
one or a connected scheduler), with a progress bar of partitions on stderr."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sim.scheduler import start_local_cluster
from sim.sweep_write import PartitionTask, run_partition

__all__ = ["run_tasks"]


def _progress_bar(enabled: bool, total: int, done: int, label: str):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task(label, total=total, completed=done)
    return bar, task


def _run_local(tasks: list[PartitionTask], scheduler: str, threads: int, advance: Callable[[], None]) -> list[dict]:
    import dask
    from dask.callbacks import Callback

    class _Tick(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001 - dask's signature
            advance()

    delayed = [dask.delayed(run_partition, pure=False)(t, dask_key_name=f"sweep-part-{t.index}") for t in tasks]
    if scheduler == "synchronous":
        with _Tick():
            return list(dask.compute(*delayed, scheduler="synchronous"))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lowbit-sweep")
    try:
        with _Tick():
            return list(dask.compute(*delayed, scheduler="threads", pool=pool))
    finally:
        pool.shutdown(wait=True)  # let partitions already running finish (or clean up) before returning


def _run_distributed(
    tasks: list[PartitionTask], client: Any, n_workers: int | None, key: str, advance: Callable[[], None]
) -> list[dict]:
    """Run ``tasks`` on ``client`` (a connected scheduler), or on a new local cluster when it is None."""
    from distributed import as_completed

    cluster = None
    own_client = client is None
    if own_client:
        client, cluster = start_local_cluster(n_workers)
    try:
        futures = client.map(run_partition, tasks, key=[f"lowbit-sweep-{key}-{t.index}" for t in tasks], pure=False)
        results = []
        for fut in as_completed(futures):
            try:
                results.append(fut.result())  # raises the partition's exception
            except BaseException:
                client.cancel(futures)
                raise
            advance()
        return results
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def run_tasks(
    tasks: list[PartitionTask],
    mode: str,
    client: Any,
    count: int | None,
    key: str,
    *,
    progress: bool,
    total: int,
    done: int,
    label: str,
) -> list[dict]:
    """Run ``tasks`` and return their results, in completion order.

    ``mode`` is :func:`sim.scheduler.parse_scheduler`'s: ``threads`` (``count`` threads, all cores when None) and
    ``synchronous`` run in-process; ``local`` starts a cluster of ``count`` processes unless ``client`` (a connected
    scheduler) is given.  ``key`` names the cluster's tasks.  With ``progress``, a bar of ``total`` partitions
    (``done`` of them finished before) named ``label`` is shown on stderr.
    """
    bar = _progress_bar(progress, total, done, label)

    def advance() -> None:
        if bar is not None:
            bar[0].advance(bar[1])

    if bar is not None:
        bar[0].start()
    try:
        if mode in ("threads", "synchronous"):
            return _run_local(tasks, mode, count or os.cpu_count() or 1, advance)
        return _run_distributed(tasks, client, count, key, advance)
    finally:
        if bar is not None:
            bar[0].stop()
