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
  count, the output path (:func:`lowbit_core.files.check_output_dir`), the spec, an existing directory's spec,
  and a scheduler address (connected within :data:`CONNECT_TIMEOUT_S` seconds).  A run that fails,
  is refused or is interrupted before any partition is published removes the directories it
  created; published partitions are kept for the rerun.
* The files depend only on the spec, never on the scheduler or worker count.

Schedulers: ``None`` (in-process, threads), ``"threads"``, ``"synchronous"``, ``"local"`` /
``"local:N"`` (a :class:`distributed.LocalCluster` of N worker processes; also when ``n_workers``
is given) or a scheduler address such as ``"tcp://host:8786"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lowbit_core.errors import InputError
from lowbit_core.files import atomic_path, check_output_dir, missing_ancestors
from lowbit_core.pairs import format_pair
from sim.chipbatch import CHIP_FIELDS, ChipBatch
from sim.costs import COST_COLUMNS
from sim.engine import MODEL_VERSION, check_mappable, evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import GEMM_ORDER_NAMES
from sim.sweep_spec import Expansion, SweepSpec, load_sweep_spec, sweep_spec_from_dict

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

SWEEP_FORMAT = "lowbit-sweep/1"
OUTPUT_COLUMNS = ("chip_id", "chip", "workload", *COST_COLUMNS)
DEFAULT_CHIPS_PER_PARTITION = 512
#: Target peak working set of one partition: with ~512 B per (chip, layer, pair) point of live
#: arrays (engine intermediates, the flattened table, Parquet buffers) this caps its chips.
PARTITION_BYTES = 256 * 2**20
_BYTES_PER_POINT = 512  # measured: 290-410 B of peak RSS per point (ResNet-50 x 9 pairs)
#: Largest worker count of a local cluster (``--workers``, ``local:N``) or thread pool.
MAX_WORKERS = 256
#: Seconds to wait for a scheduler address to answer before refusing the sweep.
CONNECT_TIMEOUT_S = 5
#: Test hook: a partition index; that partition writes its temp file, then raises before the rename.
FAIL_ENV = "LOWBIT_SWEEP_FAIL_PARTITION"
_TMP_RE = re.compile(r"^\..+\.tmp$")  # never matches .lock
_DICT_COLUMNS = ("chip", "workload", "name")
#: LZ4 (raw): about half the size of snappy at the same write speed, and the fastest to read.
_COMPRESSION = "lz4"


# Chip batch: vectorized and exact -------------------------------------------------------------
def _per_combo(exp: Expansion, deps: Sequence[str], fn: Callable[[Any], Any], dtype: type) -> np.ndarray:
    swept = [f for f in deps if f in exp.codes]
    if not swept:
        return np.full(exp.n_chips, fn(exp.chip(0)), dtype=dtype)
    stacked = np.stack([exp.codes[f].astype(np.int64) for f in swept], axis=1)
    _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    values: np.ndarray = np.array([fn(exp.chip(int(i))) for i in first], dtype=dtype)
    return values[inverse.reshape(-1)]


def build_chip_batch(spec: SweepSpec) -> ChipBatch:
    """All variants of ``spec`` as one :class:`ChipBatch` for ``spec.pairs``, without per-chip loops.

    Each of :data:`sim.chipbatch.CHIP_FIELDS` is computed once per distinct value of the chip
    fields it depends on, so the batch equals ``ChipBatch.from_chips`` over every variant.
    """
    exp = spec.expansion
    fields = {name: _per_combo(exp, deps, fn, dtype) for name, (deps, fn, dtype) in CHIP_FIELDS.items()}
    return ChipBatch(
        names=exp.chip_names,
        static_mw=exp.static_mw.copy(),
        mac_pj=exp.group_mac_pj[exp.group],
        act_mac_pj=exp.group_act_mac_pj[exp.group],
        **fields,
    )


# Partitions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """Chips ``start .. stop-1`` of one workload; ``path`` is relative to the output directory."""

    index: int
    workload: str
    start: int
    stop: int
    path: str


