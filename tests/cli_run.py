"""Running the ``lowbit`` CLI in-process from tests, and the bad-input contract every verb must keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``lowbit argv``; return (exit status, stdout, stderr).  A normal return counts as status 0."""
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def tree_snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root`` -> (is a directory, size, mtime in ns): what a failed run must leave unchanged."""
    snap = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        snap[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return snap


def assert_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str], root: Path, cause: str) -> str:
    """``lowbit argv`` is refused as bad input: exit 2, exactly one line on stderr that starts with
    ``lowbit: error:`` and contains ``cause`` (case-insensitive), no traceback, and nothing under ``root``
    created, changed or removed.  Returns the error line."""
    before = tree_snapshot(root)
    code, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code} for {argv}; stderr: {err!r}"
    assert len(lines) == 1, f"{len(lines)} stderr lines for {argv}: {err!r}"
    assert lines[0].startswith("lowbit: error: "), lines[0]
    assert "Traceback" not in err
    assert cause.lower() in lines[0].lower(), f"{cause!r} not in {lines[0]!r}"
    assert tree_snapshot(root) == before, f"{argv} left output behind or changed files under {root}"
    return lines[0]
