"""Every accuracy figure in docs/, regenerated in one command: ``make docs-numbers``
(``python -m experiments.docs_numbers --out results``).

All runs start from the shipped pretrained weights (:mod:`quant.models.shipped`), so the post-training figures are
the same on any machine up to the float kernels of the quantizers; the fine-tuned figures also train on this
machine's CPU (docs/quant.md, "Reproducing the numbers", gives the measured tolerances). Steps, each resumable or
quick, in this order:

* ``quant-table``: ``lowbit quant-table --seeds 0,1,2`` into ``OUT/quant_table`` (one process per model in
  parallel, then one that merges the cells) -- docs/quant.md's results table, and docs/formats.md's RTN figure;
* ``training-study``: ``python -m experiments.training_study`` into ``OUT/training_study`` -- the QGT and DGMS
  sections of docs/quant.md;
* ``ptq-sl-study``: ``python -m experiments.ptq_sl_study`` into ``OUT/ptq_sl_study`` -- the PTQ-SL section;
* ``demo``: ``lowbit demo`` into ``OUT/demo`` -- docs/search.md, "Quality on the digits CNN";
* ``isa-spread``: ``python -m experiments.isa_spread`` into ``OUT/isa_spread`` -- how far the quant table's cells
  move under emulated instruction sets (docs/quant.md, "Reproducing the numbers");
* ``extras``: figures no study prints (per-seed rows the docs quote, QGT's code-0 shares).

Everything is then collected into ``OUT/docs_numbers.md`` and printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

__all__ = ["STEPS", "SEEDS", "extras_markdown", "main", "run_step"]

STEPS = ("quant-table", "training-study", "ptq-sl-study", "demo", "isa-spread", "extras")
SEEDS = "0,1,2"
MODELS = ("digits-cnn", "mnist1d-cnn")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _run_all(commands: list[list[str]]) -> None:
    """Run ``commands`` in parallel; raise if any fails (its output is already on the terminal)."""
    procs = [subprocess.Popen(c) for c in commands]
    codes = [p.wait() for p in procs]
    for cmd, code in zip(commands, codes):
        if code:
            raise SystemExit(f"error: {' '.join(cmd[2:])} exited with {code}")


def run_step(step: str, out: Path, jobs: int) -> None:
    """Run one step of :data:`STEPS`, writing under ``out``."""
    if step == "quant-table":
        table = str(out / "quant_table")
        # --replace: the docs table is always over SEEDS; cells of other pretrained weights are recomputed
        base = ["quant-table", "--out", table, "--seeds", SEEDS, "--replace"]
        if jobs > 1:
            _run_all([_cli(*base, "--models", m) for m in MODELS])
        _run_all([_cli(*base)])
    elif step == "training-study":
        _run_all(
            [
                [
                    sys.executable,
                    "-m",
                    "experiments.training_study",
                    "--out",
                    str(out / "training_study"),
                    "--jobs",
                    str(jobs),
                ]
            ]
        )
    elif step == "ptq-sl-study":
        _run_all([[sys.executable, "-m", "experiments.ptq_sl_study", "--out", str(out / "ptq_sl_study")]])
    elif step == "demo":
        _run_all([_cli("demo", "--out", str(out / "demo"))])
    elif step == "isa-spread":
        _run_all([[sys.executable, "-m", "experiments.isa_spread", "--out", str(out / "isa_spread")]])
    elif step == "extras":
        text = extras_markdown(out)
        (out / "extras.md").write_text(text)
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(step)


def _code0_shares(model_name: str, seed: int) -> dict[str, tuple[float, float]]:
    """Per layer: the share of 2-bit codes equal to 0 on the max-abs (RTN) grid and on QGT's MSE grid."""
    import numpy as np

    from quant.fakequant import prepare, quant_layers
    from quant.models import get_model
    from quant.qgt import grid_codes

    model = prepare(get_model(model_name, seed=seed))
    shares = {}
    for name, layer in quant_layers(model):
        max_codes, _ = grid_codes(layer, 2, "max")
        mse_codes, _ = grid_codes(layer, 2, "mse")
        shares[name] = (float(np.mean(max_codes == 0)), float(np.mean(mse_codes == 0)))
    return shares


