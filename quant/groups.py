"""Quantizer groups: the QuantLayers whose input-activation quantizers must share one bit pair.

In AIMET's mixed-precision search (Pandey et al. 2023) a producer's *output* quantizer is grouped with the *input*
and weight quantizers of its consumers, because one tensor is stored in one format.  lowbit keeps no output
quantizers: every :class:`quant.fakequant.QuantLayer` holds its own *input* activation quantizer (``layer.act``)
and its weights, and a layer's output is requantized straight into the format its consumers read (the
``output activation bits`` of the integer export are the next layer's input bits).  The only places where an
activation changes format are therefore the QuantLayers themselves (and ops that must compute in a wider
format, see "boundary" below).  Grouping works on *activation classes*: sets of tensors that are one integer
format.  They are found by union-find over the dataflow graph of one forward pass:

1. **Layer.**  A QuantLayer reads the class of its input tensor and starts a new class for its output (its
   requantizer chooses the output format).  A layer that runs more than once joins the classes of all its
   inputs (it has one input quantizer).
2. **Pass-through.**  Ops that move or select values, or map the grid onto itself, keep the class of their
   (first tensor) input: ReLU / ReLU6 / hardtanh / clamp, max and average pooling (an integer average pool
   sums and divides in the same format), flatten / view / reshape / permute / transpose / squeeze / unsqueeze /
   indexing / chunk / split, padding, dropout (eval), identity, clone, dtype casts.
3. **Combine.**  An elementwise ``add`` / ``sub`` of two or more activations, and ``cat`` / ``stack``, join
   the classes of **all** their tensor inputs and of their output: without a requantizer of its own the add
   works on codes in one common format and hands its sum on in that format (a concat stores its parts side by
   side in one tensor; a concat of a single tensor is a copy, rule 2).  This ties a residual stream: the skip
   tensor's readers, the branch producer's format and the readers of the sum.  With ``tie_adds=False`` an
   add / cat is a boundary instead (rule 4), as in HAWQ-V3, whose residual add rescales each input with its
   own dyadic multiplier; then only layers that read the very same tensor are tied (HAWQ-V3's released ties
   for ResNet: a downsample conv and the first conv of its block).
4. **Boundary.**  Everything else -- non-QuantLayer modules with parameters (BatchNorm that was not folded,
   LayerNorm, Embedding), smooth nonlinearities (GELU, SiLU, sigmoid, tanh, softmax), products and divisions,
   adds of a constant, matmuls of two activations -- computes in a wider (float) format and starts a new class.
   Model inputs and constants start their own classes.

Two QuantLayers are in one **group** exactly when their inputs are in one class (transitively through rule 1),
so any two layers whose input quantizers must share a bit width share a group; lowbit ties the whole pair
(``w_bits`` and ``a_bits``), the contract of the ``group`` column of the sensitivity and cost tables.  Group
ids are numbered ``0, 1, ...`` in the order the groups first appear in execution order; in a plain chain
(``nn.Sequential`` of conv / linear layers, like the built-in models) every layer is its own group.

The dataflow graph comes from ``torch.fx`` (QuantLayers and ``torch.nn`` leaf modules kept as leaves, shapes
propagated on the example to tell tensors from integers such as ``x.size(0)``).  If ``torch.fx`` cannot trace
the model (data-dependent control flow, unsupported Python), lowbit falls back to a **dynamic trace** of one
forward pass: forward hooks on the QuantLayers plus a ``TorchFunctionMode`` that sees every other torch
function and tensor method call, with tensors identified by object and version (in-place ops).  The same rules
apply to both; if neither works a :class:`QuantInputError` names both causes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, TensorQuant, prepare, quant_layers

__all__ = ["quantizer_groups", "PASS_FUNCTIONS", "COMBINE_FUNCTIONS", "PASS_MODULES"]

#: Torch function / tensor method names (without leading/trailing underscores) that keep their input's format.
PASS_FUNCTIONS = frozenset(
    {
        "relu",
        "relu6",
        "hardtanh",
        "clamp",
        "clip",
        "threshold",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "flatten",
        "unflatten",
        "reshape",
        "view",
        "view_as",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "squeeze",
        "unsqueeze",
        "getitem",
        "chunk",
        "split",
        "tensor_split",
        "unbind",
        "narrow",
        "select",
        "expand",
        "expand_as",
        "repeat",
        "flip",
        "roll",
        "movedim",
        "pad",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "identity",
        "clone",
        "detach",
        "pixel_shuffle",
        "pixel_unshuffle",
        "channel_shuffle",
        "to",
        "float",
        "double",
        "type_as",
    }
)
#: Names that join the formats of all their tensor inputs and their output (when given two or more tensors).
COMBINE_FUNCTIONS = frozenset(
    {
        "add",
        "iadd",
        "radd",
        "sub",
        "isub",
        "rsub",
        "cat",
        "concat",
        "concatenate",
        "stack",
        "hstack",
        "vstack",
        "dstack",
    }
)
_JOINS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack"})
#: ``torch.nn`` leaf modules that keep their input's format (rule 2 of the module docstring).
PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Threshold,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
)


@dataclass(frozen=True)
class _Op:
    """One dataflow step: ``kind`` is ``layer``, ``pass``, ``combine`` or ``new``; values are hashable keys."""

    kind: str
    inputs: tuple[Hashable, ...]
    outputs: tuple[Hashable, ...]
    layer: str | None = None


def _normalize(name: str) -> str:
    name = name.strip("_")
    return {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub"}.get(name, name)


def _function_kind(name: str, n_tensor_inputs: int) -> str:
    name = _normalize(name)
    if n_tensor_inputs >= 1 and (name in PASS_FUNCTIONS or (name in _JOINS and n_tensor_inputs == 1)):
        return "pass"  # a concat of one tensor is a copy
    if name in COMBINE_FUNCTIONS and n_tensor_inputs >= 2:
        return "combine"
    return "new"


# ------------------------------------------------------------------------------------------------------------------
# torch.fx


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (QuantLayer, TensorQuant)) or super().is_leaf_module(m, module_qualified_name)


def _is_tensor_meta(meta: Any) -> bool:
    from torch.fx.passes.shape_prop import TensorMetadata

    if isinstance(meta, TensorMetadata):
        return True
    if isinstance(meta, (tuple, list)):
        return any(_is_tensor_meta(m) for m in meta)
    if isinstance(meta, dict):
        return any(_is_tensor_meta(m) for m in meta.values())
    return False


def _fx_ops(model: nn.Module, example: torch.Tensor) -> list[_Op]:
    """The dataflow of ``model`` from ``torch.fx``; raises whatever fx raises when it cannot trace."""
    from torch.fx.passes.shape_prop import ShapeProp

    graph = _Tracer().trace(model)
    gm = torch.fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    names = {m: n for n, m in model.named_modules()}
    ops: list[_Op] = []
    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        args: list[torch.fx.Node] = []
        torch.fx.node.map_arg((node.args, node.kwargs), args.append)
        tensor_in = list(dict.fromkeys(a.name for a in args if _is_tensor_meta(a.meta.get("tensor_meta"))))
        if not _is_tensor_meta(node.meta.get("tensor_meta")):
            continue  # sizes, shapes and other non-tensor values carry no activation format
        out = (node.name,)
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, QuantLayer):
                first = node.args[0] if node.args else None
                if not isinstance(first, torch.fx.Node):
                    raise QuantInputError(f"QuantLayer {node.target} is called without a tensor input")
                ops.append(_Op("layer", (first.name,), out, names.get(module, str(node.target))))
            elif isinstance(module, PASS_MODULES + (TensorQuant,)) and tensor_in:
                ops.append(_Op("pass", (tensor_in[0],), out))
            else:
                ops.append(_Op("new", tuple(tensor_in), out))
            continue
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        kind = _function_kind(target, len(tensor_in))
        ops.append(_Op(kind, tuple(tensor_in[:1]) if kind == "pass" else tuple(tensor_in), out))
    return ops


# ------------------------------------------------------------------------------------------------------------------
# dynamic trace (fallback)


def _dynamic_ops(model: nn.Module, example: torch.Tensor) -> list[_Op]:
    """The dataflow of one forward pass, seen by QuantLayer hooks and a ``TorchFunctionMode``."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    ops: list[_Op] = []
    alive: list[torch.Tensor] = []  # keeps every seen tensor alive, so id() values are never reused
    depth = [0]
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, QuantLayer)}

    def key(t: torch.Tensor) -> Hashable:
        alive.append(t)
        return (id(t), t._version)  # noqa: SLF001 - torch's in-place version counter tells a tensor's values apart

    def tensors(obj: Any) -> list[torch.Tensor]:
        return [t for t in tree_leaves(obj) if isinstance(t, torch.Tensor)]

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
            kwargs = kwargs or {}
            if depth[0]:
                return func(*args, **kwargs)
            ins = [key(t) for t in tensors((args, kwargs))]
            result = func(*args, **kwargs)
            outs = tuple(key(t) for t in tensors(result))
            if outs:
                kind = _function_kind(getattr(func, "__name__", ""), len(ins))
                ops.append(_Op(kind, tuple(ins[:1]) if kind == "pass" else tuple(ins), outs))
            return result

    def pre(mod: nn.Module, inp: tuple) -> None:
        if depth[0] == 0:
            xs = tensors(inp)
            if not xs:
                raise QuantInputError(f"QuantLayer {names[id(mod)]} is called without a tensor input")
            pending.append(key(xs[0]))
        depth[0] += 1

    def post(mod: nn.Module, inp: tuple, out: Any) -> None:
        depth[0] -= 1
        if depth[0] == 0:
            ops.append(_Op("layer", (pending.pop(),), tuple(key(t) for t in tensors(out)), names[id(mod)]))

    pending: list[Hashable] = []
    layers = [m for m in model.modules() if isinstance(m, QuantLayer)]
    hooks = [m.register_forward_pre_hook(pre) for m in layers] + [m.register_forward_hook(post) for m in layers]
    try:
        with torch.no_grad(), _Mode():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return ops


