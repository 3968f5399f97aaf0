"""QONNX and QDQ export: the files run in the ``qonnx`` package and in onnxruntime (reference executors nobody
here wrote) and compute the fake-quant model's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.quantize import quantize_model
from quant.errors import QuantInputError
from quant.export import build_integer_model
from quant.models import get_model, model_split
from quant.onnx_export import QONNX_DOMAIN, qdq_problems, to_onnx, write_onnx

onnx = pytest.importorskip("onnx")


def _quantized(name: str, method: str, gran: str, w_bits: int | dict, a_bits: int | dict = 8):
    model, split = get_model(name), model_split(name)
    q = quantize_model(model, split.calib_x, w_bits, a_bits, method, gran, 0)
    return q, build_integer_model(q, split.calib_x[:1], name=name), split.test_x[:128]


def _run_qonnx(proto, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = len(x)
    return execute_onnx(ModelWrapper(proto).transform(InferShapes()), {"input": x})["output"]


@pytest.mark.parametrize(
    ("name", "method", "gran", "w_bits"),
    [
        ("digits-cnn", "gpfq", "channel", 4),
        ("digits-resnet", "ptq-sl", "4x2", 4),
        ("digits-mobilenet", "gpfq", "channel", 3),
        ("mnist1d-cnn", "rtn", "channel", 2),
    ],
)
def test_qonnx_runs_in_qonnx_to_the_fake_quant_outputs(name: str, method: str, gran: str, w_bits: int) -> None:
    """Per sample, the QONNX output equals fake-quant to 1e-5 of the logit range, except on the rare sample where
    a float32 conv sum (onnxruntime's order against torch's) lands within its rounding error of a quantization tie
    and one code moves by one LSB (0-4 of 128 samples in these cases): >= 95 % of samples within 1e-5, and the
    predictions agree on >= 98 %."""
    pytest.importorskip("qonnx")
    q, golden, x = _quantized(name, method, gran, w_bits)
    proto = to_onnx(golden, "qonnx")
    assert {n.op_type for n in proto.graph.node if n.domain == QONNX_DOMAIN} == {"Quant"}
    got = _run_qonnx(proto, x.numpy())
    with torch.no_grad():
        want = q(x).numpy()
    rel = np.abs(got - want).max(axis=1) / np.abs(want).max()
    assert np.mean(rel <= 1e-5) >= 0.95, np.sort(rel)[-8:]
    assert np.median(rel) <= 1e-6
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.98


def test_qdq_runs_in_onnxruntime() -> None:
    """QDQ (opset 21, int4 weights blocked along the input channels) passes onnx's full check and runs in
    onnxruntime; its float32 QuantizeLinear moves exact ties of the float64 quantizers (digits' pixel 0.5 at scale
    1/255), so it agrees with fake-quant on the predictions, not bit for bit."""
    ort = pytest.importorskip("onnxruntime")
    q, golden, x = _quantized("digits-resnet", "ptq-sl", "4x2", 4)
    assert qdq_problems(golden) == []
    proto = to_onnx(golden, "qdq")
    onnx.checker.check_model(proto, full_check=True)
    assert any(
        n.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in n.attribute) for n in proto.graph.node
    )
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = q(x).numpy()
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.97
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()


def test_qdq_refuses_widths_onnx_has_no_type_for(tmp_path: Path) -> None:
    _, golden, _ = _quantized("digits-cnn", "rtn", "channel", 2)
    with pytest.raises(QuantInputError, match=r"4- and 8-bit .*2-bit weights"):
        write_onnx(golden, tmp_path / "m.onnx", "qdq")
    assert not (tmp_path / "m.onnx").exists()
    write_onnx(golden, tmp_path / "m.onnx", "qonnx")
    assert onnx.load(str(tmp_path / "m.onnx")).graph.output[0].name == "output"


def _quantized_transformer(w_bits: int):  # noqa: ANN202
    from tests.user_nets import transformer

    split = model_split("digits-cnn")
    q = quantize_model(transformer(0), split.calib_x[:128], w_bits, 8, "rtn", "channel", 0)
    return q, build_integer_model(q, split.calib_x[:1], name="transformer"), split.test_x[:128]


def test_a_transformer_runs_in_qonnx_and_onnxruntime() -> None:
    """Attention products (MatMul of two Quant outputs), Transpose, the token mean and the float glue
    (LayerNormalization, Softmax, Gelu, Div) in QONNX executed by the qonnx package, and as QDQ in onnxruntime."""
    pytest.importorskip("qonnx")
    ort = pytest.importorskip("onnxruntime")
    q, golden, x = _quantized_transformer(4)
    proto = to_onnx(golden, "qonnx")
    ops = {n.op_type for n in proto.graph.node}
    assert {"MatMul", "Transpose", "LayerNormalization", "Softmax", "Gelu", "Div", "AveragePool"} <= ops
    got = _run_qonnx(proto, x.numpy())
    with torch.no_grad():
        want = q(x).numpy()
    rel = np.abs(got - want).max(axis=1) / np.abs(want).max()
    assert np.mean(rel <= 1e-5) >= 0.95, np.sort(rel)[-8:]
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.98
    qdq = to_onnx(golden, "qdq")
    onnx.checker.check_model(qdq, full_check=True)
    # onnxruntime's extended QDQ rewrites (moving Q/DQ through Reshape / Transpose) reject the int8 activations
    # of a product's b operand here; its basic optimizations run the file as written
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    got = ort.InferenceSession(qdq.SerializeToString(), options).run(None, {"input": x.numpy()})[0]
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.97
