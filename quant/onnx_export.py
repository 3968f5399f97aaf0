"""The quantized network as ONNX for the rest of the ecosystem: QONNX (``Quant`` nodes) and standard ONNX QDQ.

Both are written from the :class:`quant.integer.IntegerModel` -- the quantizers, codes and block scales the golden
model runs -- and compute what the **fake-quant model** computes: every tensor the integer datapath stores is
fake-quantized with its quantizer, layers multiply the dequantized weights in float and add the float bias, and
the logits stay float.  So they are the fake-quant model, not the integer one (their float convs differ from it
by the requantizers' rounding, like fake-quant does).

* **QONNX** (``qonnx.custom_op.general`` ``Quant``: ``(clip(round(x / s + z)) - z) * s`` with ``bitwidth``,
  ``signed``, ``narrow=0`` and half-to-even rounding): a weight's ``Quant`` takes the float weight and a scale of
  the weight's shape where PTQ-SL's column blocks need it (per output channel otherwise).  Any width 2..16.
* **QDQ** (``QuantizeLinear`` / ``DequantizeLinear``, opset 21): activations and weights at 4 or 8 bits only (the
  widths ONNX has types for); weights as int4 / int8 codes with per-channel scales, or blocked along the input
  channels (``block_size``) for equal PTQ-SL column blocks.  :func:`qdq_problems` names what does not fit.

The op mapping is the integer graph's (:mod:`quant.integer_graph`): Conv (groups, pads, strides, dilations),
MatMul + Add for linear layers, MatMul for products of two activations, Relu, Clip (ReLU6), MaxPool, AveragePool,
Add, Concat, Flatten / Reshape, Transpose, and the float glue as LayerNormalization, Softmax, Gelu, Tanh, Sigmoid,
Mul / Div / Add / Sub with a constant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lowbit_core.files import atomic_write, check_output_path
from quant.errors import QuantInputError
from quant.integer import IntegerLayer, IntegerModel
from quant.integer_graph import Quantizer, node_out_shape
from quant.quantizer import expand_blocks

__all__ = ["QONNX_DOMAIN", "to_onnx", "write_onnx", "qdq_problems", "model_nodes"]

QONNX_DOMAIN = "qonnx.custom_op.general"
_OPSET = 21
INPUT_NAME, OUTPUT_NAME = "input", "output"


# ------------------------------------------------------------------------------------------------------------------
# the model as nodes (a chain becomes the graph it is)
# ------------------------------------------------------------------------------------------------------------------
def model_nodes(model: IntegerModel) -> list[dict[str, Any]]:
    """The model's nodes in the graph format of :mod:`quant.integer_graph` (a chain's ops become nodes)."""
    if model.graph:
        return [dict(n) for n in model.graph]
    first = model.layers[0]
    shape = tuple(first.in_shape)
    q = first.in_quantizer()
    nodes: list[dict[str, Any]] = []

    def add(op: str, inputs: list[str], q: Quantizer, **fields: Any) -> str:
        nonlocal shape
        name = f"n{len(nodes)}_{op}"
        node = {"name": name, "op": op, "inputs": inputs, "q": q, **fields}
        if op == "gemm":
            shape = model.layer(fields["layer"]).out_shape(shape, name)
        elif op != "input":
            shape = node_out_shape(node, [shape], name)
        node["shape"] = list(shape)
        nodes.append(node)
        return name

    def ops(src: str, records: list[dict[str, Any]], q: Quantizer) -> str:
        for op in records:
            src = add(op["op"], [src], q, **{k: v for k, v in op.items() if k != "op"})
        return src

    src = ops(add("input", [], q), model.pre_ops, q)
    for lay in model.layers:
        src = ops(add("gemm", [src], lay.out_quantizer(), layer=lay.name), lay.ops, lay.out_quantizer())
    add("output", [src], lay.out_quantizer())
    return nodes


# ------------------------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------------------------
class _Graph:
    """Accumulates ONNX nodes, initializers and value infos."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def const_typed(self, hint: str, value: np.ndarray, bits: int, signed: bool) -> str:
        """An initializer of ``value`` codes as int4/uint4 or int8/uint8 (QDQ zero points and weights)."""
        from onnx import TensorProto, helper

        dtype = {
            (4, True): TensorProto.INT4,
            (4, False): TensorProto.UINT4,
            (8, True): TensorProto.INT8,
            (8, False): TensorProto.UINT8,
        }[(bits, signed)]
        arr = np.asarray(value, dtype=np.int64)
        name = self.name(hint)
        self.inits.append(helper.make_tensor(name, dtype, list(arr.shape), arr.reshape(-1).tolist()))
        return name

    # quantization ---------------------------------------------------------------------------------------------
    def quant(self, x: str, q: Quantizer, hint: str) -> str:
        """Fake-quantize ``x`` with ``q`` (Quant, or QuantizeLinear + DequantizeLinear)."""
        signed = q["qmin"] < 0
        if self.fmt == "qonnx":  # in float64, as ActQuant computes (float32 division moves exact ties)
            from onnx import TensorProto

            x64 = self.node("Cast", [x], hint + "_f64", to=TensorProto.DOUBLE)
            y64 = self.node(
                "Quant",
                [
                    x64,
                    self.const("scale", np.float64(q["scale"])),
                    self.const("zeropt", np.float64(q["zero_point"])),
                    self.const("bitwidth", np.float64(q["bits"])),
                ],
                hint,
                QONNX_DOMAIN,
                signed=int(signed),
                narrow=0,
                rounding_mode="ROUND",
            )
            return self.node("Cast", [y64], hint + "_f32", to=TensorProto.FLOAT)
        scale = self.const("scale", np.float32(q["scale"]))
        zp = self.const_typed("zero_point", np.array(q["zero_point"]), q["bits"], signed)
        y = self.node("QuantizeLinear", [x, scale, zp], hint + "_q")
        return self.node("DequantizeLinear", [y, scale, zp], hint + "_dq")

    def weight(self, lay: IntegerLayer) -> str:
        """The layer's dequantized weight in torch's shape ``[out, in_c, *kernel]`` (float32)."""
        shape = (lay.out_features, lay.in_channels) + tuple(lay.kernel_size)
        codes = lay.w_codes.astype(np.int64)
        full = expand_blocks(lay.w_scales, lay.out_features, lay.in_channels, lay.kernel)  # [out, in_c * kernel]
        if self.fmt == "qonnx":
            w = (codes * full).astype(np.float32).reshape(shape)
            scale = full[:, :1] if lay.n_h == 1 else full
            scale = scale.reshape((lay.out_features,) + ((1,) * (len(shape) - 1) if lay.n_h == 1 else shape[1:]))
            return self.node(
                "Quant",
                [
                    self.const("w", w),
                    self.const("w_scale", scale.astype(np.float32)),
                    self.const("w_zeropt", np.float32(0)),
                    self.const("w_bits", np.float32(lay.w_bits)),
                ],
                f"{lay.name}_wq",
                QONNX_DOMAIN,
                signed=1,
                narrow=0,
                rounding_mode="ROUND",
            )
        w_codes = self.const_typed("w_codes", codes.reshape(shape), lay.w_bits, True)
        if lay.n_h == 1:
            scale = self.const("w_scale", full[:, 0].astype(np.float32))
            return self.node("DequantizeLinear", [w_codes, scale], f"{lay.name}_wdq", axis=0)
        block = int(lay.col_bounds[1] - lay.col_bounds[0]) // lay.kernel
        blocked = full.reshape(lay.out_features, lay.n_h, block, lay.kernel)[:, :, 0, :]
        scale = blocked.reshape((lay.out_features, lay.n_h) + tuple(lay.kernel_size)).astype(np.float32)
        return self.node(
            "DequantizeLinear", [w_codes, self.const("w_scale", scale)], f"{lay.name}_wdq", axis=1, block_size=block
        )


