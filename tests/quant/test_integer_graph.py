"""Integer export and golden model of DAGs (quant.graph, quant.export_graph, quant.integer_graph): residual adds,
downsample branches, depthwise convs, ReLU6, average pooling, requantization between tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from user_nets import mobilenet, resnet

from quant.errors import QuantInputError
from quant.export import build_integer_model, check_exportable, export_model
from quant.fakequant import calibrate_activations, prepare, quant_layers, tensor_quants
from quant.gpfq import gpfq_quantize
from quant.integer import META_NAME, NPZ_NAME, IntegerModel, load_export
from quant.rtn import rtn_quantize

NETS = {"resnet": resnet, "mobilenet": mobilenet}


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))


def quantized(net: str, seed: int, w_bits: int | dict[str, int], a_bits: int | dict[str, int]) -> nn.Module:
    q = prepare(NETS[net](seed))
    calibrate_activations(q, images(128, seed + 100), a_bits)
    return rtn_quantize(q, w_bits)


def agreement(q: nn.Module, golden: IntegerModel, x: torch.Tensor) -> tuple[float, float]:
    """(relative max |integer - fake-quant| of the logits, top-1 agreement)."""
    logits, pred = golden.run(x)
    with torch.no_grad():
        fq = q(x).double().numpy()
    return float(np.abs(logits - fq).max() / np.abs(fq).max()), float(np.mean(pred == fq.argmax(1)))


def test_chain_gets_no_tensor_quantizer_and_exports_as_a_chain(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()
    q = prepare(model)
    assert isinstance(q, nn.Sequential) and not tensor_quants(q)
    calibrate_activations(q, images(16, 0), 8)
    golden = load_export(export_model(rtn_quantize(q, 4), images(2, 1), tmp_path))
    assert golden.graph is None


def test_tensor_quantizers_sit_on_the_tensors_the_datapath_stores() -> None:
    q = prepare(resnet(0))
    assert type(q).__name__ == "TinyResNet"
    # the stem output feeds conv1 and the skip add; each block's conv2 and downsample feed an add; the adds and the
    # pool produce new tensors.  conv1 -> conv2 and pool -> fc stay fused (one reader each).
    assert {n for n, _ in tensor_quants(q)} == {
        f"tensor_quants.{n}"
        for n in ("stem_0", "layer1_conv2", "add", "layer2_conv2", "layer2_downsample_0", "add_1", "pool")
    }
    assert [n for n, _ in quant_layers(q)] == [n for n, _ in quant_layers(prepare(resnet(0)))]


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize(("w_bits", "a_bits"), [(8, 8), (4, 8), (2, 4)])
def test_golden_model_agrees_with_fake_quant(net: str, w_bits: int, a_bits: int) -> None:
    """Over 3 seeds x 256 inputs the integer logits stay within 1 % of the fake-quant logits' range (they differ
    only by the requantizers' rounding) and the predictions agree on >= 99 % of inputs."""
    for seed in range(3):
        q = quantized(net, seed, w_bits, a_bits)
        rel, agree = agreement(q, build_integer_model(q, images(2, 7)), images(256, seed + 200))
        assert rel <= 1e-2 and agree >= 0.99, (seed, rel, agree)


@pytest.mark.parametrize("net", sorted(NETS))
def test_mixed_assignment_and_gpfq(net: str) -> None:
    """Per-layer bit pairs (so tensors feeding layers of different widths are requantized) and GPFQ codes."""
    names = [n for n, _ in quant_layers(prepare(NETS[net](0)))]
    w_bits = {n: (4, 8, 2)[i % 3] for i, n in enumerate(names)}
    a_bits = {n: (8, 4)[i % 2] for i, n in enumerate(names)}
    q = prepare(NETS[net](1))
    calib = images(128, 5)
    calibrate_activations(q, calib, a_bits)
    q = gpfq_quantize(q, calib, w_bits)
    golden = build_integer_model(q, calib[:2])
    assert {lay.name: lay.w_bits for lay in golden.layers} == w_bits
    assert any(n["op"] == "requant" for n in golden.graph)
    rel, agree = agreement(q, golden, images(256, 9))
    assert rel <= 1e-2 and agree >= 0.99


