"""The dataflow graph of a prepared model, as the integer datapath sees it, and its tensor quantizers.

The integer datapath (:mod:`quant.integer`, :mod:`quant.integer_graph`) stores every tensor as integer codes with
one quantizer (scale, zero point, bits).  In a plain chain each layer's output is requantized straight into the
input format of the next layer, so the layers' own input quantizers (``QuantLayer.act``) are all there is.  A DAG
has tensors no single layer owns: the sum of a residual add, a concat, an average pool, and a layer output that
two ops read (a ResNet block's input feeds its first conv and the skip path).  Each of these gets a
:class:`~quant.qlayer.TensorQuant` right after the node that produces it, so the fake-quant model quantizes
exactly the tensors the integer model stores, and the two agree to the requantizers' rounding.

Node kinds (:func:`node_kind`), on a ``torch.fx`` graph with QuantLayers and TensorQuants kept as leaves:

* ``gemm`` -- a QuantLayer; ``matmul`` -- a QuantMatmul (a product of two activations, :func:`insert_matmuls`);
  ``tensor_quant`` -- a TensorQuant; ``input`` -- the model input;
* ``pass`` -- ops that commute with a monotone quantizer and so run on codes unchanged: ReLU, ReLU6 / hardtanh
  (clamp at the quantized bounds), max pooling, flatten / view / reshape / permute / transpose, dropout (eval),
  identity, contiguous;
* ``glue`` -- float ops of a vector unit between integer GEMMs: LayerNorm, softmax, GELU, tanh, sigmoid, SiLU,
  arithmetic with a Python number (``scores / sqrt(d)``), and an add whose operand is a glue result (a mask
  added to the scaled scores).  A chain of glue ops stays float; it is quantized
  where it meets an integer op (a GEMM or product quantizes its own input; anything else reads a TensorQuant);
* ``add`` (two activations), ``cat``, ``avgpool`` (average / adaptive average pooling, ``mean`` over spatial
  dims) -- integer ops that produce a new tensor and therefore a new quantizer;
* ``shape`` -- sizes and shapes (``x.size(0)``), not activations;
* ``output`` and ``other`` -- everything else (the export names such nodes and refuses them).

Which tensors get a TensorQuant (:func:`tensor_quant_sources`): the output of every ``add`` / ``cat`` /
``avgpool``; the output of a ``gemm``, a ``matmul`` or the model input whenever more than one op reads it (through
pass ops) or something other than a QuantLayer, a product or the model output reads it; and the output of a
``glue`` op unless exactly one GEMM, product or glue op reads it.  A layer whose output only one
QuantLayer reads keeps today's fused requantization into that layer's input format, so a plain chain gets no
TensorQuant at all and its export is unchanged.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from quant.errors import QuantInputError
from quant.qlayer import QuantLayer, QuantMatmul, TensorQuant

__all__ = [
    "GraphTracer",
    "trace_graph",
    "node_kind",
    "pass_source",
    "tensor_quant_sources",
    "insert_tensor_quants",
    "insert_matmuls",
    "product_name",
    "run_node",
    "GLUE_FUNCTIONS",
    "GLUE_MODULES",
    "PASS_MODULES",
    "AVGPOOL_MODULES",
    "DEFAULT_TENSOR_BITS",
]

DEFAULT_TENSOR_BITS = 8  #: bits of a TensorQuant (the integer format of sums, concats and pooled tensors)

PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
)
AVGPOOL_MODULES: tuple[type[nn.Module], ...] = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_PASS_NAMES = frozenset(
    {
        "relu",
        "relu6",
        "hardtanh",
        "max_pool1d",
        "max_pool2d",
        "flatten",
        "view",
        "reshape",
        "dropout",
        "dropout1d",
        "dropout2d",
        "identity",
        "contiguous",
        "permute",
        "transpose",
    }
)
#: float ops of a vector unit between integer GEMMs (LayerNorm, softmax, GELU, ...): :data:`GLUE_MODULES` and these
GLUE_FUNCTIONS = frozenset({"softmax", "gelu", "layer_norm", "tanh", "sigmoid", "silu"})
GLUE_MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GELU, nn.Softmax, nn.Tanh, nn.Sigmoid, nn.SiLU)
#: arithmetic with one tensor and one Python number (``scores / sqrt(d)``) is glue too
_SCALAR_NAMES = frozenset({"mul", "truediv", "div", "add", "sub"})
_SHAPE_MATH = frozenset({"mul", "truediv", "floordiv", "add", "sub", "pow"})
_ADD_NAMES = frozenset({"add", "iadd"})
_CAT_NAMES = frozenset({"cat", "concat", "concatenate"})
_AVGPOOL_NAMES = frozenset({"avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "mean"})
_SHAPE_METHODS = frozenset({"size", "dim"})


class GraphTracer(torch.fx.Tracer):
    """``torch.fx`` tracer that keeps QuantLayers and TensorQuants (and torch.nn's own modules) as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (QuantLayer, TensorQuant, QuantMatmul)) or super().is_leaf_module(m, module_qualified_name)


def trace_graph(model: nn.Module) -> torch.fx.GraphModule:
    """The model as a ``GraphModule`` (same submodules, same paths); :class:`QuantInputError` with fx's reason
    when the model cannot be traced symbolically (data-dependent control flow, unsupported Python)."""
    if isinstance(model, torch.fx.GraphModule):
        return model
    try:
        graph = GraphTracer().trace(model)
    except Exception as exc:  # fx raises many types; the first line names the cause
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuantInputError(f"torch.fx cannot trace {type(model).__name__}: {first}") from None
    return torch.fx.GraphModule(model, graph, class_name=type(model).__name__)


def run_node(gm: torch.fx.GraphModule, node: torch.fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Execute one call / get_attr node of ``gm`` on already evaluated ``args`` and ``kwargs`` (the step that
    :mod:`quant.replay` and :mod:`quant.prefix` take node by node)."""
    if node.op == "call_module":
        return gm.get_submodule(str(node.target))(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    if node.op == "get_attr":
        value: Any = gm
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    raise AssertionError(f"unexpected node {node.op}")


def _target_name(node: torch.fx.Node) -> str:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return name.strip("_")


def node_kind(gm: nn.Module, node: torch.fx.Node) -> str:  # noqa: C901 - one branch per fx node kind
    """The kind of ``node`` (see the module docstring)."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "get_attr":
        return "other"
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, QuantLayer):
            return "gemm"
        if isinstance(module, TensorQuant):
            return "tensor_quant"
        if isinstance(module, QuantMatmul):
            return "matmul"
        if isinstance(module, GLUE_MODULES):
            return "glue"
        if isinstance(module, PASS_MODULES):
            return "pass"
        if isinstance(module, AVGPOOL_MODULES):
            return "avgpool"
        return "other"
    name = _target_name(node)
    if node.op == "call_method" and name in _SHAPE_METHODS:
        return "shape"
    if node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] == "shape":
        return "shape"
    if node.op == "call_function" and node.target is operator.getitem:
        src = node.args[0]
        if isinstance(src, torch.fx.Node) and node_kind(gm, src) == "shape":
            return "shape"
        return "other"
    if node.op == "call_function" and name in _SHAPE_MATH and node.args and not node.kwargs:
        operands = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if (
            operands
            and all(node_kind(gm, a) == "shape" for a in operands)
            and all(isinstance(a, (torch.fx.Node, int, float)) and not isinstance(a, bool) for a in node.args)
        ):
            return "shape"  # arithmetic on sizes: a number, not an activation
    if name in _SCALAR_NAMES and len(node.args) == 2 and not node.kwargs:
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node) and node_kind(gm, a) != "shape"]
        others = [a for a in node.args if not (isinstance(a, torch.fx.Node) and node_kind(gm, a) != "shape")]
        if (
            len(tensors) == 1
            and len(others) == 1
            and (
                isinstance(others[0], torch.fx.Node)
                or (isinstance(others[0], (int, float)) and not isinstance(others[0], bool))
            )
        ):
            return "glue"  # a tensor times / over / plus / minus a number (or a size)
    if name in GLUE_FUNCTIONS:
        return "glue"
    if name in _ADD_NAMES:
        tensors = [a for a in node.args[:2] if isinstance(a, torch.fx.Node) and node_kind(gm, a) != "shape"]
        if len(tensors) != 2 or len(node.args) != 2 or node.kwargs:
            return "other"
        # a float value -- a glue result nothing else reads, so it gets no quantizer -- plus a tensor (the attention
        # mask added to the scaled scores) is glue too
        floats = [pass_source(gm, a) for a in tensors]
        return "glue" if any(node_kind(gm, f) == "glue" and len(f.users) == 1 for f in floats) else "add"
    if name in _CAT_NAMES:
        return "cat"
    if name in _AVGPOOL_NAMES:
        return "avgpool"
    if name in _PASS_NAMES:
        return "pass"
    return "other"


