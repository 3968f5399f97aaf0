"""PTQ-SL block-scale search: invariants, brute-force optima and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import prepare, quant_layers
from quant.ptq_sl import (
    DEFAULT_ALPHAS,
    initial_block_scales,
    layer_output_error,
    lower_inputs,
    ptq_sl_quantize,
    resolve_blocks,
    search_block_scales,
)
from quant.quantizer import Blocks, QuantSpec, block_bounds, dequantize, expand_blocks, quantize


def random_layer(
    seed: int, out: int = 12, in_ch: int = 5, kernel: int = 3, rows: int = 200, spread: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A GEMM-form weight with heterogeneous row (and column) scales, inputs X and a bias."""
    rng = np.random.default_rng(seed)
    row_scale = np.exp(rng.uniform(-spread, spread, size=(out, 1)) / 2)
    col_scale = np.exp(rng.uniform(-1, 1, size=(1, in_ch * kernel)) / 2)
    w = rng.normal(size=(out, in_ch * kernel)) * row_scale * col_scale
    x = rng.normal(size=(rows, in_ch * kernel)) + rng.normal(size=(1, in_ch * kernel))
    return w, x, rng.normal(size=out)


def deq(codes: np.ndarray, scales: np.ndarray, in_ch: int, kernel: int) -> np.ndarray:
    return dequantize(codes, expand_blocks(scales, codes.shape[0], in_ch, kernel))


def alpha_one(w: np.ndarray, bits: int, blocks: Blocks, kernel: int) -> np.ndarray:
    """The dequantized weight at the initial scales (alpha = 1)."""
    spec = QuantSpec(bits)
    s0 = initial_block_scales(w, spec, blocks, kernel)
    full = expand_blocks(s0, w.shape[0], w.shape[1] // kernel, kernel)
    return dequantize(quantize(w, full, 0, spec), full)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    bits=st.integers(2, 8),
    n_v=st.integers(1, 12),
    n_h=st.integers(1, 5),
    metric=st.sampled_from(["l2", "cosine"]),
    alphas=st.sampled_from([DEFAULT_ALPHAS, np.array([0.3]), np.array([0.6, 1.15]), np.linspace(0.8, 1.0, 5)]),
)
def test_never_worse_than_alpha_one(seed: int, bits: int, n_v: int, n_h: int, metric: str, alphas: np.ndarray) -> None:
    """Even with a grid that lacks 1.0 (the search adds it) or has only bad candidates."""
    w, x, b = random_layer(seed)
    blocks = Blocks(n_v, n_h)
    codes, scales = search_block_scales(w, x, QuantSpec(bits), blocks, 3, metric, alphas, bias=b)
    found = layer_output_error(w, deq(codes, scales, 5, 3), x, metric, b)
    start = layer_output_error(w, alpha_one(w, bits, blocks, 3), x, metric, b)
    assert found <= start + 1e-9 * max(abs(start), 1e-12)


def test_default_grid_lacks_one_but_search_adds_it() -> None:
    assert not np.any(DEFAULT_ALPHAS == 1.0)
    # a weight whose max-abs scale is optimal must keep it: all weights on the alpha=1 grid
    spec = QuantSpec(4)
    s0 = 1.0 / (2 ** (spec.bits - 1) - 0.5)
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, size=(6, 10)) * s0
    w[0, 0] = 7.5 * s0  # max |w| = 7.5 s0 -> initial scale s0 exactly
    x = rng.normal(size=(50, 10))
    codes, scales = search_block_scales(w, x, spec, (1, 1), 1, "l2")
    assert layer_output_error(w, deq(codes, scales, 10, 1), x) <= layer_output_error(w, alpha_one(w, 4, Blocks(), 1), x)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_single_block_is_the_grid_optimum(metric: str, bits: int) -> None:
    w, x, b = random_layer(bits)
    spec = QuantSpec(bits)
    codes, scales = search_block_scales(w, x, spec, (1, 1), 3, metric, bias=b)
    s0 = initial_block_scales(w, spec, Blocks(), 3)[0, 0]
    brute = min(
        layer_output_error(w, dequantize(quantize(w, a * s0, 0, spec), a * s0), x, metric, b)
        for a in np.append(DEFAULT_ALPHAS, 1.0)
    )
    assert layer_output_error(w, deq(codes, scales, 5, 3), x, metric, b) == pytest.approx(brute, rel=1e-9, abs=1e-12)


