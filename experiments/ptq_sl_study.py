"""PTQ-SL study: does sub-layerwise granularity with a good channel order beat per-channel scales?

Run ``python -m experiments.ptq_sl_study --out results/ptq_sl_study`` (about 1.5 minutes on an idle 2-core CPU with
the models cached; ``--seeds 0`` for a single model per architecture).

For each real model (``digits-cnn``, ``mnist1d-cnn``; trained deterministically by :func:`quant.models.get_model`)
and each weight width (w4a8, w3a8) it measures test accuracy, the logit SQNR against the float model on the test
set and the mean relative layer-output error (the quantity the L2 search minimises, on float inputs) of the
following, averaged over three training seeds (accuracy alone is coarse: one digits test image is 0.25 pp):

* RTN per-tensor and per-channel (max-abs scales);
* PTQ-SL per-tensor (1x1) and per-channel (``out x 1``);
* PTQ-SL sub-layerwise ``n_V in {2, 4, 8} x n_H in {1, 2}`` with no reordering, ``sort`` and ``kmeans`` reordering
  (grids larger than a layer are clamped to it, e.g. ``n_H = 1`` for a first layer with one input channel).

Activations are quantized to 8 bits with :func:`quant.fakequant.calibrate_activations` (max range) on the float
prepared model, before the weights; every method gets the same activation quantizers.  Writes
``<out>/ptq_sl_study.csv`` (one row per seed, atomically), ``<out>/ptq_sl_study_mean.csv`` and
``<out>/ptq_sl_study.md`` (the mean table and the verdict on the paper's claim), and prints the last.
"""

from __future__ import annotations

import argparse
import copy
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from quant.data import atomic_write, evaluate_accuracy
from quant.fakequant import calibrate_activations, prepare, quant_layers
from quant.models import get_model, model_split
from quant.ptq_sl import ptq_sl_quantize, relative_output_errors
from quant.rtn import rtn_quantize

MODELS = ("digits-cnn", "mnist1d-cnn")
W_BITS = (4, 3)
A_BITS = 8
SUBLAYER_NV = (2, 4, 8)
SUBLAYER_NH = (1, 2)
REORDERS = ("none", "sort", "kmeans")


