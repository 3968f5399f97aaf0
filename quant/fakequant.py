"""Preparing a model for fake quantization: BN folding, wrapping layers in :class:`~quant.qlayer.QuantLayer`,
tensor quantizers on a graph's intermediate tensors (:mod:`quant.graph`), and activation calibration."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from quant.errors import QuantInputError, UnfoldedBatchNormWarning
from quant.graph import DEFAULT_TENSOR_BITS, insert_tensor_quants
from quant.qlayer import SUPPORTED, ActQuant, QuantLayer, QuantMatmul, TensorQuant
from quant.quantizer import QuantSpec, check_finite

__all__ = [
    "QuantLayer",
    "ActQuant",
    "TensorQuant",
    "QuantMatmul",
    "prepare",
    "quant_layers",
    "quant_matmuls",
    "gemm_nodes",
    "tensor_quants",
    "model_size_bits",
    "capture_inputs",
    "feed_inputs",
    "calibrate_activations",
    "fold_batchnorm",
    "SUPPORTED",
    "act_range",
    "activations_off",
]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASSIVE = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Sequential,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.LayerNorm,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softmax,
    nn.Embedding,
)  # embeddings are table lookups without MACs: kept in float


def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold eval-mode ``bn`` into the conv / linear ``layer`` that feeds it (in place; the layer gains a bias)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    factor = (gamma / std).detach()
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.data = layer.weight.data * factor.reshape(shape)
    bias = layer.bias.data if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.bias = nn.Parameter(((bias - bn.running_mean) * factor + beta.detach()).clone())


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(layer, SUPPORTED)
        and isinstance(bn, _BATCHNORMS)
        and bn.running_var is not None
        and bn.num_features == (layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)
    )


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


def _graph_pairs(model: nn.Module) -> list[tuple[str, str]] | None:
    """(layer path, BN path) of every BN whose input is the output of a conv / linear that nothing else reads and
    that runs once, from the ``torch.fx`` graph; None when the model cannot be traced."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow, unsupported Python: fall back to the Sequential rule
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), _BATCHNORMS):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and len(src.users) == 1
            and calls[src.target] == 1
            and calls[node.target] == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer path, BN path) of every BN that directly follows a layer inside an ``nn.Sequential``."""
    pairs = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)  # noqa: SLF001 - a Sequential's child names, repeated children included
            prefix = f"{path}." if path else ""
            pairs += [(prefix + a, prefix + b) for a, b in zip(names, names[1:])]
    return pairs


def fold_batchnorm(model: nn.Module) -> list[str]:
    """Fold every eval-mode BatchNorm whose input is a Conv/Linear's output into that layer (in place): the layer
    gains a bias, the BN becomes Identity, the eval-mode function is unchanged.

    The pairs come from the model's ``torch.fx`` graph, so a conv -> BN anywhere in a module's ``forward`` (a
    ResNet block's ``self.bn1(self.conv1(x))``) folds, not only inside an ``nn.Sequential``; a layer whose output
    something else reads too, or a module called twice, is left alone. Models that ``torch.fx`` cannot trace fall
    back to adjacent pairs inside ``nn.Sequential`` containers. Returns the paths of the BatchNorms left unfolded."""
    pairs = _graph_pairs(model)
    for layer_path, bn_path in pairs if pairs is not None else _sequential_pairs(model):
        layer, bn = model.get_submodule(layer_path), model.get_submodule(bn_path)
        if _foldable(layer, bn):
            _fold_into(layer, bn)
            _set_module(model, bn_path, nn.Identity())
    return [path for path, m in model.named_modules() if isinstance(m, _BATCHNORMS)]


def prepare(model: nn.Module, fold_bn: bool = True, tensor_bits: int = DEFAULT_TENSOR_BITS) -> nn.Module:
    """A deep copy in eval mode with BN folded, every Conv1d/Conv2d/Linear wrapped in QuantLayer and, in a DAG, a
    ``tensor_bits`` TensorQuant on every tensor the integer datapath stores on its own (:mod:`quant.graph`; the
    result is then a ``torch.fx.GraphModule`` with the same submodule paths).

    Layers with parameters that are neither supported nor known to be MAC-free are refused."""
    model = copy.deepcopy(model).eval()
    for name, p in model.named_parameters():
        check_finite(f"parameter {name}", p.detach().cpu().numpy())
    if fold_bn:
        left = fold_batchnorm(model)
        if left:
            warnings.warn(
                f"BatchNorm not folded (its input is not the output of a conv/linear that only it reads): "
                f"{', '.join(left)}; it runs in float in fake-quant and the integer export refuses it",
                UnfoldedBatchNormWarning,
                stacklevel=2,
            )
    unsupported = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if not isinstance(m, SUPPORTED + _PASSIVE + (QuantLayer,))
            and any(True for _ in m.parameters(recurse=False))
        }
    )
    if unsupported:
        raise QuantInputError(
            f"unsupported layer types with parameters: {', '.join(unsupported)} "
            f"(supported: Conv1d, Conv2d, Linear, BatchNorm)"
        )

    def wrap(parent: nn.Module) -> None:
        for child_name, child in parent.named_children():
            if isinstance(child, SUPPORTED):
                setattr(parent, child_name, QuantLayer(child))
            elif not isinstance(child, QuantLayer):
                wrap(child)

    wrap(model)
    return insert_tensor_quants(model, tensor_bits)


def _in_execution_order(
    model: nn.Module, modules: list[tuple[str, nn.Module]], example: torch.Tensor | None
) -> list[tuple[str, nn.Module]]:
    if example is None:
        return modules
    order: list[str] = []
    names = {id(m): n for n, m in modules}
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: order.append(names[id(mod)])) for _, m in modules]
    try:
        with torch.no_grad():
            model(*example) if isinstance(example, (tuple, list)) else model(example)
    finally:
        for h in hooks:
            h.remove()
    seen = list(dict.fromkeys(order))
    lookup = dict(modules)
    return [(n, lookup[n]) for n in seen]


def quant_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, QuantLayer]]:
    """QuantLayers in execution order (from a forward pass when ``example`` is given)."""
    return _in_execution_order(model, [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)], example)


def quant_matmuls(model: nn.Module) -> list[tuple[str, QuantMatmul]]:
    """The model's QuantMatmuls (products of two activations, :func:`quant.graph.insert_matmuls`), by path."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantMatmul)]


def gemm_nodes(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, nn.Module]]:
    """Every layer ``sim`` costs -- QuantLayers and QuantMatmuls -- in execution order (from a forward pass when
    ``example`` is given): the layer order and names of ``sim.workload.from_torch`` and of the sensitivity
    table."""
    return _in_execution_order(
        model, [(n, m) for n, m in model.named_modules() if isinstance(m, (QuantLayer, QuantMatmul))], example
    )


