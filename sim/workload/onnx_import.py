"""Import the MAC-carrying layers of an ONNX model as a :class:`Workload`.

Modelled ops (default ONNX domain): ``Conv`` (1-D and 2-D; ``group > 1`` becomes ``dwconv``),
``Gemm``, ``MatMul`` and their integer forms ``ConvInteger``, ``QLinearConv``,
``MatMulInteger``, ``QLinearMatMul``. A ``MatMul``/``Gemm`` whose second operand is constant
(an initializer, a ``Constant``, or computed only from constants, e.g. a transposed or
dequantized weight) is a ``gemm``; with two dynamic operands it is a ``matmul``.

Ops known to carry no MACs worth modelling (activations, norms, element-wise arithmetic,
reshapes, pooling, softmax, quantize/dequantize, ...) are skipped by an explicit allow-list.
Any other op -- e.g. ``LSTM``, ``ConvTranspose``, ``Einsum``, ``Loop`` or a custom-domain op --
makes :func:`read_onnx` raise :class:`InputError` listing every such op type with its node
names, so no MACs are dropped silently.

Layer names: a weighted layer (a conv, or a gemm / matmul with a constant second operand) of a model exported by
``torch.onnx.export`` gets the torch module path its node name encodes (``/0/conv1/Conv`` -> ``0.conv1``,
``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``), and a product of two activations ``<path>.matmul``
(``#2``, ``#3`` ... for more in one module): the names :func:`sim.workload.from_torch` (and :mod:`quant`, for the
weighted layers) give the same layers, so cost and sensitivity tables of one model join. Nodes named otherwise
keep their ONNX node name.

Shapes come from ``onnx.shape_inference.infer_shapes``. A symbolic leading (batch) dimension of
a graph input is set to ``batch``; other symbolic dimensions can be fixed by name with
``dim_values``. A shape still unknown after inference raises :class:`InputError`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lowbit_core.errors import InputError
from sim.workload.layer import Layer, Workload, gemm, matmul

__all__ = ["read_onnx", "product_layer", "torch_module_path", "MODELLED_OPS", "IGNORED_OPS"]

# op type -> (index of the data input, index of the weight / second operand input)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}
MODELLED_OPS = frozenset(_CONV_OPS) | frozenset(_MATMUL_OPS)

IGNORED_OPS = frozenset(
    """
    Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Swish Tanh Softplus Softsign Gelu
    Erf Mish ThresholdedRelu Clip Exp Log Abs Neg Reciprocal Floor Ceil Round Sign Sqrt Pow Sin Cos
    Add Sub Mul Div Mod Max Min Mean Sum Where Equal Greater GreaterOrEqual Less LessOrEqual
    Not And Or Xor IsNaN IsInf
    BatchNormalization LayerNormalization InstanceNormalization GroupNormalization RMSNormalization
    LpNormalization MeanVarianceNormalization
    Reshape Flatten Transpose Concat Split Slice Squeeze Unsqueeze Expand Tile Gather GatherElements
    GatherND ScatterND ScatterElements Shape Size Pad Identity Constant ConstantOfShape Cast CastLike
    Range Resize Upsample DepthToSpace SpaceToDepth Trilu NonZero ArgMax ArgMin
    MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool GlobalLpPool
    ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSumExp
    Softmax LogSoftmax Hardmax Dropout
    QuantizeLinear DequantizeLinear DynamicQuantizeLinear
""".split()
)

_DEFAULT_DOMAINS = ("", "ai.onnx")


def torch_module_path(node_name: str, op_type: str) -> str | None:
    """The torch module path that ``torch.onnx.export`` encoded in ``node_name`` (``/scope/.../OpType[_k]``; ``""``
    at the top level), or None for another naming. A scope may be relative (``conv1``) or the full dotted path
    (``layer1.0``)."""
    parts = node_name.split("/")
    if len(parts) < 2 or parts[0] or not re.fullmatch(rf"{re.escape(op_type)}(_\d+)?", parts[-1]):
        return None
    path = ""
    for seg in parts[1:-1]:
        if not seg:
            return None
        path = seg if not path or seg.startswith(path + ".") else f"{path}.{seg}"
    return path


def _dims(value_info: Any) -> list[Any] | None:
    """The dims of a ValueInfoProto's tensor type (an int, a str symbol or None each), or None."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out: list[Any] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _fix_symbols(value_infos: Sequence[Any], symbols: Mapping[str, int]) -> None:
    for vi in value_infos:
        t = vi.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            continue
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in symbols:
                d.dim_value = symbols[d.dim_param]


def _prod(values: Sequence[int]) -> int:
    return math.prod(values) if values else 1


def _broadcast(a: Sequence[int], b: Sequence[int], where: str) -> list[int]:
    n = max(len(a), len(b))
    pa = [1] * (n - len(a)) + list(a)
    pb = [1] * (n - len(b)) + list(b)
    out = []
    for x, y in zip(pa, pb, strict=True):
        if x != y and 1 not in (x, y):
            raise InputError(f"{where}: batch dimensions {list(a)} and {list(b)} do not broadcast")
        out.append(max(x, y))
    return out


