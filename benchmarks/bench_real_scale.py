"""Quantization at real scale: SQNR sensitivity and whole-model GPFQ on the built-in digits-resnet and on a
CIFAR-size ResNet-18 (random weights: the work does not depend on them).

Run: ``python benchmarks/bench_real_scale.py`` (``--quick`` skips the ResNet-18 baselines; ``--help``).

Each measurement runs in a fresh subprocess, which reports the job's CPU seconds (user + system, all threads) and
wall seconds (model and data loading excluded) and the process's peak resident memory, so one job's memory does
not hide another's.  Printed side by side:

* sensitivity, SQNR, 9 pairs (w x a in {2, 4, 8}^2), 128 samples: lowbit's replay (only the nodes downstream of a
  group, all pairs stacked) against one full forward per (group, pair) (``replay=False``, the reference it is
  tested against) -- on ResNet-18 the baseline runs the pair w8a8 only (21 forwards) against the replay of that
  same pair, and the full table is timed with the replay on 1 and 2 threads;
* GPFQ at w4 (per channel, bias correction), 128 calibration images: the default scale search over 15
  candidates against the plain pass (``scale_search=False``) in the same run.

The thread count of a job sets torch's and the BLAS's threads.

The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def resnet18_cifar():  # noqa: ANN201 - a torch module; torch is imported lazily in the child
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool; 4 stages of 2 BasicBlocks, 64-512 channels)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            cfg = [
                (64, 64, 1),
                (64, 64, 1),
                (64, 128, 2),
                (128, 128, 1),
                (128, 256, 2),
                (256, 256, 1),
                (256, 512, 2),
                (512, 512, 1),
            ]
            self.layers = nn.Sequential(*[Block(*c) for c in cfg])
            self.fc = nn.Linear(512, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layers(F.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    return ResNet18().eval()


def _model_and_data(net: str):  # noqa: ANN202
    import torch

    if net == "digits-resnet":
        from quant.models import get_model, model_split

        return get_model(net), model_split(net).calib_x[:128]
    return resnet18_cifar(), torch.randn((128, 3, 32, 32), generator=torch.Generator().manual_seed(0))


def child(job: str, net: str, threads: int, pairs: str) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    model, x = _model_and_data(net)
    torch.set_num_threads(threads)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if job.startswith("sensitivity"):
        from quant.sensitivity import sensitivity_table

        chosen = PAIRS if pairs == "all" else [(8, 8)]
        table = sensitivity_table(model, x, chosen, "sqnr", n_samples=128, threads=threads, replay=job == "sensitivity")
        extra = {"rows": len(table)}
    else:
        from quant.fakequant import calibrate_activations, prepare
        from quant.gpfq import gpfq_quantize

        q = prepare(model)
        calibrate_activations(q, x, 8)
        report: list[dict] = []
        gpfq_quantize(q, x, 4, report=report, scale_search=job == "gpfq")
        extra = {"layers": len(report)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "job": job,
        "net": net,
        "threads": threads,
        "pairs": pairs,
        "wall_s": time.perf_counter() - start_wall,
        "cpu_s": time.process_time() - start_cpu,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        **extra,
    }


def run(job: str, net: str, threads: int = 1, pairs: str = "all") -> dict:
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    out = subprocess.run(
        [sys.executable, __file__, "--child", job, net, str(threads), pairs],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {job:21s} {net:14s} pairs={pairs:4s} threads={threads}: {result['cpu_s']:7.1f} CPU-s "
        f"{result['wall_s']:7.1f} s wall, peak {result['peak_rss_mb']:6.0f} MB",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the ResNet-18 baselines")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        job, net, threads, pairs = args.child
        print(json.dumps(child(job, net, int(threads), pairs)))
        return 0
    results = []
    print("SQNR sensitivity, 9 pairs x 128 samples")
    fast = run("sensitivity", "digits-resnet")
    slow = run("sensitivity-baseline", "digits-resnet")
    print(f"  digits-resnet: replay is {slow['cpu_s'] / fast['cpu_s']:.1f}x faster than full forwards (CPU)")
    results += [fast, slow]
    if not args.quick:
        one = run("sensitivity", "resnet18", pairs="w8a8")
        base = run("sensitivity-baseline", "resnet18", pairs="w8a8")
        print(f"  resnet18, pair w8a8 only: replay {base['cpu_s'] / one['cpu_s']:.1f}x faster (CPU)")
        results += [one, base]
    results += [run("sensitivity", "resnet18", threads=1), run("sensitivity", "resnet18", threads=2)]
    print("GPFQ w4, per channel, bias correction, 128 calibration samples")
    results.append(run("gpfq", "digits-resnet"))
    plain, search = run("gpfq-plain", "resnet18"), run("gpfq", "resnet18")
    ratio = search["cpu_s"] / plain["cpu_s"]
    print(f"  resnet18: the 15-candidate scale search costs {ratio:.2f}x the plain pass (CPU)")
    results += [plain, search, run("gpfq", "resnet18", threads=2)]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
