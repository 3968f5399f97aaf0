"""`lowbit train` and `lowbit quant-table`: outputs, same seed -> same bytes, one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from accuracy_stats import unpaired_margin
from cli_run import assert_bad_input
from cli_run import run_cli as run


def test_train_writes_export_history_metrics_deterministically(tmp_path: Path, capsys) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, stdout, _ = run(
            [
                "train",
                "--model",
                "digits-cnn",
                "--method",
                "qat",
                "--bits",
                "w2a8",
                "--epochs",
                "2",
                "--seed",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ],
            capsys,
        )
        assert code == 0 and "integer" in stdout
    for name in ("model.npz", "meta.json", "history.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["method"] == "qat" and metrics["w_bits"] == 2 and metrics["epochs"] == 2
    assert metrics["integer_agreement"] >= 99.0 and metrics["float_size_bits"] > metrics["weight_size_bits"]
    assert len(pd.read_csv(outs[0] / "history.csv")) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "qat", "--bits", "w1a8"], "weight bits must be in 2..8"),
        (["--method", "qat", "--bits", "w2a9"], "activation bits must be in 2..8"),
        (["--method", "sgd", "--bits", "w2a8"], "unknown training method"),
        (["--method", "qat", "--bits", "w2a8", "--lam", "0.1"], "--lam applies to --method qgt"),
        (["--method", "qat", "--bits", "w2a8", "--components", "4"], "--components applies to --method dgms"),
        (["--method", "qat", "--bits", "w2a8", "--epochs", "0"], "epochs"),
        (["--method", "dgms", "--bits", "w2a8", "--components", "8"], "K=8 is inconsistent with w_bits=2"),
    ],
)
def test_train_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    code, _, err = run(["train", "--model", "digits-cnn", "--no-progress", "--out", str(out), *args], capsys)
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_a_diverging_run_is_bad_input_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    line = assert_bad_input(
        [
            "train",
            "--model",
            "digits-cnn",
            "--method",
            "qat",
            "--bits",
            "w4a8",
            "--lr",
            "1e3",
            "--epochs",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ],
        capsys,
        tmp_path,
        "training diverged",
    )
    assert "try a lower --lr than 1000" in line and not out.exists()


TABLE = ["quant-table", "--models", "digits-cnn", "--methods", "rtn,qat", "--bits", "2", "--epochs", "1"]


def test_quant_table_builds_and_resumes(tmp_path: Path, capsys) -> None:
    argv = [*TABLE, "--out", str(tmp_path)]
    code, stdout, err = run(argv, capsys)
    assert code == 0 and "cached" not in stdout
    assert "[1/2] digits-cnn rtn w2a8 seed 0 (ETA unknown)" in err and "[2/2] digits-cnn qat w2a8 seed 0 (ETA " in err
    table = pd.read_csv(tmp_path / "quant_table.csv")
    assert list(table.method) == ["rtn", "qat"] and (table.float_size_bits > 10 * table.size_bits).all()
    acc = table.set_index("method").accuracy  # one epoch of QAT beats RTN at 2 bits by more than 397 images resolve
    assert acc["qat"] - acc["rtn"] > unpaired_margin(acc["qat"], acc["rtn"], 397), acc.to_dict()
    md = (tmp_path / "quant_table.md").read_text()
    assert "| digits-cnn | QAT | w2a8 |" in md and "| digits-cnn | float | 32 |" in md
    code, stdout, err = run(argv, capsys)
    assert code == 0 and stdout.count("(cached)") == 2 and "[" not in err
    code, _, err = run(["quant-table", "--out", str(tmp_path), "--methods", "rtn,magic"], capsys)
    assert code == 2 and "unknown method 'magic'" in err


def test_quant_table_refuses_a_table_of_other_seeds_or_weights(tmp_path: Path, capsys) -> None:
    out = tmp_path / "table"
    assert run([*TABLE, "--out", str(out)], capsys)[0] == 0
    before = (out / "quant_table.md").read_text()
    line = assert_bad_input(
        [*TABLE, "--seeds", "0,1", "--out", str(out)],
        capsys,
        tmp_path,
        "holds a quant table over seeds 0, and this run asks for seeds 0, 1",
    )
    assert "--replace" in line
    assert_bad_input([*TABLE, "--epochs", "2", "--out", str(out)], capsys, tmp_path, "used 1 epochs")
    stale = out / "cells" / "digits-cnn_rtn_w2a8_s0.json"  # computed from other pretrained weights
    stale.write_text(stale.read_text().replace('"model_key": "', '"model_key": "0'))
    assert_bad_input(
        [*TABLE, "--out", str(out)],
        capsys,
        tmp_path,
        "holds cells of digits-cnn (seeds 0) computed from other pretrained weights",
    )
    assert (out / "quant_table.md").read_text() == before
    code, stdout, _ = run([*TABLE, "--out", str(out), "--replace"], capsys)
    assert code == 0 and stdout.count("(cached)") == 1  # the stale RTN cell is recomputed, QAT's reused
    code, stdout, _ = run([*TABLE, "--methods", "rtn", "--seeds", "0,1", "--out", str(out), "--replace"], capsys)
    assert code == 0 and stdout.count("(cached)") == 1
    assert "Means over seeds 0, 1" in (out / "quant_table.md").read_text()


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_quant_table_refuses_bad_epochs_before_creating_anything(tmp_path: Path, capsys, epochs: str) -> None:
    out = tmp_path / "table"
    assert_bad_input([*TABLE[:-1], epochs, "--out", str(out)], capsys, tmp_path, "epochs must be a positive integer")
    assert not out.exists()


@pytest.mark.slow
def test_quant_table_on_dask_workers_gives_the_same_bytes(tmp_path: Path, capsys) -> None:
    """One and two local Dask workers, and this process, write byte-identical tables; the Dask runs show an ETA."""
    argv = ["quant-table", "--models", "digits-cnn", "--methods", "rtn,gptq", "--bits", "2,3"]
    outputs = {}
    for scheduler in (None, "local:1", "local:2"):
        out = tmp_path / str(scheduler)
        code, _, err = run([*argv, "--out", str(out), *(["--scheduler", scheduler] if scheduler else [])], capsys)
        assert code == 0, err
        if scheduler:
            assert "[4/4] " in err and "ETA" in err
        outputs[scheduler] = ((out / "quant_table.csv").read_bytes(), (out / "quant_table.md").read_bytes())
    assert outputs[None] == outputs["local:1"] == outputs["local:2"]


@pytest.mark.parametrize(
    "scheduler, needle",
    [("local:0", "worker count"), ("nonsense", "unknown scheduler"), ("tcp://127.0.0.1:1", "cannot connect")],
)
def test_quant_table_refuses_a_bad_scheduler_before_creating_anything(tmp_path: Path, capsys, scheduler, needle):
    out = tmp_path / "table"
    code, _, err = run(
        [
            "quant-table",
            "--out",
            str(out),
            "--models",
            "digits-cnn",
            "--methods",
            "rtn",
            "--bits",
            "2",
            "--scheduler",
            scheduler,
        ],
        capsys,
    )
    assert code == 2 and needle in err and not out.exists()
