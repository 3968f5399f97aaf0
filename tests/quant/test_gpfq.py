"""Tests of quant.gpfq: the greedy path-following quantizer, single layer and network level."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from accuracy_stats import assert_beats, assert_within, correct
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from quant.errors import QuantInputError
from quant.fakequant import QuantLayer, prepare, quant_layers
from quant.gpfq import (
    DEFAULT_SCALE_GRID,
    alphabet_scales,
    full_code_multiplier,
    gpfq_quantize,
    layer_inputs_2d,
    quantize_weights,
)
from quant.quantizer import Blocks, QuantSpec, block_bounds, block_scales, expand_blocks
from quant.rtn import rtn_quantize

NS = [64, 128, 256, 512, 1024, 2048, 4096]
M = 64


def _rtn(w: np.ndarray, step: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(w / step), lo, hi) * step


def _decay_run(dist: str, alphabet: str, bits: int, seeds=range(5)):
    """Relative errors [seed, N] of GPFQ and of RTN on the same alphabet, one neuron, Gaussian X [64, N]."""
    gp = np.zeros((len(seeds), len(NS)))
    rt = np.zeros_like(gp)
    scale_w = np.zeros_like(gp)
    half = 1 << (bits - 1)
    lo, hi = (-half, half - 1) if alphabet == "bbit" else (-half, half)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for j, n in enumerate(NS):
            x = rng.standard_normal((M, n))
            w = rng.uniform(-1, 1, (1, n)) if dist == "uniform" else rng.standard_normal((1, n))
            y = x @ w[0]
            q = quantize_weights(w, x, bits, alphabet=alphabet)
            step = alphabet_scales(w, bits, Blocks(1, 1), alphabet=alphabet)[0, 0]
            r = _rtn(w, step, lo, hi)
            gp[i, j] = np.sum((y - x @ q[0]) ** 2) / np.sum(y**2)
            rt[i, j] = np.sum((y - x @ r[0]) ** 2) / np.sum(y**2)
            scale_w[i, j] = np.max(w**2) / np.mean(w**2)
    return gp, rt, scale_w


def _slope(err: np.ndarray) -> float:
    return float(np.polyfit(np.log(NS), np.log(err), 1)[0])


# ------------------------------------------------------------------------------------------------------------------
# error decay (Lybrand & Saab / Zhang, Zhou & Saab: relative error ~ m log N / N)


@pytest.mark.parametrize("bits", [3, 4])
def test_error_decay_paper_alphabet_uniform_weights(bits):
    gp, rt, _ = _decay_run("uniform", "paper", bits)
    geo = np.exp(np.log(gp).mean(axis=0))
    # measured: -0.92 (3 bits) / -0.88 (4 bits) over N = 64..4096, about -1.0 for N >= 256 (m log N / N)
    assert _slope(geo) < -0.8
    assert all(_slope(g) < -0.65 for g in gp)
    assert (gp < rt).all()  # beats round-to-nearest on the same alphabet at every N and seed
    assert (rt[:, -1] / gp[:, -1] > 10).all()  # by a wide margin once N >> m


@pytest.mark.parametrize("bits", [3, 4])
def test_error_decay_gaussian_weights(bits):
    """Gaussian weights: the step grows with max|w| ~ sqrt(2 log N), so the raw slope is shallower (~ -0.65,
    i.e. (log N)^2 / N); normalizing by max(w^2) / mean(w^2) recovers ~ -0.88."""
    gp, rt, scale_w = _decay_run("gauss", "paper", bits)
    geo = np.exp(np.log(gp).mean(axis=0))
    assert _slope(geo) < -0.55
    assert _slope(np.exp(np.log(gp / scale_w).mean(axis=0))) < -0.8
    assert (gp < rt).all()


@pytest.mark.parametrize("dist", ["uniform", "gauss"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_error_decay_bbit_codes(dist, bits):
    """True b-bit codes (2^b levels, max-abs scale) decay at the same rate."""
    gp, rt, _ = _decay_run(dist, "bbit", bits)
    geo = np.exp(np.log(gp).mean(axis=0))
    assert _slope(geo) < (-0.8 if dist == "uniform" else -0.55)
    assert (gp.mean(axis=0) < rt.mean(axis=0)).all()  # on average at every N (at N = m they are close)
    assert (gp[:, 1:] < rt[:, 1:]).all()  # and on every seed once N >= 2m


# ------------------------------------------------------------------------------------------------------------------
# single-layer invariants


@settings(max_examples=60, deadline=None)
@given(
    out=st.integers(1, 9),
    in_ch=st.integers(1, 6),
    kernel=st.sampled_from([1, 3, 4]),
    bits=st.integers(2, 8),
    alphabet=st.sampled_from(["bbit", "paper"]),
    seed=st.integers(0, 2**16),
    nv=st.integers(1, 9),
    nh=st.integers(1, 6),
    m=st.integers(1, 40),
    noise=st.sampled_from([0.0, 0.3]),
)
def test_codes_in_range_and_levels_per_block(out, in_ch, kernel, bits, alphabet, seed, nv, nh, m, noise):
    rng = np.random.default_rng(seed)
    nv, nh = min(nv, out), min(nh, in_ch)
    cols = in_ch * kernel
    w = rng.standard_normal((out, cols)) * rng.uniform(0.01, 10)
    x = rng.standard_normal((m, cols))
    xq = x + noise * rng.standard_normal((m, cols))
    blocks = Blocks(nv, nh)
    codes, scales = quantize_weights(w, x, bits, xq, blocks=blocks, kernel=kernel, alphabet=alphabet, return_codes=True)
    half = 1 << (bits - 1)
    hi = half - 1 if alphabet == "bbit" else half
    assert codes.dtype == np.int64 and codes.shape == w.shape and scales.shape == (nv, nh)
    assert codes.min() >= -half and codes.max() <= hi
    deq = quantize_weights(w, x, bits, xq, blocks=blocks, kernel=kernel, alphabet=alphabet)
    np.testing.assert_array_equal(deq, codes * expand_blocks(scales, out, in_ch, kernel))
    rb, cb = block_bounds(out, nv), block_bounds(in_ch, nh) * kernel
    limit = (1 << bits) + (alphabet == "paper")
    for i, j in itertools.product(range(nv), range(nh)):
        assert len(np.unique(deq[rb[i] : rb[i + 1], cb[j] : cb[j + 1]])) <= limit
    if alphabet == "bbit":  # the default step is max|W_block| / 2^(b-1): RTN's step times (2^(b-1) - 1) / 2^(b-1)
        np.testing.assert_allclose(scales, block_scales(w, blocks, QuantSpec(bits), kernel) * (half - 1) / half)


def test_paper_alphabet_step_and_codes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 40))
    x = rng.standard_normal((100, 40))
    codes, delta = quantize_weights(w, x, 3, blocks=Blocks(1, 1), alphabet="paper", C=1.16, return_codes=True)
    np.testing.assert_allclose(delta[0, 0], 1.16 * np.abs(w).max(axis=1).mean() / 4)
    assert codes.min() >= -4 and codes.max() <= 4
    assert np.abs(codes).max() == 4  # uses the 2^b + 1-th level (needs b + 1 bits)


def test_torch_numpy_round_trip():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 12))
    x = rng.standard_normal((30, 12))
    ref = quantize_weights(w, x, 4)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float64
    out32 = quantize_weights(w.astype(np.float32), x, 4)
    assert isinstance(out32, np.ndarray) and out32.dtype == np.float32
    wt = torch.tensor(w, dtype=torch.float32)
    got = quantize_weights(wt, torch.tensor(x), 4, torch.tensor(x, dtype=torch.float64))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == wt.shape
    codes, scales = quantize_weights(wt, x, 4, return_codes=True)
    np.testing.assert_array_equal(got.numpy(), (codes * scales).astype(np.float32))
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-6, atol=1e-6)
    got64 = quantize_weights(torch.tensor(w), x, 4)
    assert got64.dtype == torch.float64
    np.testing.assert_array_equal(got64.numpy(), ref)


@pytest.mark.parametrize("seed", range(6))
def test_gram_form_equals_direct_form(seed):
    rng = np.random.default_rng(seed)
    m, cols, out = [(50, 20, 7), (10, 30, 3), (200, 64, 16), (5, 5, 1), (300, 9, 12), (40, 120, 4)][seed]
    w = rng.standard_normal((out, cols))
    x = rng.standard_normal((m, cols))
    xq = x + 0.2 * rng.standard_normal((m, cols))
    xq[:, 2] = 0.0  # a dead column
    for bits, alphabet in [(2, "bbit"), (4, "bbit"), (3, "paper")]:
        a = quantize_weights(w, x, bits, xq, method="gram", alphabet=alphabet, return_codes=True)
        b = quantize_weights(w, x, bits, xq, method="direct", alphabet=alphabet, return_codes=True)
        np.testing.assert_array_equal(a[0], b[0])
        grid = [0.4, 0.7, 1.0]
        a = quantize_weights(w, x, bits, xq, method="gram", scale_grid=grid, return_codes=True)
        b = quantize_weights(w, x, bits, xq, method="direct", scale_grid=grid, return_codes=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("method", ["gram", "direct"])
def test_scale_invariance_no_absolute_thresholds(method):
    """Scaling X by a power of two changes no code: no guard depends on the units of X (see module doc)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 16))
    x = rng.standard_normal((40, 16))
    xq = x + 0.1 * rng.standard_normal((40, 16))
    ref = quantize_weights(w, x, 3, xq, method=method, return_codes=True)[0]
    for c in (2.0**-40, 2.0**-20, 2.0**30):
        np.testing.assert_array_equal(quantize_weights(w, c * x, 3, c * xq, method=method, return_codes=True)[0], ref)


