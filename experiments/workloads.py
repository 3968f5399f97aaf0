"""Workloads by name for the CLI: the simulator's zoo and files, plus lowbit's built-in quantizable models."""

from __future__ import annotations

from sim.workload import Workload, load_workload

__all__ = ["BUILTIN_MODELS", "resolve_workload"]

#: Trained models of ``quant.models`` that can also be simulated (their layers traced with torch).
BUILTIN_MODELS = ("digits-cnn", "mnist1d-cnn")


def resolve_workload(name: str, seed: int = 0) -> Workload:
    """A built-in model's layers (traced on one calibration sample, names = its quantized layers), or
    anything :func:`sim.load_workload` accepts."""
    if name in BUILTIN_MODELS:
        from quant.models import get_model, model_split
        from sim.workload import from_torch

        model = get_model(name, seed=seed)
        return from_torch(model, model_split(name).calib_x[:1], name=name)
    return load_workload(name)
