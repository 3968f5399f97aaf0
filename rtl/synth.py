"""Generic-gate synthesis with Debian yosys and an area estimate in NAND2 equivalents.

Flow (``SCRIPT``; documented in ``docs/rtl.md``, section Synthesis):

1. ``read_verilog`` the sources (Verilog-2005), ``chparam`` the top's parameters;
2. ``synth -top TOP -flatten`` (yosys' generic flow: coarse optimisation, ``alumacc``, techmap to gates, ``abc``);
3. ``dfflegalize -cell $_DFF_P_ 01``: every flip-flop becomes a plain positive-edge D flip-flop; enables and
   synchronous resets turn into logic (a library without enable/reset flops, like Nangate's ``DFF_X1``);
4. ``abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX``: re-map all logic onto two-input gates and MUX2;
5. ``stat -json``: cell counts by type.

The area is ``sum(count * CELL_WEIGHTS[type])`` in NAND2 equivalents; the weights are the X1 cell areas of the
Nangate 45 nm Open Cell Library divided by NAND2_X1's (0.798 um^2); see ``CELL_WEIGHTS``. Results are cached in
``build/synth/<key>.json`` keyed by (sources' contents, top, parameters, script, weights, yosys version).

``python -m rtl.synth --table`` prints the markdown area table that ``docs/rtl.md`` carries (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lowbit_core.files import atomic_path
from rtl.tools import RtlError, require, tool_env

#: Progress messages (one per design); the CLI shows them on a terminal.
_progress = logging.getLogger("lowbit.rtl")

if TYPE_CHECKING:  # pandas is imported lazily (only area_table needs it)
    import pandas as pd

__all__ = [
    "CELL_WEIGHTS",
    "SCRIPT",
    "SynthResult",
    "synthesize",
    "area_table",
    "area_markdown",
    "overlap_cost",
    "os_cost",
    "TABLE_DESIGNS",
    "ARRAY_SIDE",
    "OVERLAP_WIDTHS",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = Path(__file__).resolve().parent / "src"

#: NAND2-equivalent weight of each yosys internal gate after the flow above. Nangate 45 nm OCL (FreePDK45) X1 areas
#: in um^2 divided by NAND2_X1 = 0.798: INV_X1 0.532, NAND2_X1/NOR2_X1 0.798, AND2_X1/OR2_X1 1.064,
#: XOR2_X1/XNOR2_X1 1.596, MUX2_X1 1.862, DFF_X1 4.522. The library has no AND-with-inverted-input cell; ANDNOT
#: and ORNOT are weighted like AND2/OR2 (one inverting stage is absorbed, as a NAND2 + input inverter would cost 1.67).
CELL_WEIGHTS: dict[str, float] = {
    "$_NOT_": 0.532 / 0.798,
    "$_BUF_": 0.532 / 0.798,
    "$_NAND_": 1.0,
    "$_NOR_": 1.0,
    "$_AND_": 1.064 / 0.798,
    "$_OR_": 1.064 / 0.798,
    "$_ANDNOT_": 1.064 / 0.798,
    "$_ORNOT_": 1.064 / 0.798,
    "$_XOR_": 1.596 / 0.798,
    "$_XNOR_": 1.596 / 0.798,
    "$_MUX_": 1.862 / 0.798,
    "$_DFF_P_": 4.522 / 0.798,
}
SEQUENTIAL_CELLS = frozenset({"$_DFF_P_"})

#: The yosys script; {reads}, {chparam}, {top} and {stat} are filled in by :func:`synthesize`.
SCRIPT = """\
{reads}
{chparam}
synth -top {top} -flatten
dfflegalize -cell $_DFF_P_ 01
abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX
opt_clean -purge
tee -q -o {stat} stat -json
"""
_FORMAT = "lowbit-synth/1"


@dataclass(frozen=True)
class SynthResult:
    """Cell counts and NAND2-equivalent area of one synthesized design."""

    top: str
    parameters: dict[str, int]
    cells: dict[str, int]  # yosys cell type -> count
    area_nand2: float  # total, NAND2 equivalents
    comb_nand2: float  # combinational part
    seq_nand2: float  # flip-flops
    flops: int  # flip-flop bits
    seconds: float  # yosys wall time of the (first) run
    yosys_version: str
    cached: bool = False
    sources: list[str] = field(default_factory=list)

    @property
    def num_cells(self) -> int:
        return sum(self.cells.values())


def _yosys_version(yosys: str) -> str:
    out = subprocess.run([yosys, "-V"], capture_output=True, text=True, env=tool_env(), check=False)
    return out.stdout.strip() or out.stderr.strip()


def default_cache_dir() -> Path:
    """``$LOWBIT_SYNTH_CACHE`` when set, else ``<repo>/build/synth``."""
    env = os.environ.get("LOWBIT_SYNTH_CACHE")
    return Path(env) if env else REPO_ROOT / "build" / "synth"


def area_of(cells: Mapping[str, int]) -> tuple[float, float]:
    """(combinational, sequential) NAND2-equivalent area of yosys cell counts.

    Raises:
        RtlError: a cell type without a weight (the flow should only leave the gates of ``CELL_WEIGHTS``).
    """
    unknown = sorted(set(cells) - set(CELL_WEIGHTS))
    if unknown:
        raise RtlError(f"no area weight for yosys cells {', '.join(unknown)}")
    comb = sum(n * CELL_WEIGHTS[c] for c, n in cells.items() if c not in SEQUENTIAL_CELLS)
    seq = sum(n * CELL_WEIGHTS[c] for c, n in cells.items() if c in SEQUENTIAL_CELLS)
    return comb, seq


def synthesize(
    top: str,
    sources: Sequence[Path | str] | None = None,
    parameters: Mapping[str, int] | None = None,
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    timeout_s: float = 600.0,
) -> SynthResult:
    """Synthesize ``top`` to generic gates with yosys and estimate its area (NAND2 equivalents).

    Args:
        top: top module name.
        sources: Verilog files (default ``rtl/src/<top>.v``).
        parameters: integer parameter overrides of ``top``.
        cache_dir: where results are cached (default :func:`default_cache_dir`).
        use_cache: reuse a cached result with the same key.
        timeout_s: yosys time limit in seconds.

    Raises:
        ToolMissingError: yosys is not installed.
        RtlError: bad arguments or a failed yosys run (the message ends with yosys' error output).
    """
    if not top or not top.replace("_", "").isalnum():
        raise RtlError(f"top must be a Verilog identifier, got {top!r}")
    srcs = [Path(s).resolve() for s in (sources if sources is not None else [SRC_DIR / f"{top}.v"])]
    if not srcs:
        raise RtlError("no sources given")
    for s in srcs:
        if not s.is_file():
            raise RtlError(f"no such source file: {s}")
    params = dict(parameters or {})
    for k, v in params.items():
        if not isinstance(v, int) or isinstance(v, bool) or not k.isidentifier():
            raise RtlError(f"parameter {k!r} must be an identifier with an int value, got {v!r}")
    yosys = require("yosys")
    version = _yosys_version(yosys)

    h = hashlib.sha256()
    for s in srcs:
        h.update(s.name.encode())
        h.update(s.read_bytes())
    key_data = {
        "format": _FORMAT,
        "top": top,
        "parameters": sorted(params.items()),
        "script": SCRIPT,
        "weights": sorted(CELL_WEIGHTS.items()),
        "yosys": version,
        "sources": h.hexdigest(),
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
    cache = (cache_dir or default_cache_dir()) / f"{top}-{key}.json"
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            data["cached"] = True
            return SynthResult(**data)
        except (ValueError, TypeError):
            pass  # corrupt cache entry: resynthesize

    with tempfile.TemporaryDirectory(prefix="lowbit-synth-") as tmp:
        stat = Path(tmp) / "stat.json"
        reads = "\n".join(f"read_verilog {s}" for s in srcs)
        chparam = f"chparam {' '.join(f'-set {k} {v}' for k, v in params.items())} {top}" if params else ""
        script = Path(tmp) / "synth.ys"
        script.write_text(SCRIPT.format(reads=reads, chparam=chparam, top=top, stat=stat))
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [yosys, "-q", "-s", str(script)],
                capture_output=True,
                text=True,
                env=tool_env(),
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RtlError(f"yosys synthesis of {top} {params} exceeded {timeout_s:.0f} s") from None
        seconds = time.monotonic() - t0
        if proc.returncode != 0 or not stat.is_file():
            tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
            raise RtlError(f"yosys synthesis of {top} {params} failed (exit {proc.returncode}):\n{tail}")
        modules = json.loads(stat.read_text()).get("modules", {})
    mod = modules.get(f"\\{top}") or (next(iter(modules.values())) if len(modules) == 1 else None)
    if mod is None:
        raise RtlError(f"yosys reported no statistics for {top} (modules: {', '.join(modules)})")
    cells = {k: int(v) for k, v in sorted(mod.get("num_cells_by_type", {}).items())}
    comb, seq = area_of(cells)
    result = SynthResult(
        top=top,
        parameters=params,
        cells=cells,
        area_nand2=round(comb + seq, 1),
        comb_nand2=round(comb, 1),
        seq_nand2=round(seq, 1),
        flops=sum(n for c, n in cells.items() if c in SEQUENTIAL_CELLS),
        seconds=round(seconds, 2),
        yosys_version=version,
        sources=[str(s) for s in srcs],
    )
    with atomic_path(cache) as tmp_file:
        tmp_file.write_text(json.dumps(asdict(result), indent=1, sort_keys=True))
    return result


#: The designs of the area table: (label, top, parameters, pe kind, w bits, a bits, MACs per cycle).
#: The fusion PE is one netlist; its rows differ only in the runtime mode (and MACs per cycle = sim's ``pack``).
ARRAY_SIDE = 4  #: the synthesized arrays are ARRAY_SIDE x ARRAY_SIDE
OVERLAP_WIDTHS = (2, 8)  #: weight widths of the synthesized array pairs (two points of the per-weight-bit cost)
#: The PE source each array ``PE_KIND`` instantiates.
_PE_SOURCES = {
    0: "lowbit_mac_pe.v",
    1: "lowbit_fusion_pe.v",
    2: "lowbit_serial_pe.v",
    3: "lowbit_serial_pe.v",
    4: "lowbit_serial_pe.v",
}


def _sources_of(top: str, params: Mapping[str, int]) -> list[Path]:
    """The sources of one design: its own file and, for an array, the one PE it instantiates. Only these are read:
    yosys numbers the internal names it creates from one counter, so an unused module read alongside would shift
    the names -- and abc's result by a few gates -- whenever its source changes."""
    extra = [_PE_SOURCES[int(params.get("PE_KIND", 0))]] if top.startswith("lowbit_systolic_") else []
    return [SRC_DIR / f"{top}.v", *(SRC_DIR / f for f in extra)]


TABLE_DESIGNS: list[tuple[str, str, dict[str, int], str, int, int, float]] = [
    *[
        (
            f"fixed w{w}a{a}",
            "lowbit_mac_pe",
            {"W_BITS": w, "A_BITS": a, "ACC_BITS": 32, "W_SIGNED": 1, "A_SIGNED": 1},
            "fixed",
            w,
            a,
            1,
        )
        for w, a in [(2, 2), (4, 4), (8, 8), (4, 8), (8, 4)]
    ],
    *[
        (f"fusion w{w}a{a}", "lowbit_fusion_pe", {"ACC_BITS": 32}, "bitfusion", w, a, (8 // a) * (8 // w))
        for w, a in [(2, 2), (4, 4), (8, 8), (4, 8), (8, 4)]
    ],
    # the bit-serial PEs (widest runtime width 8): one netlist each, MACs per cycle 1/a (Stripes, also when it
    # serializes its stationary activation on an is array), 1/(a*w) (Loom)
    *[
        (
            f"{kind} w{w}a{a}",
            "lowbit_serial_pe",
            {"MAX_BITS": 8, "SERIAL": serial, "ACC_BITS": 32},
            kind,
            w,
            a,
            1.0 / (a * w if serial == 1 else a),
        )
        for kind, serial in (("stripes", 0), ("loom", 1), ("stripes_stationary", 2))
        for w, a in [(8, 8), (4, 4), (2, 2)]
    ],
    (
        "requant 32->8",
        "lowbit_requant",
        {"PSUM_BITS": 32, "MULT_BITS": 31, "ACC_BITS": 64, "OUT_BITS": 8},
        "requant",
        0,
        0,
        0,
    ),
    # 4x4 arrays of fixed PEs with serial and overlapped weight preload: the double-buffered weight registers' cost
    *[
        (
            f"array 4x4 w{w}a{w} {preload}",
            "lowbit_systolic_ws",
            {
                "PE_KIND": 0,
                "ROWS": ARRAY_SIDE,
                "COLS": ARRAY_SIDE,
                "W_BITS": w,
                "A_BITS": w,
                "ACC_BITS": 32,
                "W_SIGNED": 1,
                "A_SIGNED": 1,
                "OVERLAP": int(preload == "overlapped"),
            },
            f"array {preload}",
            w,
            w,
            ARRAY_SIDE * ARRAY_SIDE,
        )
        for w in OVERLAP_WIDTHS
        for preload in ("serial", "overlapped")
    ],
    # the same PEs in an output-stationary array (one array for both timing profiles)
    *[
        (
            f"os array 4x4 w{w}a{w}",
            "lowbit_systolic_os",
            {
                "PE_KIND": 0,
                "ROWS": ARRAY_SIDE,
                "COLS": ARRAY_SIDE,
                "W_BITS": w,
                "A_BITS": w,
                "ACC_BITS": 32,
                "W_SIGNED": 1,
                "A_SIGNED": 1,
            },
            "array os",
            w,
            w,
            ARRAY_SIDE * ARRAY_SIDE,
        )
        for w in OVERLAP_WIDTHS
    ],
]


def area_table(
    designs: Sequence[tuple[str, str, dict[str, int], str, int, int, float]] | None = None, *, use_cache: bool = True
) -> pd.DataFrame:
    """Area of the PEs and the requant unit: one row per design (``TABLE_DESIGNS`` by default).

    Columns: ``design``, ``top``, ``pe_kind`` (fixed | bitfusion | stripes | loom | stripes_stationary | requant |
    array ...), ``w_bits``, ``a_bits``,
    ``acc_bits``,
    ``macs_per_cycle``, ``cells``, ``flops``, ``comb_nand2``, ``seq_nand2``, ``area_nand2`` and ``nand2_per_mac``
    (area / MACs per cycle; NaN for the requant unit). Requires yosys.
    """
    import pandas as pd

    rows = []
    todo = list(designs or TABLE_DESIGNS)
    for i, (label, top, params, kind, w, a, macs) in enumerate(todo, 1):
        _progress.info("synthesizing %s (%d/%d)", label, i, len(todo))
        r = synthesize(top, sources=_sources_of(top, params), parameters=params, use_cache=use_cache)
        rows.append(
            {
                "design": label,
                "top": top,
                "pe_kind": kind,
                "w_bits": w,
                "a_bits": a,
                "acc_bits": params.get("ACC_BITS", params.get("PSUM_BITS", 0))
                if kind != "requant"
                else params["PSUM_BITS"],
                "macs_per_cycle": macs,
                "cells": r.num_cells,
                "flops": r.flops,
                "comb_nand2": r.comb_nand2,
                "seq_nand2": r.seq_nand2,
                "area_nand2": r.area_nand2,
                "nand2_per_mac": round(r.area_nand2 / macs, 1) if macs else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _extra_per_pe(df: pd.DataFrame, kind: str) -> dict[int, float]:
    """Per synthesized weight width: NAND2-eq per PE of the ``kind`` array minus the serial-preload ws array's."""
    extra = {}
    for w in OVERLAP_WIDTHS:
        rows = df[df.w_bits == w]
        area = {k: float(rows[rows.pe_kind == k].area_nand2.iloc[0]) for k in ("array serial", kind)}
        extra[w] = (area[kind] - area["array serial"]) / (ARRAY_SIDE * ARRAY_SIDE)
    return extra


def overlap_cost(df: pd.DataFrame) -> tuple[float, float]:
    """(per_pe, per_weight_bit): NAND2-eq that overlapped weight preload adds to one PE, ``per_pe +
    per_weight_bit x W_SLOT`` (the shadow and pipeline registers scale with the weight slot): the line through the
    per-PE differences of the serial / overlapped ws arrays at the two synthesized widths."""
    extra = _extra_per_pe(df, "array overlapped")
    lo, hi = OVERLAP_WIDTHS
    per_bit = (extra[hi] - extra[lo]) / (hi - lo)
    return round(extra[lo] - lo * per_bit, 1), round(per_bit, 1)


def os_cost(df: pd.DataFrame) -> float:
    """NAND2-eq an output-stationary array adds to one PE over the serial ws array: the flags, the accumulator
    feedback and the ACC_BITS-wide result bus, which do not grow with the weight width (the mean of the two
    synthesized widths' differences)."""
    extra = _extra_per_pe(df, "array os")
    return round(sum(extra.values()) / len(extra), 1)


def area_markdown(df: pd.DataFrame) -> str:
    """The markdown table of :func:`area_table` as carried by ``docs/rtl.md``."""
    cols = ["design", "macs_per_cycle", "cells", "flops", "comb_nand2", "seq_nand2", "area_nand2", "nand2_per_mac"]
    head = "| " + " | ".join(cols) + " |"
    sep = "|" + "|".join("---" if c == "design" else "---:" for c in cols) + "|"
    lines = [head, sep]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c == "macs_per_cycle" and row["pe_kind"] == "requant":
                cells.append("–")
            elif c == "macs_per_cycle" and v < 1:
                cells.append(f"1/{round(1 / v)}")
            elif isinstance(v, float):
                cells.append("–" if v != v else f"{v:.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the markdown area table of docs/rtl.md")
    parser.add_argument("--top", help="synthesize one module of rtl/src")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=INT")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    if args.top:
        params = {}
        for p in args.param:
            name, _, value = p.partition("=")
            params[name] = int(value)
        r = synthesize(args.top, sources=_sources_of(args.top, params), parameters=params, use_cache=not args.no_cache)
        print(json.dumps(asdict(r), indent=1))
    else:
        print(area_markdown(area_table(use_cache=not args.no_cache)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
