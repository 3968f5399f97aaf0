"""The cost table contract and the model's invariants across PE kinds and pairs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import COST_COLUMNS, load_chip, load_workload, simulate
from sim.config import chip_from_dict
from sim.workload.layer import Workload, gemm

REQUIRED = (
    "layer",
    "name",
    "w_bits",
    "a_bits",
    "macs",
    "compute_cycles",
    "stall_cycles",
    "total_cycles",
    "latency_us",
    "energy_pj",
    "energy_mac_pj",
    "energy_sram_pj",
    "energy_dram_pj",
    "energy_static_pj",
    "weight_bits",
    "dram_bits",
    "utilization",
    "bops",
)


@pytest.fixture(scope="module")
def resnet18() -> Workload:
    return load_workload("resnet18")


def test_columns_and_types(resnet18: Workload) -> None:
    table = simulate("bitfusion_edge", resnet18, "w8a8,w4a4,w2a2")
    assert tuple(table.columns) == COST_COLUMNS
    assert set(REQUIRED) <= set(table.columns)
    for col in (
        "layer",
        "w_bits",
        "a_bits",
        "macs",
        "compute_cycles",
        "stall_cycles",
        "total_cycles",
        "weight_bits",
        "dram_bits",
        "bops",
    ):
        assert pd.api.types.is_integer_dtype(table[col]), col
    assert len(table) == 3 * len(resnet18)
    assert table.layer.tolist() == sorted(table.layer.tolist())
    assert table.attrs == {"chip": "bitfusion_edge", "workload": resnet18.name}


@pytest.mark.parametrize("chip", ["tpu_like_int8", "bitfusion_edge", "bitserial_loom", "bitserial_stripes"])
def test_sums_and_identities(chip: str, resnet18: Workload) -> None:
    table = simulate(chip, resnet18, "w8a8,w4a8,w4a4,w2a2")
    parts = table[["energy_mac_pj", "energy_reg_pj", "energy_sram_pj", "energy_dram_pj", "energy_static_pj"]].sum(
        axis=1
    )
    np.testing.assert_allclose(table.energy_pj, parts, rtol=1e-12)
    assert (table.total_cycles == table.compute_cycles + table.stall_cycles).all()
    assert (table.bops == table.macs * table.w_bits * table.a_bits).all()
    assert (table.dram_bits == table.dram_ifmap_bits + table.dram_filter_bits + table.dram_ofmap_bits).all()
    clock = load_chip(chip).array.clock_mhz
    np.testing.assert_allclose(table.latency_us, table.total_cycles / clock)
    assert ((table.utilization > 0) & (table.utilization <= 1)).all()
    assert (table.groupby(["w_bits", "a_bits"]).macs.sum() == resnet18.macs).all()


def _by_pair(table: pd.DataFrame, col: str) -> dict[tuple[int, int], int]:
    return {k: int(v) for k, v in table.groupby(["w_bits", "a_bits"])[col].sum().items()}


def _scalesim(name: str):
    """A preset on SCALE-Sim's fixed schedule, so that pairs compare under one mapping."""
    return load_chip(name).model_copy(update={"mapping": "scalesim"})


def test_fixed_pe_gains_memory_not_speed(resnet18: Workload) -> None:
    table = simulate(_scalesim("tpu_like_int8"), resnet18, "w8a8,w4a4,w2a2")
    cyc = _by_pair(table, "compute_cycles")
    assert cyc[(8, 8)] == cyc[(4, 4)] == cyc[(2, 2)]
    dram = _by_pair(table, "dram_bits")
    assert dram[(8, 8)] > dram[(4, 4)] > dram[(2, 2)]
    # with the mapper, narrower data can only make the best mapping better
    searched = simulate("tpu_like_int8", resnet18, "w8a8,w4a4,w2a2")
    edp = searched.energy_pj * searched.total_cycles
    by = edp.groupby([searched.w_bits, searched.a_bits]).sum()
    assert by[(2, 2)] <= by[(4, 4)] <= by[(8, 8)]


def test_bitfusion_speedups_match_the_paper() -> None:
    """On a layer whose reduction is a multiple of 16 x rows, cycles scale exactly as Bit Fusion's
    floor(8/a)*floor(8/w): 2/2 is 16x, 4/4 and 2/8 are 4x, 4/8 is 2x faster than 8/8."""
    chip = load_chip("bitfusion_edge")
    layer = gemm("fc", 1, 16 * chip.array.rows * 8, 512)
    table = simulate(chip, Workload("w", (layer,)), "w8a8,w4a8,w4a4,w2a8,w2a2")
    folds = _by_pair(table, "folds")
    assert folds[(8, 8)] / folds[(2, 2)] == 16
    assert folds[(8, 8)] / folds[(4, 4)] == folds[(8, 8)] / folds[(2, 8)] == 4
    assert folds[(8, 8)] / folds[(4, 8)] == 2


