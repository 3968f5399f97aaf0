"""Shared helpers of the validation benchmarks: the machine they ran on, and the tables they write into docs."""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_model", "replace_marked_block"]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def replace_marked_block(doc: Path, begin: str, end: str, text: str) -> None:
    """Replace what lies between the ``begin`` and ``end`` marker lines of ``doc`` with ``text``."""
    body = doc.read_text()
    if begin not in body or end not in body:
        raise SystemExit(f"{doc}: markers {begin} / {end} not found")
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")
