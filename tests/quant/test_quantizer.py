"""Quantizer primitives: ranges, block grids, round trips and bad inputs (exhaustive where cheap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant.errors import QuantInputError
from quant.quantizer import (
    Blocks,
    QuantSpec,
    block_bounds,
    block_scales,
    dequantize,
    expand_blocks,
    fake_quantize,
    quantize,
)


@pytest.mark.parametrize("bits", range(2, 9))
def test_ranges_hold_exactly_2_to_the_b_levels(bits: int) -> None:
    signed, unsigned = QuantSpec(bits), QuantSpec(bits, signed=False)
    assert signed.levels == unsigned.levels == 2**bits
    assert (signed.qmin, signed.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert (unsigned.qmin, unsigned.qmax) == (0, 2**bits - 1)
    asym = QuantSpec(bits, symmetric=False, signed=False)
    assert (asym.qmin, asym.qmax) == (0, 2**bits - 1)


@pytest.mark.parametrize("bits", [1, 9, 0, 2.5, "4"])
def test_bits_outside_2_to_8_are_refused(bits) -> None:
    with pytest.raises(QuantInputError, match="bits must be an integer in 2..8"):
        QuantSpec(bits)


def test_asymmetric_signed_is_refused() -> None:
    with pytest.raises(QuantInputError, match="asymmetric"):
        QuantSpec(4, symmetric=False, signed=True)


@pytest.mark.parametrize("bits", range(2, 9))
def test_every_code_round_trips(bits: int) -> None:
    """Exhaustive: each code dequantizes and re-quantizes to itself, for signed and asymmetric specs."""
    for spec, zp in ((QuantSpec(bits), 0), (QuantSpec(bits, symmetric=False, signed=False), 3)):
        codes = np.arange(spec.qmin, spec.qmax + 1)
        assert (quantize(dequantize(codes, 0.37, zp), 0.37, zp, spec) == codes).all()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 200), parts=st.integers(1, 50))
def test_block_bounds_partition(size: int, parts: int) -> None:
    parts = min(parts, size)
    b = block_bounds(size, parts)
    sizes = np.diff(b)
    assert b[0] == 0 and b[-1] == size and len(sizes) == parts
    assert sizes.max() - sizes.min() <= 1 and (sizes > 0).all()
    assert [len(p) for p in np.array_split(np.arange(size), parts)] == sizes.tolist()


@settings(max_examples=60, deadline=None)
@given(out=st.integers(1, 12), in_ch=st.integers(1, 8), kernel=st.sampled_from([1, 3, 9]), data=st.data())
def test_block_scales_are_per_block_max_and_codes_fit(out: int, in_ch: int, kernel: int, data) -> None:
    n_v = data.draw(st.integers(1, out))
    n_h = data.draw(st.integers(1, in_ch))
    bits = data.draw(st.integers(2, 8))
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    w = rng.normal(size=(out, in_ch * kernel)) * rng.uniform(0.1, 10, size=(out, 1))
    spec = QuantSpec(bits)
    scales = block_scales(w, Blocks(n_v, n_h), spec, kernel)
    assert scales.shape == (n_v, n_h)
    full = expand_blocks(scales, out, in_ch, kernel)
    codes = quantize(w, full, 0, spec)
    assert codes.min() >= spec.qmin and codes.max() <= spec.qmax
    # each block's largest magnitude lands on +-qmax; the error is at most half a step
    assert np.all(np.abs(fake_quantize(w, full, 0, spec) - w) <= full / 2 + 1e-12)
    # a channel's kernel elements always share one scale (column blocks are channel-aligned)
    assert np.all(np.ptp(full.reshape(out, in_ch, kernel), axis=2) == 0)
    for rows in np.split(np.arange(out), block_bounds(out, n_v)[1:-1]):
        for chans in np.split(np.arange(in_ch), block_bounds(in_ch, n_h)[1:-1]):
            cols = (chans[:, None] * kernel + np.arange(kernel)).ravel()
            block = codes[np.ix_(rows, cols)]
            assert len(np.unique(block)) <= 2**bits
            assert np.abs(block).max() == spec.qmax or np.abs(w[np.ix_(rows, cols)]).max() == 0


@pytest.mark.parametrize(
    ("blocks", "needle"), [(Blocks(5, 1), "n_V=5"), (Blocks(1, 4), "n_H=4"), (Blocks(0, 1), "n_V=0")]
)
def test_bad_block_grids(blocks: Blocks, needle: str) -> None:
    with pytest.raises(QuantInputError, match=needle):
        block_scales(np.ones((4, 3)), blocks, QuantSpec(4))


def test_nan_and_inf_weights_are_refused() -> None:
    w = np.ones((3, 3))
    w[1, 1] = np.nan
    with pytest.raises(QuantInputError, match="non-finite"):
        block_scales(w, Blocks(), QuantSpec(4))
    w[1, 1] = np.inf
    with pytest.raises(QuantInputError, match="NaN or inf"):
        block_scales(w, Blocks(), QuantSpec(4))


def test_zero_block_gets_a_usable_scale() -> None:
    w = np.zeros((2, 4))
    w[0] = 1.0
    scales = block_scales(w, Blocks(2, 1), QuantSpec(4))
    assert scales[1, 0] == 1.0 and scales[0, 0] == pytest.approx(1 / 7)
