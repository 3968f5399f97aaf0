"""Trace the MAC-carrying layers of a PyTorch model into a :class:`Workload`.

:func:`from_torch` runs the model once on an example input (``eval`` mode, no autograd) and
records, in execution order:

* every call of an ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` (subclasses included), with the
  real input and output shapes read by forward hooks. A 1-D conv has ``in_h = k_h = 1``; a
  ``Linear`` on ``[B, T, F]`` is a ``gemm`` with ``tokens=T, batch=B`` (``[B, F]``: one token);
* activation x activation products done with torch functions outside those modules --
  ``torch.matmul`` / ``@`` / ``bmm`` / ``mm`` and ``F.scaled_dot_product_attention`` (as two
  products, scores and context) -- named ``<module path>.matmul`` etc.

Dataflow: every tensor is tagged with the layers it was computed from (through the ops between layers), so the
workload's ``consumers`` name, per layer, the first layer that reads its output -- a ResNet's downsample branch
or block output is read by a layer that is not next in execution order.

Modules without MACs worth modelling are skipped: norms, activations, pooling, dropout,
padding, reshaping, upsampling, ``Identity``, and ``Embedding``/``EmbeddingBag`` (table lookups,
no multiplies). Anything that would lose MACs raises :class:`InputError` listing all offenders:
a called module that owns parameters but is neither supported nor ignorable (``nn.Conv3d``,
``nn.ConvTranspose2d``, ``nn.LSTM``, ``nn.MultiheadAttention``, custom layers, ...), and
functional ops with MACs outside the supported modules (``F.linear``, ``F.conv2d``,
``einsum``, ``addmm``, ...). Pass ``ignore=`` (module types or module names) to accept
parameter-holding modules you know to be MAC-free, such as a custom norm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from lowbit_core.errors import InputError
from sim.workload.layer import Layer, Workload, gemm
from sim.workload.onnx_import import product_layer

__all__ = ["from_torch", "IGNORABLE_MODULES"]

IGNORABLE_MODULES = tuple(
    """
    BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm LazyBatchNorm1d LazyBatchNorm2d LazyBatchNorm3d
    LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d LocalResponseNorm RMSNorm
    ReLU ReLU6 LeakyReLU PReLU RReLU ELU SELU CELU GELU SiLU Mish Sigmoid Tanh Hardtanh Hardswish
    Hardsigmoid Hardshrink Softshrink Tanhshrink Softplus Softsign LogSigmoid Threshold GLU
    Softmax Softmax2d LogSoftmax Softmin
    MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d
    AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d LPPool1d LPPool2d
    FractionalMaxPool2d FractionalMaxPool3d MaxUnpool1d MaxUnpool2d MaxUnpool3d
    Dropout Dropout1d Dropout2d Dropout3d AlphaDropout FeatureAlphaDropout
    Identity Flatten Unflatten Upsample UpsamplingNearest2d UpsamplingBilinear2d PixelShuffle
    PixelUnshuffle ChannelShuffle
    ZeroPad1d ZeroPad2d ZeroPad3d ConstantPad1d ConstantPad2d ConstantPad3d ReflectionPad1d
    ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d ReplicationPad3d
    CircularPad1d CircularPad2d CircularPad3d
    Embedding EmbeddingBag
