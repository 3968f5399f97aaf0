"""Fixed-point requantization primitives: exact against rational arithmetic, saturation, overflow bounds."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from quant.errors import QuantInputError
from quant.export import build_integer_model
from quant.fakequant import ActQuant, prepare, quant_layers
from quant.quantizer import Blocks, QuantSpec
from quant.requant import (
    INT32_MAX,
    INT32_MIN,
    MAX_SHIFT,
    MULT_MAX,
    MULT_MIN,
    max_reduction_length,
    quantize_multipliers,
    requantize,
    round_half_even,
    round_half_up,
    rounding_shift,
    worst_case_psum,
)

HALF = Fraction(1, 2)


def exact_shift(a: int, s: int) -> int:
    """floor(a / 2^s + 1/2) with rationals."""
    return math.floor(Fraction(a, 1 << s) + HALF)


# --------------------------------------------------------------------------------------------------- rounding shift
@settings(max_examples=500, deadline=None)
@given(st.integers(1, MAX_SHIFT), st.data())
def test_rounding_shift_is_round_half_up_of_the_exact_quotient(s: int, data: st.DataObject) -> None:
    limit = (1 << 63) - 1 - (1 << (s - 1))
    a = data.draw(st.integers(-limit, limit))
    assert int(rounding_shift(a, s)) == exact_shift(a, s)


def test_rounding_shift_exhaustive_small_range() -> None:
    a = np.arange(-(1 << 13), 1 << 13, dtype=np.int64)
    for s in range(1, 14):
        got = rounding_shift(a, s)
        want = np.array([exact_shift(int(v), s) for v in a])
        np.testing.assert_array_equal(got, want)


def test_rounding_shift_ties_go_up_and_vectorised_shifts() -> None:
    # ties: -0.5 -> 0, 0.5 -> 1, -1.5 -> -1, 1.5 -> 2 (towards +inf)
    np.testing.assert_array_equal(rounding_shift(np.array([-1, 1, -3, 3]), 1), [0, 1, -1, 2])
    a = np.array([[100], [-100]])
    np.testing.assert_array_equal(rounding_shift(a, np.array([1, 2, 3])), [[50, 25, 13], [-50, -25, -12]])
    for bad in (0, MAX_SHIFT + 1):
        with pytest.raises(QuantInputError):
            rounding_shift(5, bad)


def test_round_helpers() -> None:
    assert [round_half_up(Fraction(k, 2)) for k in (-3, -1, 1, 3)] == [-1, 0, 1, 2]
    assert [round_half_even(Fraction(k, 2)) for k in (-3, -1, 1, 3)] == [-2, 0, 0, 2]


# --------------------------------------------------------------------------------------- multiplier decomposition
def check_decomposition(reals: list[Fraction]) -> None:
    mults, shift = quantize_multipliers(reals)
    assert 1 <= shift <= MAX_SHIFT
    assert all(0 <= m <= MULT_MAX for m in mults)
    assert np.array(mults, dtype=np.int32).tolist() == mults and np.int32(shift) == shift  # fit int32
    two_s = Fraction(2) ** shift
    top = max(range(len(reals)), key=lambda i: reals[i])
    if shift < MAX_SHIFT:
        assert MULT_MIN <= mults[top] <= MULT_MAX
        # relative error of the largest multiplier <= 2^-31 (up to the normalisation slack 2^-30)
        assert abs(Fraction(mults[top]) / two_s - reals[top]) <= reals[top] * Fraction(1, 1 << 31) * (
            1 + Fraction(1, 1 << 29)
        )
    for m, r in zip(mults, reals):
        assert m == round_half_up(r * two_s)
        assert abs(Fraction(m) / two_s - r) <= HALF / two_s


positive = st.floats(min_value=2.0**-45, max_value=2.0**29.9, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(st.lists(positive, min_size=1, max_size=6))
def test_multiplier_decomposition_is_exact(reals: list[float]) -> None:
    check_decomposition([Fraction(r) for r in reals])


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 1.0), st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=4), st.floats(1e-4, 10.0))
def test_real_multipliers_from_scales_fit_int32(sx: float, sws: list[float], sy: float) -> None:
    check_decomposition([Fraction(sx) * Fraction(sw) / Fraction(sy) for sw in sws])


def test_multiplier_edge_cases() -> None:
    # rounds up to 2^31 -> the shift drops by one and the multiplier renormalises to 2^30
    just_below = 1 - Fraction(1, 1 << 33)  # * 2^31 = 2^31 - 1/4
    mults, shift = quantize_multipliers([just_below])
    assert mults == [1 << 30] and shift == 30
    assert quantize_multipliers([1 - Fraction(3, 1 << 33)]) == ([MULT_MAX], 31)  # 2^31 - 3/4 stays
    check_decomposition([just_below, Fraction(1, 3), Fraction(1, 1 << 40)])
    for power in range(-30, 30):  # exact powers of two are exact
        mults, shift = quantize_multipliers([Fraction(2) ** power])
        assert Fraction(mults[0]) / Fraction(2) ** shift == Fraction(2) ** power
    mults, shift = quantize_multipliers([Fraction(1, 1 << 50)])  # tiny: shift capped, absolute error 2^-63
    assert shift == MAX_SHIFT and mults == [1 << 12]
    with pytest.raises(QuantInputError):
        quantize_multipliers([Fraction(1 << 30)])
    with pytest.raises(QuantInputError):
        quantize_multipliers([Fraction(1), Fraction(0)])


# ------------------------------------------------------------------------------------------ saturation corners
def test_requantize_saturates_at_the_code_range() -> None:
    acc = np.array([-(1 << 62), -(1 << 40), -1, 0, 1 << 40, (1 << 62) - 1], dtype=np.int64)
    np.testing.assert_array_equal(requantize(acc, 40, 0, 0, 255), [0, 0, 0, 0, 1, 255])
    np.testing.assert_array_equal(requantize(acc, 30, 3, 0, 15), [0, 0, 3, 3, 15, 15])
    np.testing.assert_array_equal(
        requantize(acc, 1, 0, INT32_MIN, INT32_MAX), [INT32_MIN, INT32_MIN, 0, 0, INT32_MAX, INT32_MAX]
    )
    # a fused ReLU is the lower clamp at the zero point
    np.testing.assert_array_equal(requantize(np.array([-(5 << 10), 5 << 10]), 10, 7, 7, 255), [7, 12])


# -------------------------------------------------------------------- partial-sum and accumulator overflow bounds
def test_documented_int32_partial_sum_bound() -> None:
    k = max_reduction_length(8, 8)
    assert k == 65793
    assert worst_case_psum(k, 8, 8) <= INT32_MAX < worst_case_psum(k + 1, 8, 8)
    assert max_reduction_length(4, 4) == INT32_MAX // (15 * 8)
    # the most negative reachable sum (x - z = 255, w = -128) still fits
    assert INT32_MIN <= -255 * 128 * k


def single_linear(k: int, out: int = 1, with_next: bool = False, w_bits: int = 8) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(k, out, bias=False)]
    if with_next:
        layers += [nn.ReLU(), nn.Linear(out, 1)]
    return prepare(nn.Sequential(*layers))


def test_worst_case_layer_runs_without_overflow_and_k_plus_one_is_refused() -> None:
    k = max_reduction_length(8, 8)
    model = single_linear(k)
    ((_, layer),) = quant_layers(model)
    spec = QuantSpec(8)
    layer.set_weight_codes(np.full((1, k), -128), np.array([[1e-3]]), spec, Blocks(1, 1))
    layer.act = ActQuant(QuantSpec(8, signed=False), 1.0 / 255, 0)
    golden = build_integer_model(model, torch.rand(1, k))
    x = np.full((1, k), 255, dtype=np.int64)
    lay = golden.layers[0]
    y = golden.run_layer(lay.name, x)
    exact = Fraction(-255 * 128 * k) * Fraction(lay.in_scale) * Fraction(1e-3) / Fraction(lay.out_scale)
    assert abs(int(y[0, 0]) - exact) <= HALF + Fraction(lay.error_bound_lsb()[0])
    assert lay.summary()["psum_bits_needed"] <= 32 and lay.summary()["acc_bits_needed"] <= 64

    model = single_linear(k + 1)
    ((_, layer),) = quant_layers(model)
    layer.set_weight_codes(np.full((1, k + 1), -128), np.array([[1e-3]]), spec, Blocks(1, 1))
    layer.act = ActQuant(QuantSpec(8, signed=False), 1.0 / 255, 0)
    with pytest.raises(QuantInputError, match="overflows int32"):
        build_integer_model(model, torch.rand(1, k + 1))


# ----------------------------------------------------------- exhaustive: every 8-bit x, every 4-bit w, one step
@pytest.mark.parametrize("z_x", [0, 37, 255])
@pytest.mark.parametrize("relu", [False, True])
def test_every_8bit_input_times_every_4bit_weight_through_one_requant_step(z_x: int, relu: bool) -> None:
    """A Linear(2 -> 16) with two input blocks (n_H = 2) of different scales: row r has weights (r - 8, 7 - r),
    and a bias.

    All 256 x 256 input pairs go through the golden layer; each output code must equal the exact rational
    computation ``clamp(floor(A / 2^S + 1/2) + z_y)`` and lie within 1/2 + delta of the exact real value, and equal
    its half-up rounding wherever the real value is further than delta from a tie."""
    model = single_linear(2, 16, with_next=True, w_bits=4)
    (n1, first), (_, second) = quant_layers(model)
    first.layer.bias = nn.Parameter(torch.linspace(-0.3, 0.3, 16))
    codes = np.stack([np.arange(16) - 8, 7 - np.arange(16)], axis=1)
    scales = np.array([[0.013, 0.0071], [0.021, 0.0042]])  # n_v = 2, n_h = 2
    first.set_weight_codes(codes, scales, QuantSpec(4), Blocks(2, 2))
    first.act = ActQuant(QuantSpec(8, symmetric=z_x == 0, signed=False), 0.0123, z_x)
    out_spec = QuantSpec(8, symmetric=False, signed=False)
    second.set_weight_codes(np.ones((1, 16), dtype=np.int64), np.array([[0.1]]), QuantSpec(4), Blocks(1, 1))
    second.act = ActQuant(out_spec, 0.0217, 0 if relu else 119)
    if not relu:
        model[1] = nn.Identity()
    golden = build_integer_model(model, torch.rand(1, 2))
    lay = golden.layer(n1)

    g = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), axis=-1).reshape(-1, 2)
    y = golden.run_layer(n1, g)  # [65536, 16]

    # 1. bit-exact against Python-int arithmetic of the documented datapath
    rows = lay.row_block()
    xc = (g - z_x).astype(object)
    bias = lay.bias.astype(object)
    for r in range(16):
        v = rows[r]
        p0 = xc[:, 0] * int(codes[r, 0])
        p1 = xc[:, 1] * int(codes[r, 1])
        acc = (int(bias[r]) << int(lay.bias_shift[v])) + int(lay.multiplier[v, 0]) * p0 + int(lay.multiplier[v, 1]) * p1
        s = int(lay.shift[v])
        want = [min(max((a + (1 << (s - 1)) >> s) + lay.out_zero_point, lay.out_qmin), lay.out_qmax) for a in acc]
        np.testing.assert_array_equal(y[:, r], want)

    # 2. within 1/2 + delta of the exact real value (rationals), and exactly rounded away from ties
    delta = lay.error_bound_lsb()
    sx, sy = Fraction(lay.in_scale), Fraction(lay.out_scale)
    for r in range(16):
        v = rows[r]
        b = Fraction(float(lay.bias_real[r]))
        w_real = [Fraction(int(codes[r, h])) * Fraction(float(scales[v, h])) for h in range(2)]
        for (x0, x1), code in zip(g[::97], y[::97, r]):
            u = (sx * ((int(x0) - z_x) * w_real[0] + (int(x1) - z_x) * w_real[1]) + b) / sy + lay.out_zero_point
            clamped = min(max(u, Fraction(lay.out_qmin)), Fraction(lay.out_qmax))
            assert abs(int(code) - clamped) <= HALF + Fraction(delta[r])
            frac = u - math.floor(u)
            if abs(frac - HALF) > Fraction(delta[r]):
                assert int(code) == min(max(round_half_up(u), lay.out_qmin), lay.out_qmax)
    if relu:
        assert lay.relu and lay.out_qmin == 0 and y.min() == 0
