"""``lowbit sweep``: evaluate every chip variant of a sweep spec on its workloads, on Dask.

Work is split into partitions of (workload x a contiguous range of chip ids).  Each partition
evaluates its chips with the vectorized engine (:func:`sim.engine.evaluate`) and writes one
Parquet file atomically (temp file in the same directory, then :func:`os.replace`)::

    out_dir/
      sweep.json                               spec echo, spec hash, pairs, workloads, partitions
      chips.parquet                            chip_id, chip + every swept field (+ rows/cols/...)
      parts/<workload>/chips-<first>-<last>.parquet

Rows are ordered by chip, then layer, then pair (the cost-table order of :func:`sim.costs.cost_frame`)
and hold ``chip_id``, ``chip``, ``workload`` and every :data:`sim.costs.COST_COLUMNS`; ``chip``,
``workload`` and ``name`` are dictionary-encoded strings (pandas ``category``).  Each row equals
the row :func:`sim.simulate` gives for that chip, bit for bit.

* A rerun with the same spec skips partitions whose file exists (resume after a kill); temp
  files left by a killed run are removed.
* A rerun into a directory made by a different spec is an :class:`InputError`; so is a second
  run into a directory another run holds (``out_dir/.lock``, POSIX ``flock``).
* Everything that can be checked is checked before anything is created: the scheduler and worker
  count, the output path (:func:`lowbit_core.files.check_output_path`), the spec, an existing directory's spec,
  and a scheduler address (connected within :data:`sim.scheduler.CONNECT_TIMEOUT_S` seconds).  A run that
  fails, is refused or is interrupted before any partition is published removes the directories it
  created; published partitions are kept for the rerun.
* The files depend only on the spec, never on the scheduler or worker count.

Schedulers: ``None`` (in-process, threads), ``"threads"``, ``"synchronous"``, ``"local"`` /
``"local:N"`` (a :class:`distributed.LocalCluster` of N worker processes; also when ``n_workers``
is given) or a scheduler address such as ``"tcp://host:8786"``.

This module holds :func:`run_sweep`, which puts together the sweep's modules, one job each:

* :mod:`sim.sweep_plan` - the chip batch of a spec, its partitions and the metadata (spec hash) of ``sweep.json``;
* :mod:`sim.sweep_write` - a partition's task (evaluate, flatten, write Parquet) and the chips table;
* :mod:`sim.sweep_store` - the output directory: checks, lock, preparation, cleanup, :func:`load_sweep`;
* :mod:`sim.scheduler` - parsing ``--scheduler`` / ``--workers`` and connecting to a scheduler address;
* :mod:`sim.sweep_exec` - running the tasks in-process or on a Dask cluster, with a progress bar.

Their public names are importable from here too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lowbit_core.files import check_output_path, missing_ancestors
from lowbit_core.pairs import format_pair
from sim.chipbatch import ChipBatch
from sim.engine import check_mappable
from sim.layerbatch import LayerBatch
from sim.scheduler import CONNECT_TIMEOUT_S, MAX_WORKERS, connect_scheduler, parse_scheduler
from sim.sweep_exec import run_tasks
from sim.sweep_plan import (
    DEFAULT_CHIPS_PER_PARTITION,
    OUTPUT_COLUMNS,
    PARTITION_BYTES,
    SWEEP_FORMAT,
    Partition,
    build_chip_batch,
    chips_per_partition,
    plan_partitions,
    sweep_metadata,
)
from sim.sweep_spec import SweepSpec, load_sweep_spec, sweep_spec_from_dict
from sim.sweep_store import (
    check_dir,
    dir_lock,
    load_sweep,
    load_sweep_chips,
    prepare_dir,
    remove_if_unpublished,
)
from sim.sweep_write import FAIL_ENV, PartitionTask, chips_table, write_parquet

__all__ = [
    "run_sweep",
    "parse_scheduler",
    "connect_scheduler",
    "load_sweep",
    "load_sweep_chips",
    "build_chip_batch",
    "plan_partitions",
    "chips_per_partition",
    "Partition",
    "SweepSpec",
    "load_sweep_spec",
    "sweep_spec_from_dict",
    "SWEEP_FORMAT",
    "OUTPUT_COLUMNS",
    "DEFAULT_CHIPS_PER_PARTITION",
    "PARTITION_BYTES",
    "FAIL_ENV",
    "MAX_WORKERS",
    "CONNECT_TIMEOUT_S",
]


def _as_spec(spec: SweepSpec | str | os.PathLike[str] | dict) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return sweep_spec_from_dict(spec)
    return load_sweep_spec(spec)


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str] | dict,
    out_dir: str | os.PathLike[str],
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) a sweep into ``out_dir`` and return it as a :class:`~pathlib.Path`.

    ``spec`` is a :class:`SweepSpec`, a spec YAML path or a spec mapping.  ``scheduler``: ``None``
    runs in-process on threads (or on a local cluster of ``n_workers`` processes when that is
    given); see the module docstring for the others.  ``stats``, when given, is filled with
    timings (seconds) and counts.
    """
    t_start = time.perf_counter()
    mode, address, count = parse_scheduler(scheduler, n_workers)
    out = check_output_path(out_dir, "sweep directory", directory=True)
    spec = _as_spec(spec)
    t_spec = time.perf_counter()
    parts = plan_partitions(spec)
    layer_batches = {wl.name: LayerBatch.from_workload(wl) for wl in spec.workloads}
    meta = sweep_metadata(spec, parts, layer_batches)
    check_dir(out, meta)
    client = connect_scheduler(address) if address is not None else None  # before anything is created
    try:
        batch = build_chip_batch(spec)
        pairs = np.asarray(spec.pairs, dtype=np.int64).reshape(-1, 2)
        for lb in layer_batches.values():  # every variant can map every layer, before anything is written
            check_mappable(batch, lb, pairs)
    except BaseException:
        if client is not None:
            client.close()
        raise
    created = missing_ancestors(out)
    try:
        with dir_lock(out):
            results, t_prep, t_batch = _run_locked(
                spec, out, parts, layer_batches, meta, mode, client, count, progress, batch
            )
    except BaseException:
        # a task already running on an external cluster cannot be stopped and may still publish its partition:
        # keep the directory (and its sweep.json) then, so that a rerun resumes instead of finding orphan parts
        if client is None:
            remove_if_unpublished(created, out)
        raise
    finally:
        if client is not None:
            client.close()
    t_end = time.perf_counter()
    if stats is not None:
        stats.update(
            {
                "spec_s": t_spec - t_start,
                "prepare_s": t_prep - t_spec,
                "chip_batch_s": t_batch - t_prep,
                "run_s": t_end - t_batch,
                "wall_s": t_end - t_start,
                "partitions": len(parts),
                "partitions_run": len(results),
                "rows": int(sum(r["rows"] for r in results)),
                "evaluate_s": sum(r["evaluate_s"] for r in results),
                "flatten_s": sum(r["flatten_s"] for r in results),
                "write_s": sum(r["write_s"] for r in results),
                "n_chips": spec.n_chips,
                "pairs": [format_pair(p) for p in spec.pairs],
                "layers": {name: len(lb) for name, lb in layer_batches.items()},
            }
        )
    return out


