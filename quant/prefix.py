"""Layer inputs of a model whose layers are changed one at a time, in execution order, from a single forward.

Layer-by-layer methods (GPFQ, bias correction, QGT's final quantizers) quantize layer ``l`` from its input in the
network whose layers ``< l`` are already quantized.  Capturing that input with a fresh forward per layer costs a
forward per layer, most of it recomputing what has not changed.  :class:`PrefixRun` steps one forward through
the model's ``torch.fx`` graph instead: asked for layer ``l``'s input, it runs the nodes before ``l`` (which see
every change made so far) and stops, so the caller can change ``l`` before it runs.  Values are freed once their
last reader has run.

:func:`inputs_in_order` wraps it with a fallback to one forward per layer for models that cannot be traced or
whose layers do not each run once in graph order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import capture_inputs
from quant.graph import run_node, trace_graph

__all__ = ["PrefixRun", "inputs_in_order"]


class PrefixRun:
    """One forward of ``model`` on ``x`` (in chunks of ``batch`` samples), paused before each of ``names``.

    Raises :class:`QuantInputError` when the model cannot be traced, has more than one input, or a name does not
    label exactly one module call in ``names``' order."""

    def __init__(self, model: nn.Module, x: torch.Tensor, names: Sequence[str], batch: int = 256) -> None:
        gm = trace_graph(model)
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise QuantInputError(f"the traced model takes {len(placeholders)} inputs, not one")
        calls: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            if node.op == "call_module":
                calls.setdefault(str(node.target), []).append(i)
        self.stops: dict[str, int] = {}
        last = -1
        for name in names:
            where = calls.get(name, [])
            if len(where) != 1:
                raise QuantInputError(f"layer {name!r} runs {len(where)} times in the traced graph, not once")
            if where[0] <= last:
                raise QuantInputError(f"layer {name!r} runs before the layer listed ahead of it")
            self.stops[name] = last = where[0]
        step = max(1, int(batch))
        self.envs: list[dict[torch.fx.Node, Any]] = [{placeholders[0]: x[i : i + step]} for i in range(0, len(x), step)]
        self.readers_left = {n: len(n.users) for n in self.nodes}
        self.pos = self.nodes.index(placeholders[0]) + 1

    def _execute(self, node: torch.fx.Node, env: dict[torch.fx.Node, Any]) -> Any:
        args = torch.fx.node.map_arg(node.args, env.__getitem__)
        kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
        return run_node(self.gm, node, args, kwargs)

    def _run_until(self, stop: int) -> None:
        with torch.no_grad():
            while self.pos < stop:
                node = self.nodes[self.pos]
                self.pos += 1
                if node.op in ("placeholder", "output"):
                    continue
                for env in self.envs:
                    env[node] = self._execute(node, env)
                for arg in node.all_input_nodes:
                    self.readers_left[arg] -= 1
                    if self.readers_left[arg] == 0:
                        for env in self.envs:
                            env.pop(arg, None)

    def input_of(self, name: str) -> torch.Tensor:
        """Layer ``name``'s input (its first argument) with every change made so far to earlier layers."""
        stop = self.stops.get(name)
        if stop is None or stop < self.pos:
            raise QuantInputError(f"layer {name!r} is not ahead of the run")
        self._run_until(stop)
        source = self.nodes[stop].args[0]
        if not isinstance(source, torch.fx.Node):
            raise QuantInputError(f"layer {name!r} is not called on a tensor")
        parts = [env[source] for env in self.envs]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def inputs_in_order(
    model: nn.Module, layers: Sequence[tuple[str, nn.Module]], x: torch.Tensor, batch: int = 256
) -> Iterator[torch.Tensor]:
    """Each of ``layers``' inputs (before the layer's own activation quantizer) on ``x``, in order; the caller may
    change a layer after receiving its input and the change reaches every later input.  One stepped forward
    (:class:`PrefixRun`) when the model traces, else one forward per layer."""
    try:
        run: PrefixRun | None = PrefixRun(model, x, [n for n, _ in layers], batch)
    except QuantInputError:
        run = None
    for name, layer in layers:
        if run is None:
            yield capture_inputs(model, [layer], x, batch)[id(layer)]
        else:
            yield run.input_of(name)