# ------------------------------------------------------------------------------------------------------------------
# union-find


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, a: Hashable) -> Hashable:
        self.parent.setdefault(a, a)
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, items: Iterable[Hashable]) -> None:
        items = list(items)
        if not items:
            return
        first = self.find(items[0])
        for other in items[1:]:
            root = self.find(other)
            if root != first:
                self.parent[root] = first


def _groups_from_ops(ops: Sequence[_Op], order: Sequence[str], tie_adds: bool) -> dict[str, int]:
    uf = _UnionFind()
    reads: dict[str, list[Hashable]] = {}
    for op in ops:
        if op.kind == "pass":
            uf.union(op.inputs[:1] + op.outputs)
        elif op.kind == "combine" and tie_adds:
            uf.union(op.inputs + op.outputs)
        elif op.kind == "layer":
            reads.setdefault(op.layer, []).extend(op.inputs)
    missing = [n for n in order if n not in reads]
    if missing:  # pragma: no cover - both tracers see every executed QuantLayer
        raise QuantInputError(f"quantizer groups: the dataflow trace did not see layers {missing}")
    for name in order:
        uf.union(reads[name])  # a layer run twice has one input quantizer
    group_of_root: dict[Hashable, int] = {}
    groups: dict[str, int] = {}
    for name in order:
        root = uf.find(reads[name][0])
        groups[name] = group_of_root.setdefault(root, len(group_of_root))
    return groups


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def quantizer_groups(model: nn.Module, example: torch.Tensor, *, tie_adds: bool = True) -> dict[str, int]:
    """Group id of every QuantLayer that runs on ``example``: ``{layer name: group}`` in execution order.

    ``model`` is a float model (it is :func:`quant.fakequant.prepare`-d into a copy) or an already prepared one;
    names are the QuantLayer names of :func:`quant.fakequant.quant_layers` (e.g. ``"0"``, ``"layer1.conv1"``).
    Ids are ``0, 1, ...`` in order of first appearance.  The grouping rule, including ``tie_adds``, is in the
    module docstring.  Only the first sample of ``example`` is run.
    """
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor) or example.ndim < 1 or len(example) == 0:
        raise QuantInputError("example must be a non-empty torch.Tensor [N, ...]")
    prepared = model if any(isinstance(m, QuantLayer) for m in model.modules()) else prepare(model)
    example = example[:1]
    try:
        order = [n for n, _ in quant_layers(prepared, example)]
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise QuantInputError(
            f"the model's forward pass failed on an input of shape {tuple(example.shape)} ({_first_line(exc)})"
        ) from None
    if not order:
        raise QuantInputError("the model has no Conv1d, Conv2d or Linear layer that runs on the example")
    try:
        ops = _fx_ops(prepared, example)
    except Exception as fx_exc:  # noqa: BLE001 - any fx failure means: fall back to the dynamic trace
        try:
            ops = _dynamic_ops(prepared, example)
        except Exception as dyn_exc:  # noqa: BLE001
            raise QuantInputError(
                f"cannot find quantizer groups: torch.fx failed ({_first_line(fx_exc)}) and so "
                f"did the dynamic trace ({_first_line(dyn_exc)})"
            ) from None
    return _groups_from_ops(ops, order, tie_adds)