def _emit_gemm(g: _Graph, lay: IntegerLayer, x: str, in_shape: tuple[int, ...]) -> str:
    w = g.weight(lay)
    bias = g.const("bias", lay.bias_real.astype(np.float32))
    if lay.kind == "linear":
        wt = g.node("Transpose", [w], f"{lay.name}_wT", perm=[1, 0])
        y = g.node("Add", [g.node("MatMul", [x, wt], f"{lay.name}_mm"), bias], lay.name)
    else:
        pads = [p[0] for p in lay.padding] + [p[1] for p in lay.padding]
        y = g.node(
            "Conv",
            [x, w, bias],
            lay.name,
            group=lay.groups,
            kernel_shape=list(lay.kernel_size),
            strides=list(lay.stride),
            pads=pads,
            dilations=list(lay.dilation),
        )
    return y if lay.logits else g.quant(y, lay.out_quantizer(), f"{lay.name}_out")


def _deq(code: int, q: Quantizer) -> np.float32:
    return np.float32((code - q["zero_point"]) * q["scale"])


def _emit(  # noqa: C901 - one branch per op
    g: _Graph, model: IntegerModel, node: dict[str, Any], args: list[str], shapes: dict[str, tuple[int, ...]]
) -> str:
    op, q, name = node["op"], node["q"], node["name"]
    if op == "input":
        return g.quant(INPUT_NAME, q, "input_q")
    if op == "gemm":
        return _emit_gemm(g, model.layer(node["layer"]), args[0], shapes[node["inputs"][0]])
    if op == "relu":
        return g.node("Relu", args, name)
    if op == "clamp":
        return g.node("Clip", [args[0], g.const("lo", _deq(node["lo"], q)), g.const("hi", _deq(node["hi"], q))], name)
    if op == "maxpool":
        return g.node(
            "MaxPool",
            args,
            name,
            kernel_shape=node["kernel"],
            strides=node["stride"],
            pads=node["padding"] * 2,
            dilations=node["dilation"],
        )
    if op in ("flatten", "reshape"):
        return g.node("Reshape", [args[0], g.const("shape", np.array([0, *node["shape"]], dtype=np.int64))], name)
    if op == "requant":
        return g.quant(args[0], q, name)
    if op == "add":
        return g.quant(g.node("Add", args, name + "_sum"), q, name)
    if op == "cat":
        return g.quant(g.node("Concat", args, name + "_cat", axis=int(node["dim"])), q, name)
    if op == "avgpool":
        y = g.node("AveragePool", args, name + "_avg", kernel_shape=node["kernel"], strides=node["stride"])
        if node["squeeze"]:
            y = g.node("Reshape", [y, g.const("shape", np.array([0, *node["shape"]], dtype=np.int64))], name + "_sq")
        return g.quant(y, q, name)
    if op == "permute":
        return g.node("Transpose", args, name, perm=list(node["dims"]))
    if op == "matmul":  # both operands already hold their quantizers' values (their producers quantize them)
        return g.quant(g.node("MatMul", args, name + "_mm"), q, name)
    if op == "glue":
        y = _emit_glue(g, node, args[0])
        return y if q is None else g.quant(y, q, name)
    if op == "output":
        return g.node("Identity", args, name)
    raise QuantInputError(f"node {name}: op {op!r} has no ONNX form")


