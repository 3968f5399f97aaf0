"""A sweep's plan: the chip batch of a spec, its partitions and the metadata (with the spec hash) of ``sweep.json``.

Everything here depends only on the spec and its workloads, never on the output directory or the scheduler.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit_core.errors import InputError
from sim.chipbatch import CHIP_FIELDS, ChipBatch
from sim.costs import COST_COLUMNS
from sim.engine import MODEL_VERSION
from sim.layerbatch import LayerBatch
from sim.sweep_spec import Expansion, SweepSpec

__all__ = [
    "build_chip_batch",
    "plan_partitions",
    "chips_per_partition",
    "sweep_metadata",
    "Partition",
    "SWEEP_FORMAT",
    "OUTPUT_COLUMNS",
    "DEFAULT_CHIPS_PER_PARTITION",
    "PARTITION_BYTES",
]

SWEEP_FORMAT = "lowbit-sweep/1"
OUTPUT_COLUMNS = ("chip_id", "chip", "workload", *COST_COLUMNS)
DEFAULT_CHIPS_PER_PARTITION = 512
#: Target peak working set of one partition: with ~512 B per (chip, layer, pair) point of live
#: arrays (engine intermediates, the flattened table, Parquet buffers) this caps its chips.
PARTITION_BYTES = 256 * 2**20
_BYTES_PER_POINT = 512  # measured: 290-410 B of peak RSS per point (ResNet-50 x 9 pairs)


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
    """Every partition, workload-major then by chip id: the order of :func:`sim.sweep_store.load_sweep`."""
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


# Metadata (sweep.json) --------------------------------------------------------------------------
def _layer_digest(layers: LayerBatch) -> str:
    h = hashlib.sha256()
    h.update("\0".join(layers.names).encode())
    for name in LayerBatch.__dataclass_fields__:
        if name != "names":
            arr = np.ascontiguousarray(getattr(layers, name))
            h.update(name.encode() + str(arr.dtype).encode() + arr.tobytes())
    return h.hexdigest()


def sweep_metadata(spec: SweepSpec, parts: list[Partition], layer_batches: dict[str, LayerBatch]) -> dict[str, Any]:
    """The content of ``sweep.json``: the spec echo, its hash, pairs, workloads (with digests) and partitions."""
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