@pytest.mark.parametrize("method", ["gram", "direct"])
def test_dead_column_takes_round_to_nearest(method):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((5, 8))
    x = rng.standard_normal((30, 8))
    x[:, 3] = 0.0
    codes, scales = quantize_weights(w, x, 3, method=method, return_codes=True)
    rtn = np.clip(np.rint(w / scales), -4, 3)
    np.testing.assert_array_equal(codes[:, 3], rtn[:, 3])


def test_first_column_is_round_to_nearest_and_single_column_equals_rtn():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((7, 10))
    x = rng.standard_normal((25, 10))
    codes, scales = quantize_weights(w, x, 3, return_codes=True)
    np.testing.assert_array_equal(codes[:, 0], np.clip(np.rint(w[:, 0] / scales[:, 0]), -4, 3))
    c1, s1 = quantize_weights(w[:, :1], x[:, :1], 3, return_codes=True)
    np.testing.assert_array_equal(c1, np.clip(np.rint(w[:, :1] / s1), -4, 3))


def test_small_projection_is_not_replaced_by_rtn():
    """After q_1 = 1 for w_1 = 0.6 the path carries -2.4 along x_2, which exactly cancels w_2 = 2.4: the
    projection is ~1e-16, GPFQ picks q_2 = 0 and the output error is 0.  The reference code's "projection < 1e-10
    -> Q(w_t)" guard would pick q_2 = 2 and leave an error of 2 (lowbit drops that guard; module doc)."""
    x = np.array([[6.0, 1.0], [0.0, 0.0]])
    w = np.array([[0.6, 2.4]])
    codes, _ = quantize_weights(w, x, 3, blocks=Blocks(1, 1), scales=np.array([[1.0]]), return_codes=True)
    assert codes.tolist() == [[1, 0]]
    assert abs(float((x @ w[0] - x @ codes[0].astype(float))[0])) < 1e-12


