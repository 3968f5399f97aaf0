"""Layer-size bounds: everything the engine counts in int64 stays exact up to the bounds, and a layer past
them is refused with a one-line InputError naming the field (or the product) and the limit."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lowbit_core.schema import SRAM_KIB_RANGE
from sim import InputError
from sim.chipbatch import ChipBatch
from sim.config import DRAM_BW_RANGE, MAX_ARRAY_DIM, chip_from_dict
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.workload.layer import MAX_DIM, MAX_LAYER_MACS, Layer, Workload, conv, gemm, matmul

PAIRS = [(8, 8), (2, 2), (8, 2)]
E = 2**12

#: Layers at the bounds, each maximizing a different factor of the engine's counts.
CORNERS = [
    gemm("tokens", 2**24, E, E, in_blocks=E),
    gemm("reduction", E, 2**24, E, in_blocks=2**24),  # one channel per input block
    gemm("filters", E, E, 2**24),
    gemm("batch", E, E, E, batch=E),
    conv("groups", E, 2**24, 2**24, 1, groups=2**24),
    conv("window", E, 1, 1, E),  # one 4096 x 4096 kernel
    conv("window-channels", 2**8, 2**8, 2**8, 2**8, in_blocks=2**8),
    conv("stride", 2**24, 1, 1, 1, stride=2**24),  # 2^48 input pixels, one window
    conv("strided-rows", (1, 2**24), 2**8, 2**8, (1, 3), stride=5),  # disjoint windows
    conv("padding", 1, 1, 2**23, 1, pad=2**11),  # more output pixels than input pixels
    matmul("heads", E, E, E, heads=E),
]


def _chips() -> list:
    """Array sides at both ends, every dataflow and PE kind, the widest accumulators and scales, and the
    slowest DRAM or none; SCALE-Sim's schedule with 1-bit SRAMs (nothing fits) and the mapping search with
    the largest SRAMs (every tile fits, so the search is not refused)."""
    pes = [
        {"kind": "fixed", "bits": 8},
        {"kind": "bitfusion"},
        {"kind": "bitserial", "serial": "activation"},
        {"kind": "bitserial", "serial": "both"},
    ]
    out = []
    sides = (1, MAX_ARRAY_DIM)
    for rows, cols, dataflow, pe, bw, (mapping, sram), preload in itertools.product(
        sides,
        sides,
        ("ws", "os", "is"),
        pes,
        (DRAM_BW_RANGE[0], "calc"),
        (("scalesim", SRAM_KIB_RANGE[0]), ("search", SRAM_KIB_RANGE[1])),
        ("serial", "overlapped"),
    ):
        out.append(
            chip_from_dict(
                {
                    "array": {"rows": rows, "cols": cols, "dataflow": dataflow, "weight_preload": preload},
                    "pe": pe,
                    "weight_scale_bits": 64,
                    "mapping": mapping,
                    "memory": {
                        "ifmap_sram_kib": sram,
                        "filter_sram_kib": sram,
                        "ofmap_sram_kib": sram,
                        "dram_bw_bits_per_cycle": bw,
                        "acc_bits": 64,
                    },
                }
            )
        )
    return out


CHIPS = ChipBatch.from_chips(_chips(), PAIRS)


def _exact(batch):
    """The same batch with every int64 array as Python ints (object arrays): the engine then computes exactly."""
    return type(batch)(
        **{
            f.name: (v.astype(object) if isinstance(v, np.ndarray) and v.dtype == np.int64 else v)
            for f in dataclasses.fields(batch)
            for v in [getattr(batch, f.name)]
        }
    )


def _assert_exact(layers: list[Layer]) -> None:
    batch = LayerBatch.from_workload(Workload("w", tuple(layers)))
    pairs = np.asarray(PAIRS)
    with np.errstate(divide="ignore"):
        fast = evaluate(CHIPS, batch, pairs)
    # Python ints divide by zero loudly: leave out chips that run a layer in 0 cycles (see below)
    keep = np.flatnonzero((fast["total_cycles"] > 0).all(axis=(1, 2)))
    exact = evaluate(_exact(CHIPS.take(keep)), _exact(batch), pairs.astype(object))
    for name, values in fast.items():
        if values.dtype == np.int64:
            want = exact[name].ravel()
            got = values[keep].ravel()
            assert all(int(g) == int(w) for g, w in zip(got, want)), name
            assert (values >= 0).all(), name
        else:
            assert np.isfinite(values[keep]).all(), name
    bw = np.asarray(CHIPS.bandwidth)[:, None, None]
    with np.errstate(divide="ignore"):
        transfer = np.where(np.isinf(bw), 0.0, fast["dram_bits"] / np.where(np.isinf(bw), 1.0, bw))
    assert (fast["total_cycles"] >= np.floor(transfer * (1 - 1e-12))).all()  # no wrapped stall cycles
    assert (fast["total_cycles"] >= fast["compute_cycles"]).all()
    # the fold model ends one cycle early (SCALE-Sim's "- 1"), so a layer can reach (total + 1) / total
    total = fast["total_cycles"].astype(np.float64)
    run = total > 0  # a one-MAC os layer on a 1 x 1 array takes 0 cycles (the same "- 1")
    util = fast["utilization"][run]
    assert ((util > 0) & (util <= (total[run] + 1) / total[run] * (1 + 1e-12))).all()


@pytest.mark.parametrize("layer", CORNERS, ids=[layer.name for layer in CORNERS])
def test_int64_counts_are_exact_at_the_bounds(layer: Layer) -> None:
    assert layer.macs <= MAX_LAYER_MACS
    _assert_exact([layer])


@st.composite
def big_layers(draw) -> Layer:
    """Shapes near the bounds: sizes 2^e - r with exponents up to the limits, blocks and batch included."""

    def size(exp_max: int) -> int:
        e = draw(st.integers(0, exp_max))
        return max(1, 2**e - draw(st.integers(0, 3)))

    kind = draw(st.sampled_from(["gemm", "conv", "matmul"]))
    try:
        if kind == "gemm":
            in_f = size(24)
            return gemm("g", size(24), in_f, size(24), batch=size(12), in_blocks=draw(st.integers(1, in_f)))
        if kind == "matmul":
            return matmul("m", size(16), size(16), size(16), heads=size(12), batch=size(6))
        k = size(8)
        in_c = size(16)
        return conv(
            "c",
            k + size(20),
            in_c,
            size(16),
            k,
            stride=size(10),
            pad=draw(st.integers(0, k)),
            in_blocks=draw(st.integers(1, in_c)),
        )
    except InputError:
        assume(False)
        raise


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(big_layers())
def test_int64_counts_are_exact_for_any_layer_within_the_bounds(layer: Layer) -> None:
    _assert_exact([layer])


# Refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"in_c": MAX_DIM + 1}, f"in_c must be an integer in 1..{MAX_DIM}, got {MAX_DIM + 1}"),
        ({"in_c": 10**30}, "in_c must be an integer in 1.."),
        ({"out_c": True}, "out_c must be an integer"),
        ({"pad": MAX_DIM + 1}, f"pad must be an integer in 0..{MAX_DIM}"),
        ({"batch": 0}, "batch must be an integer in 1.."),
        ({"in_w": 2**24, "out_w": 2**24, "in_c": 2**12, "out_c": 2**12, "batch": 2}, "MACs exceed the limit of 2^48"),
        ({"in_h": 2**24, "in_w": 2**24, "in_c": 2}, "input pixels x weights"),
    ],
)
def test_layers_past_the_bounds_are_refused(fields: dict, needle: str) -> None:
    base = {"name": "x", "kind": "gemm", "in_h": 1, "in_w": 1, "in_c": 1, "out_c": 1}
    with pytest.raises(InputError) as info:
        Layer(**{**base, **fields})
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_the_largest_layers_are_accepted() -> None:
    assert Layer("x", "gemm", 1, MAX_DIM, MAX_DIM, 1, out_w=MAX_DIM, pad=MAX_DIM).macs == MAX_DIM**2
    assert gemm("g", 2**16, 2**16, 2**16).macs == MAX_LAYER_MACS


def _brute_span(size: int, k: int, stride: int, pad: int, out: int) -> int:
    """Distinct input positions of ``out`` windows, counted one by one."""
    return len({x for o in range(out) for x in range(o * stride - pad, o * stride - pad + k) if 0 <= x < size})


@given(
    st.integers(1, 40),
    st.integers(1, 6),
    st.integers(1, 9),
    st.integers(0, 8),
    st.integers(1, 12),
    st.integers(1, 3),
    st.integers(1, 3),
)
def test_the_input_footprint_is_exact(size, k, stride, pad, out, batch, in_c) -> None:
    """The closed forms of the pixels touched by windows (overlapping, or disjoint when k < stride) equal
    counting them."""
    layer = Layer("x", "conv", 1, size, in_c, 1, 1, k, stride, out_h=1, out_w=out, batch=batch, pad=pad)
    assert layer.ifmap_used_elems == batch * in_c * _brute_span(size, k, stride, pad, out) * _brute_span(
        1, 1, stride, pad, 1
    )