def test_export_is_deterministic_and_reloads_exactly(tmp_path: Path) -> None:
    q = quantized("mobilenet", 0, 4, 8)
    a = export_model(q, images(2, 3), tmp_path / "a")
    b = export_model(q, images(2, 3), tmp_path / "b")
    assert (a / NPZ_NAME).read_bytes() == (b / NPZ_NAME).read_bytes()
    built, loaded = build_integer_model(q, images(2, 3)), load_export(a)
    x = images(64, 4)
    assert np.array_equal(built.run(x)[0], loaded.run(x)[0])
    assert [lay.groups for lay in loaded.layers if lay.groups > 1] == [16, 16, 32]  # the depthwise convs
    meta = json.loads((a / META_NAME).read_text())
    assert meta["graph"][0]["op"] == "input" and meta["graph"][-1]["op"] == "output"


def test_layer_inputs_and_outputs_follow_the_graph() -> None:
    q = quantized("resnet", 0, 4, 8)
    golden = build_integer_model(q, images(2, 3))
    run = golden.execute(images(8, 1))
    assert list(run.inputs) == [lay.name for lay in golden.layers]
    for lay in golden.layers:
        assert np.array_equal(golden.run_layer(lay.name, run.inputs[lay.name]), run.outputs[lay.name])
    # a replaced GEMM is what the rest of the graph reads
    fc = golden.layers[-1].name
    zeroed = golden.execute(
        images(8, 1),
        lambda n, c: np.zeros_like(golden.run_layer(n, c)) if n == "layer2.conv2" else golden.run_layer(n, c),
    )
    assert not np.array_equal(zeroed.inputs[fc], run.inputs[fc])


def _damaged(golden: IntegerModel, edit, tmp_path: Path) -> Path:  # noqa: ANN001 - a graph editor
    graph = json.loads(json.dumps(golden.graph))
    edit(graph)
    return IntegerModel(golden.layers, [], golden.name, graph).save(tmp_path / "bad")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda g: g[3].__setitem__("op", "gelu"), "op in"),
        (lambda g: g[3].__setitem__("inputs", ["output"]), "earlier nodes"),
        (
            lambda g: next(n for n in g if n["op"] == "add").__setitem__(
                "mults", [m + 1 for m in next(n for n in g if n["op"] == "add")["mults"]]
            ),
            "requantization of the stored",
        ),
        (lambda g: g[0]["q"].__setitem__("scale", 0.5), "quantizers of its input"),
        (lambda g: next(n for n in g if n["op"] == "avgpool").__setitem__("shape", [16, 2, 2]), "shape"),
        (lambda g: g.remove(next(n for n in g if n["op"] == "relu")), "earlier nodes"),
        (lambda g: next(n for n in g if n["op"] == "add")["inputs"].append("x"), "earlier nodes"),
        (lambda g: g.insert(-1, {**g[-2], "name": "again"}), "exactly once"),
    ],
)
def test_loader_refuses_a_damaged_graph(tmp_path: Path, edit, match: str) -> None:  # noqa: ANN001
    golden = build_integer_model(quantized("resnet", 0, 4, 8), images(2, 3))
    with pytest.raises(QuantInputError, match=match):
        load_export(_damaged(golden, edit, tmp_path))


def test_unsupported_nodes_are_named_before_any_work() -> None:
    class ExpResidual(nn.Module):  # exp is not a glue op; an elementwise product of two activations is none
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.exp(self.conv(x)) + x * x
            return self.fc(y.flatten(1))

    with pytest.raises(QuantInputError, match=r"2 node\(s\): exp \(call_function exp\), mul"):
        check_exportable(prepare(ExpResidual()))


def test_untraceable_model_is_refused_with_the_reason() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else self.fc(-x)

    q = prepare(Branchy())
    with pytest.raises(QuantInputError, match="torch.fx cannot trace Branchy"):
        check_exportable(q)
