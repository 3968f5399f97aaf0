"""The fast engine and the cycle-stepped reference engine agree exactly (hypothesis)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.chipbatch import DATAFLOW_CODES, ChipBatch
from sim.config import chip_from_dict
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import candidates
from sim.reference import run_reference
from sim.workload.layer import Workload, conv, gemm, matmul

COUNTS = (
    "compute_cycles",
    "stall_cycles",
    "total_cycles",
    "folds",
    "dram_ifmap_bits",
    "dram_filter_bits",
    "dram_ofmap_bits",
    "sram_ifmap_bits",
    "sram_filter_bits",
    "sram_ofmap_bits",
)


@st.composite
def chips(draw):
    kind = draw(st.sampled_from(["fixed", "bitfusion", "bitserial"]))
    pe = {"kind": kind}
    if kind == "bitserial":
        pe["serial"] = draw(st.sampled_from(["activation", "both"]))
    sram = st.sampled_from([0.005, 0.02, 0.1, 4.0])  # KiB: small enough to exercise spills and re-reads
    return chip_from_dict(
        {
            "array": {
                "rows": draw(st.integers(1, 6)),
                "cols": draw(st.integers(1, 6)),
                "dataflow": draw(st.sampled_from(["ws", "os", "is"])),
                "weight_preload": draw(st.sampled_from(["serial", "overlapped"])),
                "reduction": draw(st.sampled_from(["lowered", "per_tap"])),
            },
            "pe": pe,
            "memory": {
                "ifmap_sram_kib": draw(sram),
                "filter_sram_kib": draw(sram),
                "ofmap_sram_kib": draw(sram),
                "dram_bw_bits_per_cycle": draw(st.sampled_from([2.0, 16.0, 256.0, "calc"])),
                "acc_bits": draw(st.sampled_from([16, 32])),
                "output_width": draw(st.sampled_from(["activation", "accumulator"])),
            },
        }
    )


@st.composite
def shapes(draw):
    kind = draw(st.sampled_from(["conv", "dwconv", "gemm", "matmul"]))
    if kind == "conv":
        k = draw(st.integers(1, 3))
        return conv(
            "c",
            draw(st.integers(k, 7)),
            draw(st.integers(1, 6)),
            draw(st.integers(1, 7)),
            k,
            draw(st.integers(1, 3)),
            draw(st.integers(0, 1)),
        )
    if kind == "dwconv":
        ch = draw(st.integers(2, 4))
        return conv(
            "d",
            draw(st.integers(3, 6)),
            2 * ch,
            2 * ch * draw(st.integers(1, 2)),
            3,
            draw(st.integers(1, 2)),
            1,
            groups=ch,
        )
    if kind == "gemm":
        return gemm("g", draw(st.integers(1, 6)), draw(st.integers(1, 24)), draw(st.integers(1, 9)))
    return matmul(
        "m", draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 5)), heads=draw(st.integers(1, 3))
    )


@st.composite
def layers(draw):
    """A layer shape, half of the time split into PTQ-SL input blocks (uneven splits included)."""
    layer = draw(shapes())
    max_blocks = min(5, layer.in_c // layer.groups)
    if max_blocks > 1 and draw(st.booleans()):
        layer = dataclasses.replace(layer, in_blocks=draw(st.integers(2, max_blocks)))
    return layer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chip=chips(), layer=layers(), data=st.data())
def test_fast_engine_equals_reference(chip, layer, data) -> None:
    pair = data.draw(st.sampled_from(chip.supported_pairs))
    # outputs stored at the consumer's activation width (coupled tables), or at the pair's own
    out_bits = data.draw(st.sampled_from([None, 2, 4, 8]))
    mapping = data.draw(st.sampled_from(candidates(DATAFLOW_CODES[chip.array.dataflow])))
    ref = run_reference(chip, layer, pair, seed=1, out_bits=out_bits, mapping=mapping)
    # the stepped array really computes the layer
    np.testing.assert_array_equal(ref.output, ref.expected)
    triple = (*pair, pair[1] if out_bits is None else out_bits)
    arrays = evaluate(
        ChipBatch.from_chips([chip], [pair]),
        LayerBatch.from_workload(Workload("w", (layer,))),
        np.array([triple]),
        mapping=mapping,
    )
    fast = {k: int(arrays[k][0, 0, 0]) for k in COUNTS}
    assert fast == {k: getattr(ref, k) for k in COUNTS}
    assert int(arrays["dram_bits"][0, 0, 0]) == ref.dram_bits


def test_reference_detects_a_wrong_fold_count() -> None:
    """Guard: the comparison above is sensitive to a one-fold error (the engines are independent)."""
    chip = chip_from_dict(
        {
            "array": {"rows": 3, "cols": 2, "dataflow": "ws"},
            "memory": {"ifmap_sram_kib": 1, "filter_sram_kib": 1, "ofmap_sram_kib": 1},
        }
    )
    layer = gemm("g", 5, 7, 5)
    ref = run_reference(chip, layer, (8, 8))
    # ceil(7/3) * ceil(5/2) = 9 folds of 2*3 + 2 + 5 - 2 = 11 cycles, minus SCALE-Sim's final cycle
    assert ref.folds == 9
    assert ref.compute_cycles == 9 * 11 - 1


def test_blocked_layer_is_one_reduction_per_block() -> None:
    """A layer with n_H input blocks costs the sum of its blocks' GEMMs (one SCALE-Sim final cycle per layer):
    a 5x16 gemm with 3 blocks of 6, 5, 5 channels on a 4x4 ws array has 2 + 2 + 2 row folds instead of 4."""
    chip = chip_from_dict(
        {
            "array": {"rows": 4, "cols": 4, "dataflow": "ws"},
            "memory": {"ifmap_sram_kib": 64, "filter_sram_kib": 64, "ofmap_sram_kib": 64},
        }
    )
    blocked = gemm("g", 5, 16, 4, in_blocks=3)
    assert blocked.block_k == (6, 5, 5)
    ref = run_reference(chip, blocked, (8, 8))
    np.testing.assert_array_equal(ref.output, ref.expected)
    per_block = [run_reference(chip, gemm("g", 5, k, 4), (8, 8)).compute_cycles + 1 for k in blocked.block_k]
    assert ref.folds == 6
    assert ref.compute_cycles == sum(per_block) - 1 == 6 * (2 * 4 + 4 + 5 - 2) - 1
    assert run_reference(chip, gemm("g", 5, 16, 4), (8, 8)).folds == 4


def test_block_split_matches_ptq_sl() -> None:
    """sim's block sizes are quant's column blocks (array_split of the input channels, times the kernel)."""
    from quant.quantizer import block_bounds

    for in_c in range(1, 13):
        for n_h in range(1, in_c + 1):
            layer = conv("c", 5, in_c, 3, 3, in_blocks=n_h)
            assert layer.block_k == tuple(np.diff(block_bounds(in_c, n_h) * 9).tolist())


def test_with_in_blocks_clamps_like_ptq_sl() -> None:
    wl = Workload("w", (conv("c0", 6, 1, 8, 3), conv("c1", 6, 8, 8, 3), gemm("fc", 1, 8, 4), matmul("att", 2, 4, 3)))
    got = [layer.in_blocks for layer in wl.with_in_blocks(3).layers]
    assert got == [1, 3, 3, 1]
