"""``lowbit quantize --qonnx / --qdq``: the quantized network written as ONNX next to the integer export."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import assert_bad_input, run_cli

onnx = pytest.importorskip("onnx")


def test_quantize_writes_qonnx_and_qdq(tmp_path: Path, capsys) -> None:
    out, qonnx, qdq = tmp_path / "q", tmp_path / "m.qonnx.onnx", tmp_path / "m.qdq.onnx"
    code, _, err = run_cli(
        [
            "quantize",
            "--model",
            "digits-resnet",
            "--method",
            "rtn",
            "--bits",
            "w4a8",
            "--out",
            str(out),
            "--qonnx",
            str(qonnx),
            "--qdq",
            str(qdq),
        ],
        capsys,
    )
    assert code == 0, err
    assert (out / "model.npz").is_file()
    ops = {n.op_type for n in onnx.load(str(qonnx)).graph.node}
    assert {"Quant", "Conv", "Add", "AveragePool"} <= ops
    onnx.checker.check_model(onnx.load(str(qdq)), full_check=True)


def test_bad_onnx_requests_are_refused_before_work(tmp_path: Path, capsys) -> None:
    base = ["quantize", "--model", "digits-cnn", "--method", "rtn", "--out", str(tmp_path / "q")]
    assert_bad_input(
        [*base, "--bits", "w2a8", "--qdq", str(tmp_path / "m.onnx")], capsys, tmp_path, "4- and 8-bit tensors only"
    )
    (tmp_path / "adir").mkdir()
    assert_bad_input([*base, "--bits", "w4a8", "--qonnx", str(tmp_path / "adir")], capsys, tmp_path, "--qonnx")
