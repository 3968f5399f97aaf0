"""Integer export: a prepared, quantized, calibrated model -> :class:`quant.integer.IntegerModel` -> ``model.npz`` +
``meta.json``.  An ``nn.Sequential`` exports as a chain (layers with code-domain ops between them); any other
model exports as a graph (:mod:`quant.export_graph`).  The format is in ``docs/formats.md`` ("Integer export")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from quant.errors import QuantInputError
from quant.export_graph import build_graph_model, check_graph_exportable
from quant.export_layer import export_layer, int_tuple
from quant.integer import IntegerLayer, IntegerModel

__all__ = ["export_model", "build_integer_model", "check_exportable"]


def _op_record(module: Any) -> dict[str, Any] | None:
    """Code-domain record of a MAC-free module, None for identity-like modules; raises for anything else."""
    from torch import nn

    if isinstance(module, (nn.Identity, nn.Dropout)):
        return None
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}
    if isinstance(module, nn.Flatten):
        return {"op": "flatten", "start_dim": int(module.start_dim), "end_dim": int(module.end_dim)}
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        d = 1 if isinstance(module, nn.MaxPool1d) else 2
        if module.ceil_mode or module.return_indices:
            raise QuantInputError(f"{type(module).__name__} with ceil_mode/return_indices is not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return {
            "op": "maxpool",
            "dims": d,
            "kernel": list(int_tuple(module.kernel_size, d)),
            "stride": list(int_tuple(stride, d)),
            "padding": list(int_tuple(module.padding, d)),
            "dilation": list(int_tuple(module.dilation, d)),
        }
    raise AssertionError("unreachable")  # filtered by _walk


def _walk(model: Any) -> list[tuple[str, Any]]:
    """Leaf modules of a (nested) nn.Sequential in order; refuses anything the integer datapath cannot run."""
    from torch import nn

    from quant.fakequant import QuantLayer

    allowed = (QuantLayer, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)
    if not isinstance(model, nn.Sequential):
        raise QuantInputError(
            f"export needs an nn.Sequential of QuantLayer / ReLU / MaxPool / Flatten / Identity, "
            f"got {type(model).__name__} (residual or custom graphs are not supported)"
        )
    leaves: list[tuple[str, Any]] = []
    bad: list[str] = []

    def rec(seq: Any, prefix: str) -> None:
        for name, child in seq.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, nn.Sequential):
                rec(child, full + ".")
            elif isinstance(child, allowed):
                leaves.append((full, child))
            else:
                bad.append(f"{full} ({type(child).__name__})")

    rec(model, "")
    if bad:
        raise QuantInputError(
            f"unsupported modules for integer export: {', '.join(bad)} "
            f"(allowed between layers: ReLU, MaxPool1d/2d, Flatten, Identity, Dropout)"
        )
    return leaves


def check_exportable(model: Any) -> None:
    """Refuse, naming the modules or graph nodes, a prepared model (``quant.fakequant.prepare``) that the integer
    export cannot represent; before any quantization work, since the export walks the same structure."""
    from torch import nn

    if isinstance(model, nn.Sequential):
        _walk(model)
    else:
        check_graph_exportable(model)


def export_model(
    model: Any,
    example_x: Any,
    out_dir: str | os.PathLike[str],
    *,
    perms: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Export a prepared, weight-quantized, activation-calibrated model as ``out_dir/model.npz`` +
    ``out_dir/meta.json`` (both written atomically) and return ``out_dir``.

    ``example_x`` (a float batch) fixes the execution order and the per-layer input shapes.  ``perms`` optionally
    maps a layer name to the permutation of its *output* channels, in :mod:`quant.reorder`'s convention
    (``perm[j]`` = original index of the channel now at position ``j``; what ``reorder_model`` returns); without
    it a QuantLayer's ``out_perm`` attribute (set by PTQ-SL's reordering) is used.  The next layer's input
    permutation follows (expanded per feature after a Flatten).  Permutations are informational: the model is
    already reordered, the codes are stored as the model holds them and the datapath does not use them.
    Raises :class:`QuantInputError` for unsupported modules, missing codes or input quantizers, NaN/inf anywhere,
    or constants that would overflow the datapath."""
    model_int = build_integer_model(model, example_x, perms=perms, name=name)
    return model_int.save(out_dir)


