"""Verilator line coverage of ``rtl/src``: ``python -m experiments.rtl_coverage`` prints the per-file table of
docs/rtl.md, "Coverage".

Makes the digits CNN's PTQ-SL 4 x 2 export the layer top runs on (:mod:`experiments.digits_exports`), then runs
:func:`rtl.coverage.coverage_runs` and merges the counts.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from experiments.digits_exports import make_digits_export
from rtl.coverage import coverage_by_file, coverage_markdown, coverage_runs

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m experiments.rtl_coverage", description=__doc__.splitlines()[0]).parse_args(
        argv
    )
    with tempfile.TemporaryDirectory(prefix="lowbit-cov-export-") as tmp:
        export = Path(tmp) / "digits-cnn-ptq-sl"
        make_digits_export("ptq-sl", export)
        print(coverage_markdown(coverage_by_file(coverage_runs(export))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
