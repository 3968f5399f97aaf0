"""Channel reordering leaves the float network unchanged (before and after BN folding)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import prepare, quant_layers
from quant.reorder import choose_permutation, permute_channels, plan_links, reorder_model
from quant.rtn import rtn_quantize


def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(0.1 + 3 * torch.rand(n, generator=gen))
            m.weight.data.copy_(0.2 + 2 * torch.rand(n, generator=gen) * torch.sign(torch.randn(n, generator=gen)))
            m.bias.data.copy_(torch.randn(n, generator=gen))


def make_cnn(seed: int, dim: int = 2) -> tuple[nn.Sequential, torch.Tensor]:
    """Conv-BN-ReLU-MaxPool-Conv-BN-ReLU-MaxPool-Flatten-Linear-BN-ReLU-Dropout-Linear with non-trivial BN stats."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    conv, bn, pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dim == 2 else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
    )
    spatial = 2 * 2 if dim == 2 else 4
    model = nn.Sequential(
        conv(2, 6, 3, padding=1),
        bn(6),
        nn.ReLU(),
        pool(2),
        nn.Sequential(conv(6, 8, 3, padding=1), bn(8), nn.ReLU6()),
        pool(2),
        nn.Flatten(),
        nn.Linear(8 * spatial, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(12, 5),
    )
    _randomize_bn(model, gen)
    model.eval()
    shape = (40, 2, 8, 8) if dim == 2 else (40, 2, 16)
    return model, torch.randn(*shape, generator=gen)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("dim", [1, 2])
def test_plan_links_flatten_groups(dim: int) -> None:
    model, x = make_cnn(0, dim)
    links = plan_links(model, x)
    assert [(lk.producer, lk.consumer) for lk in links] == [("0", "4.0"), ("4.0", "7"), ("7", "11")]
    assert [lk.expand for lk in links] == [1, 4, 1]
    assert [len(lk.bns) for lk in links] == [1, 1, 1]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.sampled_from([1, 2]), fold=st.booleans())
def test_random_permutations_preserve_function(seed: int, dim: int, fold: bool) -> None:
    model, x = make_cnn(seed % 97, dim)
    y0 = model(x)
    target = prepare(model) if fold else copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    perms = {lk.producer: rng.permutation(lk.channels) for lk in plan_links(target, x)}
    permute_channels(target, perms, x)
    assert rel_err(target(x), y0) < 1e-5
    # something really moved
    w_new = dict(target.named_parameters())
    assert any(not torch.equal(p, w_new[n]) for n, p in (prepare(model) if fold else model).named_parameters())


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    dim=st.sampled_from([1, 2]),
    fold=st.booleans(),
    method=st.sampled_from(["sort", "kmeans"]),
    stat=st.sampled_from(["weight", "activation"]),
    n_groups=st.integers(1, 8),
)
def test_sort_and_kmeans_preserve_function(
    seed: int, dim: int, fold: bool, method: str, stat: str, n_groups: int
) -> None:
    model, x = make_cnn(seed % 97, dim)
    y0 = model(x)
    target = prepare(model) if fold else copy.deepcopy(model)
    target, perms = reorder_model(target, x, n_groups, method, stat=stat)
    assert set(perms) == {lk.producer for lk in plan_links(target, x)}
    for perm in perms.values():
        assert sorted(perm.tolist()) == list(range(len(perm)))
    assert rel_err(target(x), y0) < 1e-5


def test_bn_statistics_and_weights_move_together() -> None:
    model, x = make_cnn(3)
    ref = copy.deepcopy(model)
    perm = np.array([5, 0, 3, 1, 4, 2])
    permute_channels(model, {"0": perm}, x)
    assert torch.equal(model[0].weight, ref[0].weight[perm])
    assert torch.equal(model[0].bias, ref[0].bias[perm])
    for attr in ("running_mean", "running_var", "weight", "bias"):
        assert torch.equal(getattr(model[1], attr), getattr(ref[1], attr)[perm])
    assert torch.equal(model[4][0].weight, ref[4][0].weight[:, perm])


