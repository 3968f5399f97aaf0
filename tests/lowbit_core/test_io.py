"""The base package's files, tables and YAML: atomic writes (a failed write leaves neither a partial file nor a
temp file), one table reader, one YAML loader, output paths checked before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from lowbit_core.errors import EXIT_BAD_INPUT, InputError, LowbitError
from lowbit_core.files import atomic_path, atomic_write, check_output_path
from lowbit_core.tables import TABLE_SUFFIXES, read_table, write_table
from lowbit_core.yamlio import read_yaml


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
    with pytest.raises(InputError, match="no such table"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read table"):
        read_table(tmp_path / "bad.parquet")


# YAML: one loader, duplicate keys refused ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a' (first on line 1)"),
        ("top:\n  x: 1\n  y: 2\n  x: 1\n", "line 4: duplicate key 'x' (first on line 2)"),
        ("m: {rows: 8, cols: 8, rows: 16}\n", "line 1: duplicate key 'rows' (first on line 1)"),
        ("- {k: 1}\n- {k: 1, k: 2}\n", "line 2: duplicate key 'k'"),
        ("8: a\n8.0: b\n", "duplicate key 8.0 (first on line 1)"),  # the same number once parsed
    ],
)
def test_read_yaml_refuses_duplicate_keys(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_yaml(path, "test file")
    message = str(info.value)
    assert message.startswith(f"{path}: malformed YAML: ") and needle in message and "\n" not in message, message


def test_read_yaml_keeps_merges_and_repeated_keys_in_different_mappings(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("base: &b {rows: 8, cols: 8}\nchip: {<<: *b, rows: 16}\nother: {rows: 4}\nlist: [{k: 1}, {k: 2}]\n")
    doc = read_yaml(path, "test file")
    assert doc["chip"] == {"rows": 16, "cols": 8} and doc["other"] == {"rows": 4}
    assert doc["list"] == [{"k": 1}, {"k": 2}]


def test_no_yaml_is_parsed_outside_read_yaml() -> None:
    """Every YAML read goes through lowbit_core.yamlio.read_yaml (the one loader that refuses duplicate keys)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("lowbit_core", "sim", "search", "quant", "rtl", "experiments", "benchmarks"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            calls = ("yaml.safe_load", "yaml.load(", "yaml.full_load", "yaml.unsafe_load", "yaml.compose")
            if path.name != "yamlio.py" and any(call in text for call in calls):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


# Output paths: checked before any work, nothing created ------------------------------------------------
def test_check_output_path_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    new = tmp_path / "new" / "deeper" / "t.csv"
    assert check_output_path(new, "table", suffixes=TABLE_SUFFIXES) == tmp_path / "new/deeper/t.csv"
    assert check_output_path(tmp_path / "file.txt", "table") == tmp_path / "file.txt"  # overwritten by a rename
    for path, needle in (
        (tmp_path / "dir", "is a directory"),
        (tmp_path / "file.txt" / "t.csv", "file.txt is a file, not a directory"),
        (tmp_path / "file.txt" / "a" / "t.csv", "file.txt is a file, not a directory"),
        (tmp_path / "t.xlsx", "unknown file type '.xlsx'"),
    ):
        with pytest.raises(InputError, match=needle):
            check_output_path(path, "table", suffixes=TABLE_SUFFIXES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"]


def test_check_output_path_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    assert check_output_path(tmp_path / "dir", "output directory", directory=True) == tmp_path / "dir"
    assert check_output_path(tmp_path / "a" / "b", "output directory", directory=True) == tmp_path / "a" / "b"
    with pytest.raises(InputError, match="is a file, not a directory; the output directory needs a directory path"):
        check_output_path(tmp_path / "file.txt", "output directory", directory=True)
    with pytest.raises(InputError, match="file.txt is a file, not a directory"):
        check_output_path(tmp_path / "file.txt" / "out", "output directory", directory=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_output_paths_refuse_unwritable_directories(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(InputError, match="no permission"):
            check_output_path(locked / "t.csv", "table")
        with pytest.raises(InputError, match="no permission"):
            check_output_path(locked / "out", "output directory", directory=True)
    finally:
        locked.chmod(0o700)


def test_write_table_refuses_a_directory_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "t.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_table(pd.DataFrame({"x": [1]}), tmp_path / "t.csv")
    with pytest.raises(IsADirectoryError):  # the rename itself fails: the temp file goes too
        with atomic_path(tmp_path / "t.csv") as tmp:
            tmp.write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"] and not any((tmp_path / "t.csv").iterdir())


def test_atomic_write_publishes_whole_files_only(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.npz"
    atomic_write(target, lambda f: f.write(b"first"))
    assert target.read_bytes() == b"first" and oct(target.stat().st_mode & 0o777) == "0o644"

    def fail_half_way(f) -> None:
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail_half_way)
    assert target.read_bytes() == b"first" and [p.name for p in target.parent.iterdir()] == ["model.npz"]


def test_every_package_error_is_an_input_error_with_exit_status_2() -> None:
    """One error root: the CLI catches LowbitError and exits with the status each kind carries."""
    from quant.errors import QuantInputError, ShippedWeightsError
    from rtl.tools import RtlError, ToolMissingError
    from search.errors import InfeasibleBudgetError, SearchInputError

    for kind in (
        InputError,
        QuantInputError,
        ShippedWeightsError,
        RtlError,
        ToolMissingError,
        SearchInputError,
        InfeasibleBudgetError,
    ):
        assert issubclass(kind, InputError) and issubclass(kind, LowbitError) and issubclass(kind, ValueError)
        assert kind.exit_status == EXIT_BAD_INPUT == 2


@pytest.mark.parametrize("error", ["QuantInputError", "SearchInputError"])
def test_helpers_raise_the_callers_error_kind(tmp_path: Path, error: str) -> None:
    import quant.errors
    import search.errors

    kind = getattr(quant.errors, error, None) or getattr(search.errors, error)
    with pytest.raises(kind, match="no such cost table"):
        read_table(tmp_path / "none.csv", "cost table", error=kind)
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(kind, match="cost table has no rows"):
        read_table(tmp_path / "empty.csv", "cost table", error=kind)
    assert read_table(tmp_path / "empty.csv", allow_empty=True).columns.tolist() == ["a", "b"]
    with pytest.raises(kind, match="bad.yaml: no such spec"):
        read_yaml(tmp_path / "bad.yaml", "spec", error=kind)