def _dir_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def chips_per_partition(spec: SweepSpec, n_layers: int) -> int:
    """The spec's chips per partition (default 512), capped so a partition stays in PARTITION_BYTES."""
    cap = max(1, PARTITION_BYTES // (n_layers * len(spec.pairs) * _BYTES_PER_POINT))
    return min(spec.chips_per_partition or DEFAULT_CHIPS_PER_PARTITION, cap)


def plan_partitions(spec: SweepSpec) -> list[Partition]:
    """Every partition, workload-major then by chip id: the order of :func:`load_sweep`."""
    n = spec.n_chips
    width = len(str(n - 1))
    dirs: dict[str, str] = {}
    parts: list[Partition] = []
    for wl in spec.workloads:
        d = _dir_name(wl.name)
        if d in dirs:
            raise InputError(
                f"{spec.source}: workloads {dirs[d]!r} and {wl.name!r} map to the same directory parts/{d}"
            )
        dirs[d] = wl.name
        step = chips_per_partition(spec, len(wl.layers))
        for start in range(0, n, step):
            stop = min(n, start + step)
            parts.append(
                Partition(
                    len(parts),
                    wl.name,
                    start,
                    stop,
                    f"parts/{d}/chips-{start:0{width}d}-{stop - 1:0{width}d}.parquet",
                )
            )
    return parts


def _layer_digest(layers: LayerBatch) -> str:
    h = hashlib.sha256()
    h.update("\0".join(layers.names).encode())
    for name in LayerBatch.__dataclass_fields__:
        if name != "names":
            arr = np.ascontiguousarray(getattr(layers, name))
            h.update(name.encode() + str(arr.dtype).encode() + arr.tobytes())
    return h.hexdigest()


def _metadata(spec: SweepSpec, parts: list[Partition], layer_batches: dict[str, LayerBatch]) -> dict[str, Any]:
    echo = spec.to_dict()
    workloads = [
        {
            "name": wl.name,
            "source": src,
            "dir": _dir_name(wl.name),
            "layers": len(wl.layers),
            "digest": _layer_digest(layer_batches[wl.name]),
        }
        for wl, src in zip(spec.workloads, spec.workload_sources)
    ]
    # The hash covers what determines the results and the file layout, not how inputs were named.
    hashed = {
        "format": SWEEP_FORMAT,
        "model": MODEL_VERSION,
        "name": spec.name,
        "base_chip": echo["base_chip"],
        "grid": echo["grid"],
        "points": echo["points"],
        "pairs": echo["pairs"],
        "workloads": [{"name": w["name"], "digest": w["digest"]} for w in workloads],
        "partitions": [[p.workload, p.start, p.stop] for p in parts],
    }
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {
        "format": SWEEP_FORMAT,
        "model": MODEL_VERSION,
        "spec_hash": digest,
        "spec": echo,
        "n_chips": spec.n_chips,
        "swept_fields": list(spec.swept_fields),
        "pairs": echo["pairs"],
        "workloads": workloads,
        "columns": list(OUTPUT_COLUMNS),
        "partitions": [{"workload": p.workload, "start": p.start, "stop": p.stop, "path": p.path} for p in parts],
    }


# Writing ----------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Path], object], fail: bool = False) -> None:
    """Write via a temp file in the same directory, then rename it over ``path`` (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        write(tmp)
        if fail:
            raise RuntimeError(f"injected failure before publishing {path.name} ({FAIL_ENV})")


def _write_parquet(table: pa.Table, path: Path, fail: bool = False) -> None:
    dict_cols = [c for c in _DICT_COLUMNS if c in table.column_names]
    _atomic_write(
        path, lambda tmp: pq.write_table(table, tmp, compression=_COMPRESSION, use_dictionary=dict_cols), fail
    )


def _dictionary(indices: np.ndarray, values: Sequence[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices, type=pa.int32()), pa.array(list(values), pa.string()))


def _cost_table(
    arrays: dict[str, np.ndarray],
    chips: ChipBatch,
    start: int,
    workload: str,
    layers: LayerBatch,
    pairs: np.ndarray,
) -> pa.Table:
    """All chips' [C, L, P] arrays flattened in cost-frame order (chip, then layer, then pair)."""
    n_chips, n_layers, n_pairs = len(chips), len(layers), len(pairs)
    per_chip = n_layers * n_pairs
    layer_idx = np.repeat(np.arange(n_layers, dtype=np.int64), n_pairs)
    cols: dict[str, pa.Array] = {
        "chip_id": pa.array(np.repeat(np.arange(start, start + n_chips, dtype=np.int64), per_chip)),
        "chip": _dictionary(np.repeat(np.arange(n_chips, dtype=np.int32), per_chip), chips.names),
        "workload": _dictionary(np.zeros(n_chips * per_chip, dtype=np.int32), [workload]),
        "layer": pa.array(np.tile(layer_idx, n_chips)),
        "name": _dictionary(np.tile(layer_idx.astype(np.int32), n_chips), layers.names),
        "w_bits": pa.array(np.tile(pairs[:, 0], n_chips * n_layers)),
        "a_bits": pa.array(np.tile(pairs[:, 1], n_chips * n_layers)),
    }
    for col in COST_COLUMNS[4:]:
        cols[col] = pa.array(np.ascontiguousarray(arrays[col]).reshape(-1))
    cols["loop_order"] = _dictionary(
        np.ascontiguousarray(arrays["loop_order"]).reshape(-1).astype(np.int32), GEMM_ORDER_NAMES
    )
    return pa.table(cols)


class _Task:
    """One partition's inputs (a plain class, so dask passes it through untouched)."""

    __slots__ = ("index", "path", "workload", "start", "chips", "layers", "pairs")

    def __init__(
        self,
        index: int,
        path: str,
        workload: str,
        start: int,
        chips: ChipBatch,
        layers: LayerBatch,
        pairs: np.ndarray,
    ) -> None:
        self.index, self.path, self.workload, self.start = index, path, workload, start
        self.chips, self.layers, self.pairs = chips, layers, pairs

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def _run_partition(task: _Task) -> dict[str, float]:
    """Evaluate and write one partition; returns its timings (seconds) and row count."""
    fail = os.environ.get(FAIL_ENV, "") == str(task.index)
    t0 = time.perf_counter()
    arrays = evaluate(task.chips, task.layers, task.pairs)
    t1 = time.perf_counter()
    table = _cost_table(arrays, task.chips, task.start, task.workload, task.layers, task.pairs)
    del arrays
    t2 = time.perf_counter()
    path = Path(task.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, path, fail=fail)
    t3 = time.perf_counter()
    return {
        "index": task.index,
        "rows": table.num_rows,
        "evaluate_s": t1 - t0,
        "flatten_s": t2 - t1,
        "write_s": t3 - t2,
    }


def _level_array(levels: Sequence[Any]) -> pa.Array:
    """One swept field's distinct values as an Arrow array (``calc`` bandwidth -> inf)."""
    vals = list(levels)
    numeric = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numeric and all(v == "calc" or v is None or v in numeric for v in vals):
        if all(isinstance(v, int) for v in numeric) and len(numeric) == len(vals):
            return pa.array(vals, pa.int64())
        return pa.array([float("inf") if v == "calc" else v for v in vals], pa.float64())
    if all(isinstance(v, bool) for v in vals):
        return pa.array(vals, pa.bool_())
    return pa.array([None if v is None else str(v) for v in vals], pa.string())


def _chips_table(spec: SweepSpec) -> pa.Table:
    exp = spec.expansion
    cols: dict[str, pa.Array] = {
        "chip_id": pa.array(np.arange(exp.n_chips, dtype=np.int64)),
        "chip": pa.array(list(exp.chip_names), pa.string()),
    }
    for f in (
        *exp.fields,
        *(f for f in ("array.rows", "array.cols", "array.dataflow", "pe.kind") if f not in exp.fields),
    ):
        if f in exp.codes:
            cols[f] = _level_array(exp.levels[f]).take(pa.array(exp.codes[f]))
        else:
            value = exp.chip(0)
            for part in f.split("."):
                value = getattr(value, part)
            cols[f] = _level_array([value]).take(pa.array(np.zeros(exp.n_chips, dtype=np.int32)))
    return pa.table(cols)


# Output directory -------------------------------------------------------------------------------
def _read_meta(out: Path) -> dict[str, Any]:
    try:
        meta = json.loads((out / "sweep.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{out / 'sweep.json'}: cannot read sweep metadata ({exc})".replace("\n", " ")) from None
    if not isinstance(meta, dict) or meta.get("format") != SWEEP_FORMAT or "partitions" not in meta:
        raise InputError(f"{out / 'sweep.json'}: not a {SWEEP_FORMAT} sweep directory")
    return meta


def _check_dir(out: Path, meta: dict[str, Any]) -> None:
    """Refuse an output directory that holds another spec's results or foreign sweep files (reads only)."""
    check_output_dir(out)
    if (out / "sweep.json").exists():
        old = _read_meta(out)
        if old.get("spec_hash") != meta["spec_hash"]:
            raise InputError(
                f"{out}: holds results of a different sweep spec (spec hash "
                f"{str(old.get('spec_hash'))[:12]}, this spec {meta['spec_hash'][:12]}); "
                f"use a new output directory or delete it"
            )
    elif out.exists() and ((out / "parts").exists() or (out / "chips.parquet").exists()):
        raise InputError(f"{out}: has sweep outputs but no sweep.json; use a new output directory")


def _prepare_dir(out: Path, meta: dict[str, Any]) -> None:
    _check_dir(out, meta)  # again, under the lock
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, indent=2) + "\n"
    path = out / "sweep.json"
    if not path.exists() or path.read_text() != text:
        _atomic_write(path, lambda tmp: tmp.write_text(text))
    # Temp files of a killed run are never published; drop them.
    parts = out / "parts"
    if parts.is_dir():
        for d in parts.iterdir():
            if d.is_dir():
                for f in d.iterdir():
                    if _TMP_RE.match(f.name):
                        f.unlink(missing_ok=True)


def _as_spec(spec: SweepSpec | str | os.PathLike[str] | dict) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return sweep_spec_from_dict(spec)
    return load_sweep_spec(spec)


# Schedulers -------------------------------------------------------------------------------------
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


def _run_local(tasks: list[_Task], scheduler: str, threads: int, advance: Callable[[], None]) -> list[dict]:
    import dask
    from dask.callbacks import Callback

    class _Tick(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001 - dask's signature
            advance()

    delayed = [dask.delayed(_run_partition, pure=False)(t, dask_key_name=f"sweep-part-{t.index}") for t in tasks]
    if scheduler == "synchronous":
        with _Tick():
            return list(dask.compute(*delayed, scheduler="synchronous"))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lowbit-sweep")
    try:
        with _Tick():
            return list(dask.compute(*delayed, scheduler="threads", pool=pool))
    finally:
        pool.shutdown(wait=True)  # let partitions already running finish (or clean up) before returning


def _probe_tcp(address: str) -> None:
    """Open and close a TCP connection to a ``tcp://host:port`` address (OSError when nobody listens)."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"expected tcp://host:port, got {address}")
    with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S):
        pass


def connect_scheduler(address: str) -> Any:
    """A :class:`distributed.Client` of the scheduler at ``address``, or a one-line InputError naming it
    after :data:`CONNECT_TIMEOUT_S` seconds (called before anything is written)."""
    import logging

    from distributed import Client

    quiet = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        _probe_tcp(address)  # a plain socket first: a refused port never reaches distributed's event loop
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (ValueError, TypeError) as exc:  # a malformed address, or one that needs TLS settings
        raise InputError(f"bad Dask scheduler address {address} ({' '.join(str(exc).split())})") from None
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"cannot connect to the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({reason})"
        ) from None
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def _run_distributed(
    tasks: list[_Task], client: Any, n_workers: int | None, key: str, advance: Callable[[], None]
) -> list[dict]:
    """Run ``tasks`` on ``client`` (a connected scheduler), or on a new local cluster when it is None."""
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = client is None
    if own_client:
        cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = Client(cluster)
    try:
        futures = client.map(_run_partition, tasks, key=[f"lowbit-sweep-{key}-{t.index}" for t in tasks], pure=False)
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


def parse_scheduler(scheduler: str | None, n_workers: int | None) -> tuple[str, str | None, int | None]:
    """``(mode, address, workers)`` of a ``--scheduler`` / ``--workers`` pair: mode ``threads``, ``synchronous``,
    ``local`` (a LocalCluster of ``workers`` processes, all cores when None) or ``address``."""
    if n_workers is not None and (
        not isinstance(n_workers, int) or isinstance(n_workers, bool) or not 1 <= n_workers <= MAX_WORKERS
    ):
        raise InputError(f"worker count (--workers) must be an integer in 1..{MAX_WORKERS}, got {n_workers!r}")
    if scheduler is None:
        return ("local", None, n_workers) if n_workers else ("threads", None, None)
    text = str(scheduler).strip()
    if text in ("threads", "synchronous", "sync"):
        return ("synchronous" if text == "sync" else text), None, n_workers
    m = re.fullmatch(r"local(?::(\d+))?", text)
    if m:
        count = int(m.group(1)) if m.group(1) else n_workers
        if count is not None and not 1 <= count <= MAX_WORKERS:
            raise InputError(f"scheduler {text!r}: the worker count must be in 1..{MAX_WORKERS}")
        return "local", None, count
    if re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", text):
        if n_workers is not None:
            raise InputError(
                f"a worker count (--workers) starts a local cluster, but the scheduler at {text} "
                f"has its own workers: give one or the other"
            )
        return "address", text, None
    raise InputError(
        f"unknown scheduler {text!r} (allowed: threads, synchronous, local, local:N, "
        f"or an address such as tcp://host:8786)"
    )


# Public API -------------------------------------------------------------------------------------
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
    out = check_output_dir(out_dir)
    spec = _as_spec(spec)
    t_spec = time.perf_counter()
    parts = plan_partitions(spec)
    layer_batches = {wl.name: LayerBatch.from_workload(wl) for wl in spec.workloads}
    meta = _metadata(spec, parts, layer_batches)
    _check_dir(out, meta)
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
        with _dir_lock(out):
            results, t_prep, t_batch = _run_locked(
                spec, out, parts, layer_batches, meta, mode, client, count, progress, batch
            )
    except BaseException:
        # a task already running on an external cluster cannot be stopped and may still publish its partition:
        # keep the directory (and its sweep.json) then, so that a rerun resumes instead of finding orphan parts
        if client is None:
            _remove_if_unpublished(created, out)
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


def _remove_if_unpublished(created: list[Path], out: Path) -> None:
    """After a failed, refused or interrupted run: remove the directories it created, unless a finished
    partition was published into them (kept, so that a rerun resumes)."""
    if not created or any((out / "parts").glob("*/*.parquet")):
        return
    shutil.rmtree(out, ignore_errors=True)
    for directory in created[1:]:  # the ancestors this run made, innermost first, while empty
        try:
            directory.rmdir()
        except OSError:
            break


@contextmanager
def _dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` so two runs never write into one directory at once (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{out}: another lowbit sweep is writing into this directory") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    _prepare_dir(out, meta)
    if not (out / "chips.parquet").exists():
        _write_parquet(_chips_table(spec), out / "chips.parquet")
    pending = [p for p in parts if not (out / p.path).exists()]
    t_prep = time.perf_counter()

    results: list[dict] = []
    t_batch = t_prep
    if pending:
        t_batch = time.perf_counter()
        pairs = np.asarray(spec.pairs, dtype=np.int64).reshape(-1, 2)
        tasks = [
            _Task(
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
        bar = _progress_bar(progress, len(parts), len(parts) - len(pending), f"sweep {spec.name}")

        def advance() -> None:
            if bar is not None:
                bar[0].advance(bar[1])

        if bar is not None:
            bar[0].start()
        try:
            if mode in ("threads", "synchronous"):
                results = _run_local(tasks, mode, count or os.cpu_count() or 1, advance)
            else:
                results = _run_distributed(tasks, client, count, meta["spec_hash"][:12], advance)
        finally:
            if bar is not None:
                bar[0].stop()
    return results, t_prep, t_batch


def load_sweep(out_dir: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All result rows of a finished sweep, in partition order (workload, then chip id).

    ``columns`` selects a subset of :data:`OUTPUT_COLUMNS`.  An unfinished sweep is an
    :class:`InputError` naming the missing partitions (rerun the same spec to resume).
    """
    out = Path(out_dir)
    meta = _read_meta(out)
    paths = [out / p["path"] for p in meta["partitions"]]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(
            f"{out}: sweep unfinished: {len(missing)} of {len(paths)} partitions missing "
            f"(first: {missing[0].relative_to(out)}); rerun the same spec to resume"
        )
    if columns is not None:
        unknown = [c for c in columns if c not in OUTPUT_COLUMNS]
        if unknown:
            raise InputError(f"unknown sweep column {unknown[0]!r} (allowed: {', '.join(OUTPUT_COLUMNS)})")
        columns = list(columns)
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])
    return table.to_pandas()


def load_sweep_chips(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``chips.parquet``: chip_id, chip, each variant's swept fields and rows/cols/dataflow/pe.kind."""
    out = Path(out_dir)
    _read_meta(out)
    return pq.read_table(out / "chips.parquet").to_pandas()
