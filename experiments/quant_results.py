"""The quantization results table of docs/quant.md: method x bits x model -> accuracy and size.

Run: ``python -m experiments.quant_results --out results/quant`` (about a minute on 2 cores once the
models are cached).  Writes ``quant_results.csv`` and ``quant_results.md`` atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from rich.progress import track

from experiments.quantize import quantize_builtin
from sim.io import atomic_path, write_table

MODELS = ("digits-cnn", "mnist1d-cnn")
METHODS = (("rtn", "channel"), ("gpfq", "channel"), ("gpfq-paper", "channel"), ("ptq-sl", "channel"),
           ("ptq-sl", "4x2"))
BITS = (2, 3, 4)


def run(out: Path, seeds: tuple[int, ...] = (0,), a_bits: int = 8) -> pd.DataFrame:
    jobs = [(m, meth, g, b, s) for m in MODELS for meth, g in METHODS for b in BITS for s in seeds]
    rows = []
    for model, method, gran, bits, seed in track(jobs, description="quantizing"):
        _, res = quantize_builtin(model, method, bits, a_bits, gran, seed)
        rows.append(res.as_dict())
    frame = pd.DataFrame(rows)
    write_table(frame, out / "quant_results.csv")
    mean = frame.groupby(["model", "method", "granularity", "w_bits"], sort=False).agg(
        float_acc=("float_accuracy", "mean"), acc=("fakequant_accuracy", "mean"),
        int_acc=("integer_accuracy", "mean"), agree=("integer_agreement", "min"),
        size_kib=("weight_size_bits", "mean"), float_kib=("float_size_bits", "mean")).reset_index()
    mean["reduction"] = mean.float_kib / mean.size_kib
    lines = ["| model | method | granularity | bits | accuracy % (fake-quant) | accuracy % (integer) | "
             "agreement % | size KiB | reduction vs float |", "|---|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        fl = mean[mean.model == model].float_acc.iloc[0]
        lines.append(f"| {model} | float | — | 32 | {fl:.2f} | — | — | "
                     f"{mean[mean.model == model].float_kib.iloc[0] / 8192:.1f} | 1.0× |")
        for r in mean[mean.model == model].itertuples():
            lines.append(f"| {model} | {r.method} | {r.granularity} | w{r.w_bits}a{a_bits} | {r.acc:.2f} | "
                         f"{r.int_acc:.2f} | {r.agree:.1f} | {r.size_kib / 8192:.1f} | {r.reduction:.1f}× |")
    text = "\n".join(lines) + "\n"
    with atomic_path(out / "quant_results.md") as tmp:
        tmp.write_text(text)
    print(text)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/quant"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    run(args.out, tuple(args.seeds))


if __name__ == "__main__":
    main()