def build_integer_model(
    model: Any, example_x: Any, *, perms: Mapping[str, Any] | None = None, name: str | None = None
) -> IntegerModel:
    """The :class:`IntegerModel` of a prepared model, without writing files (see :func:`export_model`): a chain
    for an ``nn.Sequential``, a graph (:mod:`quant.export_graph`) for anything else."""
    from torch import nn

    if not isinstance(model, nn.Sequential):
        if perms:
            raise QuantInputError("perms (channel reordering) are supported for nn.Sequential chains only")
        return build_graph_model(model, example_x, name=name)
    return _build_chain_model(model, example_x, perms=perms, name=name)


def _build_chain_model(
    model: Any, example_x: Any, *, perms: Mapping[str, Any] | None, name: str | None
) -> IntegerModel:
    """The :class:`IntegerModel` chain of a prepared ``nn.Sequential`` (see :func:`build_integer_model`).

    Checks, in this order, the structure, finite parameters and buffers, codes and input quantizers, the
    permutations, ``example_x`` and the forward order; then records the ops between layers and exports the layers
    one by one."""
    from quant.fakequant import QuantLayer

    leaves = _walk(model)
    qnames = [n for n, m in leaves if isinstance(m, QuantLayer)]
    if not qnames:
        raise QuantInputError("the model has no QuantLayer to export (run quant.fakequant.prepare first)")
    _check_finite_state(model)
    _check_quantized(leaves)
    modules = dict(leaves)
    out_perms = _output_perms(modules, qnames, perms)
    shapes = _input_shapes(model, modules, qnames, example_x)
    pre_ops, ops_after = _ops_between(leaves, qnames)
    layers = _export_chain_layers(modules, qnames, out_perms, ops_after, shapes)
    model_name = name if name is not None else type(model).__name__
    return IntegerModel(layers, pre_ops, model_name)


def _check_finite_state(model: Any) -> None:
    """Refuse NaN / inf in any parameter or buffer, naming it and counting them: no integer constant can be
    derived from a non-finite weight or bias."""
    for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
        arr = p.detach().cpu().double().numpy()
        if not np.isfinite(arr).all():
            raise QuantInputError(f"{pname}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf)")


def _check_quantized(leaves: list[tuple[str, Any]]) -> None:
    """Refuse, naming them all, QuantLayers without weight codes or without an input quantizer: an integer layer
    needs both (its input quantizer also fixes the previous layer's output grid)."""
    from quant.fakequant import QuantLayer

    missing = [f"{n} (weight codes)" for n, m in leaves if isinstance(m, QuantLayer) and m.w_codes is None]
    missing += [f"{n} (input quantizer)" for n, m in leaves if isinstance(m, QuantLayer) and m.act is None]
    if missing:
        raise QuantInputError(
            f"cannot export: missing {', '.join(missing)}; run a weight quantizer and calibrate_activations first"
        )


def _output_perms(
    modules: Mapping[str, Any], qnames: list[str], perms: Mapping[str, Any] | None
) -> dict[str, np.ndarray]:
    """``{layer name: output permutation}`` for every QuantLayer: from ``perms``, else the layer's ``out_perm``,
    else the identity; refuses names that are not QuantLayers."""
    perms = dict(perms or {})
    unknown = sorted(set(perms) - set(qnames))
    if unknown:
        raise QuantInputError(f"perms names unknown layers: {', '.join(unknown)} (layers: {', '.join(qnames)})")
    out_perms: dict[str, np.ndarray] = {}
    for n in qnames:
        m = modules[n]
        out_perms[n] = _output_perm(n, m, perms.get(n, getattr(m, "out_perm", None)), last=n == qnames[-1])
    return out_perms


def _output_perm(n: str, m: Any, perm: Any, *, last: bool) -> np.ndarray:
    """Layer ``n``'s output permutation as int64 (the identity when ``perm`` is None); refuses anything but a
    permutation of its output channels, and any reordering of the ``last`` layer's outputs (the classes)."""
    if perm is None:
        return np.arange(m.out_features)
    arr = np.asarray(perm).reshape(-1)
    if not np.issubdtype(arr.dtype, np.integer) or sorted(arr.tolist()) != list(range(m.out_features)):
        raise QuantInputError(f"layer {n}: output permutation must be a permutation of 0..{m.out_features - 1}")
    if last and np.any(arr != np.arange(m.out_features)):
        raise QuantInputError(f"layer {n}: the last layer's outputs are the classes and cannot be permuted")
    return arr.astype(np.int64)


