"""The integer datapath of a DAG: the code-domain nodes between GEMM layers, their execution and validation.

A graph is a list of node records (JSON objects) in topological order; every node's output is a tensor of int64
codes on one quantizer ``q = {bits, scale, zero_point, qmin, qmax}`` and has a per-sample ``shape``.  The nodes
(exact arithmetic in ``docs/formats.md``, "Graph nodes"):

* ``input`` -- a model input, quantized with ``q`` (the graph's first nodes; a model may have several, e.g. an
  attention mask beside the embeddings);
* ``gemm`` -- the :class:`quant.integer.IntegerLayer` named ``layer`` (its own requantization);
* ``relu`` (``max(c, z)``), ``clamp`` (ReLU6 / hardtanh at quantized bounds), ``maxpool``, ``flatten``,
  ``reshape`` -- ops on codes that commute with a monotone quantizer; they keep their input's ``q``;
* ``requant`` -- ``clamp(((c - z_in) * M + 2^(S-1)) >> S) + z)``: a tensor moved to another quantizer;
* ``add`` -- ``sum_i (c_i - z_i) * M_i`` with one shift ``S``, then as ``requant``;
* ``cat`` -- each input requantized with its own ``M_i, S_i``, then concatenated;
* ``avgpool`` -- the window sum of ``c - z_in``, then ``* M >> S`` with ``M / 2^S ~= s_in / (count * s_out)``;
* ``permute`` -- codes moved to another dimension order (the batch stays first); keeps its input's ``q``;
* ``matmul`` -- a product of two activations, ``a @ b`` over the last two dims, computed as the Linear layer
  ``layer`` (a *product* template: ``b`` takes the place of its weight codes, ``a`` of its input);
* ``glue`` -- a float op of a vector unit between integer ops (``fn``: layernorm, softmax, gelu, tanh, sigmoid,
  silu, scalar, add of two tensors such as a mask): inputs dequantized to float64 (or taken as float from a glue
  op before it), the op in float64, and the result quantized with ``q`` -- or, with ``q`` null, handed on as
  float to the next glue op;
* ``output`` -- the model output (the codes of its one input).

Pure numpy int64, no torch, like :mod:`quant.integer` which executes these graphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from quant.errors import QuantInputError
from quant.quantizer import MAX_BITS
from quant.requant import MULT_MAX, exact, quantize_multipliers, requantize

__all__ = [
    "GRAPH_OPS",
    "GLUE_PARAMS",
    "Quantizer",
    "quantizer_of",
    "run_graph",
    "check_graph",
    "requant_constants",
    "node_out_shape",
    "code_maxpool",
    "code_flatten",
    "glue_float",
]

#: fields of each op besides ``name``, ``op``, ``inputs``, ``q`` and ``shape``
GRAPH_OPS: dict[str, frozenset[str]] = {
    "input": frozenset(),
    "gemm": frozenset({"layer"}),
    "relu": frozenset(),
    "clamp": frozenset({"lo", "hi"}),
    "maxpool": frozenset({"dims", "kernel", "stride", "padding", "dilation"}),
    "flatten": frozenset({"start_dim", "end_dim"}),
    "reshape": frozenset(),
    "requant": frozenset({"mult", "shift"}),
    "add": frozenset({"mults", "shift"}),
    "cat": frozenset({"dim", "mults", "shifts"}),
    "avgpool": frozenset({"dims", "kernel", "stride", "squeeze", "mult", "shift"}),
    "permute": frozenset({"dims"}),
    "matmul": frozenset({"layer"}),
    "glue": frozenset({"fn", "params"}),
    "output": frozenset(),
}
_N_INPUTS = {"input": (0, 0), "add": (2, 2), "cat": (1, 1 << 16), "matmul": (2, 2), "glue": (1, 2)}  # else one
#: glue functions and the parameters each stores
GLUE_PARAMS: dict[str, frozenset[str]] = {
    "layernorm": frozenset({"dims", "eps", "weight", "bias"}),
    "softmax": frozenset({"dim"}),
    "gelu": frozenset({"approximate"}),
    "tanh": frozenset(),
    "sigmoid": frozenset(),
    "silu": frozenset(),
    "scalar": frozenset({"op", "value"}),
    "add": frozenset(),
}
_SCALAR_OPS = ("mul", "div", "add", "sub", "rsub", "rdiv")
_MAX_LOGIT_CODE_BITS = 32


Quantizer = dict[str, Any]  #: ``{"bits", "scale", "zero_point", "qmin", "qmax"}``


def quantizer_of(bits: int, scale: float, zero_point: int, qmin: int, qmax: int) -> Quantizer:
    return {
        "bits": int(bits),
        "scale": float(scale),
        "zero_point": int(zero_point),
        "qmin": int(qmin),
        "qmax": int(qmax),
    }


def requant_constants(in_scales: Sequence[float], out_scale: float, divisor: int = 1) -> tuple[list[int], int]:
    """Multipliers ``M_i`` and one shift ``S`` with ``M_i / 2^S ~= s_i / (divisor * s_out)`` (exact rationals of
    the stored float64 scales, rounded once: :func:`quant.requant.quantize_multipliers`)."""
    sy = exact(out_scale) * int(divisor)
    return quantize_multipliers([exact(s) / sy for s in in_scales])


# ------------------------------------------------------------------------------------------------------------------
# code-domain ops (int64)
# ------------------------------------------------------------------------------------------------------------------
def code_maxpool(x: np.ndarray, op: Mapping[str, Any]) -> np.ndarray:
    d = int(op["dims"])
    if x.ndim != d + 2:
        raise QuantInputError(f"maxpool{d}d needs [N, C, {d} spatial dims], got shape {x.shape}")
    k, s, p, dl = op["kernel"], op["stride"], op["padding"], op["dilation"]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pi, pi) for pi in p], constant_values=np.iinfo(np.int64).min)
    span = tuple(di * (ki - 1) + 1 for ki, di in zip(k, dl))
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + d)))
    win = win[
        (slice(None), slice(None))
        + tuple(slice(None, None, si) for si in s)
        + tuple(slice(None, None, di) for di in dl)
    ]
    return win.max(axis=tuple(range(2 + d, 2 + 2 * d)))


def code_flatten(x: np.ndarray, start: int, end: int) -> np.ndarray:
    start, end = start % x.ndim, end % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1 :])


def _window_sum(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int]) -> np.ndarray:
    d = len(kernel)
    win = sliding_window_view(x, tuple(kernel), axis=tuple(range(2, 2 + d)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    return win.sum(axis=tuple(range(2 + d, 2 + 2 * d)))


def _apply(node: Mapping[str, Any], args: list[np.ndarray], qs: list[Quantizer]) -> np.ndarray:
    """One non-GEMM node on int64 codes."""
    op, q = node["op"], node["q"]
    if op == "relu":
        return np.maximum(args[0], np.int64(q["zero_point"]))
    if op == "clamp":
        return np.clip(args[0], int(node["lo"]), int(node["hi"]))
    if op == "maxpool":
        return code_maxpool(args[0], node)
    if op == "flatten":
        return code_flatten(args[0], int(node["start_dim"]), int(node["end_dim"]))
    if op == "reshape":
        return args[0].reshape((args[0].shape[0],) + tuple(node["shape"]))
    if op == "permute":
        return np.transpose(args[0], node["dims"])
    if op == "glue":
        y = glue_float(node, [a if qa is None else (a - qa["zero_point"]) * qa["scale"] for a, qa in zip(args, qs)])
        if q is None:
            return y
        return np.clip(np.rint(y / q["scale"]) + q["zero_point"], q["qmin"], q["qmax"]).astype(np.int64)
    if op == "output":
        return args[0]
    zp, lo, hi = int(q["zero_point"]), int(q["qmin"]), int(q["qmax"])
    if op == "requant":
        acc = (args[0] - qs[0]["zero_point"]) * np.int64(node["mult"])
        return requantize(acc, int(node["shift"]), zp, lo, hi)
    if op == "add":
        acc = sum((a - qa["zero_point"]) * np.int64(m) for a, qa, m in zip(args, qs, node["mults"]))
        return requantize(acc, int(node["shift"]), zp, lo, hi)
    if op == "cat":
        parts = [
            requantize((a - qa["zero_point"]) * np.int64(m), int(s), zp, lo, hi)
            for a, qa, m, s in zip(args, qs, node["mults"], node["shifts"])
        ]
        return np.concatenate(parts, axis=int(node["dim"]))
    if op == "avgpool":
        total = _window_sum(args[0] - qs[0]["zero_point"], node["kernel"], node["stride"])
        y = requantize(total * np.int64(node["mult"]), int(node["shift"]), zp, lo, hi)
        return y.reshape(y.shape[:2]) if node["squeeze"] else y
    raise QuantInputError(f"unknown graph op {op!r}")


def glue_float(node: Mapping[str, Any], xs: list[np.ndarray]) -> np.ndarray:
    """A glue node's float64 result on its float64 inputs."""
    fn, p = node["fn"], node["params"]
    x = np.asarray(xs[0], dtype=np.float64)
    if fn == "layernorm":
        axes = tuple(range(x.ndim - int(p["dims"]), x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + float(p["eps"]))
        if p["weight"] is not None:
            y = y * np.asarray(p["weight"], dtype=np.float64).reshape(np.shape(y)[-int(p["dims"]) :])
        if p["bias"] is not None:
            y = y + np.asarray(p["bias"], dtype=np.float64).reshape(np.shape(y)[-int(p["dims"]) :])
        return y
    if fn == "softmax":
        e = np.exp(x - x.max(axis=int(p["dim"]), keepdims=True))
        return e / e.sum(axis=int(p["dim"]), keepdims=True)
    if fn == "gelu":
        if p["approximate"] == "tanh":
            return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if fn == "tanh":
        return np.tanh(x)
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if fn == "silu":
        return x / (1.0 + np.exp(-x))
    if fn == "add":  # two tensors (an attention mask added to the scores), broadcasting
        return x + np.asarray(xs[1], dtype=np.float64)
    if fn == "scalar":
        c = float(p["value"])
        return {
            "mul": lambda: x * c,
            "div": lambda: x / c,
            "add": lambda: x + c,
            "sub": lambda: x - c,
            "rsub": lambda: c - x,
            "rdiv": lambda: c / x,
        }[p["op"]]()
    raise QuantInputError(f"unknown glue function {fn!r}")


def run_graph(
    nodes: Sequence[Mapping[str, Any]],
    input_codes: np.ndarray | Sequence[np.ndarray],
    run_gemm: Callable[[str, np.ndarray], np.ndarray],
    on_gemm_input: Callable[[str, np.ndarray], None] | None = None,
    run_product: Callable[[str, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Execute the graph on the input's codes; ``run_gemm(layer, codes)`` computes a GEMM node (the golden model's
    ``run_layer``, or the RTL), ``run_product(layer, a, b)`` a product of two activations, ``on_gemm_input`` sees
    each GEMM's input first.  Returns every node's codes (float64 values for glue nodes without ``q``)."""
    env: dict[str, np.ndarray] = {}
    qs = {node["name"]: node["q"] for node in nodes}
    feeds = list(input_codes) if isinstance(input_codes, (list, tuple)) else [input_codes]
    for node in nodes:
        args = [env[i] for i in node["inputs"]]
        if node["op"] == "input":
            env[node["name"]] = feeds.pop(0)
        elif node["op"] == "gemm":
            if on_gemm_input is not None:
                on_gemm_input(node["layer"], args[0])
            env[node["name"]] = run_gemm(node["layer"], args[0])
        elif node["op"] == "matmul":
            if run_product is None:
                raise QuantInputError(f"graph node {node['name']}: no executor for products of two activations")
            env[node["name"]] = run_product(node["layer"], args[0], args[1])
        else:
            env[node["name"]] = _apply(node, args, [qs[i] for i in node["inputs"]])
    return env


# ------------------------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------------------------
def _int_list(value: Any, length: int | None = None, minimum: int = 0) -> bool:
    return (
        isinstance(value, list)
        and (length is None or len(value) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    )


def _check_quantizer(q: Any, where: str) -> None:
    keys = {"bits", "scale", "zero_point", "qmin", "qmax"}
    if not isinstance(q, dict) or set(q) != keys:
        raise QuantInputError(f"{where}: q must be an object with {', '.join(sorted(keys))}")
    ints = [q[k] for k in ("bits", "zero_point", "qmin", "qmax")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise QuantInputError(f"{where}: q bits, zero_point, qmin and qmax must be integers")
    scale = q["scale"]
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise QuantInputError(f"{where}: q scale {scale!r} must be finite and > 0")
    bits = q["bits"]
    if bits == _MAX_LOGIT_CODE_BITS:
        grid = (-(1 << 31), (1 << 31) - 1)
    elif 1 <= bits <= MAX_BITS:
        grid = (0, (1 << bits) - 1) if q["qmin"] >= 0 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    else:
        raise QuantInputError(f"{where}: q bits {bits} outside 1..{MAX_BITS} (or {_MAX_LOGIT_CODE_BITS} for logits)")
    if (q["qmin"], q["qmax"]) != grid or not grid[0] <= q["zero_point"] <= grid[1]:
        raise QuantInputError(
            f"{where}: q range {q['qmin']}..{q['qmax']} (zero point {q['zero_point']}) is not the {bits}-bit grid"
        )


def _check_constants(mults: Sequence[int], shift: int, reals: Sequence[Fraction], where: str) -> None:
    want_m, want_s = quantize_multipliers(list(reals))
    if list(mults) != want_m or shift != want_s:
        raise QuantInputError(
            f"{where}: multipliers {list(mults)} >> {shift} are not the requantization of the "
            f"stored scales ({want_m} >> {want_s}); re-export the model"
        )
    if any(not 0 <= m <= MULT_MAX for m in mults):
        raise QuantInputError(f"{where}: multiplier outside 0..{MULT_MAX}")


def node_out_shape(node: Mapping[str, Any], shapes: list[tuple[int, ...]], where: str) -> tuple[int, ...]:  # noqa: C901 - one branch per graph op
    """Per-sample output shape of a non-GEMM, non-input node from its inputs' per-sample shapes."""
    op = node["op"]
    first = shapes[0] if shapes else ()
    if op in ("relu", "clamp", "requant", "output", "glue"):
        return first
    if op == "permute":
        dims = node["dims"]
        if not _int_list(dims) or sorted(dims) != list(range(len(first) + 1)) or dims[0] != 0:
            raise QuantInputError(
                f"{where}: dims {dims} are not a permutation of the {len(first) + 1} dims that keeps the batch first"
            )
        return tuple(first[d - 1] for d in dims[1:])
    if op == "add":
        if shapes[0] != shapes[1]:
            raise QuantInputError(f"{where}: add of shapes {list(shapes[0])} and {list(shapes[1])}")
        return first
    if op == "flatten":
        full = (1,) + first
        start, end = int(node["start_dim"]) % len(full), int(node["end_dim"]) % len(full)
        if start == 0:
            raise QuantInputError(f"{where}: flatten over the batch dimension is not supported")
        return full[1:start] + (int(np.prod(full[start : end + 1])),) + full[end + 1 :]
    if op == "reshape":
        shape = tuple(node["shape"])
        if int(np.prod(shape)) != int(np.prod(first)):
            raise QuantInputError(f"{where}: reshape of {list(first)} to {list(shape)}")
        return shape
    if op == "cat":
        dim = int(node["dim"]) - 1
        if dim < 0 or any(
            len(s) != len(first) or s[:dim] + s[dim + 1 :] != first[:dim] + first[dim + 1 :] for s in shapes
        ):
            raise QuantInputError(f"{where}: cat of shapes {[list(s) for s in shapes]} along dim {node['dim']}")
        return first[:dim] + (sum(s[dim] for s in shapes),) + first[dim + 1 :]
    if op in ("maxpool", "avgpool"):
        d = int(node["dims"])
        if len(first) != d + 1:
            raise QuantInputError(f"{where}: {op} needs [C, {d} spatial dims], got {list(first)}")
        pad = node.get("padding", [0] * d)
        dil = node.get("dilation", [1] * d)
        out = []
        for size, k, s, p, dl in zip(first[1:], node["kernel"], node["stride"], pad, dil):
            span = dl * (k - 1) + 1
            if size + 2 * p < span:
                raise QuantInputError(f"{where}: window {span} larger than the padded input {size + 2 * p}")
            out.append((size + 2 * p - span) // s + 1)
        if op == "avgpool" and node["squeeze"]:
            if any(o != 1 for o in out):
                raise QuantInputError(f"{where}: a squeezing average pool must reduce every spatial dim to 1")
            return first[:1]
        return first[:1] + tuple(out)
    raise QuantInputError(f"{where}: unknown graph op {op!r}")


def check_graph(nodes: Any, layers: Mapping[str, Any], where: str) -> None:  # noqa: C901 - one check per graph rule
    """Validate a stored graph: node fields and types, references in topological order, every layer used once,
    quantizers equal across each edge a GEMM reads or writes, requantization constants equal to what the stored
    scales give, and per-sample shapes that propagate.  ``layers`` maps names to IntegerLayers."""
    if not isinstance(nodes, list) or not nodes:
        raise QuantInputError(f"{where}: graph must be a non-empty list of nodes")
    seen: dict[str, Mapping[str, Any]] = {}
    used: list[str] = []
    for i, node in enumerate(nodes):
        at = f"{where}: graph node {i}"
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or node.get("op") not in GRAPH_OPS:
            raise QuantInputError(f"{at}: needs a string name and an op in {', '.join(GRAPH_OPS)}")
        name, op = node["name"], node["op"]
        at = f"{where}: graph node {name!r} ({op})"
        want = GRAPH_OPS[op] | {"name", "op", "inputs", "q", "shape"}
        if set(node) != want:
            raise QuantInputError(f"{at}: fields {sorted(node)} (expected {sorted(want)})")
        if name in seen:
            raise QuantInputError(f"{at}: duplicate node name")
        inputs = node["inputs"]
        lo, hi = _N_INPUTS.get(op, (1, 1))
        if not isinstance(inputs, list) or not lo <= len(inputs) <= hi or any(j not in seen for j in inputs):
            raise QuantInputError(f"{at}: inputs {inputs!r} must name {lo}..{hi} earlier nodes")
        if not (op == "glue" and node["q"] is None):
            _check_quantizer(node["q"], at)
        if op != "glue" and any(seen[j]["q"] is None for j in inputs):
            raise QuantInputError(f"{at}: reads a float value (a glue op without q); only glue ops read floats")
        if not _int_list(node["shape"], minimum=1):
            raise QuantInputError(f"{at}: shape must be a list of positive integers")
        q, ins = node["q"], [seen[j] for j in inputs]
        shapes = [tuple(n["shape"]) for n in ins]
        if op == "input":
            if any(n["op"] != "input" for n in seen.values()):
                raise QuantInputError(f"{at}: the inputs must be the first nodes")
            shape = tuple(node["shape"])
        elif op == "gemm":
            layer = layers.get(node["layer"]) if isinstance(node["layer"], str) else None
            if layer is None:
                raise QuantInputError(f"{at}: no layer {node['layer']!r}")
            used.append(node["layer"])
            if ins[0]["q"] != layer.in_quantizer() or q != layer.out_quantizer():
                raise QuantInputError(
                    f"{at}: the quantizers of its input and output differ from layer {node['layer']!r}'s"
                )
            if layer.in_shape and tuple(layer.in_shape) != shapes[0]:
                raise QuantInputError(
                    f"{at}: input shape {list(shapes[0])}, layer {node['layer']!r} was exported "
                    f"for {list(layer.in_shape)}"
                )
            shape = layer.out_shape(shapes[0], at)
        elif op == "matmul":
            layer = layers.get(node["layer"]) if isinstance(node["layer"], str) else None
            if layer is None or not getattr(layer, "product", False):
                raise QuantInputError(f"{at}: no product layer {node['layer']!r}")
            used.append(node["layer"])
            if (
                ins[0]["q"] != layer.in_quantizer()
                or ins[1]["q"] != layer.held_quantizer()
                or q != layer.out_quantizer()
            ):
                raise QuantInputError(
                    f"{at}: the quantizers of its operands and output differ from product {node['layer']!r}'s"
                )
            a, b = shapes
            if (
                len(a) < 2
                or len(a) != len(b)
                or a[:-2] != b[:-2]
                or a[-1] != b[-2]
                or a[-1] != layer.in_channels
                or b[-1] != layer.out_features
            ):
                raise QuantInputError(
                    f"{at}: operands of shapes {list(a)} and {list(b)} do not multiply as product "
                    f"{node['layer']!r} ({layer.in_channels} x {layer.out_features})"
                )
            shape = a[:-1] + (b[-1],)
        else:
            if op in ("relu", "clamp", "maxpool", "flatten", "reshape", "permute", "output") and q != ins[0]["q"]:
                raise QuantInputError(f"{at}: a {op} keeps its input's quantizer")
            if op == "clamp" and not (
                isinstance(node["lo"], int)
                and isinstance(node["hi"], int)
                and q["qmin"] <= node["lo"] <= node["hi"] <= q["qmax"]
            ):
                raise QuantInputError(f"{at}: clamp bounds must be integers within the grid")
            _check_node_constants(node, ins, at)
            shape = node_out_shape(node, shapes, at)
        if tuple(node["shape"]) != shape:
            raise QuantInputError(f"{at}: stored shape {node['shape']} but the graph gives {list(shape)}")
        seen[name] = node
    if nodes[0]["op"] != "input" or nodes[-1]["op"] != "output" or sum(n["op"] == "output" for n in nodes) != 1:
        raise QuantInputError(f"{where}: a graph starts with its input node and ends with its one output node")
    if sorted(used) != sorted(layers):
        raise QuantInputError(
            f"{where}: the graph must run every layer exactly once (runs {used}, layers {list(layers)})"
        )


def _check_node_constants(node: Mapping[str, Any], ins: list[Mapping[str, Any]], at: str) -> None:  # noqa: C901 - one check per op's constants
    op, q = node["op"], node["q"]
    if op in ("requant", "add", "cat", "avgpool") and any(n["q"]["bits"] > MAX_BITS for n in ins):
        raise QuantInputError(f"{at}: a {op} reads codes of at most {MAX_BITS} bits (not int32 logits)")
    if op == "requant":
        if not (isinstance(node["mult"], int) and isinstance(node["shift"], int)):
            raise QuantInputError(f"{at}: mult and shift must be integers")
        _check_constants([node["mult"]], node["shift"], [exact(ins[0]["q"]["scale"]) / exact(q["scale"])], at)
    elif op == "add":
        if not _int_list(node["mults"], 2) or not isinstance(node["shift"], int):
            raise QuantInputError(f"{at}: mults must be two integers and shift an integer")
        _check_constants(node["mults"], node["shift"], [exact(n["q"]["scale"]) / exact(q["scale"]) for n in ins], at)
    elif op == "cat":
        if (
            not _int_list(node["mults"], len(ins))
            or not _int_list(node["shifts"], len(ins))
            or not isinstance(node["dim"], int)
        ):
            raise QuantInputError(f"{at}: mults and shifts must be one integer per input, dim an integer")
        for n, m, s in zip(ins, node["mults"], node["shifts"]):
            _check_constants([m], s, [exact(n["q"]["scale"]) / exact(q["scale"])], at)
    elif op == "avgpool":
        d = node["dims"]
        if not (
            isinstance(d, int)
            and d in (1, 2)
            and _int_list(node["kernel"], d, 1)
            and _int_list(node["stride"], d, 1)
            and isinstance(node["squeeze"], bool)
            and isinstance(node["mult"], int)
            and isinstance(node["shift"], int)
        ):
            raise QuantInputError(f"{at}: dims (1 or 2), kernel, stride, squeeze, mult and shift are malformed")
        count = int(np.prod(node["kernel"]))
        if count >= 1 << 15:
            raise QuantInputError(f"{at}: a window of {count} codes is too large for the 64-bit accumulator")
        _check_constants([node["mult"]], node["shift"], [exact(ins[0]["q"]["scale"]) / (exact(q["scale"]) * count)], at)
    elif op == "maxpool":
        d = node["dims"]
        if not (
            isinstance(d, int)
            and d in (1, 2)
            and _int_list(node["kernel"], d, 1)
            and _int_list(node["stride"], d, 1)
            and _int_list(node["padding"], d, 0)
            and _int_list(node["dilation"], d, 1)
        ):
            raise QuantInputError(f"{at}: dims (1 or 2), kernel, stride, padding and dilation are malformed")
    elif op == "flatten":
        if not (isinstance(node["start_dim"], int) and isinstance(node["end_dim"], int)):
            raise QuantInputError(f"{at}: start_dim and end_dim must be integers")
    elif op == "glue":
        _check_glue(node, ins, at)


def _finite_list(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _check_glue(node: Mapping[str, Any], ins: list[Mapping[str, Any]], at: str) -> None:  # noqa: C901 - one check per glue op
    fn, p = node["fn"], node["params"]
    if fn not in GLUE_PARAMS or not isinstance(p, dict) or set(p) != GLUE_PARAMS[fn]:
        raise QuantInputError(f"{at}: fn must be one of {', '.join(GLUE_PARAMS)} with its parameters")
    shape = tuple(ins[0]["shape"])
    if (fn == "add") != (len(ins) == 2):
        raise QuantInputError(f"{at}: glue add takes two inputs, every other glue op one")
    if fn == "add":
        other = tuple(ins[1]["shape"])
        try:
            ok = np.broadcast_shapes(shape, other) == shape
        except ValueError:
            ok = False
        if not ok:
            raise QuantInputError(f"{at}: cannot add a {list(other)} tensor to {list(shape)} without growing it")
    if fn == "layernorm":
        dims = p["dims"]
        if not (isinstance(dims, int) and 1 <= dims <= len(shape)) or not (
            isinstance(p["eps"], float) and p["eps"] > 0
        ):
            raise QuantInputError(f"{at}: layernorm needs 1 <= dims <= {len(shape)} and eps > 0")
        size = int(np.prod(shape[len(shape) - dims :]))
        for key in ("weight", "bias"):
            if p[key] is not None and not _finite_list(p[key], size):
                raise QuantInputError(f"{at}: layernorm {key} must be null or {size} finite numbers")
    elif fn == "softmax":
        if not isinstance(p["dim"], int) or not 1 <= p["dim"] <= len(shape):
            raise QuantInputError(f"{at}: softmax dim must be a non-batch dimension 1..{len(shape)}")
    elif fn == "gelu":
        if p["approximate"] not in ("none", "tanh"):
            raise QuantInputError(f"{at}: gelu approximate must be none or tanh")
    elif fn == "scalar":
        v = p["value"]
        if (
            p["op"] not in _SCALAR_OPS
            or isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or (p["op"] == "div" and v == 0)
        ):
            raise QuantInputError(f"{at}: scalar op must be one of {', '.join(_SCALAR_OPS)} with a finite value")
