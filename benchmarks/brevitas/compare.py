"""Compare lowbit's GPFQ / GPTQ with brevitas's ``gpfq_mode`` / ``gptq_mode`` on the same layers and grid.

Runs under lowbit's venv; brevitas runs in its own venv (``install.sh``) through ``brevitas_worker.py``::

    python benchmarks/brevitas/compare.py --install            # all workloads, bits 2 3 4, 3 repeats
    python benchmarks/brevitas/compare.py --bits 3 --repeats 1 --workloads linear512 --skip-cnn

Single layers (Linear 512->512, Linear 768->3072, Conv2d 3x3 64->64 on 16x16 with padding 1), 2048 calibration
rows (conv: patch rows) of seeded correlated Gaussian inputs ``X = Z A`` (``A = I + G / sqrt(n)``, a fixed mixing
of channels), Kaiming-Gaussian weights, quantized by

* ``lb-gpfq``: ``quant.gpfq.quantize_weights(W, X, bits, C=...)`` (no search) on brevitas's step (``C = 1``,
  RTN's step, for ``--grid lowbit``; lowbit's no-search default ``max|w| / 2^(b-1)`` for ``--grid native``);
* ``lb-gpfq-s``: ``quant.gpfq.gpfq_quantize`` on the one-layer model (scale search on, bias correction off);
* ``lb-gptq``: ``quant.gptq.gptq_quantize`` on the one-layer model (defaults);
* ``br-gpfq`` / ``br-gptq``: brevitas ``gpfq_mode`` / ``gptq_mode`` with their defaults, per-channel symmetric
  signed weights on lowbit's grid (step ``max|w| / (2^(b-1) - 1)``, codes ``[-2^(b-1), 2^(b-1) - 1]``; ``--grid
  native`` uses brevitas's own step ``max|w| / 2^(b-1)`` for narrow range off instead), float activations.

Per method: CPU seconds (``time.process_time``, min over ``--repeats``; lowbit and the worker both run on one
thread), the relative output error ``||X W^T - X Q^T||^2 / ||X W^T||^2`` on the calibration rows and on 2048 fresh
rows, and the number of distinct integer codes used.  Then the digits CNN (``get_model("digits-cnn", seed=0)``,
BN folded by ``prepare``) with each whole-model driver: test accuracy, test logit error, CPU seconds.  The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy / torch load BLAS
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from quant.data import evaluate_accuracy  # noqa: E402
from quant.fakequant import QuantLayer, prepare  # noqa: E402
from quant.gpfq import full_code_multiplier, gpfq_quantize, layer_inputs_2d, quantize_weights  # noqa: E402
from quant.gptq import gptq_quantize  # noqa: E402
from quant.models import get_model, model_split  # noqa: E402
from quant.quantizer import Blocks, QuantSpec  # noqa: E402

METHODS = ("lb-gpfq", "lb-gpfq-s", "lb-gptq", "br-gpfq", "br-gptq")
CNN_METHODS = ("lb-gpfq-default", "lb-gpfq-plain", "lb-gptq", "br-gpfq", "br-gptq")
#: name -> (kind, in channels, out channels); conv is 3x3, padding 1, on 16x16 inputs
WORKLOADS = {"linear512": ("linear", 512, 512), "linear768x3072": ("linear", 768, 3072), "conv64": ("conv", 64, 64)}
ROWS = 2048
CONV_HW = 16


def venv_dir() -> Path:
    """brevitas's venv: ``$LOWBIT_BENCH_VENVS/brevitas`` (default ``~/.cache/lowbit/bench-venvs/brevitas``)."""
    root = os.environ.get("LOWBIT_BENCH_VENVS") or str(Path.home() / ".cache" / "lowbit" / "bench-venvs")
    return Path(root) / "brevitas"


def brevitas_python(install: bool) -> Path:
    """The venv's interpreter, creating the venv with ``install.sh`` when asked and missing."""
    py = venv_dir() / "bin" / "python"
    if not py.exists():
        if not install:
            sys.exit(f"brevitas venv not found at {venv_dir()}: run benchmarks/brevitas/install.sh (or --install)")
        subprocess.run(["bash", str(HERE / "install.sh")], check=True)
    return py