def _emit_glue(g: _Graph, node: dict[str, Any], x: str) -> str:
    """A glue op in float32, as the fake-quant model computes it."""
    fn, p, name = node["fn"], node["params"], node["name"]
    if fn == "layernorm":
        size = int(np.prod(node["shape"][len(node["shape"]) - p["dims"] :]))
        trailing = node["shape"][len(node["shape"]) - p["dims"] :]
        weight = np.ones(size) if p["weight"] is None else np.asarray(p["weight"])
        bias = np.zeros(size) if p["bias"] is None else np.asarray(p["bias"])
        return g.node(
            "LayerNormalization",
            [
                x,
                g.const("ln_scale", weight.reshape(trailing).astype(np.float32)),
                g.const("ln_bias", bias.reshape(trailing).astype(np.float32)),
            ],
            name,
            axis=-int(p["dims"]),
            epsilon=float(p["eps"]),
        )
    if fn == "softmax":
        return g.node("Softmax", [x], name, axis=int(p["dim"]))
    if fn == "gelu":
        return g.node("Gelu", [x], name, approximate=str(p["approximate"]))
    if fn in ("tanh", "sigmoid"):
        return g.node(fn.capitalize(), [x], name)
    if fn == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x], name + "_sig")], name)
    if fn == "scalar":
        c = g.const("c", np.float32(p["value"]))
        op = p["op"]
        onnx_op = {"mul": "Mul", "div": "Div", "add": "Add", "sub": "Sub", "rsub": "Sub", "rdiv": "Div"}[op]
        return g.node(onnx_op, [c, x] if op in ("rsub", "rdiv") else [x, c], name)
    raise QuantInputError(f"node {name}: glue {fn!r} has no ONNX form")