""".split()
)


def _shape(t: Any) -> list[int]:
    return [int(d) for d in t.shape]


def from_torch(model: Any, example_input: Any, name: str | None = None, ignore: Iterable[type | str] = ()) -> Workload:  # noqa: C901 - one branch per traced op
    """Run ``model`` once on ``example_input`` and return its conv / gemm / matmul layers.

    ``example_input`` is a tensor, a tuple/list of positional inputs, or a mapping of keyword
    inputs (e.g. a tokenizer's output). The model's training mode is restored afterwards.
    The workload is named ``name`` or the model's class name.
    """
    import torch  # lazy: sim.workload must import without torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812
    from torch.overrides import TorchFunctionMode

    if not isinstance(model, nn.Module):
        raise InputError(f"from_torch: model must be a torch.nn.Module, got {type(model).__name__}")
    ignore = tuple(ignore)
    ignore_types = tuple(t for t in ignore if isinstance(t, type))
    ignore_names = {t for t in ignore if isinstance(t, str)}
    supported = (nn.Conv1d, nn.Conv2d, nn.Linear)
    ignorable = tuple(c for c in (getattr(nn, n, None) for n in IGNORABLE_MODULES) if isinstance(c, type))
    wl_name = name or type(model).__name__

    layers: list[Layer] = []
    consumers: list[int] = []  # per layer: the first layer that reads its output, -1 so far
    origin: dict[int, frozenset[int]] = {}  # id(tensor) -> the layers it was computed from
    alive: list[Any] = []  # keeps the tagged tensors alive, so that their ids stay unique during the run
    pending: list[frozenset[int]] = []  # sources of the inputs of the supported modules now running
    used: set[str] = set()
    problems: dict[str, None] = {}  # ordered set of messages
    context: list[str] = []  # names of the modules currently running
    depth = [0]  # > 0 while inside a supported module

    def unique(base: str) -> str:
        label, k = base, 1
        while label in used:
            k += 1
            label = f"{base}#{k}"
        used.add(label)
        return label

    def tensors(obj: Any) -> Iterable[Any]:
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                yield from tensors(item)
        elif isinstance(obj, Mapping):
            for item in obj.values():
                yield from tensors(item)

    def sources(*objs: Any) -> frozenset[int]:
        return frozenset().union(*(origin.get(id(t), frozenset()) for obj in objs for t in tensors(obj)))

    def tag(obj: Any, srcs: frozenset[int]) -> None:
        for t in tensors(obj):
            origin[id(t)] = srcs
            alive.append(t)

    def consumed(srcs: frozenset[int], index: int) -> None:
        for src in srcs:
            if consumers[src] == -1 and src != index:
                consumers[src] = index

    def added(layer: Layer) -> int:
        layers.append(layer)
        consumers.append(-1)
        return len(layers) - 1

    def record(mname: str, module: Any, x: Any, y: Any) -> None:
        xs, ys = _shape(x), _shape(y)
        label = unique(mname or type(module).__name__)
        if isinstance(module, nn.Linear):
            if len(xs) <= 1:
                tokens, batch = 1, 1
            elif len(xs) == 2:
                tokens, batch = 1, xs[0]
            else:
                tokens, batch = xs[-2], math.prod(xs[:-2])
            added(gemm(label, tokens, module.in_features, module.out_features, batch=batch))
            return
        conv1d = isinstance(module, nn.Conv1d)
        spatial = 1 if conv1d else 2
        if len(xs) == spatial + 1:  # unbatched input
            xs, ys = [1, *xs], [1, *ys]
        strides = tuple(module.stride)
        if len(set(strides)) != 1:
            problems[f"{mname} ({type(module).__name__} with unequal strides {strides})"] = None
            return
        if conv1d:
            in_hw, k_hw, out_hw = (1, xs[2]), (1, module.kernel_size[0]), (1, ys[2])
        else:
            in_hw, k_hw, out_hw = (xs[2], xs[3]), tuple(module.kernel_size), (ys[2], ys[3])
        g = int(module.groups)
        pad = 0
        if not conv1d:  # Layer.pad is the leading padding of both axes; a 1-D conv's height has none
            if module.padding == "same":
                begins = {d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True)}
            elif module.padding == "valid":
                begins = {0}
            else:
                begins = set(module.padding)
            if len(begins) != 1:
                problems[f"{mname} ({type(module).__name__} with different paddings {module.padding})"] = None
                return
            pad = int(begins.pop())
        added(
            Layer(
                label,
                "dwconv" if g > 1 else "conv",
                in_hw[0],
                in_hw[1],
                xs[1],
                ys[1],
                int(k_hw[0]),
                int(k_hw[1]),
                int(strides[0]),
                g,
                out_hw[0],
                out_hw[1],
                xs[0],
                pad,
            )
        )

    handles = []
    for mname, module in model.named_modules():

        def push(_m: Any, _args: Any, mname: str = mname) -> None:
            context.append(mname)

        def pop(_m: Any, _args: Any, _out: Any) -> None:
            context.pop()

        if isinstance(module, supported):

            def enter(m: Any, args: Any, mname: str = mname) -> None:
                context.append(mname)
                pending.append(sources(args) if depth[0] == 0 else frozenset())
                depth[0] += 1

            def leave(m: Any, args: Any, out: Any, mname: str = mname) -> None:
                depth[0] -= 1
                context.pop()
                srcs = pending.pop()
                if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                    problems[f"{mname} ({type(m).__name__} called without a plain tensor in/output)"] = None
                    return
                before = len(layers)
                record(mname, m, args[0], out)
                if depth[0] == 0 and len(layers) > before:
                    consumed(srcs, before)
                    tag(out, frozenset({before}))

            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
            continue
        handles += [module.register_forward_pre_hook(push), module.register_forward_hook(pop)]
        if isinstance(module, ignorable + ignore_types) or mname in ignore_names:
            continue
        if any(True for _ in module.parameters(recurse=False)):

            def flag(m: Any, args: Any, mname: str = mname) -> None:
                problems[f"{mname or '<model>'} ({type(m).__name__})"] = None

            handles.append(module.register_forward_pre_hook(flag))

    products = {
        torch.matmul,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
        torch.bmm,
        torch.Tensor.bmm,
        torch.mm,
        torch.Tensor.mm,
    }
    reversed_products = {torch.Tensor.__rmatmul__}
    uncaptured = {
        F.linear,
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        F.bilinear,
        torch.einsum,
        torch.addmm,
        torch.baddbmm,
        torch.addbmm,
        torch.addmv,
        torch.mv,
        torch.Tensor.mv,
        torch.tensordot,
        torch.Tensor.addmm,
        torch.Tensor.baddbmm,
        torch.chain_matmul,
        torch.linalg.multi_dot,
    }

    def where() -> str:
        return context[-1] if context else ""

    def prefixed(op: str) -> str:
        ctx = where()
        return f"{ctx}.{op}" if ctx else op

    class _Products(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if depth[0] > 0:
                return func(*args, **kwargs)
            srcs = sources(args, kwargs)
            out_srcs = srcs  # an op between layers passes its inputs' sources on
            if func in products or func in reversed_products:
                a, b = (args[1], args[0]) if func in reversed_products else (args[0], args[1])
                if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                    label = unique(prefixed("matmul"))
                    index = added(
                        product_layer(
                            label,
                            _shape(a),
                            _shape(b),
                            a_static=isinstance(a, nn.Parameter),
                            b_static=isinstance(b, nn.Parameter),
                            where=f"from_torch: {label}",
                        )
                    )
                    consumed(srcs, index)
                    out_srcs = frozenset({index})
            elif func is F.scaled_dot_product_attention:
                q = args[0] if len(args) > 0 else kwargs["query"]
                k = args[1] if len(args) > 1 else kwargs["key"]
                v = args[2] if len(args) > 2 else kwargs["value"]
                qs, ks, vs = _shape(q), _shape(k), _shape(v)
                lead, t, d, s = qs[:-2], qs[-2], qs[-1], ks[-2]
                base = prefixed("sdpa")
                reads = {"scores": sources(q, k), "context": sources(v)}
                for op, a_shape, b_shape in (
                    ("scores", [*lead, t, d], [*lead, d, s]),
                    ("context", [*lead, t, s], [*lead, s, vs[-1]]),
                ):
                    label = unique(f"{base}.{op}")
                    index = added(
                        product_layer(
                            label, a_shape, b_shape, a_static=False, b_static=False, where=f"from_torch: {label}"
                        )
                    )
                    consumed(reads[op] | (frozenset({index - 1}) if op == "context" else frozenset()), index)
                    out_srcs = frozenset({index})
            elif func in uncaptured:
                op = getattr(func, "__name__", str(func))
                problems[f"{where() or '<model>'} (functional {op} outside Conv1d/Conv2d/Linear)"] = None
            result = func(*args, **kwargs)
            if out_srcs:
                tag(result, out_srcs)
            return result

    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _Products():
            if isinstance(example_input, Mapping):
                model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    except InputError:
        raise
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        seen = f"; unsupported layers before the failure: {'; '.join(problems)}" if problems else ""
        raise InputError(f"from_torch({wl_name}): forward failed on example_input ({msg}){seen}") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    if problems:
        raise InputError(f"from_torch({wl_name}): unsupported layers (MACs would be lost): {'; '.join(problems)}")
    if not layers:
        raise InputError(f"from_torch({wl_name}): no Conv1d, Conv2d, Linear or matmul calls, so no layers")
    return Workload(wl_name, tuple(layers), tuple(consumers))
