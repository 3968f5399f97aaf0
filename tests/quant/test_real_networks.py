"""The built-in real networks (digits-resnet: residual blocks and downsample branches; digits-mobilenet: inverted
residuals and depthwise convs) quantized and exported as integer graphs: the golden integer model agrees with the
fake-quant model on >= 99 % of the 397 test images, at w4a8 and at a mixed assignment, for two shipped seeds."""

from __future__ import annotations

import pytest

from experiments.quantize import measure_quantized, quantize_model
from quant.fakequant import prepare, quant_layers
from quant.models import get_model, model_split


def _mixed(model) -> tuple[dict[str, int], dict[str, int]]:  # noqa: ANN001 - a torch model
    """A mixed assignment: weights 8/4/2 bits and activations 8/4 bits, cycling over the layers."""
    names = [n for n, _ in quant_layers(prepare(model))]
    return ({n: (8, 4, 2)[i % 3] for i, n in enumerate(names)}, {n: (8, 4)[i % 2] for i, n in enumerate(names)})


@pytest.mark.parametrize("name", ["digits-resnet", "digits-mobilenet"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bits", ["w4a8", "mixed"])
def test_golden_model_agrees_with_fake_quant(name: str, seed: int, bits: str) -> None:
    model = get_model(name, seed=seed)
    split = model_split(name)
    w_bits, a_bits = (4, 8) if bits == "w4a8" else _mixed(model)
    q = quantize_model(model, split.calib_x, w_bits, a_bits, "gpfq", "channel", seed)
    integer, measured = measure_quantized(model, q, split, name)
    assert integer.graph is not None and len(integer.layers) == len(quant_layers(q))
    assert measured["integer_agreement"] >= 99.0, measured
    if bits == "w4a8":  # 4-bit GPFQ keeps these nets within a few points of float (397 images: 1 point = 4)
        assert measured["fakequant_accuracy"] >= measured["float_accuracy"] - 3.0, measured
