"""Plain quantization-aware training (QAT): the baseline that QGT and DGMS must match or beat.

Each layer's forward pass uses its weight fake-quantized to b bits, per output channel, with max-abs scales (the
same grid as :func:`quant.rtn.rtn_quantize` and the integer export); rounding passes gradients straight through
(STE, Bengio et al. 2013). Activations are fake-quantized at ``a_bits`` with ranges calibrated on the float model.
After fine-tuning (:func:`quant.finetune.finetune`), RTN on the trained weights gives exactly the codes the last
forward pass used; activations are then recalibrated on the weight-quantized model.
"""

from __future__ import annotations

import torch
from torch import nn

from quant.data import Split
from quant.fakequant import calibrate_activations, prepare
from quant.finetune import FinetuneConfig, TrainOutcome, check_bits, finetune, ste_round, training_mode
from quant.quantizer import QuantSpec
from quant.rtn import rtn_quantize

__all__ = ["STEWeightQuant", "qat_train"]


class STEWeightQuant(nn.Module):
    """Per-output-channel symmetric b-bit fake-quant of a weight: max-abs scales (no gradient), STE rounding.

    An all-zero channel gets scale 1, as :func:`quant.quantizer.block_scales`."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        spec = QuantSpec(bits)
        self.bits, self.qmin, self.qmax = bits, spec.qmin, spec.qmax

    def scales(self, w: torch.Tensor) -> torch.Tensor:
        """Per-channel scales ``[out, 1]`` of the weight in GEMM form."""
        amax = w.detach().reshape(w.shape[0], -1).abs().amax(1, keepdim=True)
        return torch.where(amax > 0, amax / self.qmax, torch.ones_like(amax))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.scales(w)
        q = torch.clamp(ste_round(w.reshape(w.shape[0], -1) / s), self.qmin, self.qmax)
        return (q * s).reshape(w.shape)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def qat_train(
    model: nn.Module,
    split: Split,
    w_bits: int,
    a_bits: int,
    config: FinetuneConfig | None = None,
    progress: bool = False,
) -> TrainOutcome:
    """QAT of float ``model`` at ``w{w_bits}a{a_bits}``; returns the quantized fake-quant model and its history."""
    w_bits, a_bits = check_bits(w_bits, a_bits)
    config = config or FinetuneConfig()
    q = prepare(model)
    calibrate_activations(q, split.calib_x, a_bits)
    with training_mode(q) as layers:
        for m in layers:
            m.weight_fn = STEWeightQuant(w_bits)
        history = finetune(q, split, config, label=f"QAT w{w_bits}a{a_bits}", progress=progress)
    rtn_quantize(q, w_bits)
    calibrate_activations(q, split.calib_x, a_bits)
    return TrainOutcome(q, history, summary={"method": "qat", "w_bits": w_bits, "a_bits": a_bits})