def tensor_args(gm: nn.Module, node: torch.fx.Node) -> list[torch.fx.Node]:
    """The activation operands of ``node`` (its fx Node arguments that are not sizes or shapes), in order."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), found.append)
    return [a for a in dict.fromkeys(found) if node_kind(gm, a) != "shape"]


def pass_source(gm: nn.Module, node: torch.fx.Node) -> torch.fx.Node:
    """The node whose codes ``node`` carries: itself, or (through pass ops) the op that produced them."""
    while node_kind(gm, node) == "pass":
        args = tensor_args(gm, node)
        if not args:
            return node
        node = args[0]
    return node


def tensor_quant_sources(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The nodes whose output needs a TensorQuant (see the module docstring), in graph order."""
    consumers: dict[torch.fx.Node, set[torch.fx.Node]] = {}
    kinds = {node: node_kind(gm, node) for node in gm.graph.nodes}
    for node in gm.graph.nodes:
        if kinds[node] in ("pass", "shape", "tensor_quant"):
            continue
        for arg in tensor_args(gm, node):
            consumers.setdefault(pass_source(gm, arg), set()).add(node)
    already = {
        n.args[0]
        for n in gm.graph.nodes
        if kinds[n] == "tensor_quant" and n.args and isinstance(n.args[0], torch.fx.Node)
    }
    out = []
    for node in gm.graph.nodes:
        kind, users = kinds[node], consumers.get(node, set())
        if node in already or not users:
            continue
        if kind in ("add", "cat", "avgpool"):
            out.append(node)
        elif kind == "glue":  # float until it meets one integer op that quantizes its own input
            if len(users) > 1 or not {kinds[u] for u in users} <= {"gemm", "matmul", "glue"}:
                out.append(node)
        elif kind in ("gemm", "matmul", "input"):
            user_kinds = {kinds[u] for u in users}
            if (
                len(users) > 1
                or not user_kinds <= {"gemm", "matmul", "output"}
                or (kind == "input" and "output" in user_kinds)
            ):
                out.append(node)
    return out