def _begin_pad(attrs: Mapping[str, Any], size: Sequence[int], k: Sequence[int], out: Sequence[int], where: str) -> int:
    """The leading (top/left) zero padding of an ONNX Conv, which :class:`Layer` stores as ``pad``.

    A 1-D conv stores 0: ``pad`` applies to both axes and the height axis of a 1-D conv has none.
    """
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = list(attrs.get("strides", [1] * len(size)))
        dil = list(attrs.get("dilations", [1] * len(size)))
        begins = []
        for n, kk, o, s, d in zip(size, k, out, strides, dil, strict=True):
            total = max((o - 1) * s + (kk - 1) * d + 1 - n, 0)
            begins.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    elif auto == "VALID":
        begins = [0] * len(size)
    else:
        pads = list(attrs.get("pads", [0] * (2 * len(size))))
        begins = pads[: len(size)]
    if len(size) == 1:
        return 0
    if len(set(begins)) != 1:
        raise InputError(f"{where}: different leading paddings {begins} along height and width are not supported")
    return int(begins[0])


def product_layer(name: str, a: Sequence[int], b: Sequence[int], a_static: bool, b_static: bool, where: str) -> Layer:
    """The layer of a (broadcasting, ``numpy.matmul``-style) product ``a @ b`` of two shapes.

    * A constant operand (weights) makes a ``gemm``: ``[..., T, K] x [K, N]`` has ``T`` tokens
      per sample and ``prod(...)`` samples; a 2-D ``[M, K] x [K, N]`` is ``M`` samples of one
      token, as torch's ``Linear`` on ``[B, F]``. A constant first operand is the transposed
      product (``N`` tokens, ``M`` outputs).
    * Two dynamic operands make a ``matmul`` with one group (head) per broadcast index of the
      second operand; leading indices over which the second operand is shared fold into
      ``batch`` (more rows against the same operand).
    """
    a2 = [1, *a] if len(a) == 1 else list(a)
    b2 = [*b, 1] if len(b) == 1 else list(b)
    if len(a2) < 2 or len(b2) < 2:
        raise InputError(f"{where}: cannot multiply scalars ({list(a)} x {list(b)})")
    m, k_a, k_b, n = a2[-2], a2[-1], b2[-2], b2[-1]
    if k_a != k_b:
        raise InputError(f"{where}: inner dimensions differ ({list(a)} x {list(b)})")
    lead_a, lead_b = a2[:-2], b2[:-2]
    lead = _broadcast(lead_a, lead_b, where)
    if b_static or a_static:
        if b_static:  # activations [..., M, K] x weights [K, N]
            rows, out, w_lead = m, n, lead_b
        else:  # weights [M, K] x activations [..., K, N]
            rows, out, w_lead = n, m, lead_a
        if _prod(w_lead) != 1:
            raise InputError(
                f"{where}: a constant operand with batch dimensions ({list(a)} x {list(b)}) is not supported"
            )
        if lead:
            return gemm(name, rows, k_a, out, batch=_prod(lead))
        return gemm(name, 1, k_a, out, batch=rows)
    padded_b = [1] * (len(lead) - len(lead_b)) + lead_b
    heads = _prod([size for size, bsz in zip(lead, padded_b, strict=True) if bsz != 1])
    return matmul(name, m, k_a, n, heads=heads, batch=_prod(lead) // heads)


def read_onnx(path: str | os.PathLike[str], batch: int = 1, dim_values: Mapping[str, int] | None = None) -> Workload:  # noqa: C901 - one branch per ONNX op
    """Read the conv / gemm / matmul layers of an ONNX model, in graph order.

    ``batch`` fills a symbolic leading dimension of the graph inputs (a fixed one is kept);
    ``dim_values`` maps other symbolic dimension names (e.g. ``{"sequence": 128}``) to sizes.
    The workload is named after the file's stem.
    """
    import onnx  # lazy: sim.workload must import without onnx

    p = Path(path)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"{p}: batch must be a positive integer, got {batch!r}")
    symbols = dict(dim_values or {})
    for key, value in symbols.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{p}: dim_values[{key!r}] must be a positive integer, got {value!r}")
    if not p.is_file():
        raise InputError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise InputError(f"{p}: not a readable ONNX model ({msg})") from None
    graph = model.graph

    # 1. every op must be modelled or known to be MAC-free
    unknown: dict[str, list[str]] = {}
    for i, node in enumerate(graph.node):
        default = node.domain in _DEFAULT_DOMAINS
        if default and (node.op_type in MODELLED_OPS or node.op_type in IGNORED_OPS):
            continue
        op = node.op_type if default else f"{node.domain}::{node.op_type}"
        unknown.setdefault(op, []).append(node.name or f"#{i}")
    if unknown:
        listed = "; ".join(f"{op} (nodes: {', '.join(names)})" for op, names in sorted(unknown.items()))
        raise InputError(f"{p}: unsupported ONNX op types (MACs would be lost): {listed}")

    # 2. fix symbolic dims, then infer shapes
    initializers = {init.name: list(init.dims) for init in graph.initializer}
    for vi in graph.input:
        if vi.name in initializers:
            continue
        dims = _dims(vi)
        if dims:
            d0 = vi.type.tensor_type.shape.dim[0]
            if d0.HasField("dim_param"):
                symbols.setdefault(d0.dim_param, batch)
            elif not d0.HasField("dim_value"):
                d0.dim_value = batch
    _fix_symbols([*graph.input, *graph.output, *graph.value_info], symbols)
    hint = "give the model static input shapes or fix its symbolic dimensions (dim_values; lowbit sim --dim NAME=SIZE)"
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # keep what a lenient pass can infer; report the cause if a shape is missing
        hint = f"strict shape inference failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:
            raise InputError(f"{p}: ONNX shape inference failed ({hint})") from None
    model = inferred
    graph = model.graph
    shapes: dict[str, list[Any]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    shapes.update(initializers)

    # 3. constant tensors: initializers and anything computed only from constants
    static = set(initializers)
    for node in graph.node:
        ins = [name for name in node.input if name]
        if node.op_type in ("Constant",) or (ins and all(name in static for name in ins)):
            static.update(name for name in node.output if name)

    # 4. layers
    layers: list[Layer] = []
    used: set[str] = set()
    for i, node in enumerate(graph.node):
        if node.op_type not in MODELLED_OPS:
            continue
        weighted = node.op_type in _CONV_OPS or node.input[_MATMUL_OPS[node.op_type][1]] in static
        node_name = node.name or f"{node.op_type}_{i}"
        module_path = torch_module_path(node_name, node.op_type)
        if module_path is None or (weighted and not module_path):
            base = node_name
        else:  # a weighted layer is its module; a product of two activations is named as from_torch names it
            base = module_path if weighted else (f"{module_path}.matmul" if module_path else "matmul")
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}#{k}"
        used.add(name)
        where = f"{p}: node {node_name!r} ({node.op_type})"

        def shape(index: int, role: str, node: Any = node, where: str = where) -> list[int]:
            tensor = node.input[index] if index < len(node.input) else ""
            if not tensor:
                raise InputError(f"{where}: missing {role} input")
            dims = shapes.get(tensor)
            if dims is None or any(not isinstance(d, int) or d < 1 for d in dims):
                raise InputError(
                    f"{where}: shape of {role} {tensor!r} is unknown after shape inference (got {dims}); {hint}"
                )
            return dims

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in _CONV_OPS:
            xi, wi = _CONV_OPS[node.op_type]
            x, w = shape(xi, "input"), shape(wi, "weight")
            out_name = node.output[0]
            y = shapes.get(out_name)
            if y is None or any(not isinstance(d, int) or d < 1 for d in y):
                raise InputError(
                    f"{where}: shape of output {out_name!r} is unknown after shape inference (got {y}); {hint}"
                )
            if len(x) == 3:  # 1-D conv: [N, C, L]
                in_hw, k_hw, out_hw = (1, x[2]), (1, w[2]), (1, y[2])
            elif len(x) == 4:
                in_hw, k_hw, out_hw = (x[2], x[3]), (w[2], w[3]), (y[2], y[3])
            else:
                raise InputError(f"{where}: only 1-D and 2-D convolutions are supported, input shape is {x}")
            strides = list(attrs.get("strides", [1] * (len(x) - 2)))
            if len(set(strides)) != 1:
                raise InputError(
                    f"{where}: unequal strides {strides} are not supported (lowbit layers have one stride)"
                )
            groups = int(attrs.get("group", 1))
            pad = _begin_pad(attrs, x[2:], w[2:], y[2:], where)
            layers.append(
                Layer(
                    name,
                    "dwconv" if groups > 1 else "conv",
                    in_hw[0],
                    in_hw[1],
                    x[1],
                    w[0],
                    k_hw[0],
                    k_hw[1],
                    int(strides[0]),
                    groups,
                    out_hw[0],
                    out_hw[1],
                    x[0],
                    pad,
                )
            )
            continue

        ai, bi = _MATMUL_OPS[node.op_type]
        a, b = shape(ai, "first operand"), shape(bi, "second operand")
        if node.op_type == "Gemm":
            if len(a) != 2 or len(b) != 2:
                raise InputError(f"{where}: Gemm operands must be 2-D, got {a} and {b}")
            if attrs.get("transA", 0):
                a = [a[1], a[0]]
            if attrs.get("transB", 0):
                b = [b[1], b[0]]
        layers.append(
            product_layer(name, a, b, a_static=node.input[ai] in static, b_static=node.input[bi] in static, where=where)
        )

    if not layers:
        raise InputError(f"{p}: no Conv, Gemm or MatMul nodes, so no layers to model")
    return Workload(p.stem, tuple(layers))
