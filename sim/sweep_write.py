"""A sweep's Parquet files: one partition's task (evaluate, flatten, write) and the chips table.

Each file is written to a temp file beside it and renamed over it (:func:`lowbit_core.files.atomic_path`).
Rows are ordered by chip, then layer, then pair (the cost-table order of :func:`sim.costs.cost_frame`);
``chip``, ``workload``, ``name`` (and ``loop_order``) are dictionary-encoded strings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lowbit_core.files import atomic_path
from sim.chipbatch import ChipBatch
from sim.costs import COST_COLUMNS
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import GEMM_ORDER_NAMES
from sim.sweep_spec import SweepSpec

__all__ = ["PartitionTask", "run_partition", "chips_table", "write_parquet", "FAIL_ENV"]

#: Test hook: a partition index; that partition writes its temp file, then raises before the rename.
FAIL_ENV = "LOWBIT_SWEEP_FAIL_PARTITION"
_DICT_COLUMNS = ("chip", "workload", "name")
#: LZ4 (raw): about half the size of snappy at the same write speed, and the fastest to read.
_COMPRESSION = "lz4"


def _atomic_write(path: Path, write: Callable[[Path], object], fail: bool = False) -> None:
    """Write via a temp file in the same directory, then rename it over ``path`` (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        write(tmp)
        if fail:
            raise RuntimeError(f"injected failure before publishing {path.name} ({FAIL_ENV})")


def write_parquet(table: pa.Table, path: Path, fail: bool = False) -> None:
    """Publish ``table`` at ``path`` atomically (LZ4, the string columns dictionary-encoded)."""
    dict_cols = [c for c in _DICT_COLUMNS if c in table.column_names]
    _atomic_write(
        path, lambda tmp: pq.write_table(table, tmp, compression=_COMPRESSION, use_dictionary=dict_cols), fail
    )


# A partition's cost table -----------------------------------------------------------------------
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


class PartitionTask:
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


def run_partition(task: PartitionTask) -> dict[str, float]:
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
    write_parquet(table, path, fail=fail)
    t3 = time.perf_counter()
    return {
        "index": task.index,
        "rows": table.num_rows,
        "evaluate_s": t1 - t0,
        "flatten_s": t2 - t1,
        "write_s": t3 - t2,
    }


# The chips table --------------------------------------------------------------------------------
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


def chips_table(spec: SweepSpec) -> pa.Table:
    """``chips.parquet``: chip_id, chip, every swept field and rows/cols/dataflow/pe.kind of each variant."""
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