def feed_inputs(
    model: nn.Module,
    layers: Iterable[nn.Module],
    data: torch.Tensor,
    on_input: Callable[[nn.Module, torch.Tensor], None],
    batch: int = 256,
) -> None:
    """Run ``model`` on ``data`` in batches, calling ``on_input(layer, x)`` with each of ``layers``' inputs
    (before the layer's own activation quantizer).  A model of several inputs takes a tuple of tensors."""
    parts = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not parts or any(p is None or len(p) == 0 for p in parts) or len({len(p) for p in parts}) != 1:
        raise QuantInputError(
            "empty calibration set"
            if not parts or any(p is None or len(p) == 0 for p in parts)
            else "the model's inputs must have the same number of samples"
        )
    hooks = [m.register_forward_pre_hook(lambda mod, inp: on_input(mod, inp[0].detach())) for m in layers]
    try:
        with torch.no_grad():
            for i in range(0, len(parts[0]), batch):
                model(*(p[i : i + batch] for p in parts))
    finally:
        for h in hooks:
            h.remove()


def capture_inputs(
    model: nn.Module, layers: Iterable[nn.Module], data: torch.Tensor, batch: int = 256
) -> dict[int, torch.Tensor]:
    """Inputs (before each layer's own activation quantizer) of ``layers`` on ``data``: id(layer) -> tensor."""
    layers = list(layers)
    store: dict[int, list[torch.Tensor]] = {id(m): [] for m in layers}
    feed_inputs(model, layers, data, lambda mod, x: store[id(mod)].append(x), batch)
    return {k: torch.cat(v) for k, v in store.items()}


def act_range(x: torch.Tensor, method: str = "max", percentile: float = 99.99, bits: int = 8) -> tuple[float, float]:
    """Clipping range (lo, hi) of activations by ``max``, ``percentile`` or ``mse`` (grid search)."""
    v = x.detach().double().flatten().cpu().numpy()
    check_finite("activations", v)
    lo, hi = float(min(v.min(), 0.0)), float(max(v.max(), 0.0))
    if method == "max":
        return lo, hi
    if method == "percentile":
        return float(min(np.percentile(v, 100 - percentile), 0.0)), float(max(np.percentile(v, percentile), 0.0))
    if method == "mse":
        best, best_err = (lo, hi), np.inf
        sample = v if v.size <= 200_000 else np.random.default_rng(0).choice(v, 200_000, replace=False)
        for frac in np.linspace(0.3, 1.0, 36):
            a, b = lo * frac, hi * frac
            spec, scale, zp = _act_params(a, b, bits)
            q = np.clip(np.rint(sample / scale) + zp, spec.qmin, spec.qmax)
            err = float(np.mean(((q - zp) * scale - sample) ** 2))
            if err < best_err:
                best, best_err = (a, b), err
        return best
    raise QuantInputError(f"unknown calibration method {method!r} (allowed: max, percentile, mse)")


