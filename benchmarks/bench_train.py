"""Benchmark the training-time quantizers (QAT, QGT, DGMS) against plain float fine-tuning in the same process.

Run: ``python benchmarks/bench_train.py [--epochs 3] [--bits 2]``.

For each built-in model: the wall time per epoch of the shared loop (:func:`quant.finetune.finetune`) with no
quantizer at all (the baseline: float weights, 8-bit activation fake-quant), then QAT, QGT and DGMS at
``w{bits}a8`` with the same budget, each as seconds per epoch, its **ratio** to the baseline, and the test
accuracy it reaches. Method times include their final quantization (QGT's GPFQ, DGMS's snap) and calibration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quant.data import evaluate_accuracy  # noqa: E402
from quant.dgms import dgms_train  # noqa: E402
from quant.fakequant import calibrate_activations, prepare  # noqa: E402
from quant.finetune import FinetuneConfig, finetune, training_mode  # noqa: E402
from quant.models import get_model, model_split  # noqa: E402
from quant.qat import qat_train  # noqa: E402
from quant.qgt import qgt_train  # noqa: E402

METHODS = {"qat": qat_train, "qgt": qgt_train, "dgms": dgms_train}


def baseline_seconds(model, split, config: FinetuneConfig) -> float:
    """Seconds for the shared loop on the float model (activations fake-quantized at 8 bits)."""
    q = prepare(model)
    calibrate_activations(q, split.calib_x, 8)
    start = time.perf_counter()
    with training_mode(q):
        finetune(q, split, config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bits", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["digits-cnn", "mnist1d-cnn"])
    args = parser.parse_args()
    config = FinetuneConfig(epochs=args.epochs)
    baseline_seconds(get_model(args.models[0]), model_split(args.models[0]), FinetuneConfig(epochs=1))  # warm-up
    for name in args.models:
        model, split = get_model(name), model_split(name)
        base = baseline_seconds(model, split, config)
        print(f"{name}: float fine-tuning baseline {base / args.epochs:.2f} s/epoch ({args.epochs} epochs)")
        for method, train in METHODS.items():
            start = time.perf_counter()
            out = train(model, split, args.bits, 8, config)
            seconds = time.perf_counter() - start
            acc = evaluate_accuracy(out.model, split.test_x, split.test_y)
            print(
                f"  {method:5s} w{args.bits}a8: {seconds / args.epochs:.2f} s/epoch, {seconds / base:.2f}x the "
                f"baseline, test accuracy {acc:.2f}%"
            )
            print(f"SUMMARY bench_train {name} {method}: {seconds / base:.2f}x float fine-tuning")


if __name__ == "__main__":
    main()