def test_bitserial_cycles_scale_with_serial_bits() -> None:
    layer = gemm("fc", 4096, 64, 64)  # long stream: cycles ~ serial steps x stream
    wl = Workload("w", (layer,))
    stripes = _by_pair(simulate(_scalesim("bitserial_stripes"), wl, "w8a8,w8a4,w8a2"), "compute_cycles")
    assert stripes[(8, 8)] > stripes[(8, 4)] > stripes[(8, 2)]
    assert stripes[(8, 8)] / stripes[(8, 2)] == pytest.approx(4, rel=0.01)
    loom = _by_pair(simulate(_scalesim("bitserial_loom"), wl, "w8a8,w4a4,w2a2"), "compute_cycles")
    assert loom[(8, 8)] / loom[(4, 4)] == pytest.approx(4, rel=0.01)
    assert loom[(8, 8)] / loom[(2, 2)] == pytest.approx(16, rel=0.02)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 64),
    cols=st.integers(1, 64),
    df=st.sampled_from(["ws", "os", "is"]),
    bw=st.sampled_from([8.0, 64.0, 1024.0]),
    kib=st.sampled_from([1, 16, 256]),
    preload=st.sampled_from(["serial", "overlapped"]),
    objective=st.sampled_from(["latency", "energy", "edp"]),
)
def test_narrower_operands_never_cost_more_memory(rows, cols, df, bw, kib, preload, objective) -> None:
    doc = {
        "array": {"rows": rows, "cols": cols, "dataflow": df, "weight_preload": preload},
        "pe": {"kind": "bitfusion"},
        "mapping_objective": objective,
        "memory": {"ifmap_sram_kib": kib, "filter_sram_kib": kib, "ofmap_sram_kib": kib, "dram_bw_bits_per_cycle": bw},
    }
    pairs = "w8a8,w4a8,w4a4,w2a4,w2a2"
    order = [(2, 2), (2, 4), (4, 4), (4, 8), (8, 8)]
    # the mapper: each candidate costs no more at narrower widths, so neither does the best one (SRAMs of
    # at least 32 KiB hold any stationary tile here: 64 rows x 16 packed 2-bit weights x 64 columns)
    roomy = {**doc, "memory": {**doc["memory"], **{f"{b}_sram_kib": max(kib, 32) for b in ("ifmap", "filter")}}}
    searched = simulate(chip_from_dict(roomy), load_workload("resnet18"), pairs)
    key = {
        "latency": searched.total_cycles.astype(float),
        "energy": searched.energy_pj,
        "edp": searched.energy_pj * searched.total_cycles,
    }[objective]
    per_layer = key.groupby([searched.layer, searched.w_bits, searched.a_bits]).sum().unstack([1, 2])
    # except the exposed first load (eq. 10): it carries one fold's first operands, pack x bits per PE, and a
    # narrower pair packs more (up to 32 bits per PE for Bit Fusion), so latency may grow by its transfer time
    slack = math.ceil(32 * (rows * cols + rows + cols) / bw) if objective == "latency" else 0
    for narrow, wide in zip(order, order[1:]):
        assert (per_layer[narrow] <= per_layer[wide] * (1 + 1e-12) + slack).all(), (narrow, wide)
    # one mapping (SCALE-Sim's): every term is monotone
    table = simulate(chip_from_dict({**doc, "mapping": "scalesim"}), load_workload("resnet18"), pairs)
    for col in ("weight_bits", "compute_cycles", "energy_mac_pj"):
        s = _by_pair(table, col)
        assert s[(2, 2)] <= s[(2, 4)] <= s[(4, 4)] <= s[(4, 8)] <= s[(8, 8)], col
    dram = table.pivot(index="layer", columns=["w_bits", "a_bits"], values="dram_bits")
    # traffic can only fall when widths fall, layer by layer, unless narrower data newly fits SRAM
    # and flips a re-read decision -- which also only lowers traffic
    assert (dram[(2, 2)] <= dram[(8, 8)]).all()


def test_coupled_table_matches_the_plain_table_where_outputs_keep_their_width() -> None:
    pairs = "w8a8,w4a4,w2a2,w8a4"
    searched = simulate("bitfusion_edge", "resnet18", pairs, coupled=True)
    same = searched[searched.a_bits == searched.out_bits].drop(columns="out_bits").reset_index(drop=True)
    pd.testing.assert_frame_equal(same, simulate("bitfusion_edge", "resnet18", pairs))
    # on one mapping only the output terms move with out_bits (the mapper may pick another one)
    chip = _scalesim("bitfusion_edge")
    coupled = simulate(chip, "resnet18", pairs, coupled=True)
    plain = simulate(chip, "resnet18", pairs)
    assert list(coupled.columns[:5]) == ["layer", "name", "w_bits", "a_bits", "out_bits"]
    assert len(coupled) == len(plain) * 3  # out_bits over the activation widths {2, 4, 8}
    same = coupled[coupled.a_bits == coupled.out_bits].drop(columns="out_bits").reset_index(drop=True)
    pd.testing.assert_frame_equal(same, plain)
    # only the output terms move with out_bits, and they grow with it
    by = coupled.set_index(["layer", "w_bits", "a_bits", "out_bits"])
    for col in ("dram_ifmap_bits", "dram_filter_bits", "compute_cycles", "energy_mac_pj"):
        assert by[col].groupby(level=[0, 1, 2]).nunique().max() == 1
    assert (by["dram_ofmap_bits"].groupby(level=[0, 1, 2]).diff().dropna() > 0).all()


def test_a_one_cycle_layer_has_a_finite_utilization() -> None:
    """compute_cycles is the last busy cycle's index, so a one-MAC GEMM on a 1x1 os array has total_cycles 0; its
    utilization counts that one cycle (1.0), not a division by zero."""
    chip = chip_from_dict(
        {
            "array": {"rows": 1, "cols": 1, "dataflow": "os"},
            "pe": {"kind": "fixed"},
            "memory": {
                "ifmap_sram_kib": 1,
                "filter_sram_kib": 1,
                "ofmap_sram_kib": 1,
                "dram_bw_bits_per_cycle": "calc",
            },
        }
    )
    row = simulate(chip, Workload("w", (gemm("g", 1, 1, 1),)), "w8a8").iloc[0]
    assert row.total_cycles == 0 and row.utilization == 1.0
