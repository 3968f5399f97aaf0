"""cocotb benches run by :func:`rtl.runner.run_bench`; helpers to read their inputs.

Convention: the build's Verilog parameters arrive as JSON in ``$LOWBIT_RTL_PARAMETERS``; small knobs as plain
environment variables; larger inputs as a JSON file whose path is in ``$LOWBIT_BENCH_JSON``.
These helpers import neither cocotb nor torch, so they are usable outside a simulation.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["parameters", "bench_input", "env_int", "env_str"]


def parameters() -> dict[str, int]:
    """The Verilog parameters the design was built with (``$LOWBIT_RTL_PARAMETERS``), ``{}`` when unset."""
    return json.loads(os.environ.get("LOWBIT_RTL_PARAMETERS", "{}"))


def bench_input() -> Any:
    """The JSON input written by ``run_bench(data=...)`` (``$LOWBIT_BENCH_JSON``), ``None`` when unset."""
    path = os.environ.get("LOWBIT_BENCH_JSON")
    if not path:
        return None
    with open(path) as fh:
        return json.load(fh)


def env_int(name: str, default: int) -> int:
    """Integer environment variable ``name`` (``default`` when unset)."""
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_str(name: str, default: str) -> str:
    """String environment variable ``name`` (``default`` when unset)."""
    return os.environ.get(name) or default