@pytest.mark.parametrize("n_in", [2, 3, 4, 5, 6])
def test_tiny_layers_usually_beat_rtn_and_never_beat_the_optimum(n_in):
    """Greedy, not optimal: GPFQ <= RTN on most random draws (measured 92-100 %); brute force bounds it below."""
    wins, trials = 0, 80
    for seed in range(trials):
        rng = np.random.default_rng(1000 * n_in + seed)
        x = rng.standard_normal((20, n_in))
        xq = x + (0.1 if seed % 2 else 0.0) * rng.standard_normal((20, n_in))
        w = rng.standard_normal((1, n_in))
        codes, scales = quantize_weights(w, x, 2, xq, return_codes=True)
        s = scales[0, 0]
        y = x @ w[0]
        cands = np.array(list(itertools.product(range(-2, 2), repeat=n_in)), dtype=np.float64)
        e_opt = float((((xq @ (cands * s).T) - y[:, None]) ** 2).sum(axis=0).min())
        e_gpfq = float(np.sum((y - xq @ (codes[0] * s)) ** 2))
        e_rtn = float(np.sum((y - xq @ (np.clip(np.rint(w[0] / s), -2, 1) * s)) ** 2))
        assert e_opt <= e_gpfq + 1e-9
        wins += e_gpfq <= e_rtn + 1e-12
    assert wins >= 0.8 * trials


