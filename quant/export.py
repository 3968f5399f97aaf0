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


def _build_chain_model(  # noqa: C901 - to split: per-layer record building
    model: Any, example_x: Any, *, perms: Mapping[str, Any] | None, name: str | None
) -> IntegerModel:
    import torch

    from quant.fakequant import QuantLayer, quant_layers

    leaves = _walk(model)
    qnames = [n for n, m in leaves if isinstance(m, QuantLayer)]
    if not qnames:
        raise QuantInputError("the model has no QuantLayer to export (run quant.fakequant.prepare first)")
    for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
        arr = p.detach().cpu().double().numpy()
        if not np.isfinite(arr).all():
            raise QuantInputError(f"{pname}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf)")
    missing = [f"{n} (weight codes)" for n, m in leaves if isinstance(m, QuantLayer) and m.w_codes is None]
    missing += [f"{n} (input quantizer)" for n, m in leaves if isinstance(m, QuantLayer) and m.act is None]
    if missing:
        raise QuantInputError(
            f"cannot export: missing {', '.join(missing)}; run a weight quantizer and calibrate_activations first"
        )
    modules = dict(leaves)
    perms = dict(perms or {})
    unknown = sorted(set(perms) - set(qnames))
    if unknown:
        raise QuantInputError(f"perms names unknown layers: {', '.join(unknown)} (layers: {', '.join(qnames)})")
    out_perms: dict[str, np.ndarray] = {}
    for n in qnames:
        m = modules[n]
        perm = perms.get(n, getattr(m, "out_perm", None))
        if perm is None:
            out_perms[n] = np.arange(m.out_features)
            continue
        arr = np.asarray(perm).reshape(-1)
        if not np.issubdtype(arr.dtype, np.integer) or sorted(arr.tolist()) != list(range(m.out_features)):
            raise QuantInputError(f"layer {n}: output permutation must be a permutation of 0..{m.out_features - 1}")
        if n == qnames[-1] and np.any(arr != np.arange(m.out_features)):
            raise QuantInputError(f"layer {n}: the last layer's outputs are the classes and cannot be permuted")
        out_perms[n] = arr.astype(np.int64)

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

    # ops between layers
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

    layers: list[IntegerLayer] = []
    for i, n in enumerate(qnames):
        m: QuantLayer = modules[n]
        nxt = modules[qnames[i + 1]] if i + 1 < len(qnames) else None
        in_perm = np.arange(m.in_channels)
        if i > 0 and m.groups > 1:
            if np.any(out_perms[qnames[i - 1]] != np.arange(len(out_perms[qnames[i - 1]]))):
                raise QuantInputError(
                    f"layer {n}: a grouped conv (groups={m.groups}) cannot follow a layer whose "
                    f"output channels were reordered"
                )
        elif i > 0:
            prev = out_perms[qnames[i - 1]]
            if m.in_channels % len(prev):
                raise QuantInputError(
                    f"layer {n}: {m.in_channels} inputs are not a multiple of the previous layer's {len(prev)} channels"
                )
            expand = m.in_channels // len(prev)
            in_perm = (prev[:, None] * expand + np.arange(expand)).reshape(-1)
        layers.append(
            export_layer(
                n, m, nxt.act if nxt is not None else None, ops_after[n], shapes.get(n, ()), out_perms[n], in_perm
            )
        )
    model_name = name if name is not None else type(model).__name__
    return IntegerModel(layers, pre_ops, model_name)
