"""The mapper: its tile footprints against brute force, its choice against every candidate, its refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sim import InputError, simulate
from sim.chip_loader import load_chip
from sim.chipbatch import DATAFLOW_CODES, ChipBatch
from sim.config import chip_from_dict
from sim.engine import check_mappable, evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import N_TILE_CHOICES, SCALESIM_ORDER, Mapping, candidates, row_tiles
from sim.workload import zoo
from sim.workload.layer import Workload, conv, gemm

OBJECTIVE_KEY = {
    "latency": lambda r: (r["total_cycles"], r["energy_pj"]),
    "energy": lambda r: (r["energy_pj"], r["total_cycles"]),
    "edp": lambda r: (r["energy_pj"] * r["total_cycles"], r["energy_pj"]),
}


def _touched(lo_hi: list[tuple[int, int]]) -> int:
    return len(set().union(*(range(lo, hi) for lo, hi in lo_hi))) if lo_hi else 0


def _brute_row_tiles(batch, in_h, in_w, out_h, out_w, k, stride, pad, t):
    """Input rows/columns touched per tile, by enumerating the positions (for one tile choice)."""
    rows, width = batch * out_h, out_w
    log2 = lambda n: min(12, int(np.ceil(np.log2(n))) if n > 1 else 0)  # noqa: E731 - at most 4096 tiles per axis
    most = log2(rows) + log2(width)
    halvings = min(t, most) if most < N_TILE_CHOICES else round(t * most / (N_TILE_CHOICES - 1))
    by_rows = min(halvings, log2(rows))
    h, wt = -(-rows // (1 << by_rows)), -(-width // (1 << (halvings - by_rows)))

    def span(y, size):
        lo = max(0, y * stride - pad)
        return lo, max(lo, min(size, y * stride - pad + k))

    row_counts = []
    for g0 in range(0, rows, h):
        spans = [
            (b * in_h + lo, b * in_h + hi)
            for g in range(g0, min(rows, g0 + h))
            for b, y in [divmod(g, out_h)]
            for lo, hi in [span(y, in_h)]
        ]
        row_counts.append(_touched(spans))
    col_counts = [_touched([span(x, in_w) for x in range(x0, min(width, x0 + wt))]) for x0 in range(0, width, wt)]
    return sum(row_counts), max(row_counts), sum(col_counts), max(col_counts)


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(1, 5),
    stride=st.integers(1, 6),
    pad=st.integers(0, 6),
    in_h=st.integers(1, 14),
    in_w=st.integers(1, 14),
    batch=st.integers(1, 3),
    data=st.data(),
)
def test_tile_footprints_equal_brute_force(k, stride, pad, in_h, in_w, batch, data) -> None:
    out_h, out_w = (in_h + 2 * pad - k) // stride + 1, (in_w + 2 * pad - k) // stride + 1
    assume(out_h >= 1 and out_w >= 1)
    tiles = row_tiles("conv", batch, in_h, in_w, out_h, out_w, k, k, stride, pad, pad, batch * out_h * out_w)
    t = data.draw(st.integers(0, N_TILE_CHOICES - 1))
    want = _brute_row_tiles(batch, in_h, in_w, out_h, out_w, k, stride, pad, t)
    assert (tiles.rows_sum[t], tiles.rows_max[t], tiles.cols_sum[t], tiles.cols_max[t]) == want
    assert (tiles.n_h[t] - 1) * tiles.h[t] + tiles.h_last[t] == batch * out_h
    assert (tiles.n_w[t] - 1) * tiles.wt[t] + tiles.w_last[t] == out_w


@st.composite
def searching_chips(draw):
    kind = draw(st.sampled_from(["fixed", "bitfusion", "bitserial"]))
    return chip_from_dict(
        {
            "array": {
                "rows": draw(st.integers(1, 16)),
                "cols": draw(st.integers(1, 16)),
                "dataflow": draw(st.sampled_from(["ws", "os", "is"])),
                "weight_preload": draw(st.sampled_from(["serial", "overlapped"])),
                "reduction": draw(st.sampled_from(["lowered", "per_tap"])),
            },
            "pe": {"kind": kind, "serial": draw(st.sampled_from(["activation", "both"]))},
            "mapping_objective": draw(st.sampled_from(["latency", "energy", "edp"])),
            "memory": {
                "ifmap_sram_kib": draw(st.sampled_from([0.5, 2, 64])),
                "filter_sram_kib": draw(st.sampled_from([1, 8, 64])),
                "ofmap_sram_kib": draw(st.sampled_from([0.25, 2, 64])),
                "dram_bw_bits_per_cycle": draw(st.sampled_from([4.0, 64.0, "calc"])),
            },
        }
    )


@st.composite
def small_layers(draw):
    if draw(st.booleans()):
        k = draw(st.integers(1, 3))
        return conv(
            "c",
            draw(st.integers(k, 12)),
            draw(st.integers(1, 24)),
            draw(st.integers(1, 40)),
            k,
            draw(st.integers(1, 2)),
            draw(st.integers(0, 1)),
            batch=draw(st.integers(1, 2)),
        )
    return gemm("g", draw(st.integers(1, 40)), draw(st.integers(1, 200)), draw(st.integers(1, 50)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chip=searching_chips(), layer=small_layers(), data=st.data())
def test_the_mapper_picks_the_best_candidate(chip, layer, data) -> None:
    """Brute force: evaluate every candidate on its own; the search returns the best feasible one."""
    pair = data.draw(st.sampled_from(chip.supported_pairs))
    batch, layers = ChipBatch.from_chips([chip], [pair]), LayerBatch.from_workload(Workload("w", (layer,)))
    try:
        check_mappable(batch, layers, np.array([pair]))
    except InputError:
        assume(False)
    chosen = {k: v[0, 0, 0] for k, v in evaluate(batch, layers, np.array([pair])).items()}
    key = OBJECTIVE_KEY[chip.mapping_objective]
    tried = []
    for m in candidates(DATAFLOW_CODES[chip.array.dataflow]):
        one = {k: v[0, 0, 0] for k, v in evaluate(batch, layers, np.array([pair]), mapping=m).items()}
        tried.append(key(one))
    assert key(chosen) == min(tried)
    # SCALE-Sim's schedule is a candidate, so the search never does worse than it
    scalesim = evaluate(
        ChipBatch.from_chips([chip.model_copy(update={"mapping": "scalesim"})], [pair]), layers, np.array([pair])
    )
    assert key(chosen) <= key({k: v[0, 0, 0] for k, v in scalesim.items()})


@pytest.mark.parametrize("df", ["ws", "os", "is"])
def test_scalesim_mode_is_the_forced_scalesim_candidate(df) -> None:
    chip = load_chip("bitfusion_edge").model_copy(update={"mapping": "scalesim"})
    chip = chip.model_copy(update={"array": chip.array.model_copy(update={"dataflow": df})})
    pairs = np.array(chip.supported_pairs)
    batch, layers = ChipBatch.from_chips([chip], chip.supported_pairs), LayerBatch.from_workload(zoo.resnet18())
    mode = evaluate(batch, layers, pairs)
    forced = evaluate(batch, layers, pairs, mapping=Mapping(SCALESIM_ORDER[DATAFLOW_CODES[df]]))
    for k in mode:
        np.testing.assert_array_equal(mode[k], forced[k], err_msg=k)


def test_a_cfg_chip_keeps_scalesim_and_a_preset_searches(tmp_path) -> None:
    cfg = tmp_path / "a.cfg"
    cfg.write_text(
        "[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 64\n"
        "FilterSramSzkB: 64\nOfmapSramSzkB: 64\nDataflow: ws\n"
    )
    assert load_chip(str(cfg)).mapping == "scalesim"
    assert load_chip("bitfusion_edge").mapping == "search"


def test_the_mapping_is_reported_and_tiles_m_to_keep_partial_sums_on_chip() -> None:
    """bitfusion_edge's 16 KiB ofmap SRAM cannot hold conv1's 12,544 x 32 partial sums: SCALE-Sim's order
    spills them on every row fold; the mapper tiles M (or reorders) and keeps them on chip."""
    table = simulate("bitfusion_edge", "resnet18", "w8a8")
    scalesim = simulate(load_chip("bitfusion_edge").model_copy(update={"mapping": "scalesim"}), "resnet18", "w8a8")
    assert set(table.loop_order) <= {"MNK", "MKN", "NMK", "NKM", "KMN", "KNM"}
    assert set(scalesim.loop_order) == {"NKM"}
    conv1, conv1_s = table.iloc[0], scalesim.iloc[0]
    out_bits = conv1.macs // (7 * 7 * 3) * 8  # the compulsory output write
    assert conv1_s.dram_ofmap_bits > 10 * out_bits  # spills
    assert conv1.dram_ofmap_bits == out_bits and conv1.tile_m < 12544
    assert table.dram_bits.sum() < scalesim.dram_bits.sum() / 5
    assert (table.tile_k <= 16).all() and (table.tile_n <= 32).all()


def test_an_sram_too_small_for_any_mapping_names_the_layer_and_the_size() -> None:
    chip = load_chip("bitfusion_edge")
    small = chip.model_copy(update={"memory": chip.memory.model_copy(update={"filter_sram_kib": 0.25})})
    with pytest.raises(InputError) as err:
        simulate(small, "resnet18", "w2a2")
    msg = str(err.value)
    assert "\n" not in msg and "'conv1'" in msg and "w2a2" in msg
    need = float(re.search(r"filter_sram_kib >= ([0-9.]+)", msg).group(1))
    # the named size is enough, and a little less is not
    enough = chip.model_copy(update={"memory": chip.memory.model_copy(update={"filter_sram_kib": need})})
    simulate(enough, Workload("w", (zoo.resnet18().layers[0],)), "w2a2")
    short = chip.model_copy(update={"memory": chip.memory.model_copy(update={"filter_sram_kib": need * 0.99})})
    with pytest.raises(InputError):
        simulate(short, Workload("w", (zoo.resnet18().layers[0],)), "w2a2")
    # SCALE-Sim's schedule has no capacity check (it is SCALE-Sim's)
    simulate(small.model_copy(update={"mapping": "scalesim"}), "resnet18", "w2a2")