def naive_greedy(
    w: np.ndarray,
    x: np.ndarray,
    b: np.ndarray,
    spec: QuantSpec,
    blocks: Blocks,
    kernel: int,
    metric: str,
    alphas: np.ndarray,
    rounds: int,
) -> np.ndarray:
    """The greedy search written directly on the layer output (no Gram matrix, no vectorization)."""
    in_ch = w.shape[1] // kernel
    s0 = initial_block_scales(w, spec, blocks, kernel)
    grid = np.unique(np.append(alphas, 1.0))
    cur = np.ones_like(s0)
    for _ in range(rounds):
        for r in range(blocks.n_v):
            for c in range(blocks.n_h):

                def err(a: float, r: int = r, c: int = c) -> float:
                    trial = cur.copy()
                    trial[r, c] = a
                    full = expand_blocks(trial * s0, w.shape[0], in_ch, kernel)
                    return layer_output_error(w, dequantize(quantize(w, full, 0, spec), full), x, metric, b)

                errs = [err(a) for a in grid]
                if min(errs) < err(cur[r, c]):
                    cur[r, c] = grid[int(np.argmin(errs))]
    return cur * s0


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("blocks", [Blocks(2, 2), Blocks(3, 4), Blocks(1, 3)])
def test_matches_naive_greedy(metric: str, blocks: Blocks) -> None:
    """Cross-engine check of the Gram / vectorized search against a direct implementation."""
    w, x, b = random_layer(5, out=6, in_ch=4, kernel=3, rows=80)
    alphas = np.linspace(0.6, 1.2, 13)
    spec = QuantSpec(3)
    _, scales = search_block_scales(w, x, spec, blocks, 3, metric, alphas, bias=b, rounds=2)
    np.testing.assert_allclose(scales, naive_greedy(w, x, b, spec, blocks, 3, metric, alphas, 2), rtol=1e-12)


@pytest.mark.parametrize("n_v", [1, 3, 12])
def test_l2_row_groups_are_independent_optima(n_v: int) -> None:
    """With n_H = 1 the L2 error separates over row groups, so greedy = exhaustive search per group."""
    w, x, _ = random_layer(7)
    spec = QuantSpec(3)
    codes, scales = search_block_scales(w, x, spec, (n_v, 1), 3, "l2")
    rb = block_bounds(w.shape[0], n_v)
    for r in range(n_v):
        wr = w[rb[r] : rb[r + 1]]
        s0 = initial_block_scales(wr, spec, Blocks(), 3)[0, 0]
        brute = min(
            layer_output_error(wr, dequantize(quantize(wr, a * s0, 0, spec), a * s0), x)
            for a in np.append(DEFAULT_ALPHAS, 1.0)
        )
        got = layer_output_error(wr, deq(codes, scales, 5, 3)[rb[r] : rb[r + 1]], x)
        assert got == pytest.approx(brute, rel=1e-9, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    bits=st.integers(2, 8),
    n_v=st.integers(1, 12),
    n_h=st.integers(1, 5),
    kernel=st.sampled_from([1, 3, 9]),
)
def test_block_structure(seed: int, bits: int, n_v: int, n_h: int, kernel: int) -> None:
    w, x, _ = random_layer(seed, kernel=kernel)
    spec = QuantSpec(bits)
    codes, scales = search_block_scales(w, x, spec, Blocks(n_v, n_h), kernel)
    assert scales.shape == (n_v, n_h) and scales.size == n_v * n_h
    assert np.all(scales > 0)
    assert codes.dtype == np.int64 and codes.min() >= spec.qmin and codes.max() <= spec.qmax
    full = expand_blocks(scales, 12, 5, kernel)
    assert np.array_equal(codes, quantize(w, full, 0, spec))  # codes are RTN on the found scales
    rb, cb = block_bounds(12, n_v), block_bounds(5, n_h) * kernel
    for i in range(n_v):
        for j in range(n_h):
            block = codes[rb[i] : rb[i + 1], cb[j] : cb[j + 1]]
            assert len(np.unique(block)) <= 2**bits
            assert np.all(full[rb[i] : rb[i + 1], cb[j] : cb[j + 1]] == scales[i, j])
    # column blocks are channel-aligned: the scale can only change at multiples of the kernel size
    changes = np.flatnonzero(np.any(np.diff(full, axis=1) != 0, axis=0)) + 1
    assert np.all(changes % kernel == 0)


