"""The cost table (``sim`` -> ``search``): one row per (layer, w_bits, a_bits)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lowbit_core.pairs import Pair, parse_pairs
from sim.chip_loader import load_chip
from sim.chipbatch import ChipBatch
from sim.config import Chip
from sim.engine import check_mappable, evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import GEMM_ORDER_NAMES
from sim.workload import Workload, load_workload

__all__ = ["simulate", "cost_frame", "COST_COLUMNS", "COST_UNITS"]

#: Column -> unit, in table order.  Required columns of DESIGN.md first, then the breakdowns.
COST_UNITS: dict[str, str] = {
    "layer": "index (execution order)",
    "name": "layer name",
    "w_bits": "bits",
    "a_bits": "bits",
    "macs": "multiply-accumulates",
    "compute_cycles": "cycles",
    "stall_cycles": "cycles",
    "total_cycles": "cycles",
    "latency_us": "us",
    "energy_pj": "pJ",
    "energy_mac_pj": "pJ",
    "energy_reg_pj": "pJ",
    "energy_sram_pj": "pJ",
    "energy_dram_pj": "pJ",
    "energy_static_pj": "pJ",
    "weight_bits": "bits (weights + per-channel scales)",
    "dram_bits": "bits",
    "utilization": "fraction of peak MACs at this pair (not additive)",
    "bops": "macs*w_bits*a_bits",
    "dram_ifmap_bits": "bits",
    "dram_filter_bits": "bits",
    "dram_ofmap_bits": "bits",
    "sram_ifmap_bits": "bits",
    "sram_filter_bits": "bits",
    "sram_ofmap_bits": "bits",
    "folds": "array tiles executed",
    "loop_order": "mapping: fold loops outer to inner, in GEMM dimensions (e.g. NKM)",
    "tile_m": "mapping: M elements per fold",
    "tile_n": "mapping: N elements per fold",
    "tile_k": "mapping: reduction elements per fold (at most)",
}

COST_COLUMNS = tuple(COST_UNITS)


def cost_frame(
    arrays: dict[str, np.ndarray], layer_names: Sequence[str], pairs: Sequence[Sequence[int]], chip_index: int = 0
) -> pd.DataFrame:
    """Flatten one chip's [L, P] arrays into the cost table, rows ordered by layer then pair.

    ``pairs`` holds (w_bits, a_bits) or, for a coupled table, (w_bits, a_bits, out_bits) triples; the
    latter add an ``out_bits`` column after ``a_bits``."""
    n_layers, n_pairs = len(layer_names), len(pairs)
    pair_arr = np.asarray(pairs, dtype=np.int64).reshape(n_pairs, -1)
    data: dict[str, np.ndarray] = {
        "layer": np.repeat(np.arange(n_layers, dtype=np.int64), n_pairs),
        "name": np.repeat(np.asarray(layer_names, dtype=object), n_pairs),
        "w_bits": np.tile(pair_arr[:, 0], n_layers),
        "a_bits": np.tile(pair_arr[:, 1], n_layers),
    }
    columns = list(COST_COLUMNS)
    if pair_arr.shape[1] > 2:
        data["out_bits"] = np.tile(pair_arr[:, 2], n_layers)
        columns.insert(4, "out_bits")
    for col in COST_COLUMNS[4:]:
        data[col] = np.ascontiguousarray(arrays[col][chip_index]).reshape(-1)
    data["loop_order"] = np.asarray(GEMM_ORDER_NAMES, dtype=object)[data["loop_order"]]
    return pd.DataFrame(data, columns=columns)


def simulate(
    chip: Chip | str, workload: Workload | str, pairs: str | Iterable[str | Pair] | None = None, coupled: bool = False
) -> pd.DataFrame:
    """Cost table of ``workload`` on ``chip`` for each pair (default: all the chip's pairs).

    With ``coupled=True`` each layer's output is stored at its consumer's activation width: the table
    gets an ``out_bits`` column and one row per (layer, w_bits, a_bits, out_bits), ``out_bits``
    ranging over the pairs' activation widths.  ``search`` then charges each layer the row that matches
    its consumer's choice (exact coupling, docs/search.md): the ``consumer`` column, the layer that reads its output
    in a traced workload (``Workload.consumers``, e.g. from :func:`sim.workload.from_torch`), else the next layer."""
    chip = load_chip(chip)
    workload = workload if isinstance(workload, Workload) else load_workload(workload)
    pair_list = list(chip.supported_pairs) if pairs is None else parse_pairs(pairs)
    rows: list[tuple[int, ...]] = list(pair_list)
    if coupled:
        outs = sorted({a for _, a in pair_list})
        rows = [(w, a, o) for w, a in pair_list for o in outs]
    chips = ChipBatch.from_chips([chip], [(r[0], r[1]) for r in rows])
    layers = LayerBatch.from_workload(workload)
    check_mappable(chips, layers, np.asarray(rows))  # a one-line InputError before any work
    arrays = evaluate(chips, layers, np.asarray(rows))
    frame = cost_frame(arrays, layers.names, rows)
    if workload.consumers is not None:  # the traced dataflow: which layer reads each output (coupling, search)
        frame["consumer"] = np.repeat(np.asarray(workload.consumers, dtype=np.int64), len(rows))
    frame.attrs.update({"chip": chip.name, "workload": workload.name})
    return frame
