"""``lowbit quant-table``: the quantization results table of ``docs/quant.md``.

Method (RTN, GPFQ, PTQ-SL, QAT, QGT, DGMS, and the variants below) x weight bits x built-in model -> test
accuracy (fake-quant and golden integer model), their agreement, model size in KiB and size reduction against
float32, averaged over training seeds. Activations are 8-bit everywhere. Post-training methods run through
:func:`experiments.quantize.quantize_builtin`; training-time methods through :func:`experiments.train.
train_builtin`, all with the same fine-tuning budget.

Each (model, method, bits, seed) cell is a small JSON file under ``OUT/cells/`` written atomically, so an
interrupted run resumes where it stopped; ``OUT/quant_table.csv`` (every cell), ``OUT/quant_table.md`` (means) and
``OUT/quant_table.json`` (the seeds, epochs and pretrained-model keys the table was built from) are rewritten
atomically from the cells at the end. A run never silently replaces a table built from other seeds, another
fine-tuning budget or other pretrained weights: it refuses (before writing anything) unless ``replace=True``
(``--replace``). Each cell prints ``[k/n] ... ETA`` on stderr before it is computed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.cell_runner import CellJob, format_eta, run_cells
from lowbit_core.pairs import format_pair
from quant.errors import QuantInputError

__all__ = [
    "TABLE_METHODS",
    "PTQ_GRANULARITY",
    "build_table",
    "check_existing",
    "format_eta",
    "table_cell",
    "table_markdown",
]

#: post-training rows: label -> (quantize_builtin method, granularity)
PTQ_GRANULARITY = {
    "rtn": ("rtn", "channel"),
    "gpfq": ("gpfq", "channel"),
    "gpfq-paper": ("gpfq-paper", "channel"),
    "ptq-sl": ("ptq-sl", "channel"),
    "ptq-sl-4x2": ("ptq-sl", "4x2"),
    "gptq": ("gptq", "channel"),
}
TABLE_METHODS = (*PTQ_GRANULARITY, "qat", "qgt", "dgms")
A_BITS = 8


def table_cell(
    model: str, method: str, w_bits: int, *, epochs: int, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
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

    return {
        "model": model,
        "method": method,
        "w_bits": w_bits,
        "a_bits": A_BITS,
        "seed": seed,
        "model_key": cache_key(model),
        "float_accuracy": res.float_accuracy,
        "fakequant_accuracy": res.fakequant_accuracy,
        "accuracy": res.integer_accuracy,
        "agreement": res.integer_agreement,
        "float_size_bits": res.float_size_bits,
        "size_bits": res.weight_size_bits,
        "seconds": res.seconds,
        "summary": summary,
    }


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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, sorted(set(seeds))))


def _existing_cells(cells_dir: Path) -> list[dict[str, Any]]:
    cells = []
    for path in sorted(cells_dir.glob("*.json")) if cells_dir.is_dir() else []:
        try:
            cell = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(cell, dict) and {"model", "seed", "model_key"} <= set(cell):
            cells.append(cell)
    return cells


def check_existing(
    out: Path, seeds: Sequence[int], keys: dict[str, str], epochs: int | None, replace: bool = False
) -> None:
    """Refuse (:class:`QuantInputError`) to overwrite a table in ``out`` built from other seeds, another epoch budget
    or other pretrained weights (cells whose model key differs from ``keys``), unless ``replace``."""
    if replace:
        return
    out = Path(out)
    try:
        recorded = json.loads((out / "quant_table.json").read_text())
    except (OSError, ValueError):
        recorded = None
    cells = _existing_cells(out / "cells")
    before = recorded.get("seeds") if isinstance(recorded, dict) else sorted({c["seed"] for c in cells})
    if before and set(before) != set(seeds):
        raise QuantInputError(
            f"{out} holds a quant table over seeds {_seed_list(before)}, and this run asks for "
            f"seeds {_seed_list(seeds)}; pass --replace to rebuild it from seeds "
            f"{_seed_list(seeds)} (cells of other seeds are kept), or choose another --out"
        )
    old_epochs = recorded.get("epochs") if isinstance(recorded, dict) else None
    if old_epochs is not None and epochs is not None and old_epochs != epochs:
        raise QuantInputError(
            f"{out} holds a quant table whose training-time rows used {old_epochs} epochs, and "
            f"this run asks for {epochs}; pass --replace to rebuild it, or choose another --out"
        )
    for model, key in keys.items():
        stale = [c for c in cells if c["model"] == model and c["model_key"] != key]
        if stale:
            raise QuantInputError(
                f"{out} holds cells of {model} (seeds {_seed_list([c['seed'] for c in stale])}) "
                f"computed from other pretrained weights (model key {stale[0]['model_key']}, now "
                f"{key}); pass --replace to recompute them, or choose another --out"
            )


def _check_run(scheduler: str | None, seeds: Sequence[int], epochs: int) -> None:
    """The run's own arguments, before anything is written (a scheduler address must answer)."""
    if scheduler is not None:
        from sim.scheduler import connect_scheduler, parse_scheduler

        _, address, _ = parse_scheduler(scheduler, None)
        if address is not None:
            connect_scheduler(address).close()
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise QuantInputError(f"seeds must be non-negative integers, got {list(seeds)!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise QuantInputError(f"epochs must be a positive integer, got {epochs!r}")


def _plan_cells(
    cells_dir: Path,
    models: Sequence[str],
    methods: Sequence[str],
    bits: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
) -> list[tuple[str, str, int, int, Path]]:
    """(model, method, bits, seed, cell file) of every cell, in table order; training cells carry the epochs."""
    plan = []
    for model in models:
        for method in methods:
            for b, seed in ((b, seed) for b in bits for seed in seeds):
                budget = "" if method in PTQ_GRANULARITY else f"-e{epochs}"
                name = f"{model}_{method}_w{b}a{A_BITS}{budget}_s{seed}.json"
                plan.append((model, method, b, seed, cells_dir / name))
    return plan


def build_table(
    out: Path,
    models: Sequence[str] = ("digits-cnn", "mnist1d-cnn"),
    methods: Sequence[str] = TABLE_METHODS,
    bits: Sequence[int] = (2, 3, 4),
    *,
    epochs: int = 20,
    seeds: Sequence[int] = (0,),
    progress: bool = False,
    replace: bool = False,
    on_cell: Callable[[dict[str, Any], bool], None] | None = None,
    status: Callable[[str], None] | None = _stderr,
    chips: Sequence[str] = (),
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Compute (or reuse) every cell under ``out/cells`` and write ``quant_table.csv``, ``.md`` and ``.json``.

    ``on_cell(cell, cached)`` is called after each cell; ``status(line)`` before each cell to compute, with the
    count done / total and an ETA (default: a line on stderr; None is silent). Cells are keyed by model, method,
    bits, epochs and seed, so changing the budget recomputes only the training-time cells. Everything is checked
    before ``out`` is touched: the arguments, and (unless ``replace``) that ``out`` holds no table of other seeds,
    epochs or pretrained weights (:func:`check_existing`); with ``replace`` a cell whose ``model_key`` (the
    pretrained model's cache key) differs from the current one is recomputed.  ``chips`` (sim presets or chip
    YAMLs) add each model's sim latency (us) and energy (uJ) per inference at ``w<bits>a8`` on each chip: the
    columns ``latency_us:<chip>`` and ``energy_uj:<chip>`` (the same for every method of a bit width).
    ``scheduler``: None computes the cells here, in order; ``local[:N]`` or a Dask scheduler address spreads them
    over workers (:mod:`experiments.cell_runner`); the tables are the same either way."""
    from experiments.cells import read_cell, write_cell
    from lowbit_core.files import atomic_path
    from quant.models import cache_key

    _check(models, methods, bits)
    _check_run(scheduler, seeds, epochs)
    costs = _sim_costs(models, bits, chips)  # checks the chips before anything is computed
    trains = any(m not in PTQ_GRANULARITY for m in methods)
    keys = {m: cache_key(m) for m in models}
    out = Path(out)
    check_existing(out, seeds, keys, epochs if trains else None, replace)
    cells_dir = out / "cells"
    plan = _plan_cells(cells_dir, models, methods, bits, seeds, epochs)
    stored = [read_cell(path, keys[model]) for model, _, _, _, path in plan]
    todo = {
        "ptq": sum(c is None and p[1] in PTQ_GRANULARITY for c, p in zip(stored, plan)),
        "train": sum(c is None and p[1] not in PTQ_GRANULARITY for c, p in zip(stored, plan)),
    }
    spent: dict[str, list[float]] = {"ptq": [], "train": []}

    def eta(_done: int, _elapsed: float) -> float | None:
        done = spent["ptq"] + spent["train"]
        if not done:
            return None
        mean = {k: (sum(v) / len(v) if v else sum(done) / len(done)) for k, v in spent.items()}
        return sum(mean[k] * (todo[k] - len(spent[k])) for k in todo)

    cells_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, dict[str, Any]] = {}
    for (_, _, _, _, path), cell in zip(plan, stored):
        if cell is not None:
            found[str(path)] = cell
            if on_cell is not None:
                on_cell(cell, True)
    jobs = [
        CellJob(
            key=path.stem,
            label=f"{model} {method} w{b}a{A_BITS} seed {seed}",
            fn=table_cell,
            kwargs={
                "model": model,
                "method": method,
                "w_bits": b,
                "epochs": epochs,
                "seed": seed,
                "progress": progress and scheduler is None,
            },
        )
        for (model, method, b, seed, path), cell in zip(plan, stored)
        if cell is None
    ]
    started = {"t": time.perf_counter()}

    def write(job: CellJob, cell: dict[str, Any]) -> None:
        path = cells_dir / f"{job.key}.json"
        write_cell(path, cell)
        found[str(path)] = cell
        spent["ptq" if cell["method"] in PTQ_GRANULARITY else "train"].append(time.perf_counter() - started["t"])
        started["t"] = time.perf_counter()
        if on_cell is not None:
            on_cell(cell, False)

    run_cells(jobs, write, scheduler=scheduler, status=status, eta=eta if scheduler is None else None)
    rows = [found[str(path)] for *_, path in plan]
    # the cells keep their compute time; the tables hold results only, so they do not depend on the machine
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ("summary", "seconds")} for r in rows])
    for chip_name, per_model in costs.items():
        for column in ("latency_us", "energy_uj"):
            frame[f"{column}:{chip_name}"] = [per_model[(m, b)][column] for m, b in zip(frame.model, frame.w_bits)]
    with atomic_path(out / "quant_table.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out / "quant_table.md") as tmp:
        tmp.write_text(table_markdown(frame, rows))
    record = {
        "seeds": sorted(set(seeds)),
        "epochs": epochs if trains else None,
        "model_keys": keys,
        "models": list(models),
        "methods": list(methods),
        "bits": list(bits),
        "chips": list(costs),
    }
    with atomic_path(out / "quant_table.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return frame


def _sim_costs(
    models: Sequence[str], bits: Sequence[int], chips: Sequence[str]
) -> dict[str, dict[tuple[str, int], dict[str, float]]]:
    """chip name -> (model, w_bits) -> total ``latency_us`` and ``energy_uj`` of one inference at ``w<bits>a8``."""
    if not chips:
        return {}
    from experiments.workloads import resolve_workload
    from sim import load_chip, simulate

    loaded = [load_chip(c) for c in chips]
    workloads = {m: resolve_workload(m) for m in models}
    out: dict[str, dict[tuple[str, int], dict[str, float]]] = {}
    for chip in loaded:
        per: dict[tuple[str, int], dict[str, float]] = {}
        for m in models:
            frame = simulate(chip, workloads[m], [format_pair((b, A_BITS)) for b in bits])
            totals = frame.groupby("w_bits")[["latency_us", "energy_pj"]].sum()
            for b in bits:
                per[(m, b)] = {
                    "latency_us": float(totals.loc[b, "latency_us"]),
                    "energy_uj": float(totals.loc[b, "energy_pj"]) / 1e6,
                }
        out[chip.name] = per
    return out


def table_markdown(frame: pd.DataFrame, cells: Sequence[dict[str, Any]]) -> str:
    """The docs table, means over seeds: one row per (model, method, bits) with accuracy (fake-quant and integer),
    the lowest agreement over seeds, size and reduction (and sim latency / energy per chip when the frame has
    them); float rows first; then DGMS's sparsity and compression."""
    chips = [c.split(":", 1)[1] for c in frame.columns if c.startswith("latency_us:")]
    extra = {f"lat_{i}": (f"latency_us:{c}", "mean") for i, c in enumerate(chips)}
    extra |= {f"en_{i}": (f"energy_uj:{c}", "mean") for i, c in enumerate(chips)}
    mean = (
        frame.groupby(["model", "method", "w_bits"], sort=False)
        .agg(
            float_acc=("float_accuracy", "mean"),
            acc=("fakequant_accuracy", "mean"),
            int_acc=("accuracy", "mean"),
            agree=("agreement", "min"),
            size=("size_bits", "mean"),
            float_size=("float_size_bits", "mean"),
            seeds=("seed", "nunique"),
            **extra,
        )
        .reset_index()
    )
    head = "".join(f" latency µs ({c}) | energy µJ ({c}) |" for c in chips)
    lines = [
        "| model | method | bits | accuracy % (fake-quant) | accuracy % (integer) | agreement % | size KiB | "
        "reduction vs float |" + head,
        "|---|---|---|---:|---:|---:|---:|---:|" + "---:|---:|" * len(chips),
    ]
    for model, group in mean.groupby("model", sort=False):
        first = group.iloc[0]
        lines.append(
            f"| {model} | float | 32 | {first.float_acc:.2f} | — | — | {first.float_size / 8192:.1f} | 1.0× |"
            + " — | — |" * len(chips)
        )
        for r in group.itertuples():
            sim_cols = "".join(
                f" {getattr(r, f'lat_{i}'):.2f} | {getattr(r, f'en_{i}'):.3f} |" for i in range(len(chips))
            )
            lines.append(
                f"| {model} | {_label(r.method)} | w{r.w_bits}a{A_BITS} | {r.acc:.2f} | {r.int_acc:.2f} | "
                f"{r.agree:.1f} | {r.size / 8192:.2f} | {r.float_size / r.size:.1f}× |" + sim_cols
            )
    seeds = sorted(frame.seed.unique())
    lines += ["", f"Means over seeds {', '.join(map(str, seeds))}; agreement is the lowest over seeds."]
    dgms = [c for c in cells if c["method"] == "dgms" and "sparsity" in c.get("summary", {})]
    if dgms:
        lines += [
            "",
            "| model | DGMS bits | seed | sparsity | compression from bits and sparsity |",
            "|---|---|---:|---:|---:|",
        ]
        for c in dgms:
            s = c["summary"]
            ratio = s.get("compression_sparse")
            ratio_text = f"{ratio:.1f}×" if isinstance(ratio, int | float) else "—"
            lines.append(
                f"| {c['model']} | w{c['w_bits']}a{A_BITS} | {c['seed']} | {100 * s['sparsity']:.1f} % | {ratio_text} |"
            )
    return "\n".join(lines) + "\n"


def _label(method: str) -> str:
    return {
        "rtn": "RTN",
        "gpfq": "GPFQ",
        "gpfq-paper": "GPFQ (paper alphabet, b+1-bit codes)",
        "ptq-sl": "PTQ-SL (per-channel)",
        "ptq-sl-4x2": "PTQ-SL (4×2 blocks)",
        "gptq": "GPTQ",
        "qat": "QAT",
        "qgt": "QGT",
        "dgms": "DGMS",
    }.get(method, method)
