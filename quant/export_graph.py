"""Integer export of a DAG: a prepared model's ``torch.fx`` graph -> :class:`quant.integer.IntegerModel` with a graph.

Each fx node becomes one node of :mod:`quant.integer_graph` (or none: identities, dropout, folded BatchNorms and
TensorQuants, which only name the quantizer of the node before them).  A tensor's quantizer is (see
:mod:`quant.graph`) the TensorQuant that follows its producer, else the input quantizer of the one QuantLayer
that reads it, else (a layer whose output is the model output) int32 logits.  A QuantLayer whose input tensor is
on another quantizer than its own input quantizer reads it through a ``requant`` node.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from quant.errors import QuantInputError
from quant.export_layer import export_layer, int_tuple
from quant.integer import IntegerLayer, IntegerModel, validate_graph_model
from quant.integer_graph import Quantizer, quantizer_of, requant_constants

__all__ = ["build_graph_model", "check_graph_exportable"]


def _act_quantizer(act: Any) -> Quantizer:
    return quantizer_of(act.spec.bits, act.scale, act.zero_point, act.spec.qmin, act.spec.qmax)


def _call_args(node: Any) -> dict[str, Any]:
    """Arguments of a call_function / call_method node by parameter name, defaults filled in (the tensor is
    ``input``); torch's builtins have no Python signature, so the ones the export reads are spelled out here."""
    name = (node.target if isinstance(node.target, str) else node.target.__name__).strip("_")
    fn = _SIGNATURES.get(name)
    if fn is None:
        raise QuantInputError(f"node {node.name}: cannot read the arguments of {name}")
    try:
        bound = inspect.signature(fn).bind(*node.args, **dict(node.kwargs))
    except TypeError as exc:
        raise QuantInputError(f"node {node.name}: {name} called with unexpected arguments ({exc})") from None
    bound.apply_defaults()
    out = dict(bound.arguments)
    if "shape" in out and len(out["shape"]) == 1 and isinstance(out["shape"][0], (tuple, list)):
        out["shape"] = tuple(out["shape"][0])
    return out


def _flatten_sig(input: Any, start_dim: int = 0, end_dim: int = -1) -> None:  # noqa: A002
    """torch.flatten / Tensor.flatten."""


