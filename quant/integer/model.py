"""The golden integer model that runs: :class:`IntegerModel`, the GEMM layers in execution order with either a chain
of code-domain ops or a graph of :mod:`quant.integer_graph` nodes, and :class:`GraphRun`, the record of one execution.

:meth:`IntegerModel.run_layer` is the bit-exact datapath of one layer and :meth:`IntegerModel.execute` runs the whole
model, optionally with another implementation of the layers (e.g. the RTL) whose outputs the rest of the model reads.
The model also writes itself, :meth:`IntegerModel.save` (``model.npz`` + ``meta.json``, format :data:`FORMAT_VERSION`),
which :mod:`quant.integer.loading` reads back.  :func:`builtin_test_images` gives real inputs for an export of a
built-in model; it alone needs torch, and imports it only when called.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lowbit_core.files import atomic_write, check_output_path
from quant.errors import QuantInputError
from quant.integer.kernels import apply_ops, im2col
from quant.integer.layer import IntegerLayer
from quant.integer_graph import Quantizer, run_graph
from quant.requant import requantize

__all__ = ["FORMAT_VERSION", "NPZ_NAME", "META_NAME", "GraphRun", "IntegerModel", "builtin_test_images"]

FORMAT_VERSION = "lowbit-integer/2"
NPZ_NAME, META_NAME = "model.npz", "meta.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same model always gives the same bytes


def _as_codes(x: Any, qmin: int, qmax: int, what: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise QuantInputError(f"{what}: expected integer codes, got dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.size and (x.min() < qmin or x.max() > qmax):
        raise QuantInputError(f"{what}: codes {x.min()}..{x.max()} outside {qmin}..{qmax}")
    return x


@dataclass
class GraphRun:
    """One execution of an integer model: every layer's input and output codes (a product's in ``operands``, its
    ``a`` and ``b`` codes, and ``outputs``), and the output codes."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    codes: np.ndarray
    operands: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class IntegerModel:
    """The golden integer model: GEMM layers in execution order, and either a chain (code-domain ops before the
    first layer and after each layer) or a ``graph`` of nodes (:mod:`quant.integer_graph`)."""

    def __init__(
        self,
        layers: list[IntegerLayer],
        pre_ops: list[dict[str, Any]] | None = None,
        name: str = "model",
        graph: list[dict[str, Any]] | None = None,
    ) -> None:
        if not layers:
            raise QuantInputError("an integer model needs at least one layer")
        self.layers = list(layers)
        self.pre_ops = list(pre_ops or [])
        self.graph = list(graph) if graph else None
        self.name = name
        self._by_name = {layer.name: layer for layer in self.layers}
        if len(self._by_name) != len(self.layers):
            raise QuantInputError("layer names must be unique")

    def layer(self, name: str) -> IntegerLayer:
        try:
            return self._by_name[name]
        except KeyError:
            raise QuantInputError(f"no layer {name!r} (layers: {', '.join(self._by_name)})") from None

    # one layer ---------------------------------------------------------------------------------------------------
    def run_layer(self, name: str, x_codes: Any) -> np.ndarray:
        """Output codes of layer ``name`` for its input codes (conv: [N, C, *spatial]; linear: [..., in]).

        Pure int64: im2col with the layer's stride/padding/dilation (padding = the input zero point), one int32
        partial sum per input block, 64-bit rescale-and-sum starting at the shifted bias, rounding shift, zero point,
        clamp."""
        lay = self.layer(name)
        x = _as_codes(x_codes, lay.in_qmin, lay.in_qmax, f"layer {name} input") - np.int64(lay.in_zero_point)
        if lay.kind == "linear":
            if x.shape[-1] != lay.reduction:
                raise QuantInputError(f"layer {name}: input has {x.shape[-1]} features, expected {lay.reduction}")
            lead = x.shape[:-1]
            cols = x.reshape(1, -1, lay.reduction)
        else:
            d = len(lay.kernel_size)
            if x.ndim != d + 2 or x.shape[1] != lay.in_channels * lay.groups:
                raise QuantInputError(
                    f"layer {name}: input shape {x.shape}, expected [N, "
                    f"{lay.in_channels * lay.groups}, {d} spatial dims]"
                )
            cols, out_sp = im2col(x, lay.kernel_size, lay.stride, lay.padding, lay.dilation)
        rows = lay.row_block()
        w = lay.w_codes.astype(np.int64)
        mult = lay.multiplier.astype(np.int64)[rows]  # [out, n_h]
        acc = np.zeros(cols.shape[:2] + (lay.out_features,), dtype=np.int64)
        acc += lay.bias.astype(np.int64) << lay.bias_shift.astype(np.int64)[rows]
        g, per_out = lay.groups, lay.out_features // lay.groups
        cols_g = cols.reshape(cols.shape[:2] + (g, lay.reduction))  # group-major channels
        w_g = w.reshape(g, per_out, lay.reduction)
        for h, (c0, c1) in enumerate(zip(lay.col_bounds[:-1], lay.col_bounds[1:])):
            if g == 1:
                psum = cols[:, :, c0:c1] @ w[:, c0:c1].T  # P_h, |P_h| < 2^31 (checked at export)
            else:  # each group's block against its rows
                psum = np.einsum("npgk,gok->npgo", cols_g[..., c0:c1], w_g[..., c0:c1]).reshape(acc.shape)
            acc += psum * mult[:, h]
        y = requantize(acc, lay.shift.astype(np.int64)[rows], lay.out_zero_point, lay.out_qmin, lay.out_qmax)
        if lay.kind == "linear":
            return y.reshape(lead + (lay.out_features,))
        return np.moveaxis(y, 2, 1).reshape((x.shape[0], lay.out_features) + out_sp)

    def run_product(self, name: str, a_codes: Any, b_codes: Any) -> np.ndarray:
        """Output codes of the product ``name``: ``a @ b`` over the last two dims, every leading (sample, head)
        index a Linear layer with ``b`` as its weight codes -- the arithmetic of :meth:`run_layer` with one block
        (int64 products, ``* M``, the bias (0) at its shift, rounding shift, zero point, clamp)."""
        lay = self.layer(name)
        if not lay.product:
            raise QuantInputError(f"layer {name} is not a product of two activations")
        a = _as_codes(a_codes, lay.in_qmin, lay.in_qmax, f"product {name} operand a") - np.int64(lay.in_zero_point)
        held = lay.held_quantizer()
        b = _as_codes(b_codes, held["qmin"], held["qmax"], f"product {name} operand b")
        if a.shape[-1] != lay.in_channels or b.shape[-2:] != (lay.in_channels, lay.out_features):
            raise QuantInputError(
                f"product {name}: operands {list(a.shape)} and {list(b.shape)}, expected "
                f"[..., {lay.in_channels}] and [..., {lay.in_channels}, {lay.out_features}]"
            )
        acc = np.matmul(a, b) * np.int64(lay.multiplier[0, 0])
        acc += np.int64(lay.bias[0]) << np.int64(lay.bias_shift[0])
        return requantize(acc, np.int64(lay.shift[0]), lay.out_zero_point, lay.out_qmin, lay.out_qmax)

    # whole model -------------------------------------------------------------------------------------------------
    def input_quantizer(self) -> Quantizer:
        """The model input's quantizer: the graph's input node, or the first layer's input quantizer."""
        return dict(self.graph[0]["q"]) if self.graph else self.layers[0].in_quantizer()

    def output_quantizer(self) -> Quantizer:
        """The quantizer of the model's output codes."""
        return dict(self.graph[-1]["q"]) if self.graph else self.layers[-1].out_quantizer()

    def input_quantizers(self) -> list[Quantizer]:
        """One quantizer per model input (a graph may have several input nodes, e.g. embeddings and a mask)."""
        if not self.graph:
            return [self.input_quantizer()]
        return [dict(n["q"]) for n in self.graph if n["op"] == "input"]

    def quantize_input(self, x: Any) -> np.ndarray | list[np.ndarray]:
        """Codes of the model input: float -> ``clip(rint(x / s_x) + z_x)`` with the input quantizer (the only
        float step before the logits); integer input is taken as codes and range-checked.  A model with several
        inputs takes a tuple or list of them, in the graph's order, and returns a list of codes."""
        qs = self.input_quantizers()
        if len(qs) > 1:
            if not isinstance(x, (tuple, list)) or len(x) != len(qs):
                raise QuantInputError(f"the model takes {len(qs)} inputs; pass a tuple of {len(qs)} arrays")
            return [_quantize_one(v, q, f"model input {i}") for i, (v, q) in enumerate(zip(x, qs))]
        if isinstance(x, (tuple, list)) and len(x) == 1:
            x = x[0]
        return _quantize_one(x, qs[0], "model input")

    def execute(self, x: Any, run_gemm: Callable[[str, np.ndarray], np.ndarray] | None = None) -> GraphRun:
        """Run the model on ``x`` (float input or input codes; a tuple for several inputs); ``run_gemm(layer,
        codes)`` replaces :meth:`run_layer` for every layer (e.g. the RTL), and its outputs are what the rest of the
        model reads."""
        gemm = run_gemm if run_gemm is not None else self.run_layer
        inputs: dict[str, np.ndarray] = {}
        outputs: dict[str, np.ndarray] = {}

        def step(name: str, codes: np.ndarray) -> np.ndarray:
            inputs[name] = codes
            outputs[name] = gemm(name, codes)
            return outputs[name]

        operands: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def product(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            operands[name] = (a, b)
            outputs[name] = self.run_product(name, a, b)
            return outputs[name]

        if self.graph:
            env = run_graph(self.graph, self.quantize_input(x), step, run_product=product)
            return GraphRun(inputs, outputs, env[self.graph[-1]["name"]], operands)
        codes = apply_ops(self.quantize_input(x), self.pre_ops, self.layers[0].in_zero_point)
        for lay in self.layers:
            codes = apply_ops(step(lay.name, codes), lay.ops, lay.out_zero_point)
        return GraphRun(inputs, outputs, codes)

    def trace(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's output codes (from :meth:`run_layer`, before the ops that follow it)."""
        return self.execute(x).outputs

    def layer_inputs(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's input codes when the model runs on ``x``."""
        return self.execute(x).inputs

    def logits(self, codes: np.ndarray) -> np.ndarray:
        """The model output in real units: ``(codes - z) * s`` (float64)."""
        q = self.output_quantizer()
        return (codes - q["zero_point"]).astype(np.float64) * q["scale"]

    def run(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, predictions)`` for a float input (quantized here) or integer input codes.

        ``logits = (codes - z) * s_out`` (float64, the only float step after the input); ``predictions`` is the
        argmax of the integer output codes over the last axis (ties -> lowest index)."""
        codes = self.execute(x).codes
        return self.logits(codes), np.argmax(codes, axis=-1)

    # storage -----------------------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The ``model.npz`` content."""
        out: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "model_name": np.array(self.name),
            "layers": np.array([lay.name for lay in self.layers]),
            "pre_ops": np.array(json.dumps(self.pre_ops)),
            "graph": np.array(json.dumps(self.graph or [])),
        }
        for lay in self.layers:
            for f in fields(IntegerLayer):
                if f.name == "name":
                    continue
                value = getattr(lay, f.name)
                if isinstance(value, np.ndarray):
                    arr = value
                elif f.name == "ops":
                    arr = np.array(json.dumps(value))
                elif isinstance(value, tuple):
                    arr = np.array(value, dtype=np.int64)
                elif isinstance(value, str):
                    arr = np.array(value)
                elif isinstance(value, bool):
                    arr = np.array(value, dtype=np.bool_)
                elif isinstance(value, (int, np.integer)):
                    arr = np.array(value, dtype=np.int64)
                else:
                    arr = np.array(value, dtype=np.float64)
                out[f"{lay.name}/{f.name}"] = arr
        return out

    def meta(self, npz_sha256: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.name,
            "npz": NPZ_NAME,
            "npz_sha256": npz_sha256,
            "layers": [lay.name for lay in self.layers],
            "pre_ops": self.pre_ops,
            "graph": self.graph or [],
            "layer_summaries": [lay.summary() for lay in self.layers],
        }

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``model.npz`` then ``meta.json`` atomically (temporary file + ``os.replace``); returns ``out_dir``."""
        out = check_output_path(out_dir, "integer export", directory=True, error=QuantInputError)
        out.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key, arr in self.arrays().items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                payload = io.BytesIO()
                np.lib.format.write_array(payload, np.array(arr, order="C"), allow_pickle=False)
                zf.writestr(info, payload.getvalue())
        data = buf.getvalue()
        atomic_write(out / NPZ_NAME, lambda f: f.write(data))
        meta = self.meta(hashlib.sha256(data).hexdigest())
        atomic_write(out / META_NAME, lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode()))
        return out


def _quantize_one(x: Any, q: Quantizer, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if np.issubdtype(arr.dtype, np.integer):
        return _as_codes(arr, q["qmin"], q["qmax"], what)
    if not np.issubdtype(arr.dtype, np.floating):
        raise QuantInputError(f"{what} must be float or integer codes, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise QuantInputError(f"{what}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf)")
    codes = np.rint(arr / q["scale"]) + q["zero_point"]
    return np.clip(codes, q["qmin"], q["qmax"]).astype(np.int64)


def builtin_test_images(model_name: str, count: int) -> np.ndarray:
    """The first ``count`` test images (float, as the model takes them) of the built-in model an export names, so
    an export of a built-in model can be run on real inputs without the caller loading the data sets itself.
    Needs torch; an unknown name is a :class:`QuantInputError`."""
    from quant.models import model_split  # torch and the data sets: only when asked for

    return model_split(model_name).test_x[:count].numpy()