def test_n_h_greater_than_one_uses_channel_aligned_blocks() -> None:
    w, x, b = random_layer(11, out=8, in_ch=6, kernel=9)
    w[:, :27] *= 20.0  # the first three input channels are much larger
    spec = QuantSpec(4)
    codes, scales = search_block_scales(w, x, spec, (1, 2), 9)
    assert scales.shape == (1, 2) and scales[0, 0] > 5 * scales[0, 1]
    err_split = layer_output_error(w, deq(codes, scales, 6, 9), x)
    codes1, scales1 = search_block_scales(w, x, spec, (1, 1), 9)
    assert err_split < layer_output_error(w, deq(codes1, scales1, 6, 9), x)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_finer_blocks_beat_per_tensor(metric: str) -> None:
    w, x, b = random_layer(3, out=16, spread=4.0)
    spec = QuantSpec(4)
    errs = {}
    for name, blocks in (("tensor", "tensor"), ("4x1", (4, 1)), ("channel", "channel")):
        codes, scales = search_block_scales(w, x, spec, blocks, 3, metric, bias=b)
        errs[name] = layer_output_error(w, deq(codes, scales, 5, 3), x, metric, b)
    assert errs["channel"] < errs["tensor"]
    assert errs["4x1"] < errs["tensor"]


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
        nn.Conv2d(3, 4, 4, padding="same", padding_mode="reflect"),
        nn.Conv1d(3, 4, 5, stride=2, padding=2),
        nn.Conv1d(3, 4, 4, padding="same", padding_mode="circular"),
        nn.Linear(7, 4),
    ],
)
def test_lowering_reproduces_the_layer(conv: nn.Module) -> None:
    torch.manual_seed(0)
    x = (
        torch.randn(2, 7)
        if isinstance(conv, nn.Linear)
        else torch.randn(2, 3, 9, 10)
        if isinstance(conv, nn.Conv2d)
        else torch.randn(2, 3, 11)
    )
    with torch.no_grad():
        y = conv(x)
        rows = lower_inputs(conv, x)
        y_gemm = rows @ conv.weight.reshape(conv.weight.shape[0], -1).T + conv.bias
    expected = y if y.dim() == 2 else y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])
    torch.testing.assert_close(y_gemm, expected, rtol=1e-5, atol=1e-5)


def tiny_cnn(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4, 10),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.uniform_(0.2, 3.0)
    return model.eval(), torch.randn(64, 1, 8, 8)


@pytest.mark.parametrize("reorder", [False, "sort", "kmeans"])
@pytest.mark.parametrize("inputs", ["float", "quantized"])
def test_model_level(reorder: str | bool, inputs: str) -> None:
    model, x = tiny_cnn()
    y0 = model(x)
    pm = ptq_sl_quantize(prepare(model), x, 4, blocks=(4, 2), reorder=reorder, inputs=inputs)
    layers = quant_layers(pm)
    # uniform blocks are clamped per layer: the first conv has one input channel
    assert [m.blocks for _, m in layers] == [Blocks(4, 1), Blocks(4, 2), Blocks(4, 2)]
    assert all(m.w_codes is not None and m.w_scales.shape == (m.blocks.n_v, m.blocks.n_h) for _, m in layers)
    with torch.no_grad():
        err = float((pm(x) - y0).norm() / y0.norm())
    assert err < 0.2
    if reorder:
        assert [getattr(m, "out_perm", None) is not None for _, m in layers] == [True, True, False]
        for _, m in layers:  # the float function is unchanged by the reordering
            m.clear_weight_quant()
        with torch.no_grad():
            assert float((pm(x) - y0).norm() / y0.norm()) < 1e-5


def test_model_level_per_layer_blocks_and_bits() -> None:
    model, x = tiny_cnn(1)
    pm = prepare(model)
    names = [n for n, _ in quant_layers(pm)]
    ptq_sl_quantize(
        pm, x, dict(zip(names, [8, 4, 3])), blocks=dict(zip(names, ["channel", (2, 8), "tensor"])), metric="cosine"
    )
    layers = [m for _, m in quant_layers(pm)]
    assert [m.w_spec.bits for m in layers] == [8, 4, 3]
    assert [m.blocks for m in layers] == [Blocks(8, 1), Blocks(2, 8), Blocks(1, 1)]
    with pytest.raises(QuantInputError, match="n_H=2 must be in 1..1"):
        ptq_sl_quantize(prepare(model), x, 4, blocks=dict(zip(names, [(1, 2), (1, 1), (1, 1)])))


