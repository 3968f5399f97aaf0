"""lowbit's cycle-level accelerator model: chips, workloads, engines and sweeps (no torch import).

The names below are imported on first use, so that importing one ``sim`` module does not load the chip schema,
pandas or the engines.  ``InputError`` and the pair helpers are the base package's (:mod:`lowbit_core`), offered
here too because every ``sim`` user needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowbit_core.lazy import lazy_exports

if TYPE_CHECKING:
    from lowbit_core.errors import InputError
    from lowbit_core.pairs import format_pair, parse_pair, parse_pairs
    from sim.chip_loader import load_chip
    from sim.config import Chip, preset_names
    from sim.costs import COST_COLUMNS, COST_UNITS, simulate
    from sim.workload import Layer, Workload, load_workload

_EXPORTS = {
    "Chip": "sim.config",
    "load_chip": "sim.chip_loader",
    "preset_names": "sim.config",
    "COST_COLUMNS": "sim.costs",
    "COST_UNITS": "sim.costs",
    "simulate": "sim.costs",
    "InputError": "lowbit_core.errors",
    "format_pair": "lowbit_core.pairs",
    "parse_pair": "lowbit_core.pairs",
    "parse_pairs": "lowbit_core.pairs",
    "Layer": "sim.workload",
    "Workload": "sim.workload",
    "load_workload": "sim.workload",
}

__all__ = [
    "Chip",
    "Layer",
    "Workload",
    "InputError",
    "load_chip",
    "load_workload",
    "simulate",
    "preset_names",
    "parse_pair",
    "parse_pairs",
    "format_pair",
    "COST_COLUMNS",
    "COST_UNITS",
]


__getattr__, __dir__ = lazy_exports("sim", _EXPORTS, globals())
