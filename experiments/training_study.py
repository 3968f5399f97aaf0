"""Training-time quantization study: the measurements behind docs/quant.md's QGT and DGMS sections.

Run ``python -m experiments.training_study --out results/training_study [--jobs 2 | --scheduler ADDRESS]``. Its
181 runs train for about 24 CPU-minutes in all (about 13 minutes of wall time with ``--jobs 2`` on 2 cores), all
from the shipped pretrained models.  The runs go through :mod:`experiments.cell_runner`: in this process by default,
on ``--jobs N`` local Dask worker processes, or on the workers of a Dask scheduler (``--scheduler tcp://host:port``),
one torch thread per run, with an ETA on stderr.  Every run is one JSON cell under ``<out>/cells/``, written
atomically and keyed by its settings and the pretrained model's cache key, so an interrupted study resumes and a
retrained model recomputes its cells.
``<out>/training_study.md`` holds every table; it is rewritten atomically at the end.

Parts (``--parts``, comma-separated; default all):

* ``qgt-lambda``: QGT + GPFQ final at lambda in {0, 0.1, 0.3, 1} against GPFQ alone, seeds 0-4, 20 epochs (the
  ``lowbit quant-table`` protocol: the seed fixes the pretrained model and the fine-tuning). lambda = 0 is plain
  fine-tuning followed by GPFQ, the control for the regularizer.
* ``qgt-final``: lambda in {0, 1, 10, 100} x final quantizer (RTN, RTN + bias correction, GPFQ), seed 0, 20 epochs.
* ``qgt-grid``: the target grid's scale, max-abs against MSE, x final quantizer; lambda = 10, 10 epochs, seed 0.
* ``qgt-rho``: Spearman's rho between QGT's bottleneck ranking (final R_l) and the SQNR ranking, lambda in
  {0.3, 1, 10}, 10 epochs, seeds 0-2; also the pretrained model's R_l against SQNR.
* ``dgms-epochs``: DGMS (defaults) at w2/w3/w4, 10 epochs, seeds 0-2 (the 20-epoch runs are the quant table's).
* ``dgms-hard``: DGMS w2a8 with the soft forward (the paper) against the straight-through hard forward for the
  whole run (``hard_phase=1``), 10 and 20 epochs, seeds 0-2, scored on the test and the calibration split; the
  first and last epochs' temperature, sparsity and training accuracy are kept.
* ``dgms-alpha``: DGMS w2a8 on mnist1d with and without the per-channel scales alpha_r (``channel_norm``),
  tau0 = 0.01, 10 epochs, seed 0.
* ``dgms-free``: the paper's free codebook at w2/w3/w4, 10 epochs, seeds 0-1: accuracy with the learned means
  (before the snap) and after snapping them to the grid.
* ``dgms-tuning``: the DGMS knob sweep on mnist1d (w2a8, 10 epochs, seeds 0-2), scored on the labelled
  calibration split, which is what the defaults were chosen on; test accuracy is shown beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.cell_runner import CellJob, run_cells
from lowbit_core.errors import InputError
from lowbit_core.pairs import format_pair

MODELS = ("digits-cnn", "mnist1d-cnn")
A_BITS = 8
LAMBDAS = (0.0, 0.1, 0.3, 1.0)
FINAL_LAMBDAS = (0.0, 1.0, 10.0, 100.0)
FINALS = ("rtn", "rtn-bc", "gpfq")
RHO_LAMBDAS = (0.3, 1.0, 10.0)
DGMS_TUNING: tuple[tuple[str, dict[str, Any], float | None], ...] = (
    ("tau0 0.01, mixture lr x1", {"tau0": 0.01, "mixture_lr_scale": 1.0}, None),
    ("tau0 0.01, mixture lr x10", {"tau0": 0.01, "mixture_lr_scale": 10.0}, None),
    ("tau0 0.03, mixture lr x10 (default)", {}, None),
    ("tau0 0.003, lr 3e-3, mixture x1", {"tau0": 0.003, "mixture_lr_scale": 1.0}, 3e-3),
    ("tau0 0.03, lr 3e-3, mixture x1", {"tau0": 0.03, "mixture_lr_scale": 1.0}, 3e-3),
    ("tau0 0.1, mixture lr x10", {"tau0": 0.1}, None),
    ("tau0 0.03, mixture lr x30", {"mixture_lr_scale": 30.0}, None),
)
PARTS = (
    "qgt-lambda",
    "qgt-final",
    "qgt-grid",
    "qgt-rho",
    "dgms-epochs",
    "dgms-hard",
    "dgms-free",
    "dgms-tuning",
    "dgms-alpha",
)

Run = dict[str, Any]  # {model, method, w_bits, epochs, seed, options, lr, extras}


def _run(
    model: str,
    method: str,
    w_bits: int,
    seed: int,
    epochs: int = 20,
    options: dict[str, Any] | None = None,
    lr: float | None = None,
    extras: tuple[str, ...] = (),
) -> Run:
    """One run: every setting that determines its cell."""
    return {
        "model": model,
        "method": method,
        "w_bits": w_bits,
        "epochs": epochs,
        "seed": seed,
        "options": options or {},
        "lr": lr,
        "extras": list(extras),
    }


def _qgt_lambda_runs(model: str) -> list[Run]:
    """GPFQ alone, then QGT + GPFQ at each lambda; seeds 0-4, 20 epochs."""
    runs: list[Run] = []
    for seed in range(5):
        runs.append(_run(model, "gpfq", 2, seed, epochs=0))
        runs.extend(_run(model, "qgt", 2, seed, options={"lam": lam}) for lam in LAMBDAS)
    return runs


def _qgt_final_runs(model: str) -> list[Run]:
    """QGT at each lambda x final quantizer; seed 0, 20 epochs."""
    return [_run(model, "qgt", 2, 0, options={"lam": lam, "final": final}) for lam in FINAL_LAMBDAS for final in FINALS]


def _qgt_grid_runs(model: str) -> list[Run]:
    """QGT's target grid (max-abs, MSE) x final quantizer; lambda 10, seed 0, 10 epochs."""
    return [
        _run(model, "qgt", 2, 0, epochs=10, options={"lam": 10.0, "final": final, "grid": grid})
        for grid in ("max", "mse")
        for final in FINALS
    ]


