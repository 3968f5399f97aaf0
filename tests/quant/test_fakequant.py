"""Fake-quant wrappers, BN folding, activation calibration and RTN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, act_range, calibrate_activations, fold_batchnorm, prepare, quant_layers
from quant.quantizer import Blocks, QuantSpec
from quant.rtn import rtn_quantize


def small_cnn(seed: int = 0, conv1d: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    conv, bn, pool = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d) if conv1d else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
    model = nn.Sequential(
        conv(1, 8, 3, padding=1),
        bn(8),
        nn.ReLU(),
        pool(2),
        conv(8, 12, 3, stride=2, padding=1),
        bn(12),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * (2 if conv1d else 4), 10),
    )
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def inputs(n: int = 64, conv1d: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 1, 8) if conv1d else (n, 1, 8, 8), generator=g)


@pytest.mark.parametrize("conv1d", [False, True])
def test_prepare_folds_bn_without_changing_the_function(conv1d: bool) -> None:
    model, x = small_cnn(conv1d=conv1d), inputs(conv1d=conv1d)
    prepared = prepare(model)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in prepared.modules())
    torch.testing.assert_close(prepared(x), model(x), rtol=1e-5, atol=1e-5)
    assert len(quant_layers(prepared, x[:1])) == 3
    # the original is untouched
    assert any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def test_fold_batchnorm_adds_a_bias_when_missing() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(0.3)
    x = inputs(8)
    ref = model(x)
    fold_batchnorm(model)
    assert model[0].bias is not None
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)


class _ResBlock(nn.Module):
    """A torchvision-style basic block: conv -> BN in ``forward`` (not in a Sequential), a downsample branch, and a
    BN that reads the residual sum (nothing to fold it into)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.down = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.post = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.post(torch.relu(y + self.down(x)))


def _randomize_bn(model: nn.Module) -> None:
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_fold_batchnorm_follows_the_graph() -> None:
    """conv -> BN pairs in a module's forward fold, the Sequential one too; a BN after the residual add cannot fold
    and is named; the function is unchanged."""
    model = _ResBlock().eval()
    _randomize_bn(model)
    x = torch.randn(3, 2, 6, 6)
    ref = model(x)
    left = fold_batchnorm(model)
    assert left == ["post"]
    assert isinstance(model.bn1, nn.Identity) and isinstance(model.bn2, nn.Identity)
    assert isinstance(model.down[1], nn.Identity) and model.conv1.bias is not None
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)


def test_prepare_warns_about_an_unfolded_batchnorm() -> None:
    from quant.errors import UnfoldedBatchNormWarning

    model = _ResBlock().eval()
    with pytest.warns(UnfoldedBatchNormWarning, match="BatchNorm not folded.*: post;"):
        prepare(model)


def test_a_shared_or_twice_read_layer_is_not_folded() -> None:
    """A conv whose output the BN and something else read, or a conv called twice, keeps its weights."""

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = Shared().eval()
    _randomize_bn(model)
    weight = model.conv.weight.detach().clone()
    assert fold_batchnorm(model) == ["bn"]
    assert torch.equal(model.conv.weight, weight)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_rtn_installs_codes_and_more_bits_mean_less_error(bits: int) -> None:
    model, x = small_cnn(), inputs()
    ref = model(x)
    q = rtn_quantize(prepare(model), bits)
    for _, layer in quant_layers(q):
        assert layer.w_codes.min() >= -(2 ** (bits - 1)) and layer.w_codes.max() <= 2 ** (bits - 1) - 1
        assert layer.blocks == Blocks(layer.out_features, 1)
    err = (q(x) - ref).pow(2).mean().item()
    finer = (rtn_quantize(prepare(model), min(bits + 2, 8))(x) - ref).pow(2).mean().item()
    assert finer <= err


def test_per_channel_beats_per_tensor_on_heterogeneous_rows() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 16)
    lin.weight.data *= torch.logspace(-2, 1, 16).unsqueeze(1)
    model = nn.Sequential(lin).eval()
    x = torch.randn(256, 64)
    errs = {g: (rtn_quantize(prepare(model), 4, g)(x) - model(x)).pow(2).mean().item() for g in ("tensor", "channel")}
    assert errs["channel"] < errs["tensor"]


@pytest.mark.parametrize("method", ["max", "percentile", "mse"])
def test_calibration_sets_unsigned_after_relu_and_asymmetric_for_signed_inputs(method: str) -> None:
    model, x = small_cnn(), inputs() * 2 - 1  # signed network input
    q = prepare(model)
    calibrate_activations(q, x, 8, method=method)
    layers = quant_layers(q, x[:1])
    first, rest = layers[0][1].act, [m.act for _, m in layers[1:]]
    assert first.spec.symmetric is False and 0 < first.zero_point < 255
    assert all(a.spec.signed is False and a.zero_point == 0 for a in rest)  # after ReLU
    out = q(x)
    assert torch.isfinite(out).all()
    assert (out - model(x)).abs().max() < 0.5


def test_mse_clipping_is_no_worse_than_max() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g) ** 3  # heavy tails
    for bits in (3, 4):
        errs = {}
        for method in ("max", "mse"):
            lo, hi = act_range(x, method, bits=bits)
            scale = (hi - lo) / (2**bits - 1)
            zp = round(-lo / scale)
            q = (torch.clamp(torch.round(x / scale) + zp, 0, 2**bits - 1) - zp) * scale
            errs[method] = (q - x).pow(2).mean().item()
        assert errs["mse"] <= errs["max"] * 1.0001


def test_bad_inputs() -> None:
    with pytest.raises(QuantInputError, match="unsupported layer type LSTM"):
        QuantLayer(nn.LSTM(4, 4))
    with pytest.raises(QuantInputError, match="unsupported layer types with parameters: Conv3d"):
        prepare(nn.Sequential(nn.Conv3d(1, 2, 1)))
    bad = small_cnn()
    bad[0].weight.data[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantInputError, match="non-finite"):
        prepare(bad)
    q = prepare(small_cnn())
    with pytest.raises(QuantInputError, match="empty calibration set"):
        calibrate_activations(q, torch.empty(0, 1, 8, 8), 8)
    layer = quant_layers(q)[0][1]
    with pytest.raises(QuantInputError, match="do not match"):
        layer.set_weight_codes(np.zeros((3, 3), dtype=np.int64), np.ones((1, 1)), QuantSpec(4), Blocks())
    with pytest.raises(QuantInputError, match="outside the 4-bit range"):
        layer.set_weight_codes(np.full((8, 9), 9), np.ones((1, 1)), QuantSpec(4), Blocks())
    with pytest.raises(QuantInputError, match="unknown calibration method"):
        act_range(torch.ones(4), "median")
