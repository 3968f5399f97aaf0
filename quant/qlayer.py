"""The fake-quant modules: :class:`QuantLayer` (a quantized Conv1d / Conv2d / Linear), :class:`ActQuant` (an
activation quantizer), :class:`TensorQuant` (the quantizer of one intermediate tensor of a graph) and
:class:`QuantMatmul` (a product of two activations with both operands quantized).

A :class:`QuantLayer` wraps one layer.  It keeps the float layer, and optionally

* integer weight codes in GEMM form ``[out, in_c * kernel]`` (channel-major) with one scale per
  ``n_v x n_h`` block (:mod:`quant.quantizer`), used as the dequantized weight in ``forward``;
* an input-activation quantizer (spec, scale, zero point) applied to the layer's input.

Everything is float64-exact on the grid: ``forward`` uses ``codes * scale`` cast to float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from quant.errors import QuantInputError
from quant.quantizer import Blocks, QuantSpec, check_finite, dequantize, expand_blocks

__all__ = ["SUPPORTED", "ActQuant", "QuantLayer", "TensorQuant", "QuantMatmul"]

SUPPORTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class ActQuant:
    """An activation quantizer: ``codes = clip(rint(x / scale) + zero_point, qmin, qmax)``."""

    spec: QuantSpec
    scale: float
    zero_point: int = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # float64, like :meth:`codes` and the integer export: float32 division lands on the other
        # side of exact ties (e.g. pixel 8/16 at scale 1/255) and would disagree with the codes
        x64 = x.double()
        q = torch.clamp(torch.round(x64 / self.scale) + self.zero_point, self.spec.qmin, self.spec.qmax)
        return ((q - self.zero_point) * self.scale).to(x.dtype)

    def ste(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant for training: the quantized value forward; the gradient passes straight through inside the
        clipping range and is zero outside it (straight-through estimator)."""
        lo = (self.spec.qmin - self.zero_point) * self.scale
        hi = (self.spec.qmax - self.zero_point) * self.scale
        xc = torch.clamp(x, lo, hi)
        return xc + (self(x) - xc).detach()

    def codes(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        q = np.rint(x.astype(np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.spec.qmin, self.spec.qmax).astype(np.int64)


class QuantLayer(nn.Module):
    """Fake-quant wrapper of a Conv1d, Conv2d or Linear layer (see the module docstring)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        if not isinstance(layer, SUPPORTED):
            raise QuantInputError(f"unsupported layer type {type(layer).__name__} (supported: Conv1d, Conv2d, Linear)")
        self.layer = layer
        w = layer.weight.detach()
        self.out_features = int(w.shape[0])
        self.in_channels = int(w.shape[1])
        self.kernel = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
        self.groups = int(getattr(layer, "groups", 1))
        self.w_spec: QuantSpec | None = None
        self.blocks: Blocks | None = None
        self.w_scales: np.ndarray | None = None
        self.w_codes: np.ndarray | None = None
        self.act: ActQuant | None = None
        self.out_perm: np.ndarray | None = None  # output-channel order applied by channel reordering
        self.register_buffer("w_deq", None, persistent=False)
        # training-time quantization (quant.finetune): the weight the forward pass uses, as a function of the
        # float weight (an nn.Module, so its own parameters train too), and straight-through activation fake-quant
        self.weight_fn: nn.Module | None = None
        self.ste = False

    # weights --------------------------------------------------------------------------------
    def gemm_weight(self) -> np.ndarray:
        """The float weight as ``[out, in_c * kernel]`` float64 (channel-major)."""
        return self.layer.weight.detach().double().reshape(self.out_features, -1).cpu().numpy()

    def set_weight_codes(self, codes: np.ndarray, scales: np.ndarray, spec: QuantSpec, blocks: Blocks) -> None:
        """Install integer codes [out, in_c*kernel] with per-block scales [n_v, n_h]."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != (self.out_features, self.in_channels * self.kernel):
            raise QuantInputError(
                f"weight codes of shape {codes.shape} do not match the layer's GEMM form "
                f"{(self.out_features, self.in_channels * self.kernel)}"
            )
        if codes.min() < spec.qmin or codes.max() > spec.qmax:
            raise QuantInputError(f"weight codes outside the {spec.bits}-bit range {spec.qmin}..{spec.qmax}")
        scales = np.asarray(scales, dtype=np.float64).reshape(blocks.n_v, blocks.n_h)
        check_finite("weight scales", scales)
        self.w_codes, self.w_scales, self.w_spec, self.blocks = codes, scales, spec, blocks
        full = expand_blocks(scales, self.out_features, self.in_channels, self.kernel)
        deq = dequantize(codes, full).reshape(self.layer.weight.shape)
        self.w_deq = torch.as_tensor(deq, dtype=self.layer.weight.dtype)

    def set_float_weight(self, weight_gemm: np.ndarray) -> None:
        """Replace the float weight (GEMM form; the bias is untouched); clears codes."""
        self.layer.weight.data = torch.as_tensor(
            np.asarray(weight_gemm).reshape(self.layer.weight.shape), dtype=self.layer.weight.dtype
        )
        self.w_codes = self.w_scales = self.w_spec = self.blocks = None
        self.w_deq = None

    def clear_weight_quant(self) -> None:
        self.w_codes = self.w_scales = self.w_spec = self.blocks = None
        self.w_deq = None

    # forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            x = self.act.ste(x) if self.ste else self.act(x)
        if self.w_deq is not None:
            w = self.w_deq
        elif self.weight_fn is not None:
            w = self.weight_fn(self.layer.weight)
        else:
            w = self.layer.weight
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)  # noqa: SLF001 - torch's conv with the layer's own padding mode and a given weight

    def extra_repr(self) -> str:
        w = f"w{self.w_spec.bits} blocks={self.blocks.n_v}x{self.blocks.n_h}" if self.w_spec else "w=float"
        a = f"a{self.act.spec.bits}" if self.act else "a=float"
        return f"{w}, {a}"


class TensorQuant(nn.Module):
    """Fake-quant of one intermediate tensor that the integer datapath stores as codes of its own: the output of a
    residual add, a concat or an average pool, and a layer's output that more than one op reads (see
    :mod:`quant.graph`).  Identity until :func:`quant.fakequant.calibrate_activations` sets ``act``."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.bits = int(bits)
        self.act: ActQuant | None = None
        self.ste = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is None:
            return x
        return self.act.ste(x) if self.ste else self.act(x)

    def extra_repr(self) -> str:
        return f"a{self.act.spec.bits}" if self.act else f"a{self.bits} (not calibrated)"


class QuantMatmul(nn.Module):
    """An activation x activation product ``a @ b`` (attention scores ``q k^T``, context ``p v``) with both
    operands quantized at the pair's ``a_bits``, as ``sim`` costs a product (both operands are activations; a
    pair's ``w_bits`` does not apply): ``a`` by ``act`` and ``b`` by ``act_b``, which is symmetric signed because the
    array holds ``b`` where a GEMM's weights go.  Inserted by :func:`quant.fakequant.prepare` in place of
    ``torch.matmul`` / ``@`` / ``bmm`` / ``mm`` calls on two activations; float until
    :func:`quant.fakequant.calibrate_activations` sets the quantizers."""

    def __init__(self) -> None:
        super().__init__()
        self.act: ActQuant | None = None
        self.act_b: ActQuant | None = None
        self.ste = False

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            a = self.act.ste(a) if self.ste else self.act(a)
        if self.act_b is not None:
            b = self.act_b.ste(b) if self.ste else self.act_b(b)
        return torch.matmul(a, b)

    def extra_repr(self) -> str:
        a = f"a{self.act.spec.bits}" if self.act else "a=float"
        b = f"b{self.act_b.spec.bits}" if self.act_b else "b=float"
        return f"{a}, {b}"