def _qgt_rho_runs(model: str) -> list[Run]:
    """QGT with the bottleneck ranking kept (``rho``); seeds 0-2, 10 epochs."""
    return [
        _run(model, "qgt", 2, seed, epochs=10, options={"lam": lam}, extras=("rho",))
        for seed in range(3)
        for lam in RHO_LAMBDAS
    ]


def _dgms_epochs_runs(model: str) -> list[Run]:
    """DGMS (defaults) at w2/w3/w4; seeds 0-2, 10 epochs."""
    return [_run(model, "dgms", bits, seed, epochs=10) for bits in (2, 3, 4) for seed in range(3)]


def _dgms_hard_runs(model: str) -> list[Run]:
    """DGMS w2 with the soft and the hard forward, 10 and 20 epochs, seeds 0-2; calibration score and history kept."""
    return [
        _run(
            model,
            "dgms",
            2,
            seed,
            epochs=epochs,
            options={"hard_phase": hard_phase},
            extras=("calib", "history"),
        )
        for epochs in (10, 20)
        for hard_phase in (0.0, 1.0)
        for seed in range(3)
    ]


def _dgms_free_runs(model: str) -> list[Run]:
    """DGMS with the free codebook at w2/w3/w4; seeds 0-1, 10 epochs."""
    return [
        _run(model, "dgms", bits, seed, epochs=10, options={"codebook": "free"})
        for bits in (2, 3, 4)
        for seed in range(2)
    ]


def _dgms_tuning_runs(model: str) -> list[Run]:
    """The DGMS knob sweep (mnist1d only); seeds 0-2, 10 epochs, calibration score kept."""
    if model != "mnist1d-cnn":
        return []
    return [
        _run(model, "dgms", 2, seed, epochs=10, options=options, lr=lr, extras=("calib",))
        for _, options, lr in DGMS_TUNING
        for seed in range(3)
    ]


def _dgms_alpha_runs(model: str) -> list[Run]:
    """DGMS with and without the per-channel scales (mnist1d only); tau0 0.01, seed 0, 10 epochs."""
    if model != "mnist1d-cnn":
        return []
    return [
        _run(model, "dgms", 2, 0, epochs=10, options={"tau0": 0.01, "channel_norm": channel_norm})
        for channel_norm in (False, True)
    ]


