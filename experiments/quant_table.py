"""``lowbit quant-table``: the quantization results table of ``docs/quant.md``.

Method (RTN, GPFQ, PTQ-SL, QAT, QGT, DGMS) x weight bits x built-in model -> test accuracy of the integer model,
model size in KiB and size reduction against float32. Activations are 8-bit everywhere. Post-training methods
run through :func:`experiments.quantize.quantize_builtin`; training-time methods through
:func:`experiments.train.train_builtin`, all with the same fine-tuning budget.

Each cell is a small JSON file under ``OUT/cells/`` written atomically, so an interrupted run resumes where it
stopped; ``OUT/quant_table.csv`` and ``OUT/quant_table.md`` are rewritten (atomically) from the cells at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quant.errors import QuantInputError

__all__ = ["TABLE_METHODS", "PTQ_GRANULARITY", "table_cell", "build_table", "table_markdown"]

TABLE_METHODS = ("rtn", "gpfq", "ptq-sl", "qat", "qgt", "dgms")
#: granularity of the post-training methods: per-channel scales; PTQ-SL with its sub-layer 4 x 2 blocks
PTQ_GRANULARITY = {"rtn": "channel", "gpfq": "channel", "ptq-sl": "4x2"}
A_BITS = 8


def table_cell(model: str, method: str, w_bits: int, *, epochs: int, seed: int = 0,
               progress: bool = False) -> dict[str, Any]:
    """One cell: accuracies (percent), sizes (bits) and the method's summary, JSON-ready."""
    if method in PTQ_GRANULARITY:
        from experiments.quantize import quantize_builtin

        _, res = quantize_builtin(model, method, w_bits, A_BITS, PTQ_GRANULARITY[method], seed)
        summary: dict[str, Any] = {"granularity": PTQ_GRANULARITY[method]}
    else:
        from experiments.train import train_builtin

        _, res = train_builtin(model, method, w_bits, A_BITS, epochs=epochs, seed=seed, progress=progress)
        summary = {"epochs": epochs, **res.summary}
    return {"model": model, "method": method, "w_bits": w_bits, "a_bits": A_BITS, "seed": seed,
            "float_accuracy": res.float_accuracy, "fakequant_accuracy": res.fakequant_accuracy,
            "accuracy": res.integer_accuracy, "float_size_bits": res.float_size_bits,
            "size_bits": res.weight_size_bits, "seconds": res.seconds, "summary": summary}


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
                seed: int = 0, progress: bool = False,
                on_cell: Callable[[dict[str, Any], bool], None] | None = None) -> pd.DataFrame:
    """Compute (or reuse) every cell under ``out/cells`` and write ``quant_table.csv`` and ``quant_table.md``.

    ``on_cell(cell, cached)`` is called after each cell. Cells are keyed by model, method, bits, epochs and seed,
    so changing the budget recomputes only the training-time cells."""
    from sim.io import atomic_path

    _check(models, methods, bits)
    cells_dir = Path(out) / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in models:
        for method in methods:
            for b in bits:
                budget = "" if method in PTQ_GRANULARITY else f"-e{epochs}"
                path = cells_dir / f"{model}_{method}_w{b}a{A_BITS}{budget}_s{seed}.json"
                cached = path.is_file()
                if cached:
                    cell = json.loads(path.read_text())
                else:
                    cell = table_cell(model, method, b, epochs=epochs, seed=seed, progress=progress)
                    with atomic_path(path) as tmp:
                        tmp.write_text(json.dumps(cell, indent=1) + "\n")
                rows.append(cell)
                if on_cell is not None:
                    on_cell(cell, cached)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "summary"} for r in rows])
    frame["size_kib"] = frame["size_bits"] / 8192
    frame["reduction"] = frame["float_size_bits"] / frame["size_bits"]
    with atomic_path(Path(out) / "quant_table.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(Path(out) / "quant_table.md") as tmp:
        tmp.write_text(table_markdown(frame, rows))
    return frame


def table_markdown(frame: pd.DataFrame, cells: Sequence[dict[str, Any]]) -> str:
    """The docs table: one row per (model, method), one accuracy / KiB / reduction group per weight width,
    then DGMS's sparsity and sparse compression where present."""
    bits = sorted(frame.w_bits.unique())
    head = ["model", "method"] + [f"w{b}a8: acc. % · KiB · ×" for b in bits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, method), group in frame.groupby(["model", "method"], sort=False):
        by_bits = {int(r.w_bits): r for r in group.itertuples()}
        cols = [f"{by_bits[b].accuracy:.2f} · {by_bits[b].size_kib:.2f} · {by_bits[b].reduction:.1f}×"
                if b in by_bits else "—" for b in bits]
        lines.append(f"| {model} | {method.upper() if method != 'ptq-sl' else 'PTQ-SL'} | " + " | ".join(cols) + " |")
    floats = frame.groupby("model", sort=False).agg(acc=("float_accuracy", "first"), bits=("float_size_bits", "first"))
    lines.append("")
    lines.append("Float32: " + "; ".join(f"{m} {r.acc:.2f} %, {r.bits / 8192:.1f} KiB" for m, r in floats.iterrows())
                 + ".")
    dgms = [c for c in cells if c["method"] == "dgms" and "sparsity" in c.get("summary", {})]
    if dgms:
        lines += ["", "| model | DGMS bits | sparsity | compression (bits and sparsity) |", "|---|---|---:|---:|"]
        for c in dgms:
            s = c["summary"]
            ratio = s.get("compression_ratio", s.get("compression", float("nan")))
            ratio_text = f"{ratio:.1f}×" if isinstance(ratio, int | float) else str(ratio)
            lines.append(f"| {c['model']} | w{c['w_bits']}a8 | {100 * s['sparsity']:.1f} % | {ratio_text} |")
    return "\n".join(lines) + "\n"
