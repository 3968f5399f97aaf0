"""The golden integer model of lowbit's datapath, its storage and its loading: the public API.

:func:`quant.export.export_model` turns a prepared, weight-quantized and activation-calibrated model into
``model.npz`` + ``meta.json``: a chain of layers with code-domain ops between them (an ``nn.Sequential``), or a
graph (:mod:`quant.integer_graph`: residual adds, concats, average pooling, requantization) for any other model.
:func:`load_export` reads them back as an :class:`IntegerModel`, the bit-exact reference the RTL reproduces.
The format, the arithmetic and the error bound are specified in ``docs/formats.md ("Integer export")``.

Per layer the datapath is (``v`` = row block of output channel ``r``, ``h`` = input block)::

    P_h = sum_{k in block h} (x_k - z_x) * w_{r,k}                             # int32
    A   = (B_r << T_v) + sum_h M_{v,h} * P_h                                    # int64
    y_r = clamp(((A + 2^(S_v - 1)) >> S_v) + z_y, lo, hi)                        # output codes

with the int32 bias ``B_r`` at scale ``s_y * 2^-(S_v - T_v)`` (output LSBs with ``S_v - T_v`` fractional bits).

The golden model uses numpy int64 only; the sole float operations are the quantization of the model's float input
and the final ``logits = codes * scale``.  Importing this package does not import torch, so ``rtl`` can use the
golden model alone.

This package is the API: import from ``quant.integer`` (``rtl`` may use nothing else of ``quant`` but
:mod:`quant.errors`).  Its submodules hold one job each, each importing only those listed before it:

* :mod:`quant.integer.kernels` -- pure array kernels on codes: :func:`im2col`, :func:`apply_ops`,
  :func:`effective_block_scales`;
* :mod:`quant.integer.layer` -- the layer record :class:`IntegerLayer` and :data:`LOGIT_BITS`, with the checks that
  make a layer valid and its output shape;
* :mod:`quant.integer.requant_constants` -- a layer's requantization constants from its scales (export and loader);
* :mod:`quant.integer.model` -- :class:`IntegerModel` (running a model, and writing it: :data:`FORMAT_VERSION`,
  :data:`NPZ_NAME`, :data:`META_NAME`), :class:`GraphRun` and :func:`builtin_test_images`;
* :mod:`quant.integer.loading` -- :func:`load_export` and the validation of a stored export,
  :func:`validate_graph_model`.

``rounding_shift``, ``requantize`` and ``quantize_multipliers`` are :mod:`quant.requant`'s, re-exported here.
"""

from __future__ import annotations

from quant.integer.kernels import apply_ops, effective_block_scales, im2col
from quant.integer.layer import LOGIT_BITS, IntegerLayer
from quant.integer.loading import load_export, validate_graph_model
from quant.integer.model import FORMAT_VERSION, META_NAME, NPZ_NAME, GraphRun, IntegerModel, builtin_test_images
from quant.requant import quantize_multipliers, requantize, rounding_shift

__all__ = [
    "FORMAT_VERSION",
    "NPZ_NAME",
    "META_NAME",
    "LOGIT_BITS",
    "IntegerLayer",
    "IntegerModel",
    "load_export",
    "effective_block_scales",
    "im2col",
    "apply_ops",
    "rounding_shift",
    "requantize",
    "quantize_multipliers",
    "GraphRun",
    "validate_graph_model",
    "builtin_test_images",
]
