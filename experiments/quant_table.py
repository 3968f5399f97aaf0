"""``lowbit quant-table``: the quantization results table of ``docs/quant.md``.

Method (RTN, GPFQ, PTQ-SL, QAT, QGT, DGMS, and the variants below) x weight bits x built-in model -> test
accuracy (fake-quant and golden integer model), their agreement, model size in KiB and size reduction against
float32, averaged over training seeds. Activations are 8-bit everywhere. Post-training methods run through
:func:`experiments.quantize.quantize_builtin`; training-time methods through :func:`experiments.train.
train_builtin`, all with the same fine-tuning budget.

Each (model, method, bits, seed) cell is a small JSON file under ``OUT/cells/`` written atomically, so an
interrupted run resumes where it stopped; ``OUT/quant_table.csv`` (every cell) and ``OUT/quant_table.md`` (means)
are rewritten atomically from the cells at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quant.errors import QuantInputError

__all__ = ["TABLE_METHODS", "PTQ_GRANULARITY", "table_cell", "build_table", "table_markdown"]

#: post-training rows: label -> (quantize_builtin method, granularity)
PTQ_GRANULARITY = {"rtn": ("rtn", "channel"), "gpfq": ("gpfq", "channel"), "gpfq-paper": ("gpfq-paper", "channel"),
                   "ptq-sl": ("ptq-sl", "channel"), "ptq-sl-4x2": ("ptq-sl", "4x2")}
TABLE_METHODS = (*PTQ_GRANULARITY, "qat", "qgt", "dgms")
A_BITS = 8


def table_cell(model: str, method: str, w_bits: int, *, epochs: int, seed: int = 0,
               progress: bool = False) -> dict[str, Any]:
    """One cell: accuracies (percent), sizes (bits) and the method's summary, JSON-ready."""
    if method in PTQ_GRANULARITY:
        from experiments.quantize import quantize_builtin

        base, granularity = PTQ_GRANULARITY[method]
        _, res = quantize_builtin(model, base, w_bits, A_BITS, granularity, seed)
        summary: dict[str, Any] = {"granularity": granularity}
    else:
        from experiments.train import train_builtin

        _, res = train_builtin(model, method, w_bits, A_BITS, epochs=epochs, seed=seed, progress=progress)
        summary = {"epochs": epochs, **res.summary}
    from quant.models import cache_key

    return {"model": model, "method": method, "w_bits": w_bits, "a_bits": A_BITS, "seed": seed,
            "model_key": cache_key(model),
            "float_accuracy": res.float_accuracy, "fakequant_accuracy": res.fakequant_accuracy,
            "accuracy": res.integer_accuracy, "agreement": res.integer_agreement,
            "float_size_bits": res.float_size_bits, "size_bits": res.weight_size_bits, "seconds": res.seconds,
            "summary": summary}


def _check(models: Sequence[str], methods: Sequence[str], bits: Sequence[int]) -> None:
    from quant.models import MODELS

    for m in models:
        if m not in MODELS:
            raise QuantInputError(f"unknown model {m!r} (known: {', '.join(sorted(MODELS))})")
    for m in methods:
        if m not in TABLE_METHODS:
            raise QuantInputError(f"unknown method {m!r} (allowed: {', '.join(TABLE_METHODS)})")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8:
            raise QuantInputError(f"weight bits must be integers in 2..8, got {b!r}")


