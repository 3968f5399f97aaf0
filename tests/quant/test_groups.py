"""Quantizer groups (quant.groups): residual and concat ties, shared inputs, boundaries, fx and dynamic tracing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import quant.groups as groups_mod
from quant.errors import QuantInputError
from quant.fakequant import prepare, quant_layers
from quant.groups import quantizer_groups
from quant.models import get_model


class ResBlock(nn.Module):
    """Two 3x3 convs with an identity skip, or (``down``) a strided branch plus a 1x1 strided downsample."""

    def __init__(self, cin: int, cout: int, down: bool = False) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)  # not inside a Sequential: stays unfolded, a boundary
        self.down = nn.Conv2d(cin, cout, 1, stride=stride) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.c2(F.relu(self.c1(x))))
        skip = x if self.down is None else self.down(x)
        return F.relu(skip + y)


class ResNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.b1 = ResBlock(8, 8)
        self.b2 = ResBlock(8, 16, down=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.b2(self.b1(self.stem(x)))), 1))


class ResNetTinyDynamic(ResNetTiny):
    """The same network with data-dependent control flow, which torch.fx cannot trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().sum()) < 0:  # never true; a Proxy cannot be converted to a Python float
            raise AssertionError
        return super().forward(x)


# execution order: stem.0, b1.c1, b1.c2, b2.c1, b2.c2, b2.down, fc
# rule 1/2: b1.c1 reads relu(stem.0) = S; the b1 add joins S with b1's branch output and the sum T (rule 3);
# b2.c1 and b2.down both read T; b1.c2 and b2.c2 read their block's inner relu; fc reads the pooled b2 sum.
RES_TIED = {"stem.0": 0, "b1.c1": 1, "b1.c2": 2, "b2.c1": 1, "b2.c2": 3, "b2.down": 1, "fc": 4}
# tie_adds=False (HAWQ-V3 style): only layers reading the very same tensor are tied (b2.c1 with b2.down)
RES_UNTIED = {"stem.0": 0, "b1.c1": 1, "b1.c2": 2, "b2.c1": 3, "b2.c2": 4, "b2.down": 3, "fc": 5}


