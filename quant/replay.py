"""Re-running only what a change touches: one float forward is recorded node by node, then a model with a few
layers replaced is evaluated by recomputing just the nodes downstream of those layers, for several variants at
once (stacked along the batch).

Per-group sensitivity quantizes one group of layers at a time and needs the model output for every bit pair: a
full forward per (group, pair) recomputes, on average, half the network that did not change.  :class:`Replay`
reads every node that does not depend on the replaced layers from the recorded float run, and runs the ``P``
variants of the rest as one batch of ``P x N`` samples (a clean tensor that meets a changed one, such as a
residual skip, is repeated ``P`` times).

The model must trace with ``torch.fx`` (:func:`quant.graph.trace_graph`), run each replaced layer once, and keep
the batch in dimension 0 of every activation.  :meth:`Replay.check` verifies the last point on the model itself
(a replay with unchanged layers must give the recorded output); callers fall back to full forwards when the
model cannot be traced or the check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from quant.errors import QuantInputError
from quant.graph import run_node, trace_graph

__all__ = ["Replay"]


class _Recorder(torch.fx.Interpreter):
    """Runs the graph once and keeps every node's value."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out


def _in_place(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if (
        node.op == "call_method"
        and isinstance(node.target, str)
        and node.target.endswith("_")
        and not node.target.endswith("__")
    ):
        return True
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(str(node.target)), "inplace", False))
    return bool(node.kwargs.get("inplace", False))


class Replay:
    """A recorded float forward of ``model`` on ``x`` that re-runs only the nodes downstream of replaced layers."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        gm = trace_graph(model)
        for node in gm.graph.nodes:  # in-place ops would overwrite recorded values: run them out of place
            if node.op == "call_module" and getattr(gm.get_submodule(str(node.target)), "inplace", False):
                gm.get_submodule(str(node.target)).inplace = False
            elif node.kwargs.get("inplace", False):
                node.kwargs = {**node.kwargs, "inplace": False}
            elif _in_place(gm, node):
                raise QuantInputError(f"node {node.name}: in-place method {node.target} cannot be replayed")
        gm.recompile()
        self.gm, self.n = gm, len(x)
        self.nodes = list(gm.graph.nodes)
        rec = _Recorder(gm)
        with torch.no_grad():
            self.output = rec.run(x)
        self.values = rec.values
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        batched: set[torch.fx.Node] = set(placeholders)
        derived: set[torch.fx.Node] = set()  # sizes and shapes read off batched tensors (x.shape[0], ...)
        for node in self.nodes:
            if node.op != "placeholder" and any(a in batched or a in derived for a in node.all_input_nodes):
                value = self.values.get(node)
                if isinstance(value, torch.Tensor):
                    if value.dim() >= 1 and value.shape[0] == self.n:
                        batched.add(node)
                elif node.op != "output":
                    derived.add(node)
        self.batched, self.derived = batched, derived
        self.layer_nodes: dict[str, list[torch.fx.Node]] = {}
        for node in self.nodes:
            if node.op == "call_module":
                self.layer_nodes.setdefault(str(node.target), []).append(node)

    def run(self, variants: Mapping[str, Sequence[Callable[[torch.Tensor], torch.Tensor]]]) -> list[torch.Tensor]:  # noqa: C901 - one branch per recorded node kind
        """The model output for each of ``P`` variants: ``variants[layer][p]`` replaces the layer (a module path
        that runs once) in variant ``p``; every other node is the recorded float one unless it depends on a
        replaced layer."""
        counts = {len(v) for v in variants.values()}
        if len(counts) != 1 or 0 in counts:
            raise QuantInputError("every replaced layer needs the same, non-zero number of variants")
        p_count = counts.pop()
        for name in variants:
            if len(self.layer_nodes.get(name, [])) != 1:
                raise QuantInputError(f"layer {name!r} does not run exactly once in the traced graph")
            node = self.layer_nodes[name][0]
            if node.kwargs or not all(isinstance(a, torch.fx.Node) for a in node.args):
                raise QuantInputError(f"layer {name!r} is not called on tensors only")
        changed: dict[torch.fx.Node, Any] = {}

        def fetch(a: torch.fx.Node) -> Any:
            if a in changed:
                return changed[a]
            if a in self.derived:  # a size of a batched tensor: read it off the stacked tensor
                args = torch.fx.node.map_arg(a.args, fetch)
                kwargs = torch.fx.node.map_arg(a.kwargs, fetch)
                return run_node(self.gm, a, args, kwargs)
            value = self.values[a]
            if a in self.batched:
                return value.repeat(p_count, *([1] * (value.dim() - 1)))
            return value

        out_node = next(n for n in self.nodes if n.op == "output").args[0]
        pending = {n: len(n.users) for n in self.nodes}  # readers still to run: a stacked value is freed after
        with torch.no_grad():
            for node in self.nodes:
                if node.op in ("placeholder", "get_attr", "output"):
                    continue
                replaced = node.op == "call_module" and str(node.target) in variants
                if not replaced and not any(a in changed for a in node.all_input_nodes):
                    continue
                if replaced:  # each variant runs on its own slice of every stacked operand
                    operands = [
                        changed[a].chunk(p_count) if a in changed else [self.values[a]] * p_count for a in node.args
                    ]
                    layer = variants[str(node.target)]
                    changed[node] = torch.cat([layer[p](*(o[p] for o in operands)) for p in range(p_count)])
                else:
                    args = torch.fx.node.map_arg(node.args, fetch)
                    kwargs = torch.fx.node.map_arg(node.kwargs, fetch)
                    changed[node] = run_node(self.gm, node, args, kwargs)
                for a in node.all_input_nodes:
                    pending[a] -= 1
                    if pending[a] == 0 and a in changed and a is not out_node:
                        del changed[a]
        if out_node in changed:
            return list(changed[out_node].chunk(p_count))
        return [self.values[out_node]] * p_count

    def check(self, layer: str, module: Callable[[torch.Tensor], torch.Tensor], rtol: float = 1e-4) -> bool:
        """True when replaying ``layer`` unchanged in two variants gives the recorded output in both (the batch
        stays in dimension 0 everywhere downstream of it)."""
        try:
            outs = self.run({layer: [module, module]})
        except Exception:  # noqa: BLE001 - any failure means the replay does not apply to this model
            return False
        ref = self.output
        scale = float(ref.abs().max()) or 1.0
        return all(o.shape == ref.shape and float((o - ref).abs().max()) <= rtol * scale for o in outs)
