"""The fast engine evaluates chips that differ only in bandwidth, clock or static power as one group with a
bandwidth axis: a batch must give exactly what each chip gives on its own."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.chipbatch import ChipBatch
from sim.config import chip_from_dict
from sim.engine import evaluate, point_groups
from sim.layerbatch import LayerBatch
from sim.workload import zoo
from sim.workload.layer import Workload, conv, gemm

LAYERS = LayerBatch.from_workload(
    Workload(
        "w",
        (
            conv("c1", 12, 3, 8, 3, 1, 1, batch=2),
            conv("c2", 6, 8, 16, 3, 2, 1),
            gemm("fc", 4, 144, 10),
        ),
    )
)


def _chip(dataflow: str, sram_kib: float, bw: float | str, clock: float, objective: str, mapping: str):
    return chip_from_dict(
        {
            "name": f"{dataflow}-{sram_kib}-{bw}-{clock}-{objective}-{mapping}",
            "array": {"rows": 4, "cols": 8, "dataflow": dataflow, "clock_mhz": clock},
            "pe": {"kind": "bitfusion"},
            "mapping": mapping,
            "mapping_objective": objective,
            "memory": {
                "ifmap_sram_kib": sram_kib,
                "filter_sram_kib": sram_kib,
                "ofmap_sram_kib": 0.5,
                "dram_bw_bits_per_cycle": bw,
            },
        }
    )


@st.composite
def chip_lists(draw):
    """Chips in random order: a few base designs, each with a random number of bandwidth/clock variants."""
    chips = []
    for _ in range(draw(st.integers(1, 4))):
        base = (
            draw(st.sampled_from(["ws", "os", "is"])),
            draw(st.sampled_from([2, 16])),
            draw(st.sampled_from(["latency", "energy", "edp"])),
            draw(st.sampled_from(["search", "scalesim"])),
        )
        for _ in range(draw(st.integers(1, 6))):
            bw = draw(st.sampled_from([3.0, 16.0, 64.0, 512.0, "calc"]))
            chips.append(_chip(base[0], base[1], bw, draw(st.sampled_from([200.0, 1000.0])), base[2], base[3]))
    return draw(st.permutations(chips))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chips=chip_lists())
def test_a_batch_equals_each_chip_alone(chips) -> None:
    pairs = np.array([(8, 8), (4, 2), (2, 4)])
    batch = ChipBatch.from_chips(chips, [tuple(p) for p in pairs])
    together = evaluate(batch, LAYERS, pairs)
    for i in range(len(chips)):
        alone = evaluate(batch.take(np.array([i])), LAYERS, pairs)
        for k, v in alone.items():
            np.testing.assert_array_equal(together[k][i], v[0], err_msg=f"{k} of chip {i}")


def test_groups_are_padded_only_when_padding_is_cheap() -> None:
    pairs = [(8, 8)]
    a = [_chip("ws", 16, bw, 500.0, "edp", "search") for bw in (8.0, 16.0, 32.0, 64.0)]
    b = [_chip("ws", 2, bw, 500.0, "edp", "search") for bw in (8.0, 16.0, 32.0)]
    slots = point_groups(ChipBatch.from_chips([a[0], b[0], a[1], b[1], a[2], b[2], a[3]], pairs))
    # groups in order of their first chip, members in chip order, the short group padded with its last chip
    np.testing.assert_array_equal(slots, [[0, 2, 4, 6], [1, 3, 5, 5]])
    # one group of 4 and four single chips: padding to 4 would more than double the points
    singles = [_chip("ws", kib, 8.0, 500.0, "edp", "search") for kib in (2, 4, 8, 32)]
    slots = point_groups(ChipBatch.from_chips(a + singles, pairs))
    np.testing.assert_array_equal(slots, np.arange(8)[:, None])


def test_a_bandwidth_sweep_of_a_preset_equals_the_chips_alone() -> None:
    """The same on a real network and the preset the demo uses, every pair."""
    from sim.chip_loader import load_chip

    base = load_chip("bitfusion_edge")
    chips = [
        base.model_copy(
            update={"name": f"bw{bw}", "memory": base.memory.model_copy(update={"dram_bw_bits_per_cycle": bw})}
        )
        for bw in (16.0, 64.0, 256.0)
    ]
    pairs = np.array(base.supported_pairs)
    layers = LayerBatch.from_workload(zoo.resnet18())
    batch = ChipBatch.from_chips(chips, base.supported_pairs)
    together = evaluate(batch, layers, pairs)
    for i in range(len(chips)):
        alone = evaluate(batch.take(np.array([i])), layers, pairs)
        for k, v in alone.items():
            np.testing.assert_array_equal(together[k][i], v[0], err_msg=k)
