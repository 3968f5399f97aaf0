"""Every Verilog module refuses out-of-range parameters at elaboration, naming the parameter.

Verilator prints the module's message (``$error`` in a generate block, with the values); Icarus (and Yosys) stop on
the missing module whose name states the rule.  Each check of every module is driven once with both tools.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rtl.runner import SRC_DIR
from rtl.tools import tool_env

pytestmark = pytest.mark.rtl

SOURCES = sorted(SRC_DIR.glob("*.v"))
#: (top, parameter overrides, the message's start): one case per check of every module
CASES: list[tuple[str, dict[str, int], str]] = [
    ("lowbit_mac_pe", {"W_BITS": 0}, "lowbit_mac_pe: parameter W_BITS = 0 must be >= 1"),
    ("lowbit_mac_pe", {"A_BITS": 0}, "lowbit_mac_pe: parameter A_BITS = 0 must be >= 1"),
    ("lowbit_mac_pe", {"W_SIGNED": 2}, "lowbit_mac_pe: parameter W_SIGNED = 2 must be 0 or 1"),
    ("lowbit_mac_pe", {"A_SIGNED": -1}, "lowbit_mac_pe: parameter A_SIGNED = -1 must be 0 or 1"),
    ("lowbit_mac_pe", {"ACC_BITS": 8}, "lowbit_mac_pe: parameter ACC_BITS = 8 must be >= W_BITS + A_BITS + 1 = 17"),
    ("lowbit_fusion_pe", {"ACC_BITS": 16}, "lowbit_fusion_pe: parameter ACC_BITS = 16 must be >= 17"),
    ("lowbit_systolic_ws", {"PE_KIND": 5}, "lowbit_systolic_ws: parameter PE_KIND = 5 must be 0 (fixed), 1"),
    ("lowbit_systolic_ws", {"ROWS": 0}, "lowbit_systolic_ws: parameter ROWS = 0 must be >= 1"),
    ("lowbit_systolic_ws", {"COLS": 0}, "lowbit_systolic_ws: parameter COLS = 0 must be >= 1"),
    ("lowbit_systolic_ws", {"OVERLAP": 2}, "lowbit_systolic_ws: parameter OVERLAP = 2 must be 0 (serial preload) or 1"),
    ("lowbit_gemm_top", {"PE_KIND": -1}, "lowbit_gemm_top: parameter PE_KIND = -1 must be 0 (fixed), 1"),
    ("lowbit_gemm_top", {"ROWS": 0}, "lowbit_gemm_top: parameter ROWS = 0 must be >= 1"),
    ("lowbit_gemm_top", {"COLS": 0}, "lowbit_gemm_top: parameter COLS = 0 must be >= 1"),
    ("lowbit_gemm_top", {"PSUM_ROWS": 1}, "lowbit_gemm_top: parameter PSUM_ROWS = 1 must be >= 2"),
    ("lowbit_gemm_top", {"OVERLAP": 3}, "lowbit_gemm_top: parameter OVERLAP = 3 must be 0 (serial preload) or 1"),
    ("lowbit_gemm_top", {"FOLD_BITS": 0}, "lowbit_gemm_top: parameter FOLD_BITS = 0 must be >= 1"),
    ("lowbit_gemm_top", {"CNT_BITS": 0}, "lowbit_gemm_top: parameter CNT_BITS = 0 must be >= 1"),
    ("lowbit_gemm_top", {"OUT_DEPTH": 3}, "lowbit_gemm_top: parameter OUT_DEPTH = 3 must be a power of two >= 2"),
    ("lowbit_gemm_top", {"MAX_BLOCKS": 0}, "lowbit_gemm_top: parameter MAX_BLOCKS = 0 must be >= 1"),
    # the array's accumulators too narrow for its fixed PEs: the PE names the parameter
    ("lowbit_gemm_top", {"ACC_BITS": 8}, "lowbit_mac_pe: parameter ACC_BITS = 8 must be >= W_BITS + A_BITS + 1"),
    ("lowbit_layer_top", {"PE_KIND": 4}, "lowbit_layer_top: parameter PE_KIND = 4 must be 0 (fixed), 1"),
    ("lowbit_layer_top", {"ROWS": 0}, "lowbit_layer_top: parameter ROWS = 0 must be >= 1"),
    ("lowbit_layer_top", {"COLS": 0}, "lowbit_layer_top: parameter COLS = 0 must be >= 1"),
    ("lowbit_layer_top", {"MAX_BLOCKS": 3}, "lowbit_layer_top: parameter MAX_BLOCKS = 3 must be a power of two"),
    ("lowbit_layer_top", {"MAX_NF": 3}, "lowbit_layer_top: parameter MAX_NF = 3 must be a power of two >= 2"),
    ("lowbit_layer_top", {"ACC_BITS": 40}, "lowbit_layer_top: parameter ACC_BITS = 40 must be <= 32"),
    ("lowbit_layer_top", {"OUT_BITS": 33}, "lowbit_layer_top: parameter OUT_BITS = 33 must be in 1..32"),
    (
        "lowbit_layer_top",
        {"DATAFLOW": 2},
        "lowbit_layer_top: parameter DATAFLOW = 2 must be 0 (weight-stationary) or 1",
    ),
    ("lowbit_serial_pe", {"MAX_BITS": 0}, "lowbit_serial_pe: parameter MAX_BITS = 0 must be >= 1"),
    ("lowbit_serial_pe", {"SERIAL": 3}, "lowbit_serial_pe: parameter SERIAL = 3 must be 0 (Stripes), 1 (Loom) or 2"),
    (
        "lowbit_serial_pe",
        {"ACC_BITS": 16},
        "lowbit_serial_pe: parameter ACC_BITS = 16 must be >= 2 * MAX_BITS + 1 = 17",
    ),
    ("lowbit_requant", {"PSUM_BITS": 1}, "lowbit_requant: parameter PSUM_BITS = 1 must be >= 2"),
    ("lowbit_requant", {"MULT_BITS": 0}, "lowbit_requant: parameter MULT_BITS = 0 must be >= 1"),
    ("lowbit_requant", {"BIAS_BITS": 1}, "lowbit_requant: parameter BIAS_BITS = 1 must be >= 2"),
    ("lowbit_requant", {"SHIFT_BITS": 0}, "lowbit_requant: parameter SHIFT_BITS = 0 must be >= 1"),
    (
        "lowbit_requant",
        {"ACC_BITS": 40},
        "lowbit_requant: parameter ACC_BITS = 40 must be >= PSUM_BITS + MULT_BITS + 1 = 64",
    ),
    (
        "lowbit_requant",
        {"BIAS_BITS": 70, "ACC_BITS": 66},
        "lowbit_requant: parameter ACC_BITS = 66 must be >= BIAS_BITS = 70",
    ),
    ("lowbit_requant", {"OUT_BITS": 0}, "lowbit_requant: parameter OUT_BITS = 0 must be in 1..ACC_BITS (64)"),
    ("lowbit_in_reg", {"WIDTH": 0}, "lowbit_in_reg: parameter WIDTH = 0 must be >= 1"),
    ("lowbit_out_fifo", {"WIDTH": 0}, "lowbit_out_fifo: parameter WIDTH = 0 must be >= 1"),
    ("lowbit_out_fifo", {"DEPTH": 3}, "lowbit_out_fifo: parameter DEPTH = 3 must be a power of two >= 2"),
    ("lowbit_beat_counter", {"MAX_BITS": 0}, "lowbit_beat_counter: parameter MAX_BITS = 0 must be >= 1"),
    ("lowbit_beat_counter", {"SERIAL": -1}, "lowbit_beat_counter: parameter SERIAL = -1 must be 0 (Stripes), 1"),
    ("lowbit_systolic_os", {"PE_KIND": 4}, "lowbit_systolic_os: parameter PE_KIND = 4 must be 0 (fixed), 1"),
    ("lowbit_systolic_os", {"ROWS": 0}, "lowbit_systolic_os: parameter ROWS = 0 must be >= 1"),
    ("lowbit_systolic_os", {"COLS": 0}, "lowbit_systolic_os: parameter COLS = 0 must be >= 1"),
    ("lowbit_gemm_os_top", {"PE_KIND": -1}, "lowbit_gemm_os_top: parameter PE_KIND = -1 must be 0 (fixed), 1"),
    ("lowbit_gemm_os_top", {"ROWS": 0}, "lowbit_gemm_os_top: parameter ROWS = 0 must be >= 1"),
    ("lowbit_gemm_os_top", {"COLS": 0}, "lowbit_gemm_os_top: parameter COLS = 0 must be >= 1"),
    ("lowbit_gemm_os_top", {"FOLD_BITS": 0}, "lowbit_gemm_os_top: parameter FOLD_BITS = 0 must be >= 1"),
    ("lowbit_gemm_os_top", {"CNT_BITS": 0}, "lowbit_gemm_os_top: parameter CNT_BITS = 0 must be >= 1"),
    ("lowbit_gemm_os_top", {"OUT_DEPTH": 6}, "lowbit_gemm_os_top: parameter OUT_DEPTH = 6 must be a power of two >= 2"),
    ("lowbit_gemm_os_top", {"MAX_BLOCKS": 0}, "lowbit_gemm_os_top: parameter MAX_BLOCKS = 0 must be >= 1"),
]


def _id(case: tuple[str, dict[str, int], str]) -> str:
    top, params, _ = case
    return top + "".join(f"-{k}{v}" for k, v in params.items())


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), check=False, timeout=120)


def _rules(path: Path) -> list[str]:
    """The rules (missing-module names) a source file checks."""
    return re.findall(r"lowbit_param_error__(\w+) stop", path.read_text())


def test_every_check_is_driven() -> None:
    """The cases cover every module and every rule it checks."""
    assert {p.stem for p in SOURCES} == {top for top, _, _ in CASES}
    for p in SOURCES:
        n_cases = sum(1 for top, _, msg in CASES if top == p.stem and msg.startswith(p.stem))
        assert n_cases == len(_rules(p)), f"{p.name}: {len(_rules(p))} checks, {n_cases} cases"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_verilator_refuses_with_the_message(verilator: str, case: tuple[str, dict[str, int], str]) -> None:
    top, params, message = case
    res = _run(
        [
            verilator,
            "--lint-only",
            "-Wall",
            "-y",
            str(SRC_DIR),
            "--top-module",
            top,
            str(SRC_DIR / f"{top}.v"),
            *[f"-G{k}={v}" for k, v in params.items()],
        ]
    )
    assert res.returncode != 0
    assert message in res.stdout + res.stderr, res.stderr[-3000:]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_icarus_refuses_naming_the_rule(iverilog: str, case: tuple[str, dict[str, int], str], tmp_path: Path) -> None:
    top, params, message = case
    module, rest = message.split(": parameter ", 1)
    res = _run(
        [
            iverilog,
            "-g2005",
            "-o",
            str(tmp_path / "a.vvp"),
            "-s",
            top,
            *[f"-P{top}.{k}={v}" for k, v in params.items()],
            *[str(p) for p in SOURCES],
        ]
    )
    assert res.returncode != 0
    name = rest.split(" ", 1)[0]  # the parameter the rule is about
    missing = re.findall(r"Unknown module type: lowbit_param_error__(\w+)", res.stdout + res.stderr)
    assert any(rule.startswith(name + "_must") for rule in missing), res.stdout + res.stderr
    assert set(missing) & set(_rules(SRC_DIR / f"{module}.v")), res.stdout + res.stderr
