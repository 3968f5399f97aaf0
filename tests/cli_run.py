"""Running the ``lowbit`` CLI in-process from tests."""

from __future__ import annotations

import pytest

from experiments.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``lowbit argv``; return (exit status, stdout, stderr).  A normal return counts as status 0."""
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err
