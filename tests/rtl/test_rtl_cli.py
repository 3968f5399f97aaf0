"""``lowbit rtl ...``: the synthesis table, and a clear one-line error when a tool is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main


@pytest.mark.rtl
def test_rtl_synth_prints_and_writes_the_area_table(yosys, tmp_path: Path, capsys) -> None:
    main(["rtl", "synth", "--out", str(tmp_path / "area.csv")])
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "area.csv")
    assert "| design |" in out and {"fixed", "bitfusion", "requant"} <= set(table.pe_kind)
    assert (table.area_nand2 > 0).all()


def test_missing_yosys_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "rtl", "synth", "--no-cache"],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "yosys" in proc.stderr and "apt-get install yosys" in proc.stderr and "Traceback" not in proc.stderr
