"""experiments.docs_numbers and experiments.isa_spread: argument checks, collection, and the spread table (on small
fake tables; the real runs take half an hour)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments import docs_numbers, isa_spread
from experiments.quant_table import format_eta


def _cells(acc: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["digits-cnn"] * 4,
            "method": ["gpfq", "gpfq", "qat", "qat"],
            "w_bits": [4, 4, 2, 2],
            "seed": [0, 1, 0, 1],
            "accuracy": acc,
        }
    )


def test_spread_reports_changed_cells_and_row_means() -> None:
    native = _cells([98.0, 97.5, 97.0, 96.0])
    moved = _cells([98.25, 97.5, 95.0, 97.0])
    text = isa_spread.spread_markdown({"native": native, "X=1": moved})
    assert "| X=1 | post-training | 1 | 1 of 2 | 0.25 | 0.12 | 1 |" in text
    assert "| X=1 | QAT w2a8 (fine-tuned) | 1 | 2 of 2 | 2.00 | 0.50 | 1 |" in text
    assert "| X=1 | digits-cnn | qat | w2 | 0 | -2.00 |" in text
    same = isa_spread.spread_markdown({"native": native, "Y=1": native.copy()})
    assert "| Y=1 | post-training | 1 | 0 of 2 | 0.00 | 0.00 | 0 |" in same and "Every changed cell" not in same


@pytest.mark.parametrize("argv", [["--steps", "magic"], ["--jobs", "0"]])
def test_docs_numbers_refuses_bad_arguments(tmp_path: Path, capsys, argv: list[str]) -> None:
    assert docs_numbers.main(["--out", str(tmp_path / "r"), *argv]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_isa_spread_refuses_unknown_emulations(tmp_path: Path, capsys) -> None:
    assert isa_spread.main(["--out", str(tmp_path), "--only", "AVX9=1"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_collect_gathers_every_step_that_ran(tmp_path: Path) -> None:
    (tmp_path / "quant_table").mkdir()
    (tmp_path / "quant_table" / "quant_table.md").write_text("| table |\n")
    (tmp_path / "extras.md").write_text("## extras\n")
    text = docs_numbers.collect(tmp_path)
    assert "# lowbit quant-table --seeds 0,1,2" in text and "| table |" in text and "## extras" in text
    assert "training_study" not in text


def test_eta_format() -> None:
    assert format_eta(None) == "ETA unknown"
    assert format_eta(42.4) == "ETA 42 s" and format_eta(185) == "ETA 3 min 05 s" and format_eta(-1) == "ETA 0 s"