def test_flatten_linear_moves_feature_groups() -> None:
    model, x = make_cnn(4)
    ref = copy.deepcopy(model)
    perm = np.arange(8)[::-1].copy()
    permute_channels(model, {"4.0": perm}, x)
    cols = (perm[:, None] * 4 + np.arange(4)).ravel()
    assert torch.equal(model[7].weight, ref[7].weight[:, cols])


def test_sort_orders_by_effective_row_range() -> None:
    model, x = make_cnn(5)
    folded = prepare(model)
    _, perms = reorder_model(copy.deepcopy(model), x, 2, "sort")
    _, perms_folded = reorder_model(folded, x, 2, "sort")
    for name, perm in perms.items():  # BN-aware stats: the unfolded and the folded model pick the same order
        assert np.array_equal(perm, perms_folded[name])
    w = folded[0].gemm_weight()  # already reordered: rows must be ascending in max |w|
    assert np.all(np.diff(np.abs(w).max(axis=1)) >= 0)


def test_kmeans_keeps_clusters_contiguous() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[-0.1, 0.1], [-1.0, 1.0], [-5.0, 5.0]])
    labels = rng.permutation(np.repeat(np.arange(3), 4))
    feats = centers[labels] + rng.normal(0, 0.01, (12, 2))
    key = np.abs(feats).max(axis=1)
    perm = choose_permutation(feats, key, 3, "kmeans")
    assert np.array_equal(labels[perm], np.repeat(np.arange(3), 4))
    assert np.array_equal(choose_permutation(feats, key, 3, "kmeans"), perm)  # deterministic


def test_prepared_model_codes_are_cleared_and_out_perm_composes() -> None:
    model, x = make_cnn(6)
    pm = rtn_quantize(prepare(model), 4)
    orig = {n: m.gemm_weight() for n, m in quant_layers(pm)}
    _, perms = reorder_model(pm, x, 2, "sort")
    layers = dict(quant_layers(pm))
    assert layers["0"].w_codes is None and layers["4.0"].w_codes is None and layers["11"].w_codes is None
    assert np.array_equal(layers["0"].out_perm, perms["0"])
    rng = np.random.default_rng(1)
    second = {lk.producer: rng.permutation(lk.channels) for lk in plan_links(pm, x)}
    permute_channels(pm, second, x)
    for name in ("0", "4.0", "7"):
        assert np.array_equal(layers[name].out_perm, perms[name][second[name]])
    # out_perm maps stored rows to the original model's rows (layer 0's inputs are not permuted)
    assert np.array_equal(layers["0"].gemm_weight(), orig["0"][layers["0"].out_perm])
    assert getattr(layers["11"], "out_perm", None) is None


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_refuses_unprovable_graphs() -> None:
    x = torch.randn(4, 2, 8, 8)
    with pytest.raises(QuantInputError, match="'1'.*Residual"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), Residual(4), nn.Conv2d(4, 4, 1)), x, 2, "sort")
    with pytest.raises(QuantInputError, match="'1'.*groups=2"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1, groups=2)), x, 2, "sort")
    with pytest.raises(QuantInputError, match="'1'.*Flatten"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Linear(6, 3)), x, 2, "sort")
    with pytest.raises(QuantInputError, match="'1' \\(Softmax\\)"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Softmax(dim=1), nn.Conv2d(4, 4, 1)), x, 2, "sort")
    with pytest.raises(QuantInputError, match="unknown reorder method"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1)), x, 2, "random")
    with pytest.raises(QuantInputError, match="empty calibration"):
        reorder_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1)), x[:0], 2, "sort")
    model, x = make_cnn(0)
    with pytest.raises(QuantInputError, match="permutation of 0..5"):
        permute_channels(model, {"0": np.array([0, 0, 1, 2, 3, 4])}, x)
    with pytest.raises(QuantInputError, match="'11'"):
        permute_channels(model, {"11": np.arange(5)}, x)
    # softmax after the last layer is harmless
    reorder_model(
        nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1), nn.Softmax(dim=1)), torch.randn(4, 2, 8, 8), 2, "kmeans"
    )