#: torch functions and Tensor methods that multiply two activations (as ``sim.workload.from_torch`` counts them)
_PRODUCT_FUNCTIONS = (torch.matmul, torch.bmm, torch.mm, operator.matmul)
_PRODUCT_METHODS = frozenset({"matmul", "bmm", "mm", "__matmul__"})


def _is_product(node: torch.fx.Node) -> bool:
    called = (node.op == "call_function" and node.target in _PRODUCT_FUNCTIONS) or (
        node.op == "call_method" and node.target in _PRODUCT_METHODS
    )
    return (
        called
        and len(node.args) == 2
        and not node.kwargs
        and all(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in node.args)
    )


def _sdpa_args(node: torch.fx.Node) -> dict[str, Any] | None:
    """The arguments of a ``F.scaled_dot_product_attention`` call lowbit can split into two products: no mask, no
    dropout, not causal, no grouped-query broadcasting (None otherwise)."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    defaults = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
    if len(node.args) > len(names) or set(node.kwargs) - set(names):
        return None
    bound = {**defaults, **dict(zip(names, node.args)), **node.kwargs}
    if any(n not in bound for n in names[:3]) or not all(isinstance(bound[n], torch.fx.Node) for n in names[:3]):
        return None
    scale = bound["scale"]
    if (
        bound["attn_mask"] is not None
        or bound["dropout_p"] not in (0, 0.0)
        or bound["is_causal"] is not False
        or bound["enable_gqa"] is not False
        or not (scale is None or isinstance(scale, (int, float)))
    ):
        return None
    return bound


def _is_sdpa(node: torch.fx.Node) -> bool:
    return (
        node.op == "call_function"
        and getattr(node.target, "__name__", "") == "scaled_dot_product_attention"
        and _sdpa_args(node) is not None
    )


def _split_sdpa(gm: torch.fx.GraphModule, node: torch.fx.Node, used: set[str]) -> list[str]:
    """``softmax(q k^T * scale) v`` as two QuantMatmuls (named as sim names the two products of an SDPA call)
    with the scale (``1 / sqrt(q.size(-1))`` by default) and the softmax between them as glue."""
    args = _sdpa_args(node)
    assert args is not None
    scores_path, context_path = product_name(node, used, "sdpa.scores"), product_name(node, used, "sdpa.context")
    gm.add_submodule(scores_path, QuantMatmul())
    gm.add_submodule(context_path, QuantMatmul())
    g = gm.graph
    with g.inserting_before(node):
        k_t = g.call_method("transpose", (args["key"], -2, -1))
        scores = g.call_module(scores_path, (args["query"], k_t))
        if args["scale"] is None:
            factor: Any = g.call_function(operator.pow, (g.call_method("size", (args["query"], -1)), -0.5))
        else:
            factor = float(args["scale"])
        probs = g.call_method("softmax", (g.call_function(operator.mul, (scores, factor)), -1))
        context = g.call_module(context_path, (probs, args["value"]))
    for new in (k_t, scores, probs, context):
        new.meta = dict(node.meta)
    node.replace_all_uses_with(context)
    g.erase_node(node)
    return [scores_path, context_path]


def product_name(node: torch.fx.Node, used: set[str], op: str = "matmul") -> str:
    """The layer name ``sim.workload.from_torch`` gives a product of two activations: ``<module path>.matmul``
    (the innermost module running it; ``matmul`` at the top level), ``#2``, ``#3``, ... on repeats; ``op`` is
    ``sdpa.scores`` / ``sdpa.context`` for the two products of ``F.scaled_dot_product_attention``."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    path = stack[-1][0] if stack else ""
    base = f"{path}.{op}" if path else op
    label, k = base, 1
    while label in used:
        k += 1
        label = f"{base}#{k}"
    used.add(label)
    return label


