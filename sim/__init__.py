"""lowbit's cycle-level accelerator model: chips, workloads, engines and sweeps (no torch import)."""

from sim.config import Chip, load_chip, preset_names
from sim.costs import COST_COLUMNS, COST_UNITS, simulate
from sim.errors import InputError
from sim.pairs import format_pair, parse_pair, parse_pairs
from sim.workload import Layer, Workload, load_workload

__all__ = ["Chip", "Layer", "Workload", "InputError", "load_chip", "load_workload", "simulate", "preset_names",
           "parse_pair", "parse_pairs", "format_pair", "COST_COLUMNS", "COST_UNITS"]