def qdq_problems(model: IntegerModel) -> list[str]:
    """Why the model cannot be written as standard QDQ (empty when it can): widths other than 4 and 8, unequal
    PTQ-SL column blocks."""
    problems = []
    for node in model_nodes(model):
        if (
            node["op"] != "gemm"
            and node["q"] is not None
            and node["q"]["bits"] not in (4, 8)
            and not (node["op"] == "output")
        ):
            problems.append(f"{node['name']} ({node['q']['bits']}-bit activations)")
    for lay in model.layers:
        if lay.w_bits not in (4, 8):
            problems.append(f"layer {lay.name} ({lay.w_bits}-bit weights)")
        elif not lay.logits and lay.out_bits not in (4, 8):
            problems.append(f"layer {lay.name} ({lay.out_bits}-bit outputs)")
        if lay.n_h > 1 and len(set(np.diff(lay.col_bounds).tolist())) > 1:
            problems.append(f"layer {lay.name} (unequal column blocks)")
    return sorted(set(problems))


def to_onnx(model: IntegerModel, fmt: str = "qonnx") -> Any:
    """The model as an ``onnx.ModelProto``: ``fmt`` is ``qonnx`` or ``qdq``.  Input ``input`` is float32
    ``[N, *shape]`` (the batch is symbolic), output ``output`` the float logits ``[N, *]``."""
    from onnx import TensorProto, helper

    if fmt not in ("qonnx", "qdq"):
        raise QuantInputError(f"unknown ONNX format {fmt!r} (allowed: qonnx, qdq)")
    if fmt == "qdq":
        problems = qdq_problems(model)
        if problems:
            raise QuantInputError(
                f"standard ONNX QDQ holds 4- and 8-bit tensors with per-channel or equal "
                f"column blocks only: {', '.join(problems[:4])}"
                f"{f' and {len(problems) - 4} more' if len(problems) > 4 else ''} (write QONNX)"
            )
    nodes = model_nodes(model)
    g = _Graph(fmt)
    names: dict[str, str] = {}
    shapes = {n["name"]: tuple(n["shape"]) for n in nodes}
    for node in nodes:
        names[node["name"]] = _emit(g, model, node, [names[i] for i in node["inputs"]], shapes)
    g.nodes[-1].output[0] = OUTPUT_NAME
    graph = helper.make_graph(
        g.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *nodes[0]["shape"]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *nodes[-1]["shape"]])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", _OPSET)] + ([helper.make_opsetid(QONNX_DOMAIN, 1)] if fmt == "qonnx" else [])
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="lowbit")
    proto.ir_version = 10
    return proto


def write_onnx(model: IntegerModel, path: str | os.PathLike[str], fmt: str = "qonnx") -> Path:
    """Write :func:`to_onnx` to ``path`` atomically (checked by ``onnx.checker`` first, for QDQ)."""
    import onnx

    out = check_output_path(path, f"{fmt} model", error=QuantInputError)
    proto = to_onnx(model, fmt)
    if fmt == "qdq":
        onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    return atomic_write(out, lambda f: f.write(data))