def test_bad_inputs() -> None:
    w, x, _ = random_layer(0, out=6, in_ch=4, kernel=3)
    spec = QuantSpec(4)
    with pytest.raises(QuantInputError, match="n_V=7"):
        search_block_scales(w, x, spec, (7, 1), 3)
    with pytest.raises(QuantInputError, match="n_H=5"):
        search_block_scales(w, x, spec, (1, 5), 3)
    w_nan = w.copy()
    w_nan[0, 0] = np.nan
    with pytest.raises(QuantInputError, match="non-finite"):
        search_block_scales(w_nan, x, spec, (1, 1), 3)
    x_nan = x.copy()
    x_nan[3, 2] = np.inf
    with pytest.raises(QuantInputError, match="non-finite"):
        search_block_scales(w, x_nan, spec, (1, 1), 3)
    with pytest.raises(QuantInputError, match="empty calibration"):
        search_block_scales(w, x[:0], spec, (1, 1), 3)
    with pytest.raises(QuantInputError, match="bits"):
        search_block_scales(w, x, 9, (1, 1), 3)
    with pytest.raises(QuantInputError, match="bits"):
        search_block_scales(w, x, QuantSpec(9), (1, 1), 3)
    with pytest.raises(QuantInputError, match="metric"):
        search_block_scales(w, x, spec, (1, 1), 3, "kl")
    with pytest.raises(QuantInputError, match="alphas"):
        search_block_scales(w, x, spec, (1, 1), 3, alphas=[])
    with pytest.raises(QuantInputError, match="do not match"):
        search_block_scales(w, x[:, :5], spec, (1, 1), 3)
    with pytest.raises(QuantInputError, match="multiple of the kernel"):
        search_block_scales(w, x, spec, (1, 1), 5)

    model, xm = tiny_cnn()
    with pytest.raises(QuantInputError, match="empty calibration"):
        ptq_sl_quantize(prepare(model), xm[:0], 4)
    bad = xm.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantInputError, match="non-finite"):
        ptq_sl_quantize(prepare(model), bad, 4)
    with pytest.raises(QuantInputError, match="bits"):
        ptq_sl_quantize(prepare(model), xm, 9)
    with pytest.raises(QuantInputError, match="prepare"):
        ptq_sl_quantize(model, xm, 4)
    with pytest.raises(QuantInputError, match="reorder"):
        ptq_sl_quantize(prepare(model), xm, 4, reorder="random")
    for msg in (str(e.value) for e in [pytest.raises(QuantInputError, search_block_scales, w, x, spec, (7, 1), 3)]):
        assert "\n" not in msg


# ------------------------------------------------------------------------------------------------ grouped convs
@pytest.mark.parametrize(("groups", "blocks"), [(8, "channel"), (4, (8, 2)), (2, (4, 1))])
def test_grouped_conv_is_searched_group_by_group(groups: int, blocks) -> None:  # noqa: ANN001
    """A grouped conv's codes and scales are exactly what the search gives each group's own GEMM (its weight rows
    and its own lowered input channels), and the layer output error is the groups' errors combined."""
    torch.manual_seed(groups)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
    q = prepare(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 2)))
    x = torch.randn(16, 8, 6, 6)
    ptq_sl_quantize(q, x, 3, blocks=blocks)
    layer = q[0]
    b = resolve_blocks(blocks, 8, 8 // groups, clamp=True, groups=groups)
    assert (layer.blocks.n_v, layer.blocks.n_h) == (b.n_v, b.n_h)
    per, cin = 8 // groups, 8 // groups
    w = layer.gemm_weight()
    for g in range(groups):
        sub = nn.Conv2d(cin, per, 3, padding=1)
        rows = lower_inputs(sub, x[:, g * cin : (g + 1) * cin])
        codes, scales = search_block_scales(w[g * per : (g + 1) * per], rows, 3, Blocks(b.n_v // groups, b.n_h), 9)
        assert np.array_equal(layer.w_codes[g * per : (g + 1) * per], codes)
        assert np.array_equal(layer.w_scales[g * (b.n_v // groups) : (g + 1) * (b.n_v // groups)], scales)
    xd, bias = x.double(), layer.layer.bias.detach().double()
    y = torch.nn.functional.conv2d(xd, torch.as_tensor(w).reshape(8, cin, 3, 3), bias, padding=1, groups=groups)
    yq = torch.nn.functional.conv2d(xd, layer.w_deq.double(), bias, padding=1, groups=groups)
    assert layer.ptq_sl_rel_err == pytest.approx(float((y - yq).norm() / y.norm()), rel=1e-6)  # w_deq: float32


def test_grouped_row_blocks_must_stay_inside_groups() -> None:
    assert resolve_blocks((3, 1), 16, 1, clamp=True, groups=16) == Blocks(16, 1)  # rounded up, per channel
    assert resolve_blocks((1, 1), 32, 1, clamp=True, groups=16) == Blocks(16, 1)
    with pytest.raises(QuantInputError, match="cross the 4 groups"):
        resolve_blocks((6, 1), 12, 2, groups=4)
    resolve_blocks((8, 1), 16, 2, groups=4)
