"""Benchmark GPFQ (quant.gpfq) against RTN on lowbit's real models, plus its single-layer engines.

Run: ``python benchmarks/bench_gpfq.py`` (options: ``--help``; ``--seeds 0 1 2`` repeats on more trained models,
``--ablate`` adds GPFQ without scale search (its default step, and RTN's) / without bias correction / with the
paper's 2^b+1-level alphabet).

Prints, per model and bit width: test accuracy of float / RTN / GPFQ, the relative test-set logit error
``||y_q - y||^2 / ||y||^2`` of RTN and GPFQ and their **ratio** (RTN / GPFQ, > 1 means GPFQ is better), and the
GPFQ wall time (best of ``--repeat`` runs; this machine is shared, so single runs are noisy).  Then the Gram vs
direct engine timings on layer shapes of the size lowbit meets, and the single-neuron error-decay slope.
GPFQ and GPTQ against brevitas's ``gpfq_mode`` / ``gptq_mode`` (same layers, data and grid, brevitas in its own
venv): ``python benchmarks/brevitas/compare.py --install``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quant.data import evaluate_accuracy  # noqa: E402
from quant.fakequant import calibrate_activations, prepare  # noqa: E402
from quant.gpfq import gpfq_quantize, quantize_weights  # noqa: E402
from quant.models import get_model, model_split  # noqa: E402
from quant.rtn import rtn_quantize  # noqa: E402


def _rel_err(model, ref_out, x) -> float:
    with torch.no_grad():
        y = model(x)
    return float(((y - ref_out) ** 2).sum() / (ref_out**2).sum())


def bench_models(names, seeds, bits_list, repeat, ablate) -> None:
    variants = {"gpfq": {}}
    if ablate:
        variants |= {
            "no-search": {"scale_search": False},
            "no-search RTN step": {"scale_search": False, "C": 1.0},
            "no-bias": {"bias_correction": False},
            "paper(b+1-bit codes)": {"alphabet": "paper", "scale_search": False},
        }
    print(
        f"{'model':12s} {'seed':>4s} {'bits':>5s} {'float':>6s} {'RTN':>6s} {'GPFQ':>6s} "
        f"{'errRTN':>8s} {'errGPFQ':>8s} {'ratio':>6s} {'GPFQ s':>7s}  ablations (acc / err)"
    )
    for name in names:
        split = model_split(name)
        for seed in seeds:
            model = get_model(name, seed=seed)
            ref = prepare(model)
            with torch.no_grad():
                ref_out = ref(split.test_x)
            f_acc = evaluate_accuracy(ref, split.test_x, split.test_y)
            for bits in bits_list:
                act = bits == "w4a8"
                wb = 4 if act else int(bits[1:])
                rtn = rtn_quantize(prepare(model), wb)
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    gp = gpfq_quantize(prepare(model), split.calib_x, wb)
                    times.append(time.perf_counter() - t0)
                if act:
                    calibrate_activations(rtn, split.calib_x, 8)
                    calibrate_activations(gp, split.calib_x, 8)
                r_acc, g_acc = (evaluate_accuracy(m, split.test_x, split.test_y) for m in (rtn, gp))
                r_err, g_err = _rel_err(rtn, ref_out, split.test_x), _rel_err(gp, ref_out, split.test_x)
                extra = []
                if not act:
                    for label, kw in variants.items():
                        if label == "gpfq":
                            continue
                        v = gpfq_quantize(prepare(model), split.calib_x, wb, **kw)
                        extra.append(
                            f"{label} {evaluate_accuracy(v, split.test_x, split.test_y):.2f}/"
                            f"{_rel_err(v, ref_out, split.test_x):.4f}"
                        )
                print(
                    f"{name:12s} {seed:4d} {bits:>5s} {f_acc:6.2f} {r_acc:6.2f} {g_acc:6.2f} {r_err:8.4f} "
                    f"{g_err:8.4f} {r_err / g_err:6.1f} {min(times):7.2f}  {'; '.join(extra)}",
                    flush=True,
                )


def bench_engines(repeat) -> None:
    print("\nGram vs direct form (same codes), best of", repeat)
    print(f"{'m':>6s} {'in':>5s} {'out':>4s} {'gram s':>8s} {'direct s':>9s} {'direct/gram':>11s} {'auto':>7s}")
    from quant.gpfq import pick_method

    rng = np.random.default_rng(0)
    for m, n, out in [
        (12800, 144, 32),
        (20000, 288, 64),
        (5120, 160, 32),
        (256, 320, 10),
        (200, 128, 10),
        (64, 4096, 1),
        (1000, 1000, 8),
    ]:
        x = rng.standard_normal((m, n))
        xq = x + 0.05 * rng.standard_normal((m, n))
        w = rng.standard_normal((out, n))
        best = {}
        for method in ("gram", "direct"):
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                codes = quantize_weights(w, x, 4, xq, method=method, return_codes=True)[0]
                ts.append(time.perf_counter() - t0)
            best[method] = (min(ts), codes)
        assert np.array_equal(best["gram"][1], best["direct"][1])
        print(
            f"{m:6d} {n:5d} {out:4d} {best['gram'][0]:8.3f} {best['direct'][0]:9.3f} "
            f"{best['direct'][0] / best['gram'][0]:11.1f} {pick_method(m, n, out):>7s}"
        )


def bench_decay() -> None:
    ns = [64, 128, 256, 512, 1024, 2048, 4096]
    print("\nsingle-neuron relative error ||Xw - Xq||^2 / ||Xw||^2, X ~ N(0,1)^{64 x N}, w ~ U[-1,1], 5 seeds")
    for alphabet in ("paper", "bbit"):
        for bits in (2, 3, 4):
            errs, rtn = np.zeros((5, len(ns))), np.zeros((5, len(ns)))
            for seed in range(5):
                rng = np.random.default_rng(seed)
                for j, n in enumerate(ns):
                    x, w = rng.standard_normal((64, n)), rng.uniform(-1, 1, (1, n))
                    y = x @ w[0]
                    codes, step = quantize_weights(w, x, bits, alphabet=alphabet, return_codes=True)
                    half = 1 << (bits - 1)
                    r = np.clip(np.rint(w[0] / step[0, 0]), -half, half - (alphabet == "bbit")) * step[0, 0]
                    errs[seed, j] = np.sum((y - x @ (codes[0] * step[0, 0])) ** 2) / np.sum(y**2)
                    rtn[seed, j] = np.sum((y - x @ r) ** 2) / np.sum(y**2)
            geo = np.exp(np.log(errs).mean(axis=0))
            slope = np.polyfit(np.log(ns), np.log(geo), 1)[0]
            ratio = np.exp(np.log(rtn).mean(axis=0)) / geo
            print(
                f"  {alphabet:5s} {bits} bits: slope {slope:+.2f}; RTN/GPFQ at N=64..4096: "
                + " ".join(f"{v:.1f}" for v in ratio)
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["digits-cnn", "mnist1d-cnn"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--bits", nargs="+", default=["w2", "w3", "w4", "w4a8"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--ablate", action="store_true")
    p.add_argument("--skip-engines", action="store_true")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_models(args.models, args.seeds, args.bits, args.repeat, args.ablate)
    if not args.skip_engines:
        bench_engines(args.repeat)
        bench_decay()


if __name__ == "__main__":
    main()