def _seed(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _configs(n_vs: tuple[int, ...] = SUBLAYER_NV) -> list[dict]:
    out = [
        dict(method="rtn", granularity="tensor", n_V="1", n_H=1, reorder="none"),
        dict(method="rtn", granularity="channel", n_V="out", n_H=1, reorder="none"),
        dict(method="ptq-sl", granularity="tensor", n_V="1", n_H=1, reorder="none"),
        dict(method="ptq-sl", granularity="channel", n_V="out", n_H=1, reorder="none"),
    ]
    for n_v in n_vs:
        for n_h in SUBLAYER_NH:
            for reorder in REORDERS:
                out.append(dict(method="ptq-sl", granularity="sub-layer", n_V=str(n_v), n_H=n_h, reorder=reorder))
    return out


def _apply(model: torch.nn.Module, cfg: dict, calib_x: torch.Tensor, bits: int) -> None:
    if cfg["method"] == "rtn":
        rtn_quantize(model, bits, cfg["granularity"])
        return
    blocks = cfg["granularity"] if cfg["granularity"] != "sub-layer" else (int(cfg["n_V"]), cfg["n_H"])
    reorder = False if cfg["reorder"] == "none" else cfg["reorder"]
    ptq_sl_quantize(model, calib_x, bits, blocks=blocks, reorder=reorder)


def _sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    noise = float(((ref - out) ** 2).sum())
    return float("inf") if noise == 0 else 10.0 * np.log10(float((ref**2).sum()) / noise)


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def run_model(name: str, seed: int = 0, n_vs: tuple[int, ...] = SUBLAYER_NV) -> list[dict]:
    _seed(seed)
    fmodel = get_model(name, seed=seed)
    split = model_split(name)
    calib_x, test_x, test_y = split.calib_x, split.test_x, split.test_y
    ref = _logits(fmodel, test_x)
    rows = [
        dict(
            model=name,
            seed=seed,
            method="float",
            granularity="-",
            n_V="-",
            n_H="-",
            scales_per_layer="-",
            total_scales=0,
            reorder="none",
            w_bits=32,
            a_bits=32,
            accuracy=evaluate_accuracy(fmodel, test_x, test_y),
            logit_sqnr_db=float("inf"),
            mean_layer_rel_err=0.0,
            seconds=0.0,
        )
    ]
    base = prepare(fmodel)
    calibrate_activations(base, calib_x, A_BITS)
    rows.append(
        dict(
            rows[0],
            method="float-w",
            a_bits=A_BITS,
            accuracy=evaluate_accuracy(base, test_x, test_y),
            logit_sqnr_db=_sqnr_db(ref, _logits(base, test_x)),
        )
    )
    for bits in W_BITS:
        for cfg in _configs(n_vs):
            _seed(seed)
            model = copy.deepcopy(base)
            t0 = time.perf_counter()
            _apply(model, cfg, calib_x, bits)
            seconds = time.perf_counter() - t0
            layers = [m for _, m in quant_layers(model)]
            scales = [int(m.w_scales.size) for m in layers]
            if cfg["method"] == "ptq-sl":  # the search already measured it on the same float inputs
                errs = {n: m.ptq_sl_rel_err for n, m in quant_layers(model)}
            else:
                errs = relative_output_errors(model, calib_x)
            rows.append(
                dict(
                    model=name,
                    seed=seed,
                    **cfg,
                    scales_per_layer="/".join(map(str, scales)),
                    total_scales=sum(scales),
                    w_bits=bits,
                    a_bits=A_BITS,
                    accuracy=evaluate_accuracy(model, test_x, test_y),
                    logit_sqnr_db=_sqnr_db(ref, _logits(model, test_x)),
                    mean_layer_rel_err=float(np.mean(list(errs.values()))),
                    seconds=seconds,
                )
            )
    return rows


def verdict(df: pd.DataFrame, test_sizes: dict[str, int] | None = None) -> list[str]:
    """Per model and bit width: PTQ-SL per-channel vs the best *reordered* sub-layerwise configuration that uses
    fewer scales than per-channel (the paper's claim), on accuracy and on logit SQNR; plus the mean effect of
    reordering (best of sort / kmeans minus no reordering, over the (n_V, n_H) grid)."""
    lines = []
    for (model, bits), g in df[df.w_bits < 32].groupby(["model", "w_bits"], sort=False):
        pc = g[(g.method == "ptq-sl") & (g.granularity == "channel")].iloc[0]
        rtn_pc = g[(g.method == "rtn") & (g.granularity == "channel")].iloc[0]
        sub = g[(g.granularity == "sub-layer") & (g.total_scales < pc.total_scales)]
        ordered = sub[sub.reorder != "none"]
        plain = sub[sub.reorder == "none"].set_index(["n_V", "n_H"])
        gain = (ordered.groupby(["n_V", "n_H"]).logit_sqnr_db.max() - plain.logit_sqnr_db).mean()
        best_acc = ordered.sort_values(["accuracy", "logit_sqnr_db"], ascending=False).iloc[0]
        best_sq = ordered.sort_values("logit_sqnr_db", ascending=False).iloc[0]
        image = f"; one test image = {100 / test_sizes[model]:.2f} pp" if test_sizes else ""
        lines.append(
            f"{model} w{bits}a{A_BITS}: per-channel PTQ-SL {pc.accuracy:.2f}% / {pc.logit_sqnr_db:.1f} dB "
            f"({pc.total_scales} scales; RTN per-channel {rtn_pc.accuracy:.2f}% / {rtn_pc.logit_sqnr_db:.1f} dB). "
            f"Best reordered sub-layerwise with fewer scales: {best_acc.accuracy:.2f}% (n_V={best_acc.n_V} "
            f"n_H={best_acc.n_H} {best_acc.reorder}, {best_acc.total_scales} scales), "
            f"{best_sq.logit_sqnr_db:.1f} dB (n_V={best_sq.n_V} n_H={best_sq.n_H} {best_sq.reorder}, "
            f"{best_sq.total_scales} scales). Reordering: {gain:+.1f} dB on average. -> accuracy: "
            f"{'beats' if best_acc.accuracy > pc.accuracy else 'does not beat'} per-channel, SQNR: "
            f"{'beats' if best_sq.logit_sqnr_db > pc.logit_sqnr_db else 'does not beat'} per-channel{image}"
        )
    return lines


CONFIG_COLUMNS = [
    "model",
    "method",
    "granularity",
    "n_V",
    "n_H",
    "scales_per_layer",
    "total_scales",
    "reorder",
    "w_bits",
    "a_bits",
]
METRIC_COLUMNS = ["accuracy", "logit_sqnr_db", "mean_layer_rel_err", "seconds"]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean of the metrics over seeds for every configuration (identity for a single seed)."""
    return df.groupby(CONFIG_COLUMNS, sort=False, as_index=False)[METRIC_COLUMNS].mean()


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/ptq_sl_study", help="output directory")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="model training seeds (get_model); metrics are averaged over them",
    )
    parser.add_argument("--nv", nargs="+", type=int, default=list(SUBLAYER_NV), help="sub-layerwise n_V values")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    test_sizes = {name: len(model_split(name).test_y) for name in args.models}
    for name in args.models:
        for seed in args.seeds:
            rows += run_model(name, seed, tuple(args.nv))
    df = pd.DataFrame(rows)
    out = Path(args.out)
    _write_csv(out / "ptq_sl_study.csv", df)
    mean = summarize(df)
    if len(args.seeds) > 1:
        _write_csv(out / "ptq_sl_study_mean.csv", mean)
        print(f"mean over seeds {args.seeds}")
    with pd.option_context("display.max_rows", None, "display.width", 200):
        table = mean.drop(columns=["seconds"]).to_string(index=False, float_format=lambda v: f"{v:.2f}")
    text = (
        f"# PTQ-SL study, mean over seeds {', '.join(map(str, args.seeds))}\n\n```\n{table}\n```\n\n"
        + "\n\n".join(verdict(mean, test_sizes))
        + "\n"
    )
    atomic_write(out / "ptq_sl_study.md", lambda f: f.write(text.encode()))
    print(text)
    print(f"wrote {out / 'ptq_sl_study.csv'} and ptq_sl_study.md in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
