"""`lowbit train` and `lowbit quant-table`: outputs, same seed -> same bytes, one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_run import run_cli as run


def test_train_writes_export_history_metrics_deterministically(tmp_path: Path, capsys) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, stdout, _ = run(["train", "--model", "digits-cnn", "--method", "qat", "--bits", "w2a8", "--epochs", "2",
                               "--seed", "1", "--no-progress", "--out", str(out)], capsys)
        assert code == 0 and "integer" in stdout
    for name in ("model.npz", "meta.json", "history.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["method"] == "qat" and metrics["w_bits"] == 2 and metrics["epochs"] == 2
    assert metrics["integer_agreement"] >= 99.0 and metrics["float_size_bits"] > metrics["weight_size_bits"]
    assert len(pd.read_csv(outs[0] / "history.csv")) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "qat", "--bits", "w1a8"], "weight bits must be in 2..8"),
    (["--method", "qat", "--bits", "w2a9"], "activation bits must be in 2..8"),
    (["--method", "sgd", "--bits", "w2a8"], "unknown training method"),
    (["--method", "qat", "--bits", "w2a8", "--lam", "0.1"], "--lam applies to --method qgt"),
    (["--method", "qat", "--bits", "w2a8", "--components", "4"], "--components applies to --method dgms"),
    (["--method", "qat", "--bits", "w2a8", "--epochs", "0"], "epochs"),
    (["--method", "dgms", "--bits", "w2a8", "--components", "8"], "K=8 is inconsistent with w_bits=2"),
])
def test_train_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    code, _, err = run(["train", "--model", "digits-cnn", "--no-progress", "--out", str(out), *args], capsys)
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_quant_table_builds_and_resumes(tmp_path: Path, capsys) -> None:
    argv = ["quant-table", "--out", str(tmp_path), "--models", "digits-cnn", "--methods", "rtn,qat", "--bits", "2",
            "--epochs", "1"]
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "cached" not in stdout
    table = pd.read_csv(tmp_path / "quant_table.csv")
    assert list(table.method) == ["rtn", "qat"] and (table.float_size_bits > 10 * table.size_bits).all()
    assert table.set_index("method").accuracy["qat"] > table.set_index("method").accuracy["rtn"]
    md = (tmp_path / "quant_table.md").read_text()
    assert "| digits-cnn | QAT | w2a8 |" in md and "| digits-cnn | float | 32 |" in md
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and stdout.count("(cached)") == 2
    stale = tmp_path / "cells" / "digits-cnn_rtn_w2a8_s0.json"  # computed from an older pretrained model
    stale.write_text(stale.read_text().replace('"model_key": "', '"model_key": "0'))
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and stdout.count("(cached)") == 1
    code, _, err = run(["quant-table", "--out", str(tmp_path), "--methods", "rtn,magic"], capsys)
    assert code == 2 and "unknown method 'magic'" in err