def test_scale_grid_never_increases_calibration_error():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((12, 60))
    x = rng.standard_normal((300, 60))
    xq = x + 0.1 * rng.standard_normal((300, 60))

    def err(q):
        return float(np.sum((x @ w.T - xq @ q.T) ** 2))

    for bits in (2, 3, 4):
        for blocks in (Blocks(12, 1), Blocks(3, 2), Blocks(1, 1)):
            base = err(quantize_weights(w, x, bits, xq, blocks=blocks))
            searched = err(quantize_weights(w, x, bits, xq, blocks=blocks, scale_grid=np.linspace(0.3, 1.0, 15)))
            assert searched <= base * (1 + 1e-12)


def test_explicit_scales_and_C():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 9))
    x = rng.standard_normal((20, 9))
    _, s = quantize_weights(w, x, 4, scales=np.full((4, 1), 0.25), return_codes=True)
    assert (s == 0.25).all()
    _, s = quantize_weights(w, x, 4, C=0.5, return_codes=True)
    np.testing.assert_allclose(s, 0.5 * block_scales(w, Blocks(4, 1), QuantSpec(4)))


def _cases():
    w = np.ones((3, 4))
    x = np.ones((5, 4))
    nan_w = w.copy()
    nan_w[0, 0] = np.nan
    inf_x = x.copy()
    inf_x[1, 1] = np.inf
    return [
        ("non-finite", (nan_w, x, 4), {}),
        ("non-finite", (w, inf_x, 4), {}),
        ("non-finite", (w, x, 4, inf_x), {}),
        ("empty calibration", (w, np.ones((0, 4)), 4), {}),
        ("columns", (w, np.ones((5, 5)), 4), {}),
        ("X_quantized", (w, x, 4, np.ones((6, 4))), {}),
        ("2-D", (np.ones(4), x, 4), {}),
        ("bits", (w, x, 1), {}),
        ("bits", (w, x, 9), {}),
        ("bits", (w, x, 3.5), {}),
        ("bits", (w, x, True), {}),
        ("alphabet", (w, x, 4), {"alphabet": "ternary"}),
        ("not both", (w, x, 4), {"scales": np.ones((3, 1)), "C": 1.0}),
        ("C must", (w, x, 4), {"C": -1.0}),
        ("scales must be positive", (w, x, 4), {"scales": np.zeros((3, 1))}),
        ("scale_grid", (w, x, 4), {"scale_grid": []}),
        ("kernel", (w, x, 4), {"kernel": 3}),
        ("method", (w, x, 4), {"method": "fast"}),
        ("n_V", (w, x, 4), {"blocks": Blocks(4, 1)}),
    ]


@pytest.mark.parametrize("needle,args,kwargs", _cases())
def test_bad_inputs(needle, args, kwargs):
    with pytest.raises(QuantInputError) as info:
        quantize_weights(*args, **kwargs)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------------------------