# ------------------------------------------------------------------------------------------------------------------
# data


def make_workload(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The float32 layer and its calibration / held-out inputs (>= ``ROWS`` GEMM rows each)."""
    kind, n_in, n_out = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    mix = np.eye(n_in) + rng.standard_normal((n_in, n_in)) / math.sqrt(n_in)
    if kind == "linear":
        layer: nn.Module = nn.Linear(n_in, n_out, bias=False)
        fan_in = n_in
        shape: tuple[int, ...] = (ROWS,)
    else:
        layer = nn.Conv2d(n_in, n_out, 3, padding=1, bias=False)
        fan_in = n_in * 9
        shape = (math.ceil(ROWS / CONV_HW**2), CONV_HW, CONV_HW)
    w = rng.standard_normal(tuple(layer.weight.shape)) * math.sqrt(2.0 / fan_in)
    layer.weight.data = torch.from_numpy(w).float()
    xs = []
    for _ in range(2):
        x = rng.standard_normal(shape + (n_in,)) @ mix  # channels last, mixed
        xs.append(torch.from_numpy(np.moveaxis(x, -1, 1) if kind == "conv" else x).float().contiguous())
    return layer, xs[0], xs[1]


def rel_err(X: np.ndarray, W: np.ndarray, Q: np.ndarray) -> float:
    y = X @ W.T
    return float(np.sum((y - X @ Q.T) ** 2) / np.sum(y**2))


def agree(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Fraction of equal integer codes over all layers."""
    return sum(int((x.reshape(y.shape) == y).sum()) for x, y in zip(a, b)) / sum(y.size for y in b)


def min_cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Min CPU seconds of ``fn()`` over ``repeats`` runs, and the last result."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


# ------------------------------------------------------------------------------------------------------------------
# lowbit


def lowbit_layer(layer: nn.Module, x: torch.Tensor, bits: int, repeats: int, grid: str) -> dict[str, dict[str, Any]]:
    """The three lowbit variants on one layer: CPU seconds, dequantized GEMM weight and integer codes each."""
    model = prepare(nn.Sequential(layer))
    ql = model[0]
    X = layer_inputs_2d(ql, x)
    W = ql.gemm_weight()
    res = {}
    c = 1.0 if grid == "lowbit" else full_code_multiplier(bits)  # the step brevitas uses on that grid
    sec, (codes, sc) = min_cpu(lambda: quantize_weights(W, X, bits, kernel=ql.kernel, C=c, return_codes=True), repeats)
    res["lb-gpfq"] = {"seconds": sec, "codes": codes, "deq": codes * sc[:, :1]}
    for name, fn in (
        ("lb-gpfq-s", lambda m: gpfq_quantize(m, x, bits, bias_correction=False)),
        ("lb-gptq", lambda m: gptq_quantize(m, x, bits)),
    ):
        times = []
        for _ in range(repeats):
            m = prepare(nn.Sequential(layer))
            t0 = time.process_time()
            fn(m)
            times.append(time.process_time() - t0)
        q = m[0]
        res[name] = {"seconds": min(times), "codes": q.w_codes, "deq": q.w_codes * q.w_scales[:, :1]}
    return res


# ------------------------------------------------------------------------------------------------------------------
# brevitas (subprocess)


def arch_of(model: nn.Module) -> tuple[list[list[Any]], dict[str, np.ndarray]]:
    """The worker's description of a prepared ``nn.Sequential`` (float weights and biases, BN already folded)."""
    arch: list[list[Any]] = []
    arrays: dict[str, np.ndarray] = {}
    i = 0
    for mod in model:
        if isinstance(mod, QuantLayer):
            lay, has_bias = mod.layer, mod.layer.bias is not None
            if isinstance(lay, nn.Linear):
                arch.append(["linear", lay.in_features, lay.out_features, has_bias])
            elif (
                isinstance(lay, nn.Conv2d)
                and lay.groups == 1
                and lay.dilation == (1, 1)
                and isinstance(lay.padding, tuple)
                and lay.padding_mode == "zeros"
            ):
                arch.append(
                    [
                        "conv",
                        lay.in_channels,
                        lay.out_channels,
                        list(lay.kernel_size),
                        list(lay.stride),
                        list(lay.padding),
                        has_bias,
                    ]
                )
            else:
                raise ValueError(f"the worker cannot express {lay}")
            arrays[f"w{i}"] = lay.weight.detach().numpy()
            if has_bias:
                arrays[f"b{i}"] = lay.bias.detach().numpy()
            i += 1
        elif isinstance(mod, nn.ReLU):
            arch.append(["relu"])
        elif isinstance(mod, nn.MaxPool2d) and mod.kernel_size == mod.stride and not mod.padding:
            arch.append(["maxpool", mod.kernel_size])
        elif isinstance(mod, nn.Flatten):
            arch.append(["flatten"])
        elif not isinstance(mod, nn.Identity):
            raise ValueError(f"the worker cannot express {mod}")
    return arch, arrays


def brevitas_run(py: Path, model: nn.Module, x: torch.Tensor, bits: int, repeats: int, grid: str) -> dict[str, Any]:
    """Run the worker on a prepared model; returns its JSON with per-mode ``codes`` / ``scales`` lists added."""
    arch, arrays = arch_of(model)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="lowbit-brevitas-") as tmp:
        job, out = Path(tmp) / "job.npz", Path(tmp) / "out"
        np.savez(
            job,
            arch=json.dumps(arch),
            x=x.numpy(),
            bits=bits,
            repeats=repeats,
            grid=grid,
            modes=json.dumps(["gpfq", "gptq"]),
            **arrays,
        )
        proc = subprocess.run(
            [str(py), str(HERE / "brevitas_worker.py"), str(job), str(out)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"brevitas worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        result = json.loads(out.with_suffix(".json").read_text())
        with np.load(out.with_suffix(".npz")) as npz:
            for mode, info in result["modes"].items():
                n = len(info["layers"])
                info["codes"] = [npz[f"{mode}_codes{i}"].reshape(npz[f"{mode}_scale{i}"].size, -1) for i in range(n)]
                info["scales"] = [npz[f"{mode}_scale{i}"] for i in range(n)]
    return result


# ------------------------------------------------------------------------------------------------------------------
# the two parts


def run_layers(
    py: Path, names: list[str], bits_list: list[int], repeats: int, grid: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"grid_found": {}}
    for name in names:
        layer, x_cal, x_hold = make_workload(name)
        ql = prepare(nn.Sequential(layer))[0]
        X, Xh, W = layer_inputs_2d(ql, x_cal), layer_inputs_2d(ql, x_hold), ql.gemm_weight()
        for bits in bits_list:
            res = lowbit_layer(layer, x_cal, bits, repeats, grid)
            br = brevitas_run(py, nn.Sequential(ql), x_cal, bits, repeats, grid)
            meta |= {k: br[k] for k in ("brevitas", "torch", "threads", "grid", "quantizer")}
            meta["options"] = {m: br["modes"][m]["options"] for m in br["modes"]}
            meta["grid_found"][bits] = {
                "step": f"max|w| / {br['modes']['gpfq']['layers'][0]['int_threshold']:.6g}",
                "codes_allowed": [-(1 << (bits - 1)), (1 << (bits - 1)) - 1],
            }
            for mode, info in br["modes"].items():
                c, s = info["codes"][0], info["scales"][0]
                res["br-" + mode] = {
                    "seconds": info["seconds"],
                    "codes": c,
                    "deq": c * s[:, None],
                    "grid_check": info["layers"][0],
                }
            row = {
                "workload": name,
                "bits": bits,
                "rows_cal": int(X.shape[0]),
                "rows_hold": int(Xh.shape[0]),
                "gemm": [int(W.shape[0]), int(W.shape[1])],
                "methods": {},
            }
            for meth in METHODS:
                r = res[meth]
                row["methods"][meth] = {
                    "seconds": round(r["seconds"], 4),
                    "cal_err": rel_err(X, W, r["deq"]),
                    "hold_err": rel_err(Xh, W, r["deq"]),
                    "levels": int(np.unique(r["codes"]).size),
                    "code_range": [int(r["codes"].min()), int(r["codes"].max())],
                }
            row["codes_agree"] = {
                "gpfq": agree([res["lb-gpfq"]["codes"]], [res["br-gpfq"]["codes"]]),
                "gptq": agree([res["lb-gptq"]["codes"]], [res["br-gptq"]["codes"]]),
            }
            rows.append(row)
            print_layer_row(row)
    return rows, meta


def run_cnn(py: Path, bits_list: list[int], repeats: int, grid: str) -> list[dict[str, Any]]:
    model, split = get_model("digits-cnn", seed=0), model_split("digits-cnn")
    ref = prepare(model)
    with torch.no_grad():
        ref_out = ref(split.test_x)

    def score(m: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            y = m(split.test_x)
        return (
            evaluate_accuracy(m, split.test_x, split.test_y),
            float(((y - ref_out) ** 2).sum() / (ref_out**2).sum()),
        )

    rows = [{"method": "float", "bits": None, "acc": evaluate_accuracy(ref, split.test_x, split.test_y)}]
    print(
        f"\ndigits-cnn (BN folded), calibration {tuple(split.calib_x.shape)}, test {len(split.test_y)}: "
        f"float accuracy {rows[0]['acc']:.2f} %"
    )
    print(f"{'bits':>4s} {'method':>16s} {'acc %':>7s} {'logit err':>10s} {'CPU s':>8s}")
    drivers = {
        "lb-gpfq-default": lambda m, b: gpfq_quantize(m, split.calib_x, b),
        "lb-gpfq-plain": lambda m, b: gpfq_quantize(
            m,
            split.calib_x,
            b,
            scale_search=False,
            bias_correction=False,
            C=1.0 if grid == "lowbit" else full_code_multiplier(b),
        ),
        "lb-gptq": lambda m, b: gptq_quantize(m, split.calib_x, b),
    }
    for bits in bits_list:
        out = {}
        for name, fn in drivers.items():
            times = []
            for _ in range(repeats):
                m = prepare(model)
                t0 = time.process_time()
                fn(m, bits)
                times.append(time.process_time() - t0)
            out[name] = (min(times), m)
        br = brevitas_run(py, ref, split.calib_x, bits, repeats, grid)
        for mode, info in br["modes"].items():
            m = prepare(model)
            layers = [mod for mod in m if isinstance(mod, QuantLayer)]
            for lay, c, s in zip(layers, info["codes"], info["scales"]):
                lay.set_weight_codes(c, s[:, None], QuantSpec(bits), Blocks(len(s), 1))
            out["br-" + mode] = (info["seconds"], m)
        codes = {k: [q.w_codes for q in m if isinstance(q, QuantLayer)] for k, (_, m) in out.items()}
        same = {
            "br-gpfq": agree(codes["lb-gpfq-plain"], codes["br-gpfq"]),
            "br-gptq": agree(codes["lb-gptq"], codes["br-gptq"]),
        }
        for name in CNN_METHODS:
            sec, m = out[name]
            acc, err = score(m)
            rows.append(
                {"method": name, "bits": bits, "acc": acc, "logit_err": err, "seconds": round(sec, 4)}
                | ({"codes_agree_with_lowbit": same[name]} if name in same else {})
            )
            note = f"  codes equal to lowbit's: {100 * same[name]:.3f} %" if name in same else ""
            print(f"{bits:4d} {name:>16s} {acc:7.2f} {err:10.4g} {sec:8.3f}{note}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------------------------
# printing


def print_layer_header() -> None:
    print(f"{'workload':>15s} {'b':>1s} | " + " | ".join(f"{m:^30s}" for m in METHODS))
    print(
        f"{'':>15s} {'':>1s} | "
        + " | ".join(f"{'CPU s':>7s} {'cal err':>8s} {'held err':>8s} {'lv':>3s}" for _ in METHODS)
    )


def print_layer_row(row: dict[str, Any]) -> None:
    cells = [
        f"{r['seconds']:7.3f} {r['cal_err']:8.5f} {r['hold_err']:8.5f} {r['levels']:3d}"
        for r in (row["methods"][m] for m in METHODS)
    ]
    print(f"{row['workload']:>15s} {row['bits']:1d} | " + " | ".join(cells), flush=True)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    print(
        "\nCPU-time ratios (lowbit / brevitas; < 1 means lowbit is faster) and % of brevitas's codes equal to "
        "lowbit's (br-gpfq vs lb-gpfq, br-gptq vs lb-gptq)"
    )
    print(
        f"{'workload':>15s} {'b':>1s} {'lb-gpfq-s/br-gpfq':>18s} {'lb-gpfq/br-gpfq':>16s} {'lb-gptq/br-gptq':>16s} "
        f"{'gpfq codes=':>12s} {'gptq codes=':>12s}"
    )
    for row in rows:
        t = {m: row["methods"][m]["seconds"] for m in METHODS}
        r = {
            "workload": row["workload"],
            "bits": row["bits"],
            "gpfq_search_over_brevitas_gpfq": t["lb-gpfq-s"] / t["br-gpfq"],
            "gpfq_plain_over_brevitas_gpfq": t["lb-gpfq"] / t["br-gpfq"],
            "gptq_over_brevitas_gptq": t["lb-gptq"] / t["br-gptq"],
        }
        out.append(r)
        print(
            f"{row['workload']:>15s} {row['bits']:1d} {r['gpfq_search_over_brevitas_gpfq']:18.3f} "
            f"{r['gpfq_plain_over_brevitas_gpfq']:16.3f} {r['gptq_over_brevitas_gptq']:16.3f} "
            f"{100 * row['codes_agree']['gpfq']:11.3f}% {100 * row['codes_agree']['gptq']:11.3f}%"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--install", action="store_true", help="create brevitas's venv first if it is missing")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--repeats", type=int, default=3, help="CPU time is the min over this many runs")
    parser.add_argument(
        "--grid",
        choices=("lowbit", "native"),
        default="lowbit",
        help="brevitas's weight grid (see the module docstring)",
    )
    parser.add_argument("--workloads", nargs="*", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--skip-cnn", action="store_true")
    args = parser.parse_args(argv)
    py = brevitas_python(args.install)
    torch.set_num_threads(1)
    print(
        f"lowbit: torch {torch.__version__}, numpy {np.__version__}, torch threads {torch.get_num_threads()}, "
        f"OMP/MKL/OPENBLAS_NUM_THREADS=1 (the brevitas worker inherits them and sets torch threads to 1); "
        f"CPU seconds = time.process_time, min over {args.repeats}; load average {os.getloadavg()[0]:.2f}"
    )
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    if args.workloads:
        print_layer_header()
        rows, meta = run_layers(py, args.workloads, args.bits, args.repeats, args.grid)
    if meta:
        print(
            f"\nbrevitas {meta['brevitas']} (torch {meta['torch']}, {meta['threads']} thread), grid "
            f"'{meta['grid']}': weight_quant={meta['quantizer']}; mode defaults: {json.dumps(meta['options'])}"
        )
        for bits, g in meta["grid_found"].items():
            used = {
                r["workload"]: [r["methods"][m]["code_range"] for m in ("br-gpfq", "br-gptq")]
                for r in rows
                if r["bits"] == bits
            }
            print(
                f"brevitas grid at {bits} bits: step {g['step']} per output channel (measured), codes "
                f"{g['codes_allowed']} (narrow_range=False); codes used [gpfq, gptq]: {used}"
            )
    rat = ratios(rows) if rows else []
    cnn = [] if args.skip_cnn else run_cnn(py, args.bits, args.repeats, args.grid)
    summary = {
        "setup": {
            "rows": ROWS,
            "repeats": args.repeats,
            "threads": 1,
            "grid": args.grid,
            "lowbit_torch": torch.__version__,
            "loadavg_end": round(os.getloadavg()[0], 2),
        }
        | meta,
        "layers": rows,
        "ratios": rat,
        "cnn": cnn,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
