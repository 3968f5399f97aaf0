"""Exit statuses tell the truth: 1 for a verification that found a mismatch, 130 (and no partial output) for
Ctrl-C, 3 for an internal error; finished parts of resumable jobs survive an interrupt and a rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_run import run_cli, tree_snapshot

import rtl.prediction
from experiments import cli
from experiments.staging import STAGE_PREFIX, staged_dir

ROOT = Path(__file__).resolve().parents[2]


def _interrupt_when(argv: list[str], cwd: Path, ready: Callable[[], bool], timeout_s: float = 240.0) -> tuple[int, str]:
    """Start ``lowbit argv`` in ``cwd``, send SIGINT once ``ready()`` holds; return (status, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"{argv} finished (status {proc.returncode}) before it could be interrupted: {err}")
            if time.monotonic() > deadline:
                pytest.fail(f"{argv} never became ready")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_in_a_staged_verb_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    """`pareto --model` measures every point (many seconds); Ctrl-C during the work leaves no --out, no stage."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            "digits-cnn",
            "--pairs",
            "w8a8,w4a8,w4a4,w2a2",
            "--coupled",
            "--out",
            "costs.csv",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "sensitivity",
            "--model",
            "digits-cnn",
            "--method",
            "sqnr",
            "--pairs",
            "w8a8,w4a8,w4a4,w2a2",
            "--out",
            "sens.csv",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    before = tree_snapshot(tmp_path)

    def staging() -> bool:
        return any(p.name.startswith(STAGE_PREFIX) for p in tmp_path.iterdir())

    code, err = _interrupt_when(
        [
            "pareto",
            "--costs",
            "costs.csv",
            "--sensitivity",
            "sens.csv",
            "--model",
            "digits-cnn",
            "--points",
            "40",
            "--out",
            "front",
        ],
        tmp_path,
        staging,
    )
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "lowbit: interrupted"
    assert "Traceback" not in err
    assert tree_snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", [None, "local:2"])
def test_ctrl_c_in_quant_table_keeps_finished_cells_and_a_rerun_resumes(tmp_path: Path, scheduler) -> None:
    """In this process or on two Dask workers: Ctrl-C keeps the finished cells, and a rerun computes the rest."""
    out = tmp_path / "table"
    argv = [
        "quant-table",
        "--models",
        "digits-cnn",
        "--methods",
        "rtn,gpfq,ptq-sl,gpfq-paper",
        "--bits",
        "2,3,4",
        "--out",
        str(out),
        *(["--scheduler", scheduler] if scheduler else []),
    ]

    def one_cell() -> bool:
        return len(list((out / "cells").glob("*.json"))) >= 1 if (out / "cells").is_dir() else False

    code, err = _interrupt_when(argv, tmp_path, one_cell)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "lowbit: interrupted"
    cells = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert cells and len(cells) < 12
    assert not (out / "quant_table.csv").exists()
    for name in cells:  # every kept cell is complete JSON
        json.loads((out / "cells" / name).read_text())
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # a rerun takes the finished cells from disk and computes the rest
    rerun = subprocess.run(
        [sys.executable, "-m", "experiments.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("(cached)") >= len(cells)
    assert (out / "quant_table.csv").is_file()


def test_staged_dir_moves_files_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(KeyboardInterrupt), staged_dir(out) as stage:
        (stage / "model.npz").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # the parents it made are gone too
    out.mkdir(parents=True)
    (out / "old.txt").write_text("kept")
    with staged_dir(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "x.csv").write_text("1")
        (stage / "metrics.json").write_text("{}")
    assert sorted(p.name for p in out.rglob("*")) == ["metrics.json", "old.txt", "sub", "x.csv"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(STAGE_PREFIX)]


def test_an_internal_error_exits_3_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("experiments.pipeline.run_demo", broken)
    code, _, err = run_cli(["demo", "--out", "unused"], capsys)
    assert code == cli.EXIT_INTERNAL == 3
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("lowbit: error: internal error")


@pytest.mark.rtl
def test_a_cycle_mismatch_in_rtl_gemm_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = rtl.prediction.predicted_cycles
    monkeypatch.setattr(rtl.prediction, "predicted_cycles", lambda *a, **k: real(*a, **k) + 1)
    code, out, _ = run_cli(
        ["rtl", "gemm", "--m", "4", "--k", "8", "--n", "4", "--pair", "w8a8", "--array", "4x4", "--pe", "fixed"], capsys
    )
    assert code == 1 and "DIFFERENT" in out


@pytest.mark.rtl
def test_a_cycle_mismatch_in_rtl_verify_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "q"
    code, _, err = run_cli(
        ["quantize", "--model", "digits-cnn", "--method", "rtn", "--bits", "w4a8", "--out", str(export)], capsys
    )
    assert code == 0, err
    argv = ["rtl", "verify", "--export", str(export), "--layer", "3", "--array", "4x4", "--images", "1"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0 and "DIFFERENT" not in out
    real = rtl.prediction.predicted_layer_cycles
    monkeypatch.setattr(rtl.prediction, "predicted_layer_cycles", lambda *a, **k: real(*a, **k) + 1)
    code, out, _ = run_cli(argv, capsys)
    assert code == 1 and "DIFFERENT" in out


@pytest.mark.parametrize("wrapped", [ImportError, OSError, RuntimeError])
def test_an_error_caused_by_ctrl_c_is_an_interrupt(monkeypatch, capsys, wrapped) -> None:
    """An extension module whose import is interrupted raises ImportError from the KeyboardInterrupt: 130."""

    def fail(*_args, **_kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise wrapped("initialization failed") from exc

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["solve", "--help"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "lowbit: interrupted"


def test_an_error_without_ctrl_c_in_its_chain_is_not_an_interrupt() -> None:
    try:
        try:
            raise ValueError("x")
        except ValueError as inner:
            raise ImportError("y") from inner
    except ImportError as exc:
        assert not cli._caused_by_interrupt(exc)