def insert_matmuls(gm: torch.fx.GraphModule) -> list[str]:
    """Replace every product of two activations in ``gm`` (``torch.matmul``, ``@``, ``bmm``, ``mm``) by a call of a
    new :class:`QuantMatmul` submodule named as ``sim`` names the layer (:func:`product_name`), in place; returns
    the new module paths.  Products with a parameter operand stay as they are (the export names them)."""
    used = {
        str(n.target)
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), QuantLayer)
    }
    added = []
    for node in list(gm.graph.nodes):
        if _is_sdpa(node):
            added += _split_sdpa(gm, node, used)
            continue
        if not _is_product(node):
            continue
        path = product_name(node, used)
        gm.add_submodule(path, QuantMatmul())
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(path, tuple(node.args[:2]))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        added.append(path)
    return added


def insert_tensor_quants(
    model: nn.Module, bits: int = DEFAULT_TENSOR_BITS, on_untraceable: Callable[[str], Any] | None = None
) -> nn.Module:
    """``model`` with its activation products as QuantMatmuls (:func:`insert_matmuls`) and a TensorQuant after every
    node of :func:`tensor_quant_sources` (a ``GraphModule`` with the same submodule paths and class name), or
    ``model`` itself when it needs neither.  A model ``torch.fx`` cannot
    trace is returned as it is, after ``on_untraceable(reason)``: it runs in fake-quant, and the integer export
    refuses it with the same reason."""
    try:
        gm = trace_graph(model)
    except QuantInputError as exc:
        if on_untraceable is not None:
            on_untraceable(str(exc))
        return model
    products = insert_matmuls(gm)
    sources = tensor_quant_sources(gm)
    if not sources and not products:
        return model
    holder = nn.Module()
    gm.add_submodule("tensor_quants", holder)
    for node in sources:
        holder.add_module(node.name, TensorQuant(bits))
        with gm.graph.inserting_after(node):
            tq = gm.graph.call_module(f"tensor_quants.{node.name}", (node,))
        node.replace_all_uses_with(tq, delete_user_cb=lambda user, tq=tq: user is not tq)
    gm.graph.lint()
    gm.recompile()
    return gm
