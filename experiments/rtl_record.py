"""``rtl_check.json``: the record of one exported layer run through the RTL, as the demos write it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lowbit_core.files import atomic_path
from lowbit_core.pairs import Pair, format_pair

__all__ = ["write_rtl_check"]


def write_rtl_check(path: Path, check: Any, pair: Pair, model: str | None = None) -> dict[str, Any]:
    """Write ``check`` (an :class:`rtl.layer.LayerCheck`) of a layer assigned ``pair`` to ``path`` atomically, as
    JSON: the layer, its pair, the array, PE kind and simulator, the mismatches against the golden model, and the
    measured and predicted cycles.  Returns the record."""
    record = {
        **({"model": model} if model is not None else {}),
        "layer": check.layer,
        "pair": format_pair(pair),
        "array": f"{check.rows}x{check.cols}",
        "pe": check.pe_kind,
        "simulator": check.simulator,
        "mismatches": check.mismatches,
        "measured_cycles": check.measured_cycles,
        "predicted_cycles": check.predicted_cycles,
        "macs": check.macs,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return record