def build_table(out: Path, models: Sequence[str] = ("digits-cnn", "mnist1d-cnn"),
                methods: Sequence[str] = TABLE_METHODS, bits: Sequence[int] = (2, 3, 4), *, epochs: int = 20,
                seeds: Sequence[int] = (0,), progress: bool = False,
                on_cell: Callable[[dict[str, Any], bool], None] | None = None) -> pd.DataFrame:
    """Compute (or reuse) every cell under ``out/cells`` and write ``quant_table.csv`` and ``quant_table.md``.

    ``on_cell(cell, cached)`` is called after each cell. Cells are keyed by model, method, bits, epochs and seed,
    so changing the budget recomputes only the training-time cells; a cell whose ``model_key`` (the pretrained
    model's cache key) differs from the current one, or that cannot be read, is recomputed."""
    from experiments.cells import read_cell, write_cell
    from quant.models import cache_key
    from sim.io import atomic_path

    _check(models, methods, bits)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise QuantInputError(f"seeds must be non-negative integers, got {list(seeds)!r}")
    cells_dir = Path(out) / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in models:
        for method in methods:
            for b, seed in ((b, seed) for b in bits for seed in seeds):
                budget = "" if method in PTQ_GRANULARITY else f"-e{epochs}"
                path = cells_dir / f"{model}_{method}_w{b}a{A_BITS}{budget}_s{seed}.json"
                cell = read_cell(path, cache_key(model))
                cached = cell is not None
                if cell is None:
                    cell = table_cell(model, method, b, epochs=epochs, seed=seed, progress=progress)
                    write_cell(path, cell)
                rows.append(cell)
                if on_cell is not None:
                    on_cell(cell, cached)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "summary"} for r in rows])
    with atomic_path(Path(out) / "quant_table.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(Path(out) / "quant_table.md") as tmp:
        tmp.write_text(table_markdown(frame, rows))
    return frame


def table_markdown(frame: pd.DataFrame, cells: Sequence[dict[str, Any]]) -> str:
    """The docs table, means over seeds: one row per (model, method, bits) with accuracy (fake-quant and integer),
    the lowest agreement over seeds, size and reduction; float rows first; then DGMS's sparsity and compression."""
    mean = frame.groupby(["model", "method", "w_bits"], sort=False).agg(
        float_acc=("float_accuracy", "mean"), acc=("fakequant_accuracy", "mean"), int_acc=("accuracy", "mean"),
        agree=("agreement", "min"), size=("size_bits", "mean"), float_size=("float_size_bits", "mean"),
        seeds=("seed", "nunique")).reset_index()
    lines = ["| model | method | bits | accuracy % (fake-quant) | accuracy % (integer) | agreement % | size KiB | "
             "reduction vs float |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for model, group in mean.groupby("model", sort=False):
        first = group.iloc[0]
        lines.append(f"| {model} | float | 32 | {first.float_acc:.2f} | — | — | {first.float_size / 8192:.1f} | 1.0× |")
        for r in group.itertuples():
            lines.append(f"| {model} | {_label(r.method)} | w{r.w_bits}a{A_BITS} | {r.acc:.2f} | {r.int_acc:.2f} | "
                         f"{r.agree:.1f} | {r.size / 8192:.2f} | {r.float_size / r.size:.1f}× |")
    seeds = sorted(frame.seed.unique())
    lines += ["", f"Means over seeds {', '.join(map(str, seeds))}; agreement is the lowest over seeds."]
    dgms = [c for c in cells if c["method"] == "dgms" and "sparsity" in c.get("summary", {})]
    if dgms:
        lines += ["", "| model | DGMS bits | seed | sparsity | compression from bits and sparsity |",
                  "|---|---|---:|---:|---:|"]
        for c in dgms:
            s = c["summary"]
            ratio = s.get("compression_sparse")
            ratio_text = f"{ratio:.1f}×" if isinstance(ratio, int | float) else "—"
            lines.append(f"| {c['model']} | w{c['w_bits']}a{A_BITS} | {c['seed']} | {100 * s['sparsity']:.1f} % | "
                         f"{ratio_text} |")
    return "\n".join(lines) + "\n"


def _label(method: str) -> str:
    return {"rtn": "RTN", "gpfq": "GPFQ", "gpfq-paper": "GPFQ (paper alphabet, b+1-bit codes)",
            "ptq-sl": "PTQ-SL (per-channel)", "ptq-sl-4x2": "PTQ-SL (4×2 blocks)", "qat": "QAT", "qgt": "QGT",
            "dgms": "DGMS"}.get(method, method)