def _mean_sig(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> None:  # noqa: A002
    """torch.mean / Tensor.mean."""


def _shape_sig(input: Any, *shape: Any) -> None:  # noqa: A002
    """Tensor.view / reshape, torch.reshape."""


def _cat_sig(tensors: Any, dim: int = 0, *, out: Any = None) -> None:
    """torch.cat."""


def _maxpool_sig(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,  # noqa: A002
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> None:
    """F.max_pool1d / max_pool2d."""


def _avgpool_sig(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,  # noqa: A002
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> None:
    """F.avg_pool1d / avg_pool2d."""


def _hardtanh_sig(input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:  # noqa: A002
    """F.hardtanh."""


def _softmax_sig(input: Any, dim: Any = None, _stacklevel: int = 3, dtype: Any = None) -> None:  # noqa: A002
    """F.softmax / Tensor.softmax."""


def _gelu_sig(input: Any, approximate: str = "none") -> None:  # noqa: A002
    """F.gelu."""


def _transpose_sig(input: Any, dim0: int, dim1: int) -> None:  # noqa: A002
    """torch.transpose / Tensor.transpose."""


def _permute_sig(input: Any, *dims: Any) -> None:  # noqa: A002
    """Tensor.permute / torch.permute."""


def _unary_sig(input: Any) -> None:  # noqa: A002
    """tanh / sigmoid / silu."""


_SIGNATURES: dict[str, Callable[..., None]] = {
    "softmax": _softmax_sig,
    "gelu": _gelu_sig,
    "transpose": _transpose_sig,
    "permute": _permute_sig,
    "tanh": _unary_sig,
    "sigmoid": _unary_sig,
    "silu": _unary_sig,
    "flatten": _flatten_sig,
    "mean": _mean_sig,
    "view": _shape_sig,
    "reshape": _shape_sig,
    "cat": _cat_sig,
    "concat": _cat_sig,
    "concatenate": _cat_sig,
    "max_pool1d": _maxpool_sig,
    "max_pool2d": _maxpool_sig,
    "avg_pool1d": _avgpool_sig,
    "avg_pool2d": _avgpool_sig,
    "hardtanh": _hardtanh_sig,
}


def _target(node: Any) -> str:
    return (node.target if isinstance(node.target, str) else node.target.__name__).strip("_")


class _Builder:
    """Walks the fx graph once, emitting integer nodes and layers."""

    def __init__(self, gm: Any, shapes: dict[str, tuple[int, ...]]) -> None:
        from quant.graph import node_kind

        self.gm = gm
        self.shapes = shapes
        self.kind = {n: node_kind(gm, n) for n in gm.graph.nodes}
        self.nodes: list[dict[str, Any]] = []
        self.layers: list[IntegerLayer] = []
        self.alias: dict[Any, str] = {}  # fx node -> integer node carrying its codes
        self.q: dict[str, Quantizer] = {}  # integer node -> quantizer
        self.shape_of: dict[str, list[int]] = {}  # integer node -> per-sample shape

    # helpers ------------------------------------------------------------------------------------------------------
    def module(self, node: Any) -> Any:
        return self.gm.get_submodule(str(node.target))

    def shape(self, node: Any) -> list[int]:
        return list(self.shapes[node.name])

    def emit(
        self, node: Any, op: str, inputs: list[str], q: Quantizer, shape: list[int] | None = None, **fields: Any
    ) -> str:
        name = node.name if node.name not in self.q else f"{node.name}_{len(self.nodes)}"
        shape = self.shape(node) if shape is None else shape
        self.nodes.append({"name": name, "op": op, "inputs": inputs, "q": q, "shape": shape, **fields})
        self.q[name], self.shape_of[name] = q, shape
        self.alias[node] = name
        return name

    def storage_act(self, node: Any) -> Any:
        """The ActQuant ``node``'s output is stored with (None: int32 logits of a layer the output alone reads)."""
        from quant.graph import pass_source

        users = list(node.users)
        tq = [u for u in users if self.kind[u] == "tensor_quant"]
        if tq:
            if len(users) != 1:
                raise QuantInputError(f"node {node.name}: its TensorQuant must be its only reader")
            act = self.module(tq[0]).act
            if act is None:
                raise QuantInputError(f"{tq[0].target} is not calibrated; run calibrate_activations first")
            return act
        readers = [
            u
            for u in self.gm.graph.nodes
            if self.kind[u] not in ("pass", "shape", "tensor_quant")
            and any(pass_source(self.gm, a) is node for a in self._tensor_args(u))
        ]
        if len(readers) == 1 and self.kind[readers[0]] == "gemm":
            act = self.module(readers[0]).act
            if act is None:
                raise QuantInputError(
                    f"layer {readers[0].target}: missing input quantizer; run calibrate_activations first"
                )
            return act
        if len(readers) == 1 and self.kind[readers[0]] == "matmul":
            reader = readers[0]
            sides = [i for i, a in enumerate(self._tensor_args(reader)) if pass_source(self.gm, a) is node]
            if len(sides) != 1:
                raise QuantInputError(f"node {node.name} feeds both operands of {reader.target}")
            act = self.module(reader).act if sides[0] == 0 else self.module(reader).act_b
            if act is None:
                raise QuantInputError(
                    f"product {reader.target}: missing operand quantizers; run calibrate_activations first"
                )
            return act
        if len(readers) == 1 and self.kind[readers[0]] == "output" and self.kind[node] == "gemm":
            return None
        raise QuantInputError(
            f"node {node.name} ({self.kind[node]}) has no tensor quantizer; prepare the model "
            f"with quant.fakequant.prepare, which inserts them"
        )

    def storage(self, node: Any) -> Quantizer:
        act = self.storage_act(node)
        if act is None:
            raise QuantInputError(f"node {node.name} has no tensor quantizer")
        return _act_quantizer(act)

    def _tensor_args(self, node: Any) -> list[Any]:
        from quant.graph import tensor_args

        return tensor_args(self.gm, node)

    def operand(self, node: Any) -> str:
        if node not in self.alias:
            raise QuantInputError(f"node {node.name} reads a value the integer datapath does not hold")
        return self.alias[node]

    def quantize_value(self, value: float, q: Quantizer) -> int:
        return int(np.clip(np.rint(value / q["scale"]) + q["zero_point"], q["qmin"], q["qmax"]))

    # node kinds ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            getattr(self, f"do_{self.kind[node]}")(node)

    def do_input(self, node: Any) -> None:
        q = self.storage(node)
        self.emit(node, "input", [], q)

    def do_shape(self, node: Any) -> None:
        pass

    def do_tensor_quant(self, node: Any) -> None:
        self.alias[node] = self.operand(node.args[0])  # the producer already writes this quantizer

    def do_gemm(self, node: Any) -> None:
        m = self.module(node)
        name = str(node.target)
        if m.w_codes is None or m.act is None:
            raise QuantInputError(
                f"layer {name}: missing {'weight codes' if m.w_codes is None else 'input quantizer'};"
                f" run a weight quantizer and calibrate_activations first"
            )
        if any(n["op"] == "gemm" and n["layer"] == name for n in self.nodes):
            raise QuantInputError(f"layer {name} runs more than once; the integer export needs one call per layer")
        perm = getattr(m, "out_perm", None)
        if perm is not None and np.any(np.asarray(perm) != np.arange(m.out_features)):
            raise QuantInputError(f"layer {name}: channel reordering is supported for nn.Sequential chains only")
        src = self.into(self.operand(self._tensor_args(node)[0]), _act_quantizer(m.act), f"{node.name}_requant")
        layer = export_layer(
            name,
            m,
            self.storage_act(node),
            [],
            tuple(self.shape_of[src]),
            np.arange(m.out_features),
            np.arange(m.in_channels),
        )
        self.layers.append(layer)
        self.emit(node, "gemm", [src], layer.out_quantizer(), layer=name)

    def into(self, src: str, want: Quantizer, name_rq: str) -> str:
        """``src``'s codes on quantizer ``want``: itself, or a ``requant`` node moving them there."""
        if self.q[src] is None:
            raise QuantInputError(f"node {src} holds a float value where codes are read")
        if self.q[src] == want:
            return src
        mults, shift = requant_constants([self.q[src]["scale"]], want["scale"])
        self.nodes.append(
            {
                "name": name_rq,
                "op": "requant",
                "inputs": [src],
                "q": want,
                "shape": self.shape_of[src],
                "mult": mults[0],
                "shift": shift,
            }
        )
        self.q[name_rq], self.shape_of[name_rq] = want, self.shape_of[src]
        return name_rq

    def do_matmul(self, node: Any) -> None:
        import dataclasses

        from torch import nn

        from quant.qlayer import QuantLayer
        from quant.quantizer import Blocks, QuantSpec

        m, name = self.module(node), str(node.target)
        if m.act is None or m.act_b is None:
            raise QuantInputError(f"product {name}: missing operand quantizers; run calibrate_activations first")
        if m.act_b.zero_point != 0 or not m.act_b.spec.signed:
            raise QuantInputError(f"product {name}: operand b must be symmetric signed (it is held like weights)")
        a_arg, b_arg = self._tensor_args(node)[:2]
        a = self.into(self.operand(a_arg), _act_quantizer(m.act), f"{node.name}_requant_a")
        b = self.into(self.operand(b_arg), _act_quantizer(m.act_b), f"{node.name}_requant_b")
        a_shape, b_shape = self.shape_of[a], self.shape_of[b]
        if (
            len(a_shape) < 2
            or len(b_shape) != len(a_shape)
            or a_shape[:-2] != b_shape[:-2]
            or a_shape[-1] != b_shape[-2]
        ):
            raise QuantInputError(
                f"product {name}: operands of per-sample shapes {a_shape} and {b_shape} (the "
                f"integer product needs equal leading dims, no broadcasting)"
            )
        k, n = a_shape[-1], b_shape[-1]
        template = QuantLayer(nn.Linear(k, n, bias=False))
        # placeholder codes (b replaces them at run time): non-zero, so the block keeps b's scale
        template.set_weight_codes(
            np.ones((n, k), dtype=np.int64), np.array([[m.act_b.scale]]), QuantSpec(m.act_b.spec.bits), Blocks(1, 1)
        )
        template.act = m.act
        out_act = self.storage_act(node)
        if out_act is None:
            raise QuantInputError(f"product {name}: a product cannot be the model output")
        layer = export_layer(name, template, out_act, [], tuple(a_shape), np.arange(n), np.arange(k))
        layer = dataclasses.replace(layer, product=True)
        if int(layer.psum_abs_max().max()) >= 1 << 31:
            raise QuantInputError(f"product {name}: {k} products of its operands can overflow the 32-bit accumulator")
        self.layers.append(layer)
        self.emit(node, "matmul", [a, b], layer.out_quantizer(), layer=name)

    def glue_quantizer(self, node: Any) -> Quantizer | None:
        """Where a glue op's result goes: codes on its TensorQuant or its one integer reader's input quantizer, or
        a float handed on to the one glue op that reads it (None)."""
        users = list(node.users)
        if len(users) == 1 and self.kind[users[0]] == "glue":
            return None
        return self.storage(node)

    def do_glue(self, node: Any) -> None:
        from torch import nn

        tensors = self._tensor_args(node)
        if len(tensors) == 2:
            if _target(node) != "add":
                raise QuantInputError(f"node {node.name}: glue {_target(node)} of two tensors is not supported")
            srcs = [self.operand(t) for t in tensors]
            self.emit(node, "glue", srcs, self.glue_quantizer(node), fn="add", params={})
            return
        src = self.operand(tensors[0])
        module = self.module(node) if node.op == "call_module" else None
        name = _target(node)
        rank = len(self.shape_of[src]) + 1
        if isinstance(module, nn.LayerNorm):
            fn, params = (
                "layernorm",
                {
                    "dims": len(module.normalized_shape),
                    "eps": float(module.eps),
                    "weight": None
                    if module.weight is None
                    else [float(v) for v in module.weight.detach().double().flatten()],
                    "bias": None
                    if module.bias is None
                    else [float(v) for v in module.bias.detach().double().flatten()],
                },
            )
        elif isinstance(module, nn.Softmax) or name == "softmax":
            dim = module.dim if module is not None else _call_args(node)["dim"]
            if dim is None or dim % rank == 0:
                raise QuantInputError(f"node {node.name}: softmax needs an explicit non-batch dim")
            fn, params = "softmax", {"dim": int(dim) % rank}
        elif isinstance(module, nn.GELU) or name == "gelu":
            approx = module.approximate if module is not None else _call_args(node)["approximate"]
            fn, params = "gelu", {"approximate": str(approx)}
        elif isinstance(module, (nn.Tanh, nn.Sigmoid, nn.SiLU)) or name in ("tanh", "sigmoid", "silu"):
            fn, params = (type(module).__name__.lower() if module is not None else name), {}
        elif name in ("mul", "truediv", "div", "add", "sub"):
            from quant.graph import node_kind

            tensor_first = hasattr(node.args[0], "op") and node_kind(self.gm, node.args[0]) != "shape"
            other = node.args[1] if tensor_first else node.args[0]
            value = float(self.shape_value(other) if hasattr(other, "op") else other)
            op = {"truediv": "div"}.get(name, name)
            if not tensor_first:
                op = {"sub": "rsub", "div": "rdiv"}.get(op, op)
            fn, params = "scalar", {"op": op, "value": value}
        else:
            raise QuantInputError(f"node {node.name}: glue op {name} is not supported by the integer export")
        self.emit(node, "glue", [src], self.glue_quantizer(node), fn=fn, params=params)

    def shape_value(self, node: Any) -> Any:
        """The value of a size computation (``q.size(-1) ** -0.5``) from the per-sample shapes; sizes of the batch
        dimension are refused (the export holds for any batch)."""
        import operator

        def value(a: Any) -> Any:
            return self.shape_value(a) if hasattr(a, "op") else a

        where = f"node {node.name}"
        if node.op == "call_method" and node.target == "size" and len(node.args) == 2:
            shape = self.shapes.get(node.args[0].name)
            dim = int(node.args[1])
            if shape is None:
                raise QuantInputError(f"{where}: size of a value without a known shape")
            if dim % (len(shape) + 1) == 0:
                raise QuantInputError(f"{where}: a computation on the batch size is not supported")
            return int(shape[dim - 1 if dim > 0 else dim])
        if node.op == "call_function":
            ops = {
                "mul": operator.mul,
                "truediv": operator.truediv,
                "floordiv": operator.floordiv,
                "add": operator.add,
                "sub": operator.sub,
                "pow": operator.pow,
            }
            fn = ops.get(_target(node))
            if fn is not None and len(node.args) == 2:
                return fn(value(node.args[0]), value(node.args[1]))
            if node.target is getattr and node.args[1] == "shape":
                return (None, *self.shapes[node.args[0].name])
            if node.target is operator.getitem:
                got = value(node.args[0])[node.args[1]]
                if got is None:
                    raise QuantInputError(f"{where}: a computation on the batch size is not supported")
                return got
        raise QuantInputError(f"{where}: cannot evaluate this size computation for the export")

    def do_pass(self, node: Any) -> None:
        from torch import nn

        args = self._tensor_args(node)
        src = self.operand(args[0])
        q = self.q[src]
        module = self.module(node) if node.op == "call_module" else None
        name = (node.target if isinstance(node.target, str) else node.target.__name__).strip("_")
        if isinstance(module, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)) or name in (
            "dropout",
            "dropout1d",
            "dropout2d",
            "identity",
            "contiguous",
        ):
            self.alias[node] = src
        elif isinstance(module, nn.ReLU) or name == "relu":
            self.emit(node, "relu", [src], q)
        elif isinstance(module, (nn.ReLU6, nn.Hardtanh)) or name in ("relu6", "hardtanh"):
            if module is not None:
                lo, hi = (0.0, 6.0) if isinstance(module, nn.ReLU6) else (module.min_val, module.max_val)
            else:
                kw = _call_args(node)
                lo, hi = (0.0, 6.0) if name == "relu6" else (kw["min_val"], kw["max_val"])
            self.emit(node, "clamp", [src], q, lo=self.quantize_value(lo, q), hi=self.quantize_value(hi, q))
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) or name in ("max_pool1d", "max_pool2d"):
            self.emit(node, "maxpool", [src], q, **self._maxpool_fields(node, module))
        elif isinstance(module, nn.Flatten) or name == "flatten":
            start, end = (
                (module.start_dim, module.end_dim)
                if module is not None
                else (_call_args(node)["start_dim"], _call_args(node)["end_dim"])
            )
            self.emit(node, "flatten", [src], q, start_dim=int(start), end_dim=int(end))
        elif name in ("view", "reshape"):
            self.emit(node, "reshape", [src], q)
        elif name in ("permute", "transpose"):
            rank = len(self.shape_of[src]) + 1
            kw = _call_args(node)
            if name == "transpose":
                dims = list(range(rank))
                d0, d1 = int(kw["dim0"]) % rank, int(kw["dim1"]) % rank
                dims[d0], dims[d1] = dims[d1], dims[d0]
            else:
                given = kw["dims"]
                given = given[0] if len(given) == 1 and isinstance(given[0], (tuple, list)) else given
                dims = [int(d) % rank for d in given]
            if dims[0] != 0:
                raise QuantInputError(f"node {node.name}: {name} moves the batch dimension (not supported)")
            self.emit(node, "permute", [src], q, dims=dims)
        else:
            raise AssertionError(f"unhandled pass op {name}")  # node_kind and this method list the same ops

    def _maxpool_fields(self, node: Any, module: Any) -> dict[str, Any]:
        if module is not None:
            d = 1 if type(module).__name__.endswith("1d") else 2
            p = {
                "kernel_size": module.kernel_size,
                "stride": module.stride,
                "padding": module.padding,
                "dilation": module.dilation,
                "ceil_mode": module.ceil_mode,
                "return_indices": module.return_indices,
            }
        else:
            d = 1 if _target(node) == "max_pool1d" else 2
            p = _call_args(node)
        if p.get("ceil_mode") or p.get("return_indices"):
            raise QuantInputError(f"node {node.name}: max pooling with ceil_mode / return_indices is not supported")
        stride = p["stride"] if p["stride"] not in (None, [], ()) else p["kernel_size"]
        return {
            "dims": d,
            "kernel": list(int_tuple(p["kernel_size"], d)),
            "stride": list(int_tuple(stride, d)),
            "padding": list(int_tuple(p["padding"], d)),
            "dilation": list(int_tuple(p["dilation"], d)),
        }

    def do_add(self, node: Any) -> None:
        srcs = [self.operand(a) for a in node.args[:2]]
        q = self.storage(node)
        mults, shift = requant_constants([self.q[s]["scale"] for s in srcs], q["scale"])
        self.emit(node, "add", srcs, q, mults=mults, shift=shift)

    def do_cat(self, node: Any) -> None:
        kw = _call_args(node)
        tensors = kw["tensors"]
        if not isinstance(tensors, (list, tuple)) or not tensors:
            raise QuantInputError(f"node {node.name}: cat needs a list of tensors")
        srcs = [self.operand(t) for t in tensors]
        rank = len(self.shapes[node.name]) + 1
        dim = int(kw["dim"]) % rank
        if dim == 0:
            raise QuantInputError(f"node {node.name}: cat along the batch dimension is not supported")
        q = self.storage(node)
        consts = [requant_constants([self.q[s]["scale"]], q["scale"]) for s in srcs]
        self.emit(node, "cat", srcs, q, dim=dim, mults=[m[0] for m, _ in consts], shifts=[s for _, s in consts])

    def do_avgpool(self, node: Any) -> None:
        from torch import nn

        src = self.operand(self._tensor_args(node)[0])
        in_shape = self.shape_of[src]
        out_shape = list(self.shapes[node.name])
        spatial = in_shape[1:]
        d = len(spatial)
        module = self.module(node) if node.op == "call_module" else None
        name = (node.target if isinstance(node.target, str) else node.target.__name__).strip("_")
        where = f"node {node.name}"
        squeeze = False
        if d not in (1, 2):
            raise QuantInputError(f"{where}: average pooling needs [C, 1 or 2 spatial dims], got {in_shape}")
        if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)) or name in ("avg_pool1d", "avg_pool2d"):
            p = (
                {
                    "kernel_size": module.kernel_size,
                    "stride": module.stride,
                    "padding": module.padding,
                    "ceil_mode": module.ceil_mode,
                    "divisor_override": getattr(module, "divisor_override", None),
                }
                if module is not None
                else _call_args(node)
            )
            if any(int_tuple(p["padding"], d)) or p["ceil_mode"] or p.get("divisor_override"):
                raise QuantInputError(
                    f"{where}: average pooling with padding, ceil_mode or divisor_override is not supported"
                )
            kernel = list(int_tuple(p["kernel_size"], d))
            stride = list(int_tuple(p["stride"] if p["stride"] not in (None, [], ()) else p["kernel_size"], d))
        elif name == "mean":
            kw = _call_args(node)
            dims = kw["dim"]
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            rank = len(in_shape) + 1
            if rank == 3 and [x % rank for x in dims] == [1] and not kw["keepdim"]:
                # mean over the tokens of [N, T, D]: move them last, then a 1-D pool over all of them
                moved = f"{node.name}_tokens_last"
                self.nodes.append(
                    {
                        "name": moved,
                        "op": "permute",
                        "inputs": [src],
                        "q": self.q[src],
                        "shape": [in_shape[1], in_shape[0]],
                        "dims": [0, 2, 1],
                    }
                )
                self.q[moved], self.shape_of[moved] = self.q[src], [in_shape[1], in_shape[0]]
                src, d, spatial = moved, 1, [in_shape[0]]
                dims = [2]
            if sorted(x % rank for x in dims) != list(range(2, rank)):
                raise QuantInputError(
                    f"{where}: mean must average exactly the spatial dims {list(range(2, rank))} "
                    f"(or the tokens of [N, T, D])"
                )
            kernel, stride, squeeze = list(spatial), list(spatial), not kw["keepdim"]
        else:  # adaptive average pooling: windows must tile the input exactly
            out_sp = out_shape[1:]
            if any(s % o for s, o in zip(spatial, out_sp)):
                raise QuantInputError(
                    f"{where}: adaptive average pooling from {spatial} to {out_sp} has unequal windows (not supported)"
                )
            kernel = stride = [s // o for s, o in zip(spatial, out_sp)]
        count = math.prod(kernel)
        q = self.storage(node)
        mults, shift = requant_constants([self.q[src]["scale"]], q["scale"], count)
        self.emit(
            node, "avgpool", [src], q, dims=d, kernel=kernel, stride=stride, squeeze=squeeze, mult=mults[0], shift=shift
        )

    def do_output(self, node: Any) -> None:
        arg = node.args[0]
        if not hasattr(arg, "op"):
            raise QuantInputError("the model must return one tensor for the integer export")
        src = self.operand(arg)
        self.emit(node, "output", [src], self.q[src])

    def do_other(self, node: Any) -> None:
        raise AssertionError("unreachable")  # refused by _unsupported before the walk


def _describe(gm: Any, node: Any) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(str(node.target))).__name__})"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{node.name} ({node.op} {target})"


