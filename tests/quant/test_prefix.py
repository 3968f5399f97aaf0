"""quant.prefix: one stepped forward gives each layer's input with every earlier change applied, exactly as a
fresh forward per layer would."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import capture_inputs, prepare, quant_layers
from quant.prefix import PrefixRun, inputs_in_order
from tests.user_nets import TinyMobileNet, TinyResNet


def _changed_forward_inputs(model: nn.Module, layers, x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """Reference: a fresh forward per layer, scaling each layer's weight after its input is taken."""
    out = []
    for _, layer in layers:
        out.append(capture_inputs(model, [layer], x, batch)[id(layer)])
        with torch.no_grad():
            layer.layer.weight.mul_(0.5)
    return out


@pytest.mark.parametrize("net", [TinyResNet, TinyMobileNet])
@pytest.mark.parametrize("batch", [256, 7])
def test_stepped_inputs_equal_a_forward_per_layer_with_changes(net, batch: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(20, 1, 8, 8)
    ref_model, model = prepare(net().eval()), prepare(net().eval())
    model.load_state_dict(ref_model.state_dict())
    ref = _changed_forward_inputs(ref_model, quant_layers(ref_model, x[:1]), x, batch)
    layers = quant_layers(model, x[:1])
    got = []
    for (_, layer), inp in zip(layers, inputs_in_order(model, layers, x, batch)):
        got.append(inp.clone())
        with torch.no_grad():
            layer.layer.weight.mul_(0.5)
    assert len(got) == len(ref) == len(layers)
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


class _Twice(nn.Module):
    """One Linear called twice: not steppable, the fallback must still give the right inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(self.a(x)))


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            h = h * 2
        return self.b(h)


def test_a_module_called_twice_is_refused_by_the_stepper() -> None:
    model = prepare(_Twice())
    with pytest.raises(QuantInputError, match="runs 2 times"):
        PrefixRun(model, torch.randn(3, 4), ["a", "b"])


@pytest.mark.parametrize("net", [_Twice, _Untraceable])
def test_fallback_gives_a_forward_per_layer(net) -> None:
    torch.manual_seed(1)
    x = torch.randn(5, 4)
    model = prepare(net())
    layers = [(n, m) for n, m in quant_layers(model, x[:1]) if n == "b"]
    (got,) = list(inputs_in_order(model, layers, x))
    assert torch.equal(got, capture_inputs(model, [layers[0][1]], x)[id(layers[0][1])])


def test_names_out_of_order_are_refused() -> None:
    model = prepare(TinyResNet().eval())
    names = [n for n, _ in quant_layers(model, torch.randn(1, 1, 8, 8))]
    with pytest.raises(QuantInputError, match="before the layer listed ahead"):
        PrefixRun(model, torch.randn(2, 1, 8, 8), names[::-1])
    run = PrefixRun(model, torch.randn(2, 1, 8, 8), names)
    run.input_of(names[1])
    with pytest.raises(QuantInputError, match="not ahead"):
        run.input_of(names[0])
