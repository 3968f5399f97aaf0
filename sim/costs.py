"""The cost table (``sim`` -> ``search``): one row per (layer, w_bits, a_bits)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from sim.chipbatch import ChipBatch
from sim.config import Chip, load_chip
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.pairs import Pair, parse_pairs
from sim.workload import Workload, load_workload

__all__ = ["simulate", "cost_frame", "COST_COLUMNS", "COST_UNITS"]

#: Column -> unit, in table order.  Required columns of DESIGN.md first, then the breakdowns.
COST_UNITS: dict[str, str] = {
    "layer": "index (execution order)", "name": "layer name", "w_bits": "bits", "a_bits": "bits",
    "macs": "multiply-accumulates", "compute_cycles": "cycles", "stall_cycles": "cycles",
    "total_cycles": "cycles", "latency_us": "us", "energy_pj": "pJ", "energy_mac_pj": "pJ",
    "energy_sram_pj": "pJ", "energy_dram_pj": "pJ", "energy_static_pj": "pJ",
    "weight_bits": "bits (weights + per-channel scales)", "dram_bits": "bits",
    "utilization": "fraction of peak MACs at this pair (not additive)", "bops": "macs*w_bits*a_bits",
    "dram_ifmap_bits": "bits", "dram_filter_bits": "bits", "dram_ofmap_bits": "bits",
    "sram_ifmap_bits": "bits", "sram_filter_bits": "bits", "sram_ofmap_bits": "bits",
    "folds": "array tiles executed",
}
COST_COLUMNS = tuple(COST_UNITS)


def cost_frame(arrays: dict[str, np.ndarray], layer_names: Sequence[str], pairs: Sequence[Pair],
               chip_index: int = 0) -> pd.DataFrame:
    """Flatten one chip's [L, P] arrays into the cost table, rows ordered by layer then pair."""
    n_layers, n_pairs = len(layer_names), len(pairs)
    pair_arr = np.asarray(pairs, dtype=np.int64)
    data: dict[str, np.ndarray] = {
        "layer": np.repeat(np.arange(n_layers, dtype=np.int64), n_pairs),
        "name": np.repeat(np.asarray(layer_names, dtype=object), n_pairs),
        "w_bits": np.tile(pair_arr[:, 0], n_layers),
        "a_bits": np.tile(pair_arr[:, 1], n_layers),
    }
    for col in COST_COLUMNS[4:]:
        data[col] = np.ascontiguousarray(arrays[col][chip_index]).reshape(-1)
    return pd.DataFrame(data, columns=list(COST_COLUMNS))


def simulate(chip: Chip | str, workload: Workload | str, pairs: str | Iterable[str | Pair] | None = None
             ) -> pd.DataFrame:
    """Cost table of ``workload`` on ``chip`` for each pair (default: all the chip's pairs)."""
    chip = load_chip(chip)
    workload = workload if isinstance(workload, Workload) else load_workload(workload)
    pair_list = list(chip.supported_pairs) if pairs is None else parse_pairs(pairs)
    chips = ChipBatch.from_chips([chip], pair_list)
    layers = LayerBatch.from_workload(workload)
    arrays = evaluate(chips, layers, np.asarray(pair_list))
    frame = cost_frame(arrays, layers.names, pair_list)
    frame.attrs.update({"chip": chip.name, "workload": workload.name})
    return frame