def _act_params(lo: float, hi: float, bits: int) -> tuple[QuantSpec, float, int]:
    if lo >= 0:  # non-negative (after ReLU / inputs in [0, 1]): unsigned, zero point 0
        spec = QuantSpec(bits, symmetric=True, signed=False)
        return spec, (hi / spec.qmax) if hi > 0 else 1.0, 0
    spec = QuantSpec(bits, symmetric=False, signed=False)
    scale = (hi - lo) / spec.qmax if hi > lo else 1.0
    return spec, scale, int(np.clip(np.rint(-lo / scale), 0, spec.qmax))


def tensor_quants(model: nn.Module) -> list[tuple[str, TensorQuant]]:
    """The model's TensorQuants (``quant.graph``), by module path."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TensorQuant)]


def activations_off(model: nn.Module) -> None:
    """Switch every activation quantizer off (QuantLayer inputs, QuantMatmul operands and TensorQuants), in place."""
    for _, m in quant_layers(model) + tensor_quants(model):
        m.act = None
    for _, m in quant_matmuls(model):
        m.act = m.act_b = None


def calibrate_activations(
    model: nn.Module,
    data: torch.Tensor,
    a_bits: int | dict[str, int],
    method: str = "max",
    percentile: float = 99.99,
    b_bits: int | dict[str, int] | None = None,
) -> None:
    """Set each QuantLayer's input quantizer (``a_bits``), each QuantMatmul's operands (``a`` at ``a_bits``; ``b``
    at ``b_bits``, default ``a_bits`` as sim costs a product, symmetric signed like weights since the array holds
    it) and each TensorQuant
    (its own ``bits``) from the activations they see on ``data`` (in place).

    Activation quantizers are switched off while capturing, but installed weight codes stay on:
    call it before weight quantization to calibrate on float activations, after it to calibrate
    on the weight-quantized network's activations."""
    layers = quant_layers(model)
    tensors = tensor_quants(model)
    products = quant_matmuls(model)
    activations_off(model)
    seen_b: dict[int, list[torch.Tensor]] = {id(m): [] for _, m in products}
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen_b[id(mod)].append(inp[1].detach())) for _, m in products]
    try:
        inputs = capture_inputs(model, [m for _, m in layers + tensors + products], data)
    finally:
        for h in hooks:
            h.remove()

    def quantizer(x: torch.Tensor, bits: int) -> ActQuant:
        lo, hi = act_range(x, method, percentile, bits)
        spec, scale, zp = _act_params(lo, hi, bits)
        return ActQuant(spec, float(scale), int(zp))

    def held_quantizer(x: torch.Tensor, bits: int) -> ActQuant:
        """A product's ``b`` operand is held in the array like weights: symmetric signed, zero point 0."""
        lo, hi = act_range(x, method, percentile, bits)
        spec = QuantSpec(bits)
        top = max(-lo, hi)
        return ActQuant(spec, float(top / spec.qmax) if top > 0 else 1.0, 0)

    def bits_of(table: int | dict[str, int], name: str) -> int:
        if not isinstance(table, dict):
            return table
        if name not in table:
            raise QuantInputError(f"activation bits: no entry for layer {name!r}")
        return table[name]

    for name, m in layers:
        m.act = quantizer(inputs[id(m)], bits_of(a_bits, name))
    for name, m in products:
        m.act = quantizer(inputs[id(m)], bits_of(a_bits, name))
        b_values = torch.cat([v.reshape(-1) for v in seen_b[id(m)]])
        m.act_b = held_quantizer(b_values, bits_of(a_bits if b_bits is None else b_bits, name))
    for _, m in tensors:
        m.act = quantizer(inputs[id(m)], m.bits)


def model_size_bits(model: nn.Module) -> tuple[int, int]:
    """(float32 size of all parameters, quantized size: codes at their width + 32-bit block scales + 32-bit
    biases + any unquantized parameters at 32 bits), in bits."""
    float_bits = 32 * sum(p.numel() for p in model.parameters())
    quant_bits = float_bits
    for _, layer in quant_layers(model):
        if layer.w_codes is not None:
            quant_bits -= 32 * layer.layer.weight.numel()
            quant_bits += layer.w_codes.size * layer.w_spec.bits + 32 * layer.w_scales.size
    return int(float_bits), int(quant_bits)