def extras_markdown(out: Path) -> str:
    """Per-seed quant-table rows the docs quote, QGT's code-0 shares at 2 bits, and the demo's ILP-vs-greedy rows."""
    lines = ["## Per-seed rows of the quant table quoted in the docs", ""]
    csv = out / "quant_table" / "quant_table.csv"
    if csv.is_file():
        t = pd.read_csv(csv)
        pick = t[(t.w_bits == 2) | ((t.method == "rtn") & (t.w_bits == 4))]
        lines += ["| model | method | bits | seed | float % | accuracy % (integer) |", "|---|---|---|---:|---:|---:|"]
        for r in pick.sort_values(["model", "method", "w_bits", "seed"]).itertuples():
            lines.append(
                f"| {r.model} | {r.method} | w{r.w_bits}a{r.a_bits} | {r.seed} | {r.float_accuracy:.2f} | "
                f"{r.accuracy:.2f} |"
            )
    lines += [
        "",
        "## 2-bit codes equal to 0: max-abs grid / MSE grid (per layer, seeds 0-2)",
        "",
        "| model | seed | layer | max-abs | MSE |",
        "|---|---:|---|---:|---:|",
    ]
    for model in MODELS:
        for seed in (0, 1, 2):
            for name, (mx, mse) in _code0_shares(model, seed).items():
                lines.append(f"| {model} | {seed} | {name} | {100 * mx:.0f} % | {100 * mse:.0f} % |")
    quality = out / "demo" / "search" / "pareto" / "quality.csv"
    points = out / "demo" / "search" / "pareto" / "points.csv"
    if quality.is_file() and points.is_file():
        q, p = pd.read_csv(quality), pd.read_csv(points)
        gap = q["ilp_minus_greedy_accuracy"].dropna()
        lines += [
            "",
            "## Demo: measured accuracy at each latency budget (digits-cnn seed 0, RTN)",
            "",
            f"float accuracy {p.float_accuracy.iloc[0]:.2f} %; {len(gap)} budgets compared; ILP higher at "
            f"{int((gap > 0).sum())}, equal at {int((gap == 0).sum())}, lower at {int((gap < 0).sum())}; "
            f"mean difference {gap.mean():+.2f} points",
            "",
            "| latency_us budget | ILP % | greedy % | uniform % | ILP − greedy |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in q.itertuples():
            lines.append(
                f"| {r.latency_us_budget:.3f} | {r.ilp_accuracy:.2f} | {r.greedy_accuracy:.2f} | "
                f"{getattr(r, 'uniform_accuracy', float('nan')):.2f} | {r.ilp_minus_greedy_accuracy:+.2f} |"
            )
        lines += [
            "",
            "| kind | label | latency_us | sensitivity | accuracy % | pairs |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in p.sort_values(["kind", "latency_us"]).itertuples():
            lines.append(
                f"| {r.kind} | {r.label} | {r.latency_us:.3f} | {r.sensitivity:.3f} | {r.accuracy:.2f} | {r.pairs} |"
            )
    return "\n".join(lines) + "\n"


def collect(out: Path) -> str:
    """Every step's markdown, in the order of :data:`STEPS`."""
    parts = [
        ("quant_table/quant_table.md", "lowbit quant-table --seeds 0,1,2"),
        ("training_study/training_study.md", "python -m experiments.training_study"),
        ("ptq_sl_study/ptq_sl_study.md", "python -m experiments.ptq_sl_study"),
        ("isa_spread/isa_spread.md", "python -m experiments.isa_spread"),
        ("extras.md", "extras (experiments.docs_numbers)"),
    ]
    text = ["# Accuracy figures of docs/ (`make docs-numbers`)", ""]
    for rel, title in parts:
        path = out / rel
        if path.is_file():
            text += [f"# {title}", "", path.read_text(), ""]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (quant table, training study)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps or args.jobs < 1:
        print(f"error: steps must be among {', '.join(STEPS)} and --jobs >= 1", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for step in steps:
        t0 = time.perf_counter()
        print(f"== {step}", file=sys.stderr, flush=True)
        run_step(step, args.out, args.jobs)
        print(f"== {step} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = collect(args.out)
    (args.out / "docs_numbers.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'docs_numbers.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