def _run_locked(
    spec: SweepSpec,
    out: Path,
    parts: list[Partition],
    layer_batches: dict[str, LayerBatch],
    meta: dict[str, Any],
    mode: str,
    client: Any,
    count: int | None,
    progress: bool,
    batch: ChipBatch,
) -> tuple[list[dict], float, float]:
    prepare_dir(out, meta)
    if not (out / "chips.parquet").exists():
        write_parquet(chips_table(spec), out / "chips.parquet")
    pending = [p for p in parts if not (out / p.path).exists()]
    t_prep = time.perf_counter()

    results: list[dict] = []
    t_batch = t_prep
    if pending:
        t_batch = time.perf_counter()
        pairs = np.asarray(spec.pairs, dtype=np.int64).reshape(-1, 2)
        tasks = [
            PartitionTask(
                p.index,
                str(out / p.path),
                p.workload,
                p.start,
                batch.take(slice(p.start, p.stop)),
                layer_batches[p.workload],
                pairs,
            )
            for p in pending
        ]
        results = run_tasks(
            tasks,
            mode,
            client,
            count,
            meta["spec_hash"][:12],
            progress=progress,
            total=len(parts),
            done=len(parts) - len(pending),
            label=f"sweep {spec.name}",
        )
    return results, t_prep, t_batch