_SECTION_RUNS: dict[str, Callable[[str], list[Run]]] = {
    "qgt-lambda": _qgt_lambda_runs,
    "qgt-final": _qgt_final_runs,
    "qgt-grid": _qgt_grid_runs,
    "qgt-rho": _qgt_rho_runs,
    "dgms-epochs": _dgms_epochs_runs,
    "dgms-hard": _dgms_hard_runs,
    "dgms-free": _dgms_free_runs,
    "dgms-tuning": _dgms_tuning_runs,
    "dgms-alpha": _dgms_alpha_runs,
}


def _runs(part: str) -> list[Run]:
    """Every run of ``part``, model by model (a run is JSON-ready and fully determines its cell); none for an unknown
    part."""
    section = _SECTION_RUNS.get(part)
    if section is None:
        return []
    return [run for model in MODELS for run in section(model)]


def _cell_name(run: Run) -> str:
    digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:12]
    return f"{run['model']}_{run['method']}_w{run['w_bits']}_e{run['epochs']}_s{run['seed']}_{digest}.json"


def _rho(model_name: str, seed: int, reg_final: dict[str, float], reg_initial: dict[str, float]) -> dict[str, Any]:
    """Spearman's rho of the final and the pretrained R_l against the SQNR NSR of each layer (w2a8, RTN)."""
    from quant.models import get_model, model_split
    from quant.qgt import spearman
    from quant.sensitivity import sensitivity_table

    sqnr = sensitivity_table(
        get_model(model_name, seed=seed), model_split(model_name).calib_x, [(2, A_BITS)], method="sqnr"
    )
    names = [str(n) for n in sqnr["name"]]
    nsr = [float(s) for s in sqnr["sensitivity"]]
    return {
        "rho": spearman([reg_final[n] for n in names], nsr),
        "rho_initial": spearman([reg_initial[n] for n in names], nsr),
        "sqnr_nsr": dict(zip(names, nsr)),
    }


def run_cell(run: Run) -> dict[str, Any]:
    """Execute one run; returns the cell (the run, the pretrained model key and the measurements)."""
    import torch

    from quant.data import evaluate_accuracy
    from quant.models import cache_key, model_split

    cell: dict[str, Any] = {**run, "model_key": cache_key(run["model"])}
    if run["method"] == "gpfq":
        from experiments.quantize import quantize_builtin

        _, res = quantize_builtin(run["model"], "gpfq", run["w_bits"], A_BITS, "channel", run["seed"])
        return {**cell, "accuracy": res.integer_accuracy, "float_accuracy": res.float_accuracy}
    from experiments.train import train_builtin

    outcome, res = train_builtin(
        run["model"],
        run["method"],
        run["w_bits"],
        A_BITS,
        epochs=run["epochs"],
        lr=run["lr"],
        seed=run["seed"],
        options=run["options"],
    )
    cell.update(accuracy=res.integer_accuracy, float_accuracy=res.float_accuracy, seconds=res.seconds)
    s = res.summary
    keep = (
        "reg_final",
        "reg_initial",
        "sparsity",
        "zero_codes",
        "compression_sparse",
        "compression_dense",
        "model_compression_dense",
        "test_accuracy_hard",
        "test_accuracy_snapped",
        "snap_cost",
    )
    cell["summary"] = {k: s[k] for k in keep if k in s}
    if "rho" in run["extras"]:
        cell.update(_rho(run["model"], run["seed"], s["reg_final"], s["reg_initial"]))
    if "calib" in run["extras"]:
        split = model_split(run["model"])
        with torch.no_grad():
            cell["calib_accuracy"] = round(evaluate_accuracy(outcome.model, split.calib_x, split.calib_y), 2)
    if "history" in run["extras"]:
        keep_cols = [c for c in ("tau_mean", "sparsity", "train_accuracy") if c in outcome.history.columns]
        cell["history"] = {
            end: {c: float(outcome.history[c].iloc[i]) for c in keep_cols} for end, i in (("first", 0), ("last", -1))
        }
    return cell


