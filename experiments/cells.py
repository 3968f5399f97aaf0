"""Resumable result cells: one small JSON file per run, tied to the pretrained model it was computed from.

Used by ``lowbit quant-table`` and ``experiments.training_study``: a cell is reused only if it parses and its
``model_key`` equals the current :func:`quant.models.cache_key` of its model, so new pretrained weights (the model,
data or training code changed, and ``make models`` regenerated the shipped weights) recompute the cells instead of
mixing results from two models. ``lowbit quant-table`` refuses such a directory unless ``--replace`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lowbit_core.files import atomic_path

__all__ = ["read_cell", "write_cell"]


def read_cell(path: Path, model_key: str) -> dict[str, Any] | None:
    """The stored cell at ``path`` if it is readable and was computed from the pretrained model ``model_key``."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cell if isinstance(cell, dict) and cell.get("model_key") == model_key else None


def write_cell(path: Path, cell: dict[str, Any]) -> None:
    """Write ``cell`` to ``path`` atomically (a reader never sees half a cell)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(cell, indent=1) + "\n")
