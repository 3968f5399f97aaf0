"""How far the quant table moves on other CPUs: ``python -m experiments.isa_spread --out results/isa_spread``.

The shipped weights make the pretrained models identical everywhere, but the quantizers (GPFQ's and PTQ-SL's
searches, activation calibration) and the fine-tuning of the training-time methods still run float kernels that
the CPU's instruction set selects. This script emulates other CPUs on this one through the environment variables
that pick the kernels of torch (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``), MKL
(``MKL_ENABLE_INSTRUCTIONS``) and OpenBLAS (``OPENBLAS_CORETYPE``), rebuilds the same cells of
``lowbit quant-table`` under each (a fresh ``LOWBIT_CACHE`` each time), and reports every cell's deviation from the
unemulated run in ``OUT/isa_spread.md``. Default cells: every post-training method at w2-w4 and QAT at w2a8, both
models, seeds 0-2.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

__all__ = ["EMULATIONS", "main", "spread_markdown"]

#: label -> environment overrides; "native" is the reference
EMULATIONS: dict[str, dict[str, str]] = {
    "native": {},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "OPENBLAS_CORETYPE=Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
}
PTQ = "rtn,gpfq,gpfq-paper,ptq-sl,ptq-sl-4x2"
KEYS = ["model", "method", "w_bits", "seed"]


def _slug(label: str) -> str:
    return label.replace("=", "-").replace("_", "-").lower()


def run_emulation(label: str, out: Path, seeds: str, epochs: int) -> Path:
    """Build the cells under ``label``'s environment; returns the directory holding ``ptq/`` and ``qat/``."""
    where = out / _slug(label)
    env = {**os.environ, **EMULATIONS[label], "LOWBIT_CACHE": str(where / "cache")}
    for sub, methods, bits in (("ptq", PTQ, "2,3,4"), ("qat", "qat", "2")):
        cmd = [
            sys.executable,
            "-m",
            "experiments.cli",
            "quant-table",
            "--out",
            str(where / sub),
            "--methods",
            methods,
            "--bits",
            bits,
            "--seeds",
            seeds,
            "--epochs",
            str(epochs),
        ]
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
        if code:
            raise SystemExit(f"error: {label}: {' '.join(cmd[2:])} exited with {code}")
    return where


def _cells(where: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(where / sub / "quant_table.csv") for sub in ("ptq", "qat")], ignore_index=True)


def spread_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """Per emulation and row group: cells that differ from native, the largest per-cell change, and the largest
    change of a row's mean over seeds (what the docs table shows), in accuracy points."""
    base = tables["native"].set_index(KEYS).accuracy
    lines = [
        "| emulation | cells | rows | cells changed | max per-cell change | max change of a row mean | "
        "rows whose mean moved |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    detail = []
    for label, table in tables.items():
        if label == "native":
            continue
        diff = (table.set_index(KEYS).accuracy - base).dropna()
        for group, part in (
            ("post-training", diff[diff.index.get_level_values("method") != "qat"]),
            ("QAT w2a8 (fine-tuned)", diff[diff.index.get_level_values("method") == "qat"]),
        ):
            rows = part.groupby(level=["model", "method", "w_bits"]).mean()
            lines.append(
                f"| {label} | {group} | {len(rows)} | {int((part != 0).sum())} of {len(part)} | "
                f"{part.abs().max():.2f} | {rows.abs().max():.2f} | {int((rows != 0).sum())} |"
            )
        for (model, method, bits, seed), d in diff[diff != 0].items():
            detail.append(f"| {label} | {model} | {method} | w{bits} | {seed} | {d:+.2f} |")
    text = "\n".join(lines)
    if detail:
        text += (
            "\n\nEvery changed cell (accuracy points against native):\n\n| emulation | model | method | bits | "
            "seed | change |\n|---|---|---|---|---:|---:|\n" + "\n".join(detail)
        )
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/isa_spread"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=20, help="QAT fine-tuning epochs (the quant table's budget)")
    parser.add_argument("--only", default="", help="comma-separated labels to (re)build; others are read back")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - set(EMULATIONS) or args.epochs < 1:
        print(f"error: labels must be among {', '.join(EMULATIONS)} and --epochs >= 1", file=sys.stderr)
        return 2
    tables = {}
    for label in EMULATIONS:
        where = args.out / _slug(label)
        if not only or label in only:
            print(f"== {label}", file=sys.stderr, flush=True)
            run_emulation(label, args.out, args.seeds, args.epochs)
        tables[label] = _cells(where)
    text = "# Quant-table cells under emulated instruction sets (`python -m experiments.isa_spread`)\n\n"
    text += spread_markdown(tables)
    (args.out / "isa_spread.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
