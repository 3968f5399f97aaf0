"""``array.reduction``: im2col-lowered row folds against one pass per kernel tap (direct convolution)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import simulate
from sim.chipbatch import ChipBatch
from sim.config import chip_from_dict
from sim.engine import evaluate
from sim.layerbatch import LayerBatch
from sim.mapping import Mapping
from sim.workload.layer import Workload, conv, gemm


def _chip(
    reduction: str,
    dataflow: str = "ws",
    rows: int = 16,
    cols: int = 32,
    preload: str = "overlapped",
    mapping: str = "search",
):
    return chip_from_dict(
        {
            "mapping": mapping,
            "array": {
                "rows": rows,
                "cols": cols,
                "dataflow": dataflow,
                "weight_preload": preload,
                "reduction": reduction,
            },
            "pe": {"kind": "bitfusion"},
            "memory": {
                "ifmap_sram_kib": 1024,
                "filter_sram_kib": 1024,
                "ofmap_sram_kib": 1024,
                "dram_bw_bits_per_cycle": "calc",
            },
        }
    )


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_layers_without_kernel_taps_are_the_same_either_way(dataflow) -> None:
    wl = Workload("w", (conv("pw", 14, 96, 64, 1), gemm("fc", 8, 300, 40), conv("g", 9, 16, 16, 1, groups=4)))
    lowered = simulate(_chip("lowered", dataflow), wl)
    per_tap = simulate(_chip("per_tap", dataflow), wl)
    assert lowered.equals(per_tap)


@pytest.mark.parametrize("in_c,pair", [(3, (8, 8)), (96, (4, 4)), (64, (4, 4)), (200, (2, 2)), (17, (8, 2))])
def test_per_tap_compute_is_bit_fusions_formula(in_c, pair) -> None:
    """The authors' simulator charges ``b * ceil(OC/cols) * OH * OW * K^2 * ceil(IC / (rows * perf))`` cycles for
    a conv (accelerator.get_compute_cycles, docs/validation.md); with every output pixel streamed once per fold
    (no stream tiles) and overlapped preload, lowbit adds only the array's one fill and drain."""
    rows, cols, k, out_c, batch = 16, 32, 3, 80, 2
    layer = conv("c", 12, in_c, out_c, k, 1, 1, batch=batch)
    chip = _chip("per_tap", rows=rows, cols=cols)
    arrays = evaluate(
        ChipBatch.from_chips([chip], [pair]),
        LayerBatch.from_workload(Workload("w", (layer,))),
        np.array([pair]),
        mapping=Mapping(0, 0),
    )
    w, a = pair
    perf = (8 // a) * (8 // w)
    bitfusion = batch * math.ceil(out_c / cols) * 12 * 12 * k * k * math.ceil(in_c / (rows * perf))
    assert int(arrays["compute_cycles"][0, 0, 0]) == bitfusion + 2 * rows + cols - 3
    assert int(arrays["folds"][0, 0, 0]) == math.ceil(out_c / cols) * k * k * math.ceil(in_c / (rows * perf))


def test_per_tap_pads_each_tap_and_never_folds_less() -> None:
    """Channels that fill whole folds cost the same; fewer pay a padded fold per tap (SCALE-Sim's schedule, so
    that both run the same stream tiles)."""
    pairs = [(8, 8)]
    for in_c, lowered_folds, per_tap_folds in ((64, 36, 36), (3, 2, 9), (40, 23, 27)):
        wl = Workload("w", (conv("c", 10, in_c, 32, 3, 1, 1),))
        lo = simulate(_chip("lowered", mapping="scalesim"), wl, pairs).iloc[0]
        pt = simulate(_chip("per_tap", mapping="scalesim"), wl, pairs).iloc[0]
        assert (lo.folds, pt.folds) == (lowered_folds, per_tap_folds)  # ceil(9 C / 16) against 9 ceil(C / 16)
        assert pt.macs == lo.macs and pt.weight_bits == lo.weight_bits
