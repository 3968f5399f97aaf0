"""Checks that refuse bad input before quant does any work: seeds, output paths, sensitivity-table paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowbit_core.files import check_output_path
from quant.errors import QuantInputError
from quant.quantizer import check_seed
from quant.sensitivity import check_table_path, write_sensitivity


def test_seed_must_be_a_non_negative_integer() -> None:
    assert check_seed(0) == 0 and check_seed(np.int64(5)) == 5
    for bad in (-1, 1.0, True, "3", None):
        with pytest.raises(QuantInputError, match=r"^init_seed must be a non-negative integer"):
            check_seed(bad, "init_seed")


def test_output_path_kinds(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    new = tmp_path / "new" / "deeper"
    assert check_output_path(new, "export", directory=True, error=QuantInputError) == new
    assert check_output_path(tmp_path / "dir", "export", directory=True, error=QuantInputError) == tmp_path / "dir"
    file = tmp_path / "file"
    assert check_output_path(file, "table", error=QuantInputError) == file  # a file may be replaced
    with pytest.raises(QuantInputError, match="is a file, not a directory; the export needs a directory path"):
        check_output_path(tmp_path / "file", "export", directory=True, error=QuantInputError)
    with pytest.raises(QuantInputError, match="is a directory; the table needs a file"):
        check_output_path(tmp_path / "dir", "table", error=QuantInputError)
    with pytest.raises(
        QuantInputError, match=r"below/t\.csv: cannot create the table: .*/file is a file, not a directory$"
    ):
        check_output_path(tmp_path / "file" / "below" / "t.csv", "table", error=QuantInputError)
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_path_in_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(QuantInputError, match="not writable"):
        check_output_path(locked / "t.csv", "table", error=QuantInputError)


def test_sensitivity_table_path(tmp_path: Path) -> None:
    (tmp_path / "a.csv").mkdir()
    assert check_table_path(tmp_path / "t.parquet") == tmp_path / "t.parquet"
    with pytest.raises(QuantInputError, match="unknown table format"):
        check_table_path(tmp_path / "t.xlsx")
    frame = pd.DataFrame({"layer": [0], "w_bits": [8], "a_bits": [8], "sensitivity": [0.5]})
    with pytest.raises(QuantInputError) as info:
        write_sensitivity(frame, tmp_path / "a.csv")
    assert str(info.value).startswith(f"{tmp_path / 'a.csv'}: is a directory") and ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no temporary file left behind
