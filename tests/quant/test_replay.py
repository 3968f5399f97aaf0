"""quant.replay against full forwards: re-running only what a replaced layer touches, every variant stacked in one
batch, gives the outputs of the model with that layer replaced (engine against engine)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from user_nets import mobilenet, resnet

from quant.fakequant import calibrate_activations, prepare, quant_layers
from quant.replay import Replay
from quant.rtn import rtn_layer


def _variants(q: nn.Module, name: str, bits: list[int], x: torch.Tensor) -> list[nn.Module]:
    out = []
    for b in bits:
        layer = copy.deepcopy(dict(quant_layers(q))[name])
        rtn_layer(layer, b, "channel")
        out.append(layer)
    return out


def _full(q: nn.Module, name: str, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = copy.deepcopy(q)
    parent, _, child = name.rpartition(".")
    setattr(m.get_submodule(parent) if parent else m, child, layer)
    with torch.no_grad():
        return m(x)


@pytest.mark.parametrize("net", [resnet, mobilenet])
def test_replay_equals_full_forwards_for_every_layer(net) -> None:  # noqa: ANN001 - a model factory
    q = prepare(net(0))
    x = torch.rand((16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    calibrate_activations(q, x, 8)
    replay = Replay(q, x)
    with torch.no_grad():
        assert torch.equal(replay.output, q(x))
    for name, _ in quant_layers(q):
        variants = _variants(q, name, [2, 4, 8], x)
        got = replay.run({name: variants})
        for layer, out in zip(variants, got):
            want = _full(q, name, layer, x)
            assert torch.allclose(out, want, rtol=1e-5, atol=1e-5 * float(want.abs().max())), name


def test_two_layers_at_once_and_an_untouched_output() -> None:
    q = prepare(resnet(1))
    x = torch.rand((8, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    replay = Replay(q, x)
    a, b = _variants(q, "layer1.conv1", [3], x), _variants(q, "layer2.downsample.0", [3], x)
    (got,) = replay.run({"layer1.conv1": a, "layer2.downsample.0": b})
    m = copy.deepcopy(q)
    m.layer1.conv1 = a[0]
    setattr(m.get_submodule("layer2.downsample"), "0", b[0])  # a GraphModule keeps plain submodules
    with torch.no_grad():
        assert torch.allclose(got, m(x), rtol=1e-5, atol=1e-6)


def test_sizes_read_off_the_input_follow_the_stacked_batch() -> None:
    """``view(x.size(0), -1)`` with ``x`` upstream of the replaced layer: the size is recomputed on the stacked
    tensor, so every variant gets its own rows."""

    class Sized(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x).view(x.size(0), -1))

    q = prepare(Sized())
    x = torch.randn(6, 4)
    replay = Replay(q, x)
    assert replay.check("a", dict(quant_layers(q))["a"]) and replay.check("b", dict(quant_layers(q))["b"])
    half = nn.Linear(4, 4)
    half.load_state_dict(dict(quant_layers(q))["a"].layer.state_dict())
    with torch.no_grad():
        half.weight.mul_(0.5)
        got = replay.run({"a": [dict(quant_layers(q))["a"], half]})
        want = q.b(half(x).view(6, -1))
    assert torch.allclose(got[1], want, atol=1e-6) and torch.allclose(got[0], replay.output, atol=1e-6)


def test_check_catches_a_model_that_mixes_the_batch() -> None:
    """A reshape that folds the batch into features mixes the stacked variants: check() says so."""

    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(24, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x).reshape(1, -1))

    q = prepare(Mixer())
    replay = Replay(q, torch.randn(6, 4))
    assert not replay.check("a", dict(quant_layers(q))["a"])
