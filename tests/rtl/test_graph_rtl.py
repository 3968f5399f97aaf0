"""DAG exports through the RTL: every GEMM node of a residual network (block convs, the 1x1 downsample branch, the
classifier) and of a MobileNetV2-style net (depthwise convs run group by group) bit-exact against the golden
model, with busy cycles equal to sim's prediction of the layer; the rest of the graph (adds, requantization,
pooling) runs in the golden model's own code between the RTL layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from user_nets import mobilenet, resnet

from quant.export import export_model
from quant.fakequant import calibrate_activations, prepare
from quant.integer import load_export
from quant.rtn import rtn_quantize
from rtl.tools import RtlError

pytestmark = pytest.mark.rtl


def _export(net, root: Path, w_bits: int = 4) -> Path:  # noqa: ANN001 - a model factory
    q = prepare(net(0))
    x = torch.rand((64, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    calibrate_activations(q, x, 8)
    return export_model(rtn_quantize(q, w_bits), x[:2], root)


def _images() -> np.ndarray:
    return torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(1)).numpy()


def test_whole_resnet_in_rtl(verilator: str, tmp_path: Path) -> None:
    from rtl.layer import run_model_rtl

    check = run_model_rtl(_export(resnet, tmp_path), _images(), gap_prob=0.2, stall_prob=0.2, seed=2)
    assert [c.layer for c in check.layers][-3:] == ["layer2.conv2", "layer2.downsample.0", "fc"]
    assert check.mismatches == 0 and check.intermediate_mismatches == 0
    assert all(c.measured_cycles == c.predicted_cycles for c in check.layers)
    assert np.array_equal(check.predictions, check.golden_predictions)


@pytest.mark.parametrize(
    ("layer", "dataflow"),
    [("blocks.0.conv.3", "ws"), ("blocks.1.conv.3", "os"), ("blocks.2.conv.6", "ws"), ("classifier", "os")],
)
def test_mobilenet_layers_in_rtl(verilator: str, tmp_path: Path, layer: str, dataflow: str) -> None:
    from rtl.layer import verify_layer

    export = _export(mobilenet, tmp_path)
    check = verify_layer(export, layer, x=_images(), dataflow=dataflow)
    groups = load_export(export).layer(layer).groups
    assert check.mismatches == 0, "\n".join(check.messages)
    assert check.measured_cycles == check.predicted_cycles, (check.measured_cycles, check.predicted_cycles)
    assert (groups > 1) == layer.endswith(".3")


def test_grouped_layer_with_overlapped_preload_is_refused(tmp_path: Path) -> None:
    from rtl.layer import verify_layer

    with pytest.raises(RtlError, match="serial weight preload only"):
        verify_layer(_export(mobilenet, tmp_path), "blocks.0.conv.3", x=_images(), preload="overlapped")