def _unsupported(gm: Any) -> list[str]:
    from quant.graph import node_kind

    return [_describe(gm, n) for n in gm.graph.nodes if node_kind(gm, n) == "other"]


def check_graph_exportable(model: Any) -> None:
    """Refuse, naming every node, a model whose graph the integer export cannot represent."""
    from quant.graph import trace_graph

    gm = trace_graph(model)
    bad = _unsupported(gm)
    if bad:
        raise QuantInputError(
            f"the integer export cannot represent {len(bad)} node(s): {', '.join(bad)} (it runs "
            f"conv / linear layers, add, cat, average / max pooling, ReLU / ReLU6, flatten, view)"
        )


def build_graph_model(model: Any, example_x: Any, *, name: str | None = None) -> IntegerModel:
    """The graph :class:`IntegerModel` of a prepared (``quant.fakequant.prepare``), weight-quantized and calibrated
    model; ``example_x`` (a float batch) fixes the per-sample shapes."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    from quant.graph import trace_graph

    gm = trace_graph(model)
    bad = _unsupported(gm)
    if bad:
        check_graph_exportable(gm)
    for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
        arr = p.detach().cpu().double().numpy()
        if not np.isfinite(arr).all():
            raise QuantInputError(f"{pname}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf)")
    examples = [torch.as_tensor(e) for e in (example_x if isinstance(example_x, (tuple, list)) else [example_x])]
    if any(not torch.is_floating_point(e) or not torch.isfinite(e).all() for e in examples):
        raise QuantInputError("example_x must be a finite float tensor (or a tuple of them, one per input)")
    ex = examples[0]
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*examples)
    except Exception as exc:  # a shape mismatch between data and model surfaces here (ShapeProp wraps it)
        cause = exc.__cause__ or exc
        raise QuantInputError(
            f"the model cannot run on example_x of shape {[list(e.shape) for e in examples]}: "
            f"{(str(cause).strip().splitlines() or [type(cause).__name__])[0]}"
        ) from None
    shapes: dict[str, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if hasattr(meta, "shape"):
            if len(meta.shape) == 0 or meta.shape[0] != ex.shape[0]:
                if node.op != "output":
                    continue
            shapes[node.name] = tuple(int(s) for s in meta.shape[1:])
    builder = _Builder(gm, shapes)
    builder.run()
    model_int = IntegerModel(builder.layers, [], name if name is not None else type(model).__name__, builder.nodes)
    validate_graph_model(model_int, "export")
    return model_int