# lowering convolutions


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2, padding=1),
        dict(stride=1, padding=0),
        dict(stride=2, padding=2, dilation=2),
        dict(stride=1, padding="same"),
        dict(stride=1, padding=1, padding_mode="reflect"),
        dict(stride=1, padding=2, padding_mode="replicate", dilation=(1, 2)),
        dict(stride=(2, 1), padding=(1, 0)),
    ],
)
def test_conv2d_patches_match_conv(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=False, **kw)
    x = torch.randn(4, 3, 9, 8, dtype=torch.float64)
    conv = conv.double()
    y = conv(x)
    p = torch.from_numpy(layer_inputs_2d(QuantLayer(conv), x))
    got = (p @ conv.weight.reshape(5, -1).T).reshape(4, -1, 5).permute(0, 2, 1).reshape(y.shape)
    torch.testing.assert_close(got, y)
    if kw == dict(stride=2, padding=1):
        torch.testing.assert_close(got, F.conv2d(x, conv.weight, None, stride=2, padding=1))


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2, padding=2),
        dict(stride=1, padding=0, dilation=3),
        dict(stride=3, padding=1, padding_mode="circular"),
    ],
)
def test_conv1d_patches_match_conv(kw):
    torch.manual_seed(1)
    conv = nn.Conv1d(4, 6, 5, bias=False, **kw).double()
    x = torch.randn(3, 4, 21, dtype=torch.float64)
    y = conv(x)
    p = torch.from_numpy(layer_inputs_2d(conv, x))
    got = (p @ conv.weight.reshape(6, -1).T).reshape(3, -1, 6).permute(0, 2, 1)
    torch.testing.assert_close(got, y)


# ------------------------------------------------------------------------------------------------------------------
# network level


def _small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 12, 3, stride=2, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 24),
        nn.ReLU(),
        nn.Linear(24, 10),
    )
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _rel_out_err(model, ref, x):
    with torch.no_grad():
        y, yf = model(x), ref(x)
    return float(((y - yf) ** 2).sum() / (yf**2).sum())


@pytest.fixture(scope="module")
def cnn_data():
    g = torch.Generator().manual_seed(0)
    calib = torch.randn(128, 3, 10, 10, generator=g)
    test = torch.randn(128, 3, 10, 10, generator=g)
    return calib, test


@pytest.mark.parametrize("bits", [3, 4])
def test_network_gpfq_beats_rtn(cnn_data, bits):
    calib, test = cnn_data
    ref = prepare(_small_cnn())
    rtn = rtn_quantize(prepare(_small_cnn()), bits)
    model = prepare(_small_cnn())
    report = []
    out = gpfq_quantize(model, calib, bits, report=report)
    assert out is model
    assert [r["name"] for r in report] == [n for n, _ in quant_layers(model)]
    assert all(0 <= r["rel_sq_error"] <= r["rel_sq_error_mult1"] < 1 for r in report)
    for _, layer in quant_layers(model):
        assert layer.w_codes is not None and layer.w_spec == QuantSpec(bits)
        assert layer.w_codes.min() >= -(1 << (bits - 1)) and layer.w_codes.max() <= (1 << (bits - 1)) - 1
    e_g, e_r = _rel_out_err(model, ref, test), _rel_out_err(rtn, ref, test)
    assert e_g < 0.7 * e_r
    plain = gpfq_quantize(prepare(_small_cnn()), calib, bits, scale_search=False, bias_correction=False)
    assert _rel_out_err(plain, ref, test) < e_r