def _input_shapes(
    model: Any, modules: Mapping[str, Any], qnames: list[str], example_x: Any
) -> dict[str, tuple[int, ...]]:
    """``{layer name: input shape without the batch dim}`` from a forward pass on ``example_x``; refuses a
    non-float or non-finite ``example_x`` and a forward order that is not the Sequential order (the integer
    datapath runs the layers in that order)."""
    import torch

    from quant.fakequant import quant_layers

    ex = torch.as_tensor(example_x)
    if not torch.is_floating_point(ex) or not torch.isfinite(ex).all():
        raise QuantInputError("example_x must be a finite float tensor")
    shapes: dict[str, tuple[int, ...]] = {}

    def shape_hook(n: str) -> Any:
        def hook(_mod: Any, inp: tuple[Any, ...]) -> None:
            shapes.setdefault(n, tuple(inp[0].shape[1:]))

        return hook

    hooks = [modules[n].register_forward_pre_hook(shape_hook(n)) for n in qnames]
    try:
        order = [n for n, _ in quant_layers(model, ex)]
    finally:
        for h in hooks:
            h.remove()
    if order != qnames:
        raise QuantInputError(
            f"forward order {order} differs from the Sequential order {qnames}: "
            f"the integer datapath needs a plain chain"
        )
    return shapes


def _ops_between(
    leaves: list[tuple[str, Any]], qnames: list[str]
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The code-domain op records of the MAC-free modules: ``(before the first layer, {layer: after it})``."""
    from quant.fakequant import QuantLayer

    pre_ops: list[dict[str, Any]] = []
    ops_after: dict[str, list[dict[str, Any]]] = {n: [] for n in qnames}
    current: str | None = None
    for n, m in leaves:
        if isinstance(m, QuantLayer):
            current = n
            continue
        rec = _op_record(m)
        if rec is not None:
            (ops_after[current] if current is not None else pre_ops).append(rec)
    return pre_ops, ops_after


def _input_perm(n: str, m: Any, prev: np.ndarray | None) -> np.ndarray:
    """Layer ``n``'s input permutation, following the previous layer's output permutation ``prev`` (None for the
    first layer), expanded per feature after a Flatten; a grouped conv cannot follow a reordered layer (each of its
    groups reads a contiguous range of input channels)."""
    in_perm = np.arange(m.in_channels)
    if prev is None:
        return in_perm
    if m.groups > 1:
        if np.any(prev != np.arange(len(prev))):
            raise QuantInputError(
                f"layer {n}: a grouped conv (groups={m.groups}) cannot follow a layer whose "
                f"output channels were reordered"
            )
        return in_perm
    if m.in_channels % len(prev):
        raise QuantInputError(
            f"layer {n}: {m.in_channels} inputs are not a multiple of the previous layer's {len(prev)} channels"
        )
    expand = m.in_channels // len(prev)
    return (prev[:, None] * expand + np.arange(expand)).reshape(-1)


def _export_chain_layers(
    modules: Mapping[str, Any],
    qnames: list[str],
    out_perms: Mapping[str, np.ndarray],
    ops_after: Mapping[str, list[dict[str, Any]]],
    shapes: Mapping[str, tuple[int, ...]],
) -> list[IntegerLayer]:
    """Export each QuantLayer in chain order, with the next layer's input quantizer as its output grid (none
    for the last layer: its outputs are the logits) and its input / output permutations."""
    layers: list[IntegerLayer] = []
    for i, n in enumerate(qnames):
        m = modules[n]
        nxt = modules[qnames[i + 1]] if i + 1 < len(qnames) else None
        in_perm = _input_perm(n, m, out_perms[qnames[i - 1]] if i > 0 else None)
        layers.append(
            export_layer(
                n, m, nxt.act if nxt is not None else None, ops_after[n], shapes.get(n, ()), out_perms[n], in_perm
            )
        )
    return layers
