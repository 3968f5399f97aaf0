"""Tables are written atomically: a failed write leaves neither a partial file nor a temp file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import InputError
from sim.io import read_table, write_table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"layer": [0, 1], "name": ["a", "b"], "energy_pj": [1.5, 2.5]})
    path = write_table(frame, tmp_path / f"t{suffix}")
    pd.testing.assert_frame_equal(read_table(path), frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t{suffix}"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Unserializable:
        pass

    frame = pd.DataFrame({"x": [Unserializable()]})
    old = tmp_path / "t.parquet"
    write_table(pd.DataFrame({"x": [1]}), old)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type
        write_table(frame, old)
    assert read_table(old).x.tolist() == [1]  # the previous file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown table format"):
        write_table(pd.DataFrame(), tmp_path / "t.xlsx")
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read table"):
        read_table(tmp_path / "bad.parquet")