def test_network_variants(cnn_data):
    calib, test = cnn_data
    calib = calib[:64]
    fast = dict(scale_search=False)
    ref = prepare(_small_cnn())
    names = [n for n, _ in quant_layers(ref)]
    bits = dict(zip(names, [8, 4, 3, 4, 6]))
    mixed = gpfq_quantize(prepare(_small_cnn()), calib, bits, **fast)
    assert [m.w_spec.bits for _, m in quant_layers(mixed)] == [8, 4, 3, 4, 6]
    paper = gpfq_quantize(prepare(_small_cnn()), calib, 3, alphabet="paper", **fast)
    for _, m in quant_layers(paper):
        assert m.w_spec == QuantSpec(4) and m.w_codes.min() >= -4 and m.w_codes.max() <= 4
    sl = gpfq_quantize(prepare(_small_cnn()), calib, 4, granularity=Blocks(2, 2))
    assert all(m.blocks == Blocks(2, 2) and m.w_scales.shape == (2, 2) for _, m in quant_layers(sl))
    tens = gpfq_quantize(prepare(_small_cnn()), calib, 4, granularity="tensor", **fast)
    assert all(m.w_scales.shape == (1, 1) for _, m in quant_layers(tens))
    a = gpfq_quantize(prepare(_small_cnn()), calib, 4, patch_fraction=0.3, seed=1, **fast)
    b = gpfq_quantize(prepare(_small_cnn()), calib, 4, patch_fraction=0.3, seed=1, **fast)
    for (_, la), (_, lb) in zip(quant_layers(a), quant_layers(b)):
        np.testing.assert_array_equal(la.w_codes, lb.w_codes)
    assert _rel_out_err(a, ref, test) < _rel_out_err(rtn_quantize(prepare(_small_cnn()), 4), ref, test)
    d = gpfq_quantize(prepare(_small_cnn()), calib, 4, method="direct")
    g = gpfq_quantize(prepare(_small_cnn()), calib, 4, method="gram")
    for (_, ld), (_, lg) in zip(quant_layers(d), quant_layers(g)):
        np.testing.assert_array_equal(ld.w_codes, lg.w_codes)


def test_grouped_conv_rows_only_see_their_group():
    """Depthwise conv: each output channel is quantized against its own input channel only."""
    torch.manual_seed(2)
    net = prepare(nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=4)))
    calib = torch.randn(16, 4, 6, 6)
    layer = quant_layers(net)[0][1]
    w = layer.gemm_weight()
    x = layer_inputs_2d(layer, calib)
    gpfq_quantize(net, calib, 3, scale_search=False, bias_correction=False)
    for g in range(4):
        rows, cols = slice(2 * g, 2 * g + 2), slice(9 * g, 9 * g + 9)
        codes = quantize_weights(w[rows], x[:, cols], 3, kernel=9, return_codes=True)[0]
        np.testing.assert_array_equal(layer.w_codes[rows], codes)


def test_bias_correction_zeroes_the_mean_output_error_of_the_last_layer(cnn_data):
    calib, _ = cnn_data
    ref = prepare(_small_cnn())
    model = gpfq_quantize(prepare(_small_cnn()), calib, 3)
    with torch.no_grad():
        diff = (ref(calib) - model(calib)).double()
    assert diff.mean(dim=0).abs().max() < 1e-4 * diff.abs().mean()
    raw = gpfq_quantize(prepare(_small_cnn()), calib, 3, bias_correction=False)
    with torch.no_grad():
        assert (ref(calib) - raw(calib)).mean(dim=0).abs().max() > 1e-3


def test_float_layers_and_inputs_are_unchanged(cnn_data):
    calib, _ = cnn_data
    model = prepare(_small_cnn())
    before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
    calib_copy = calib.clone()
    gpfq_quantize(model, calib, 4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(calib, calib_copy)


@pytest.mark.parametrize(
    "needle,kwargs",
    [
        ("no entry", {"w_bits": {"0": 4}}),
        ("unknown layers", {"w_bits": {"0": 4, "3": 4, "5": 4, "8": 4, "10": 4, "99": 4}}),
        ("seed", {"w_bits": 4, "seed": -1}),
        ("bits", {"w_bits": 9}),
        ("needs 9-bit", {"w_bits": 8, "alphabet": "paper"}),
        ("patch_fraction", {"w_bits": 4, "patch_fraction": 0.0}),
        ("granularity", {"w_bits": 4, "granularity": "row"}),
        ("alphabet", {"w_bits": 4, "alphabet": "nf4"}),
    ],
)
def test_network_bad_inputs(cnn_data, needle, kwargs):
    calib, _ = cnn_data
    with pytest.raises(QuantInputError, match=needle):
        gpfq_quantize(prepare(_small_cnn()), calib, **kwargs)


def test_network_bad_model_and_data(cnn_data):
    calib, _ = cnn_data
    with pytest.raises(QuantInputError, match="prepare"):
        gpfq_quantize(_small_cnn(), calib, 4)
    with pytest.raises(QuantInputError, match="empty"):
        gpfq_quantize(prepare(_small_cnn()), calib[:0], 4)
    bad = calib.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantInputError, match="non-finite"):
        gpfq_quantize(prepare(_small_cnn()), bad, 4)