def collect(
    out: Path,
    parts: list[str],
    scheduler: str | None = None,
    on_cell: Callable[[dict[str, Any], bool], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Compute (or reuse) every cell of ``parts`` under ``out/cells``; returns them in the study's order, each
    tagged with its part.  ``scheduler``: None (this process), ``local:N`` or a Dask scheduler address
    (:mod:`experiments.cell_runner`)."""
    from experiments.cells import read_cell, write_cell
    from quant.models import cache_key
    from sim.scheduler import parse_scheduler

    if scheduler is not None:
        parse_scheduler(scheduler, None)  # refused before anything is created
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    keys = {m: cache_key(m) for m in MODELS}
    plan = [(part, run, cells_dir / _cell_name(run)) for part in parts for run in _runs(part)]
    found: dict[str, dict[str, Any]] = {}
    todo: dict[str, Run] = {}
    for _, run, path in plan:
        if path.name in found or path.name in todo:
            continue
        cell = read_cell(path, keys[run["model"]])
        if cell is None:
            todo[path.name] = run
        else:
            found[path.name] = cell
            if on_cell:
                on_cell(cell, True)

    def store(job: CellJob, cell: dict[str, Any]) -> None:
        write_cell(cells_dir / f"{job.key}.json", cell)
        found[f"{job.key}.json"] = cell
        if on_cell:
            on_cell(cell, False)

    jobs = [
        CellJob(key=Path(name).stem, label=Path(name).stem, fn=run_cell, kwargs={"run": run})
        for name, run in todo.items()
    ]
    run_cells(jobs, store, scheduler=scheduler, status=status)
    return [{**found[path.name], "part": part} for part, _, path in plan]


# --------------------------------------------------------------------------------------------------------------------
# tables


def _mean_range(values: list[float], digits: int) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.{digits}f} [{a.min():.{digits}f}, {a.max():.{digits}f}]"


def _digits(model: str) -> int:
    return 2 if model == "digits-cnn" else 1


def _frame(cells: list[dict[str, Any]], part: str) -> pd.DataFrame:
    rows = [c for c in cells if c["part"] == part]
    return pd.DataFrame(
        [
            {**{k: v for k, v in c.items() if k not in ("options", "summary")}, **c["options"], **c.get("summary", {})}
            for c in rows
        ]
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _qgt_lambda(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "qgt-lambda")
    rows = []
    for model in MODELS:
        m = f[f.model == model]
        d = _digits(model)
        row = [model, _mean_range(list(m[m.method == "gpfq"].accuracy), d)]
        for lam in LAMBDAS:
            q = m[(m.method == "qgt") & (m.lam == lam)]
            row.append(_mean_range(list(q.accuracy), d))
        wins = (
            m[(m.method == "qgt") & (m.lam == 1.0)].set_index("seed").accuracy
            - m[m.method == "gpfq"].set_index("seed").accuracy
        )
        row.append(f"{int((wins > 0).sum())} / {int((wins == 0).sum())} / {int((wins < 0).sum())}")
        rows.append(row)
    return _table(
        [
            "model",
            "GPFQ (PTQ)",
            *[f"λ = {lam:g}" for lam in LAMBDAS],
            "λ = 1 vs GPFQ per seed (better / equal / worse)",
        ],
        rows,
    )


def _qgt_final(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "qgt-final")
    rows = []
    for model in MODELS:
        for lam in FINAL_LAMBDAS:
            q = f[(f.model == model) & (f.lam == lam)].set_index("final").accuracy
            rows.append([model, f"{lam:g}", " / ".join(f"{q[fin]:.{_digits(model)}f}" for fin in FINALS)])
    return _table(["model", "λ", "RTN / RTN-bc / GPFQ final"], rows)


def _qgt_grid(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "qgt-grid")
    rows = []
    for model in MODELS:
        for grid in ("max", "mse"):
            q = f[(f.model == model) & (f.grid == grid)].set_index("final").accuracy
            rows.append([model, grid, " / ".join(f"{q[fin]:.{_digits(model)}f}" for fin in FINALS)])
    return _table(["model", "grid", "RTN / RTN-bc / GPFQ final"], rows)


def _qgt_rho(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "qgt-rho")
    rows = []
    for model in MODELS:
        m = f[f.model == model].sort_values("seed")
        row = [model]
        for lam in RHO_LAMBDAS:
            row.append(", ".join(f"{r:.1f}" for r in m[m.lam == lam].rho))
        row.append(", ".join(f"{r:.1f}" for r in m[m.lam == 1.0].rho_initial))
        rows.append(row)
    return _table(["model", *[f"λ = {lam:g}" for lam in RHO_LAMBDAS], "pretrained R_l"], rows)


def _qgt_layers(cells: list[dict[str, Any]]) -> str:
    out = []
    for c in cells:
        if c["part"] == "qgt-rho" and c["seed"] == 0 and c["options"]["lam"] == 1.0:
            fin, ini, nsr = c["summary"]["reg_final"], c["summary"]["reg_initial"], c["sqnr_nsr"]
            rows = [[n, f"{ini[n]:.4f}", f"{fin[n]:.4f}", f"{nsr[n]:.3f}"] for n in nsr]
            qgt = sorted(nsr, key=lambda n: -fin[n])
            sq = sorted(nsr, key=lambda n: -nsr[n])
            out.append(
                f"{c['model']} (seed 0, λ = 1): QGT ranks `{', '.join(qgt)}`, SQNR ranks `{', '.join(sq)}`, "
                f"ρ = {c['rho']:.1f} (pretrained R_l: ρ = {c['rho_initial']:.1f})\n\n"
                + _table(["layer", "R_l before", "R_l after QGT", "SQNR NSR"], rows)
            )
    return "\n\n".join(out)


def _dgms_epochs(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "dgms-epochs")
    rows = []
    for model in MODELS:
        for bits in (2, 3, 4):
            m = f[(f.model == model) & (f.w_bits == bits)]
            rows.append(
                [
                    model,
                    format_pair((bits, 8)),
                    _mean_range(list(m.accuracy), _digits(model)),
                    f"{m.sparsity.mean():.2f}",
                    f"{m.compression_sparse.mean():.1f}×",
                    f"{m.snap_cost.abs().max():.2f}",
                ]
            )
    return _table(["model", "bits", "DGMS 10 epochs", "sparsity", "compr. sparse", "max |snap cost|"], rows)


def _dgms_hard(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "dgms-hard")
    rows = []
    for model in MODELS:
        for epochs in (10, 20):
            row = [model, str(epochs)]
            for hard_phase in (0.0, 1.0):
                m = f[(f.model == model) & (f.epochs == epochs) & (f.hard_phase == hard_phase)].sort_values("seed")
                row += [
                    ", ".join(f"{a:.{_digits(model)}f}" for a in m.accuracy) + f" (mean {m.accuracy.mean():.2f})",
                    f"{m.calib_accuracy.mean():.2f}",
                ]
            rows.append(row)
    return _table(
        ["model", "epochs", "soft forward: test per seed", "calib", "hard forward (STE): test per seed", "calib"], rows
    )


def _dgms_history(cells: list[dict[str, Any]]) -> str:
    rows = []
    for c in sorted(
        (c for c in cells if c["part"] == "dgms-hard" and "history" in c),
        key=lambda c: (c["model"], c["epochs"], c["options"]["hard_phase"], c["seed"]),
    ):
        first, last = c["history"]["first"], c["history"]["last"]
        rows.append(
            [
                c["model"],
                str(c["epochs"]),
                "soft" if c["options"]["hard_phase"] == 0 else "hard (STE)",
                str(c["seed"]),
                f"{first['tau_mean']:.3f} → {last['tau_mean']:.3f}",
                f"{first['sparsity']:.3f} → {last['sparsity']:.3f}",
                f"{last['train_accuracy']:.1f}",
                f"{c['accuracy']:.2f}",
            ]
        )
    return _table(
        [
            "model",
            "epochs",
            "forward",
            "seed",
            "τ (first → last epoch mean)",
            "sparsity",
            "train accuracy, last epoch",
            "test accuracy",
        ],
        rows,
    )


def _dgms_alpha(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "dgms-alpha")
    rows = [
        [r.model, "yes" if r.channel_norm else "no", f"{r.accuracy:.1f}"]
        for r in f.sort_values("channel_norm").itertuples()
    ]
    return _table(["model", "per-channel scales α_r", "test accuracy"], rows)


def _dgms_free(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "dgms-free")
    rows = []
    for model in MODELS:
        for bits in (2, 3, 4):
            m = f[(f.model == model) & (f.w_bits == bits)]
            hard, snapped = m.test_accuracy_hard.mean(), m.test_accuracy_snapped.mean()
            rows.append(
                [
                    model,
                    format_pair((bits, 8)),
                    f"{hard:.2f}",
                    f"{snapped:.2f}",
                    f"{hard - snapped:.1f}",
                    f"{m.sparsity.mean():.2f} → {m.zero_codes.mean():.2f}",
                ]
            )
    return _table(
        ["model", "bits", "hard (learned means)", "snapped to the grid", "snap cost", "sparsity → zero codes"], rows
    )


def _dgms_tuning(cells: list[dict[str, Any]]) -> str:
    f = _frame(cells, "dgms-tuning")
    rows = []
    for label, options, lr in DGMS_TUNING:
        key = json.dumps(options, sort_keys=True)
        m = f[
            [
                json.dumps(c["options"], sort_keys=True) == key and c["lr"] == lr
                for c in cells
                if c["part"] == "dgms-tuning"
            ]
        ]
        rows.append([label, _mean_range(list(m.calib_accuracy), 1), _mean_range(list(m.accuracy), 1)])
    return _table(["setting", "mnist1d calibration accuracy", "mnist1d test accuracy"], rows)


RENDER: dict[str, tuple[str, Callable[[list[dict[str, Any]]], str]]] = {
    "qgt-lambda": ("QGT + GPFQ against GPFQ, w2a8, 20 epochs, seeds 0-4 (mean [min, max])", _qgt_lambda),
    "qgt-final": ("QGT: λ and final quantizer, w2a8, 20 epochs, seed 0", _qgt_final),
    "qgt-grid": ("QGT: max-abs against MSE target grid, w2a8, λ = 10, 10 epochs, seed 0", _qgt_grid),
    "qgt-rho": ("QGT bottlenecks against SQNR: Spearman ρ per seed 0, 1, 2 (w2a8, 10 epochs)", _qgt_rho),
    "dgms-epochs": ("DGMS, 10 epochs, seeds 0-2 (mean [min, max])", _dgms_epochs),
    "dgms-hard": ("DGMS soft against straight-through hard forward, w2a8, seeds 0-2", _dgms_hard),
    "dgms-free": ("DGMS free codebook, 10 epochs, mean of seeds 0-1", _dgms_free),
    "dgms-tuning": ("DGMS knobs, mnist1d w2a8, 10 epochs, seeds 0-2 (mean [min, max])", _dgms_tuning),
    "dgms-alpha": ("DGMS with and without per-channel scales, mnist1d w2a8, τ₀ 0.01, 10 epochs, seed 0", _dgms_alpha),
}


def render(cells: list[dict[str, Any]], parts: list[str]) -> str:
    """The markdown of every requested part."""
    out = []
    for part in parts:
        title, fn = RENDER[part]
        out.append(f"## {title}\n\n{fn(cells)}\n")
        if part == "qgt-rho":
            out.append(_qgt_layers(cells) + "\n")
        if part == "dgms-hard":
            out.append("DGMS training curves (first and last epoch):\n\n" + _dgms_history(cells) + "\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="local Dask worker processes (each trains on one thread); same as --scheduler local:N",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler: local:N, or an address tcp://host:port (default: this process)",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        print(f"error: unknown part(s) {bad!r}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    from lowbit_core.files import atomic_path

    def report(cell: dict[str, Any], cached: bool) -> None:
        opts = ",".join(f"{k}={v}" for k, v in cell["options"].items())
        print(
            f"{cell['model']} {cell['method']} w{cell['w_bits']} e{cell['epochs']} s{cell['seed']} {opts}: "
            f"{cell['accuracy']:.2f}%{' (cached)' if cached else ''}",
            flush=True,
        )

    scheduler = args.scheduler or (f"local:{args.jobs}" if args.jobs > 1 else None)
    try:
        cells = collect(args.out, parts, scheduler, report, status=lambda line: print(line, file=sys.stderr))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = "# Training-time quantization study (`python -m experiments.training_study`)\n\n" + render(cells, parts)
    with atomic_path(args.out / "training_study.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
