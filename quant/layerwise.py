"""Checks shared by the layer-by-layer weight quantizers (GPFQ, GPTQ): the model, the calibration batch and the
bits of every QuantLayer, refused with one-line :class:`QuantInputError` before any layer is touched."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, quant_layers
from quant.quantizer import MAX_BITS, MIN_BITS, check_finite

__all__ = ["check_weight_bits", "check_calibration", "layer_weight_bits"]


def check_weight_bits(bits: Any) -> int:
    """``bits`` as an int in ``MIN_BITS..MAX_BITS``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= int(bits) <= MAX_BITS:
        raise QuantInputError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return int(bits)


def check_calibration(model: Any, calib_x: Any) -> None:
    """A torch module and a non-empty, finite calibration tensor."""
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(calib_x, torch.Tensor):
        raise QuantInputError(f"calib_x must be a torch.Tensor, got {type(calib_x).__name__}")
    if len(calib_x) == 0:
        raise QuantInputError("empty calibration set")
    check_finite("calibration inputs", calib_x.detach().cpu().double().numpy())


def layer_weight_bits(
    model: nn.Module, calib_x: torch.Tensor, w_bits: int | dict[str, int]
) -> tuple[list[tuple[str, QuantLayer]], dict[str, int]]:
    """The model's QuantLayers in execution order and each one's weight bits: ``w_bits`` for every layer, or
    ``{layer name: bits}`` naming every QuantLayer and nothing else."""
    layers = quant_layers(model, calib_x[:1])
    if not layers:
        raise QuantInputError("the model has no QuantLayer; pass it through quant.fakequant.prepare first")
    if isinstance(w_bits, dict):
        unknown = sorted(set(w_bits) - {n for n, _ in layers})
        if unknown:
            raise QuantInputError(f"w_bits names unknown layers {unknown} (layers: {[n for n, _ in layers]})")
        missing = [n for n, _ in layers if n not in w_bits]
        if missing:
            raise QuantInputError(f"w_bits has no entry for layer {missing[0]!r}")
    return layers, {n: check_weight_bits(w_bits[n] if isinstance(w_bits, dict) else w_bits) for n, _ in layers}