# ------------------------------------------------------------------------------------------------------------------
# the real models (quant.models): GPFQ vs RTN, weights only and w4a8


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-cnn", "mnist1d-cnn"])
def test_real_models_gpfq_beats_rtn(name):
    """GPFQ against RTN on the shipped models of seeds 0-2, on statistics the data resolve: the relative logit
    error over the whole test set (every logit counts, not only the argmax); on mnist1d also accuracy on 20 000
    fresh signals from mnist1d's generator (McNemar, ``Z`` standard errors), and the docs' target (GPFQ w4a8 within
    1 point of float). Digits accuracy is not compared: at w3 and w4 the methods differ by 0-5 of 397 images, and
    4 standard errors of even one discordant image are 1 point, so that test set resolves neither claim."""
    from quant.fakequant import calibrate_activations
    from quant.models import get_model, model_split
    from quant.models.holdout import mnist1d_holdout

    split = model_split(name)
    test_x, test_y = mnist1d_holdout(20_000, 1) if name == "mnist1d-cnn" else (split.test_x, split.test_y)
    for seed in (0, 1, 2):
        model = get_model(name, seed=seed)
        ref = prepare(model)
        for bits in (3, 4):
            rtn = rtn_quantize(prepare(model), bits)
            gp = gpfq_quantize(prepare(model), split.calib_x, bits)
            # at least 3 dB better logit SQNR than RTN (measured 6.6-19 dB over these models, seeds and widths)
            assert _rel_out_err(gp, ref, split.test_x) < 0.5 * _rel_out_err(rtn, ref, split.test_x), (seed, bits)
            if name == "mnist1d-cnn":
                assert_beats(correct(gp, test_x, test_y), correct(rtn, test_x, test_y), f"seed {seed} w{bits}")
        if name == "mnist1d-cnn":  # the docs' target, with the statistical margin to spare
            w4a8 = gpfq_quantize(prepare(model), split.calib_x, 4)
            calibrate_activations(w4a8, split.calib_x, 8)
            assert_within(correct(w4a8, test_x, test_y), correct(ref, test_x, test_y), 1.0, f"seed {seed} w4a8")


def _correlated_layer(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 64)) @ rng.standard_normal((64, 64)) * 0.3 + rng.standard_normal((256, 64))
    return rng.standard_normal((32, 64)), x


@pytest.mark.parametrize("bits, most", [(2, 0.5), (3, 0.8)])
def test_default_step_uses_every_code_and_beats_rtns_step(bits, most):
    """Without a search the default step max|W| / 2^(b-1) reaches the bottom code, and on every one of 8 random
    layers its output error is well below that of RTN's step (measured ~0.32x at 2 bits, ~0.65x at 3 bits)."""
    for seed in range(8):
        w, x = _correlated_layer(seed)
        codes, _ = quantize_weights(w, x, bits, return_codes=True)
        assert codes.min() == -(1 << (bits - 1))
        err = [float(((x @ (w - quantize_weights(w, x, bits, C=c)).T) ** 2).sum()) for c in (None, 1.0)]
        assert err[0] < most * err[1]


@pytest.mark.parametrize("bits", [2, 3])
def test_default_search_never_worse_than_the_default_step(bits):
    """The default grid contains the no-search multiplier at 2 and 3 bits, and rows are searched independently, so
    the searched layer's calibration error is at most the plain layer's (up to rounding)."""
    assert full_code_multiplier(bits) in DEFAULT_SCALE_GRID
    for seed in range(4):
        w, x = _correlated_layer(seed)
        plain = ((x @ (w - quantize_weights(w, x, bits)).T) ** 2).sum()
        searched = ((x @ (w - quantize_weights(w, x, bits, scale_grid=DEFAULT_SCALE_GRID)).T) ** 2).sum()
        assert searched <= plain * (1 + 1e-9)
