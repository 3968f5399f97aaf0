"""Post-training quantization of a built-in model, measured in fake-quant and in the golden integer model."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import model_size_bits
from quant.quantizer import Blocks, check_seed

__all__ = ["METHODS", "QuantResult", "check_granularity", "measure_quantized", "parse_granularity", "quantize_builtin",
           "quantize_model", "model_size_bits"]

METHODS = ("rtn", "gpfq", "gpfq-paper", "ptq-sl")
_BLOCKS_RE = re.compile(r"^(\d+)x(\d+)$")


def parse_granularity(text: str) -> str | Blocks:
    """``tensor``, ``channel`` or ``NVxNH`` (PTQ-SL blocks, e.g. ``4x2``)."""
    if text in ("tensor", "channel"):
        return text
    m = _BLOCKS_RE.match(text)
    if not m:
        raise QuantInputError(f"bad granularity {text!r}: use tensor, channel or NVxNH such as 4x2")
    n_v, n_h = int(m.group(1)), int(m.group(2))
    if n_v < 1 or n_h < 1:
        raise QuantInputError(f"bad granularity {text!r}: NV and NH must be >= 1")
    return Blocks(n_v, n_h)


def check_granularity(layers: Sequence[tuple[str, Any]], method: str, granularity: str | Blocks) -> None:
    """Refuse a block grid that does not fit the model's ``(name, QuantLayer)`` ``layers``.

    ``rtn`` and ``gpfq`` put ``n_V x n_H`` blocks on every layer, so every layer must hold them (``n_V`` <= its
    output channels, ``n_H`` <= its input channels).  ``ptq-sl`` clamps a grid to each layer smaller than it (a
    first conv with one input channel gets ``n_H = 1``), so only a grid that no layer holds is refused: ``n_V`` must
    fit the widest layer's outputs and ``n_H`` the widest layer's inputs.  ``tensor`` and ``channel`` always fit."""
    if not isinstance(granularity, Blocks):
        return
    n_v, n_h = granularity.n_v, granularity.n_h
    label = f"granularity {n_v}x{n_h}"
    if method != "ptq-sl":
        for name, m in layers:
            if n_v > m.out_features or n_h > m.in_channels:
                dim = f"n_V={n_v} > {m.out_features}" if n_v > m.out_features else f"n_H={n_h} > {m.in_channels}"
                raise QuantInputError(f"{label} does not fit layer {name} ({m.out_features} output x {m.in_channels} "
                                      f"input channels, {dim}): {method} puts the same blocks on every layer")
        return
    for dim, value, attr in (("n_V", n_v, "out_features"), ("n_H", n_h, "in_channels")):
        name, m = max(layers, key=lambda item: getattr(item[1], attr))
        if value > getattr(m, attr):
            what = "output" if attr == "out_features" else "input"
            raise QuantInputError(f"{label}: {dim}={value} exceeds the {what} channels of every layer (the most: "
                                  f"layer {name} with {getattr(m, attr)}); ptq-sl clamps the grid to smaller layers "
                                  f"but one layer must hold it")


@dataclass(frozen=True)
class QuantResult:
    """Accuracies in percent, sizes in bits, time in seconds."""

    model: str
    method: str
    w_bits: int
    a_bits: int
    granularity: str
    seed: int
    float_accuracy: float
    fakequant_accuracy: float
    integer_accuracy: float
    integer_agreement: float
    float_size_bits: int
    weight_size_bits: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def quantize_model(model: nn.Module, calib_x: torch.Tensor, w_bits: int | Mapping[str, int],
                   a_bits: int | Mapping[str, int], method: str = "rtn", granularity: str | Blocks = "channel",
                   seed: int = 0) -> nn.Module:
    """A fake-quant copy of float ``model``: activations calibrated by max on ``calib_x`` (float network), then
    weights quantized by ``method``.  Bits are one int for every layer or ``{quant-layer name: bits}``.

    Used by :func:`quantize_builtin` (uniform bits) and :mod:`experiments.measure` (per-layer bits)."""
    from quant.fakequant import calibrate_activations, prepare, quant_layers
    from quant.gpfq import gpfq_quantize
    from quant.ptq_sl import ptq_sl_quantize
    from quant.rtn import rtn_quantize

    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    gran = parse_granularity(granularity) if isinstance(granularity, str) else granularity
    seed = check_seed(seed)
    w = dict(w_bits) if isinstance(w_bits, Mapping) else w_bits
    a = dict(a_bits) if isinstance(a_bits, Mapping) else a_bits
    q = prepare(model)
    check_granularity(quant_layers(q), method, gran)
    calibrate_activations(q, calib_x, a)  # on float activations
    if method == "rtn":
        rtn_quantize(q, w, gran)
    elif method in ("gpfq", "gpfq-paper"):
        gpfq_quantize(q, calib_x, w, granularity=gran, seed=seed,
                      alphabet="paper" if method == "gpfq-paper" else "bbit")
    else:
        ptq_sl_quantize(q, calib_x, w, blocks=gran)
    return q


def measure_quantized(model: nn.Module, q: nn.Module, split: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """Build the golden integer model of fake-quant ``q`` and measure it against float ``model`` on ``split``'s
    test set: (integer model, the accuracy (percent, 2 decimals) and size (bits) fields shared by
    :class:`QuantResult` and :class:`experiments.train.TrainResult`)."""
    from quant.data import evaluate_accuracy
    from quant.integer import build_integer_model

    integer = build_integer_model(q, split.calib_x[:1], name=name)
    _, int_pred = integer.run(split.test_x.numpy())
    with torch.no_grad():
        fq_pred = q(split.test_x).argmax(1).numpy()
    float_bits, weight_bits = model_size_bits(q)
    y = split.test_y.numpy()
    return integer, {
        "float_accuracy": round(evaluate_accuracy(model, split.test_x, split.test_y), 2),
        "fakequant_accuracy": round(evaluate_accuracy(q, split.test_x, split.test_y), 2),
        "integer_accuracy": round(100.0 * float(np.mean(int_pred == y)), 2),
        "integer_agreement": round(100.0 * float(np.mean(int_pred == fq_pred)), 2),
        "float_size_bits": float_bits, "weight_size_bits": weight_bits,
    }


def quantize_builtin(model_name: str, method: str, w_bits: int, a_bits: int, granularity: str = "channel",
                     seed: int = 0, export_dir: Path | None = None,
                     on_phase: Callable[[str], None] | None = None) -> tuple[torch.nn.Module, QuantResult]:
    """Quantize a built-in model (weights by ``method``, activations calibrated by max) and measure it.

    ``on_phase`` is called with a short description as each phase starts (for progress output)."""
    from quant.fileio import check_output_path
    from quant.models import get_model, model_split

    phase = on_phase or (lambda _: None)

    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    gran = parse_granularity(granularity)
    seed = check_seed(seed)
    if export_dir is not None:
        check_output_path(export_dir, "integer export", directory=True)
    torch.manual_seed(seed)
    start = time.perf_counter()
    phase(f"pretrained {model_name} (seed {seed})")
    model = get_model(model_name, seed=seed)
    split = model_split(model_name)
    phase(f"quantizing: {method} w{w_bits}a{a_bits}, {granularity}")
    q = quantize_model(model, split.calib_x, w_bits, a_bits, method, gran, seed)
    seconds = time.perf_counter() - start
    phase("measuring: float, fake-quant and golden integer model on the test set")
    integer, measured = measure_quantized(model, q, split, model_name)
    if export_dir is not None:
        phase("exporting the integer model")
        integer.save(export_dir)
    result = QuantResult(model=model_name, method=method, w_bits=w_bits, a_bits=a_bits, granularity=granularity,
                         seed=seed, seconds=round(seconds, 2), **measured)
    return q, result
