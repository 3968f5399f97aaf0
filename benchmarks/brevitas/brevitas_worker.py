"""Run brevitas's ``gpfq_mode`` / ``gptq_mode`` on a network described by a job file (runs in brevitas's venv).

Usage: ``<brevitas-venv>/bin/python brevitas_worker.py JOB.npz OUT_PREFIX``

The job (written by ``compare.py``) holds ``arch`` (JSON list of layers: ``["linear", in, out, bias]``,
``["conv", in, out, [kh, kw], [sh, sw], [ph, pw], bias]``, ``["relu"]``, ``["maxpool", k]``, ``["flatten"]``), the float
weights ``w<i>`` / biases ``b<i>`` of the i-th linear/conv layer, the calibration inputs ``x``, ``bits``,
``repeats``, ``grid`` and ``modes``.  Every linear/conv layer becomes a brevitas ``QuantLinear`` / ``QuantConv2d``
with a per-channel symmetric signed ``bits``-bit weight quantizer whose scale is fixed from ``max|w|`` of the float
row before the pass (``PARAMETER_FROM_STATS``), float activations and float bias.  ``grid``:

* ``"lowbit"``: narrow range off, integer threshold ``2^(b-1) - 1``: step ``max|w| / (2^(b-1) - 1)``, codes
  ``[-2^(b-1), 2^(b-1) - 1]`` -- lowbit's grid;
* ``"native"``: brevitas's own threshold for narrow range off, ``2^(b-1)``: step ``max|w| / 2^(b-1)``.

Writes ``OUT_PREFIX.json`` (times, options, grid found) and ``OUT_PREFIX.npz`` (per mode and layer: dequantized
weight ``<mode>_deq<i>``, integer codes ``<mode>_codes<i>``, per-channel steps ``<mode>_scale<i>``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import sys
import time
from typing import Any

import numpy as np
import torch
from brevitas.core.scaling import IntScaling
from brevitas.graph.gpfq import gpfq_mode
from brevitas.graph.gptq import GPTQ, gptq_mode
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas.quant.scaled_int import Int8WeightPerChannelFloat
from torch import nn

MODES = {"gpfq": gpfq_mode, "gptq": gptq_mode}
_BASE = (
    "Int8WeightPerChannelFloat.let(bit_width=b, narrow_range=False, signed=True, scaling_impl_type=PARAMETER_FROM_STATS"
)
QUANTIZER_TEXT = {"lowbit": _BASE + ", int_scaling_impl=MaxCodeIntScaling)", "native": _BASE + ")"}


class MaxCodeIntScaling(IntScaling):
    """Integer threshold ``2^(b-1) - 1`` (the largest positive code) while the codes keep the full signed range."""

    def __init__(self, signed: bool | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(narrow_range=True, signed=signed, dtype=dtype)


def weight_quant(bits: int, grid: str) -> Any:
    """Per-channel signed ``bits``-bit quantizer, scale initialized once from the abs-max of each output row."""
    opts: dict[str, Any] = {
        "bit_width": bits,
        "narrow_range": False,
        "signed": True,
        "scaling_impl_type": ScalingImplType.PARAMETER_FROM_STATS,
    }
    if grid == "lowbit":
        opts["int_scaling_impl"] = MaxCodeIntScaling
    elif grid != "native":
        raise ValueError(f"unknown grid {grid!r}")
    return Int8WeightPerChannelFloat.let(**opts)


def build(arch: list[list[Any]], job: Any, bits: int, grid: str) -> nn.Sequential:
    """The brevitas network of ``arch`` with the job's float weights, quantizers initialized."""
    mods: list[nn.Module] = []
    i = 0
    for spec in arch:
        kind = spec[0]
        if kind == "linear":
            _, n_in, n_out, bias = spec
            m = QuantLinear(n_in, n_out, bias=bias, weight_quant=weight_quant(bits, grid))
        elif kind == "conv":
            _, n_in, n_out, k, stride, pad, bias = spec
            m = QuantConv2d(
                n_in,
                n_out,
                tuple(k),
                stride=tuple(stride),
                padding=tuple(pad),
                bias=bias,
                weight_quant=weight_quant(bits, grid),
            )
        elif kind == "relu":
            mods.append(nn.ReLU())
            continue
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(spec[1]))
            continue
        elif kind == "flatten":
            mods.append(nn.Flatten())
            continue
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(job[f"w{i}"]))
            if bias:
                m.bias.copy_(torch.from_numpy(job[f"b{i}"]))
            m.quant_weight()  # initializes the PARAMETER_FROM_STATS scale from the float weight
        mods.append(m)
        i += 1
    return nn.Sequential(*mods).eval()


def mode_options(mode: str) -> dict[str, str]:
    """The defaults this run used: the mode's constructor keywords, and GPTQ's per-layer update keywords."""
    fns = [MODES[mode].__init__] + ([GPTQ.single_layer_update] if mode == "gptq" else [])
    return {
        name: repr(p.default)
        for fn in fns
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty and name not in ("gptq_class", "algorithm_impl")
    }


def quant_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model if isinstance(m, (QuantLinear, QuantConv2d))]


def run_mode(
    mode: str, arch: list[list[Any]], job: Any, bits: int, grid: str, x: torch.Tensor
) -> tuple[float, nn.Module]:
    """One quantization pass with ``mode``'s defaults; CPU seconds of the pass (statistics + updates)."""
    model = build(arch, job, bits, grid)
    t0 = time.process_time()
    with torch.no_grad(), MODES[mode](model) as algo:
        for _ in range(algo.num_layers):
            algo.model(x)
            algo.update()
    return time.process_time() - t0, model


def main(argv: list[str]) -> int:
    job_path, out_prefix = argv
    torch.set_num_threads(1)
    job = np.load(job_path)
    arch = json.loads(str(job["arch"]))
    bits, repeats, grid = int(job["bits"]), int(job["repeats"]), str(job["grid"])
    modes = json.loads(str(job["modes"]))
    x = torch.from_numpy(job["x"]).float()
    arrays: dict[str, np.ndarray] = {}
    result: dict[str, Any] = {
        "brevitas": importlib.metadata.version("brevitas"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bits": bits,
        "grid": grid,
        "modes": {},
        "quantizer": QUANTIZER_TEXT[grid],
    }
    for mode in modes:
        times = []
        for _ in range(repeats):
            sec, model = run_mode(mode, arch, job, bits, grid, x)
            times.append(sec)
        layers = []
        for i, m in enumerate(quant_layers(model)):
            qw = m.quant_weight()
            codes = qw.int().detach().numpy().astype(np.int64)
            scale = qw.scale.detach().double().numpy().reshape(-1)
            deq = qw.value.detach().double().numpy()
            w = job[f"w{i}"].astype(np.float64).reshape(len(scale), -1)
            arrays |= {f"{mode}_deq{i}": deq, f"{mode}_codes{i}": codes, f"{mode}_scale{i}": scale}
            layers.append(
                {
                    "code_min": int(codes.min()),
                    "code_max": int(codes.max()),
                    "int_threshold": float(np.median(np.abs(w).max(axis=1) / scale)),
                    "deq_is_codes_x_scale": bool(
                        np.allclose(
                            deq.reshape(len(scale), -1),
                            codes.reshape(len(scale), -1) * scale[:, None],
                            rtol=1e-6,
                            atol=0,
                        )
                    ),
                }
            )
        result["modes"][mode] = {
            "seconds": min(times),
            "all_seconds": times,
            "options": mode_options(mode),
            "layers": layers,
        }
    np.savez(out_prefix + ".npz", **arrays)
    with open(out_prefix + ".json", "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
