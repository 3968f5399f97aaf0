"""Round-to-nearest (RTN): the baseline weight quantizer."""

from __future__ import annotations

import numpy as np
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, quant_layers
from quant.quantizer import Blocks, QuantSpec, block_scales, expand_blocks, quantize

__all__ = ["rtn_codes", "rtn_layer", "rtn_quantize", "granularity_blocks"]


def granularity_blocks(layer: QuantLayer, granularity: str | Blocks) -> Blocks:
    """``'tensor'`` -> 1x1, ``'channel'`` -> out x 1, or explicit :class:`Blocks`."""
    if isinstance(granularity, Blocks):
        return granularity
    if granularity == "tensor":
        return Blocks(1, 1)
    if granularity == "channel":
        return Blocks(layer.out_features, 1)
    raise QuantInputError(f"unknown granularity {granularity!r} (allowed: tensor, channel, or Blocks(n_v, n_h))")


def rtn_codes(
    weight: np.ndarray, spec: QuantSpec, blocks: Blocks, kernel: int = 1, scales: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes [out, in] and block scales [n_v, n_h] by round-to-nearest on max-abs (or given) scales."""
    scales = block_scales(weight, blocks, spec, kernel) if scales is None else scales
    full = expand_blocks(scales, weight.shape[0], weight.shape[1] // kernel, kernel)
    return quantize(weight, full, 0, spec), scales


def rtn_layer(layer: QuantLayer, bits: int, granularity: str | Blocks = "channel") -> None:
    spec = QuantSpec(bits)
    blocks = granularity_blocks(layer, granularity)
    codes, scales = rtn_codes(layer.gemm_weight(), spec, blocks, layer.kernel)
    layer.set_weight_codes(codes, scales, spec, blocks)


def rtn_quantize(model: nn.Module, w_bits: int | dict[str, int], granularity: str | Blocks = "channel") -> nn.Module:
    """Quantize every QuantLayer's weights by RTN (in place); returns the model."""
    for name, layer in quant_layers(model):
        rtn_layer(layer, w_bits[name] if isinstance(w_bits, dict) else w_bits, granularity)
    return model