def _x(*shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _both_tracers(model: nn.Module, x: torch.Tensor, tie_adds: bool = True) -> tuple[dict, dict]:
    q = prepare(model)
    order = [n for n, _ in quant_layers(q, x[:1])]
    fx = groups_mod._groups_from_ops(groups_mod._fx_ops(q, x[:1]), order, tie_adds)
    dyn = groups_mod._groups_from_ops(groups_mod._dynamic_ops(q, x[:1]), order, tie_adds)
    return fx, dyn


def test_residual_ties_follow_the_rule() -> None:
    model, x = ResNetTiny().eval(), _x(2, 1, 8, 8)
    assert quantizer_groups(model, x) == RES_TIED
    assert quantizer_groups(model, x, tie_adds=False) == RES_UNTIED
    assert list(quantizer_groups(model, x)) == [n for n, _ in quant_layers(prepare(model), x[:1])]


@pytest.mark.parametrize("tie_adds", [True, False])
def test_fx_and_dynamic_trace_agree(tie_adds: bool) -> None:
    fx, dyn = _both_tracers(ResNetTiny().eval(), _x(2, 1, 8, 8), tie_adds)
    assert fx == dyn == (RES_TIED if tie_adds else RES_UNTIED)


def test_untraceable_model_falls_back_to_the_dynamic_trace() -> None:
    model, x = ResNetTinyDynamic().eval(), _x(2, 1, 8, 8)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever torch.fx raises, the fallback must take over
        groups_mod._fx_ops(prepare(model), x[:1])
    assert quantizer_groups(model, x) == RES_TIED
    assert quantizer_groups(model, x, tie_adds=False) == RES_UNTIED


@pytest.mark.parametrize(("name", "shape"), [("digits-cnn", (1, 8, 8)), ("mnist1d-cnn", (1, 40))])
def test_builtin_chains_are_singletons(name: str, shape: tuple[int, ...]) -> None:
    model, x = get_model(name), _x(2, *shape)
    groups = quantizer_groups(model, x)
    assert groups == {n: i for i, (n, _) in enumerate(quant_layers(prepare(model), x[:1]))}
    fx, dyn = _both_tracers(model, x)
    assert fx == dyn == groups


class Branches(nn.Module):
    """Two convs read the input; their outputs are concatenated; a scaled copy and a +1 copy feed other convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv1d(1, 3, 3, padding=1), nn.Conv1d(1, 5, 3, padding=1)
        self.c = nn.Conv1d(8, 4, 1)  # reads cat(a, b)
        self.d = nn.Conv1d(3, 4, 1)  # reads a's output directly: same class as the cat (rule 3)
        self.e = nn.Conv1d(4, 4, 1)  # reads 0.5 * c: a product is a boundary
        self.f = nn.Conv1d(4, 4, 1)  # reads c + 1: an add of a constant is a boundary
        self.g = nn.Conv1d(4, 4, 1)  # reads c through a view and a max-pool (pass-through)
        self.h = nn.Conv1d(4, 4, 1)  # reads a concat of c alone: a copy (pass-through)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        c = self.c(torch.cat([a, b], dim=1))
        d = self.d(a)
        e = self.e(0.5 * c)
        f = self.f(c + 1)
        g = self.g(F.max_pool1d(c.view(c.shape[0], 4, -1), 1))
        h = self.h(torch.cat([c], dim=1))
        return d + e + f + g + h


def test_concat_products_and_constants() -> None:
    model, x = Branches().eval(), _x(2, 1, 6)
    groups = quantizer_groups(model, x)
    assert groups["a"] == groups["b"]  # the same input tensor
    assert groups["c"] == groups["d"] != groups["a"]  # cat joins a's and b's outputs
    assert len({groups["c"], groups["e"], groups["f"]}) == 3  # 0.5 * c and c + 1 start new classes
    assert groups["g"] not in (groups["a"], groups["c"], groups["e"], groups["f"])  # reads c's output class
    assert groups["h"] == groups["g"]
    fx, dyn = _both_tracers(model, x)
    assert fx == dyn == groups


class Shared(nn.Module):
    """One conv applied to two different tensors: its one input quantizer ties both."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.mid, self.shared, self.other = (nn.Conv1d(2, 2, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        b = torch.tanh(self.mid(a))  # tanh: a boundary
        return self.shared(a) + self.shared(b) + self.other(b)


def test_a_layer_run_twice_ties_its_inputs() -> None:
    groups = quantizer_groups(Shared().eval(), _x(2, 2, 5))
    assert groups["mid"] == groups["shared"] == groups["other"] != groups["stem"]
    assert set(groups.values()) == {0, 1}


def test_prepared_and_float_models_give_the_same_groups() -> None:
    model, x = ResNetTiny().eval(), _x(2, 1, 8, 8)
    assert quantizer_groups(prepare(model), x) == quantizer_groups(model, x)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["linear", "relu", "dropout", "identity", "tanh"]), min_size=1, max_size=8))
def test_any_chain_has_one_group_per_layer(kinds: list[str]) -> None:
    make = {
        "linear": lambda: nn.Linear(3, 3),
        "relu": nn.ReLU,
        "dropout": nn.Dropout,
        "identity": nn.Identity,
        "tanh": nn.Tanh,
    }
    model = nn.Sequential(nn.Linear(3, 3), *(make[k]() for k in kinds)).eval()
    groups = quantizer_groups(model, _x(2, 3))
    assert list(groups.values()) == list(range(1 + kinds.count("linear")))


def test_bad_inputs() -> None:
    with pytest.raises(QuantInputError, match="torch.nn.Module"):
        quantizer_groups("model", _x(1, 3))  # type: ignore[arg-type]
    with pytest.raises(QuantInputError, match="non-empty"):
        quantizer_groups(nn.Linear(3, 2), torch.empty(0, 3))
    with pytest.raises(QuantInputError, match=r"forward pass failed.*\(1, 4\)"):
        quantizer_groups(nn.Sequential(nn.Linear(3, 2)), _x(1, 4))
    with pytest.raises(QuantInputError, match="no Conv1d, Conv2d or Linear"):
        quantizer_groups(nn.Sequential(nn.ReLU()), _x(1, 4))


def test_an_error_names_both_tracers_when_neither_works(monkeypatch: pytest.MonkeyPatch) -> None:
    def fx_fails(*_args):
        raise RuntimeError("no fx today")

    def dyn_fails(*_args):
        raise TypeError("no dynamic trace either")

    monkeypatch.setattr(groups_mod, "_fx_ops", fx_fails)
    monkeypatch.setattr(groups_mod, "_dynamic_ops", dyn_fails)
    with pytest.raises(QuantInputError) as info:
        quantizer_groups(nn.Sequential(nn.Linear(3, 2)), _x(1, 3))
    message = str(info.value)
    assert "no fx today" in message and "no dynamic trace either" in message and "\n" not in message
