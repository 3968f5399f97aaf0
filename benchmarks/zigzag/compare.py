"""Compare lowbit's cost model with the ZigZag 3.9.1 reference numbers, layer by layer.

Runs under lowbit's venv (no ZigZag needed: it reads ``reference/<network>_<objective>.json``)::

    python benchmarks/zigzag/compare.py                       # every reference found
    python benchmarks/zigzag/compare.py --network resnet18 --objective latency
    python benchmarks/zigzag/compare.py --doc docs/validation.md   # also refresh the tables there

For each (network, objective) it prints markdown tables: per layer and in total, latency (cycles),
dynamic energy (pJ; lowbit's static energy is listed apart, ZigZag has none) and DRAM traffic (bits),
each with the ratio lowbit / ZigZag, then breakdowns and the run times of both tools.

lowbit's mapping: if the chip schema accepts ``mapping: search|scalesim`` and ``mapping_objective``,
the chip is loaded with the objective that matches ZigZag's run (``forced`` -> ``mapping: scalesim``);
if it rejects them, the current fixed-order model runs and the header says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from generate import CHIP, NETWORKS, OBJECTIVES, REFERENCE, write_inputs  # noqa: E402

import sim  # noqa: E402
from benchmarks.provenance import replace_marked_block  # noqa: E402
from lowbit_core.errors import InputError  # noqa: E402
from lowbit_core.yamlio import read_yaml  # noqa: E402
from sim.chip_loader import load_chip  # noqa: E402
from sim.config import CHIPS_DIR, Chip, chip_from_dict  # noqa: E402

BEGIN, END = "<!-- zigzag-tables:begin -->", "<!-- zigzag-tables:end -->"


def lowbit_chip(objective: str, chip_name: str = CHIP) -> tuple[Chip, str]:
    """The chip with lowbit's mapping matched to ZigZag's run, or the plain chip and a note why not."""
    wanted = {"mapping": "scalesim"} if objective == "forced" else {"mapping": "search", "mapping_objective": objective}
    doc = read_yaml(CHIPS_DIR / f"{chip_name}.yaml", "chip file")
    try:
        chip = chip_from_dict({**doc, **wanted}, where=chip_name)
    except InputError as exc:
        reason = str(exc).splitlines()[0]
        return load_chip(chip_name), (
            f"lowbit mapping: current fixed ws order (SCALE-Sim's); the chip schema rejected {wanted} ({reason[:120]})"
        )
    keys = ", ".join(f"{k}: {v}" for k, v in wanted.items())
    return chip, f"lowbit mapping: {keys} (chip schema accepted it)"


def lowbit_state() -> str:
    """lowbit's commit and whether sim/ has uncommitted changes (the numbers below come from the work tree)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " + uncommitted changes in sim/" if git("status", "--porcelain", "--", "sim") else ""
    return f"{commit}{dirty}"


def time_lowbit(chip: Chip, workload: sim.Workload, repeats: int) -> tuple[pd.DataFrame, float]:
    """lowbit's w8a8 table and the median wall time (s) of ``repeats`` in-process runs."""
    times = []
    frame = pd.DataFrame()
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame = sim.simulate(chip, workload, ["w8a8"])
        times.append(time.perf_counter() - t0)
    return frame, statistics.median(times)


def zigzag_frame(ref: dict[str, Any]) -> pd.DataFrame:
    """ZigZag's per-distinct-layer numbers as a frame indexed by ZigZag layer name."""
    rows = []
    for layer in ref["layers"]:
        dram = layer["traffic_bits"]
        bits = {op: sum(per.get("dram", {}).values()) for op, per in dram.items()}
        by_mem = layer["energy_by_memory_pj"]
        rows.append(
            {
                "zz_name": layer["name"],
                "zz_macs": layer["macs"],
                "zz_cycles": layer["latency_cycles"],
                "zz_compute": layer["temporal_cycles"] + layer["systolic_drain_cycles"],
                "zz_stall": layer["stall_cycles"],
                "zz_onoff": layer["onload_cycles"] + layer["offload_cycles"],
                "zz_energy": layer["energy_pj"],
                "zz_mac": layer["energy_mac_pj"],
                "zz_reg": sum(v for k, v in by_mem.items() if k.startswith("reg")),
                "zz_sram": sum(v for k, v in by_mem.items() if k.startswith("sram")),
                "zz_dram_e": by_mem.get("dram", 0.0),
                "zz_dram_bits": sum(bits.values()),
                "zz_dram_I": bits.get("I", 0.0),
                "zz_dram_W": bits.get("W", 0.0),
                "zz_dram_O": bits.get("O", 0.0),
                "zz_util": layer["spatial_utilization"],
            }
        )
    return pd.DataFrame(rows).set_index("zz_name")


def joined(ref: dict[str, Any], low: pd.DataFrame) -> pd.DataFrame:
    """lowbit rows (one per layer) next to the ZigZag numbers of the same shape."""
    zz = zigzag_frame(ref)
    layer_map: dict[str, str | None] = ref["setup"]["layer_map"]
    low = low.assign(zz_name=low["name"].map(layer_map)).dropna(subset=["zz_name"])
    out = low.join(zz, on="zz_name")
    bad = out[out["macs"] != out["zz_macs"]]
    if len(bad):
        raise SystemExit(f"MAC counts differ between lowbit and ZigZag for {list(bad['name'])}")
    if "energy_reg_pj" not in out:
        out["energy_reg_pj"] = 0.0  # lowbit before register energy was modelled
    out["lb_dyn"] = out["energy_mac_pj"] + out["energy_reg_pj"] + out["energy_sram_pj"] + out["energy_dram_pj"]
    return out


def input_drift(ref: dict[str, Any], network: str) -> str | None:
    """Input files that ``generate.py`` would now write differently from those the reference ran on."""
    with tempfile.TemporaryDirectory() as tmp:
        write_inputs(network, Path(tmp))
        now = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(tmp).glob("*.yaml")}
    then: dict[str, str] = ref["provenance"]["inputs_sha256"]
    changed = sorted(name for name in set(now) | set(then) if now.get(name) != then.get(name))
    return ", ".join(changed) or None


def _num(x: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not math.isnan(a) else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_MAIN: tuple[tuple[str, str, str], ...] = (
    ("latency (cycles)", "total_cycles", "zz_cycles"),
    ("dynamic energy (pJ)", "lb_dyn", "zz_energy"),
    ("DRAM (bits)", "dram_bits", "zz_dram_bits"),
)


def layer_table(df: pd.DataFrame) -> str:
    header = ["layer"]
    for label, _, _ in _MAIN:
        header += [f"{label} lowbit", "ZigZag", "ratio"]
    rows = []
    for _, r in df.iterrows():
        row = [str(r["name"])]
        for _, lb, zz in _MAIN:
            row += [_num(r[lb]), _num(r[zz]), _ratio(r[lb], r[zz])]
        rows.append(row)
    total = ["**total**"]
    for _, lb, zz in _MAIN:
        total += [_num(df[lb].sum()), _num(df[zz].sum()), _ratio(df[lb].sum(), df[zz].sum())]
    rows.append(total)
    return _table(header, rows)


def breakdown_table(df: pd.DataFrame) -> str:
    """Network totals split into their terms (lowbit term vs the closest ZigZag term)."""
    terms: list[tuple[str, Callable[[pd.DataFrame], float], Callable[[pd.DataFrame], float]]] = [
        (
            "cycles: compute (ZigZag: temporal + systolic drain)",
            lambda d: d["compute_cycles"].sum(),
            lambda d: d["zz_compute"].sum(),
        ),
        ("cycles: stall", lambda d: d["stall_cycles"].sum(), lambda d: d["zz_stall"].sum()),
        (
            "cycles: exposed first load + last write-back (lowbit: inside its stall)",
            lambda d: math.nan,
            lambda d: d["zz_onoff"].sum(),
        ),
        ("energy: MAC (pJ)", lambda d: d["energy_mac_pj"].sum(), lambda d: d["zz_mac"].sum()),
        ("energy: registers (pJ)", lambda d: d["energy_reg_pj"].sum(), lambda d: d["zz_reg"].sum()),
        ("energy: SRAM (pJ)", lambda d: d["energy_sram_pj"].sum(), lambda d: d["zz_sram"].sum()),
        ("energy: DRAM (pJ)", lambda d: d["energy_dram_pj"].sum(), lambda d: d["zz_dram_e"].sum()),
        (
            "energy: static (pJ, lowbit only, not in the totals above)",
            lambda d: d["energy_static_pj"].sum(),
            lambda d: 0.0,
        ),
        ("DRAM bits: ifmap / I", lambda d: d["dram_ifmap_bits"].sum(), lambda d: d["zz_dram_I"].sum()),
        ("DRAM bits: filter / W", lambda d: d["dram_filter_bits"].sum(), lambda d: d["zz_dram_W"].sum()),
        ("DRAM bits: ofmap + partial sums / O", lambda d: d["dram_ofmap_bits"].sum(), lambda d: d["zz_dram_O"].sum()),
    ]
    rows = [[label, _num(f(df)), _num(g(df)), _ratio(f(df), g(df))] for label, f, g in terms]
    return _table(["term (network total)", "lowbit", "ZigZag", "ratio"], rows)


def summary_row(network: str, objective: str, df: pd.DataFrame, zz_s: float, lb_s: float, lpf: int) -> list[str]:
    """One line of the network-total summary: lowbit, ZigZag and ratio for each main quantity, and timing."""
    row = [network, objective if objective == "forced" else f"{objective} (lpf {lpf})"]
    for _, lb, zz in _MAIN:
        row += [f"{_num(df[lb].sum())} / {_num(df[zz].sum())}", _ratio(df[lb].sum(), df[zz].sum())]
    return row + [f"{zz_s:.1f} s / {lb_s * 1e3:.1f} ms", f"{zz_s / lb_s:.0f}x"]


SUMMARY_HEADER = [
    "network",
    "ZigZag run",
    "latency cycles lowbit / ZigZag",
    "ratio",
    "dynamic energy pJ",
    "ratio",
    "DRAM bits",
    "ratio",
    "time ZigZag / lowbit",
    "ratio",
]


def report(network: str, objective: str, repeats: int, summary: list[list[str]] | None = None) -> str | None:
    """Markdown section for one reference file, or None if it does not exist; appends to ``summary``."""
    path = REFERENCE / f"{network}_{objective}.json"
    if not path.exists():
        return None
    ref = json.loads(path.read_text())
    prov = ref["provenance"]
    chip, note = lowbit_chip(objective)
    workload = NETWORKS[network]()
    low, seconds = time_lowbit(chip, workload, repeats)
    df = joined(ref, low)
    zz_s = float(prov["zigzag_seconds"])
    what = (
        "forced lowbit/SCALE-Sim ws loop order (like-for-like bookkeeping check)"
        if objective == "forced"
        else f"ZigZag LOMA search, objective {objective}, lpf_limit {prov['lpf_limit']}"
    )
    skipped = ref["setup"]["skipped"]
    lines = [
        f"#### {network}, {what}",
        "",
        f"- lowbit {lowbit_state()}; {note}.",
        f"- ZigZag: {prov['tool']}, {len(ref['layers'])} distinct layer shapes for {len(df)} layers, "
        f"run {prov['date_utc']} on {prov['cpu']} ({prov['cpu_count']} CPUs, {prov['concurrent_jobs']} concurrent "
        f"run(s)); `{prov['command']}`.",
        f"- Time: ZigZag {zz_s:.1f} s (recorded), lowbit {seconds * 1e3:.1f} ms (`sim.simulate`, w8a8, median of "
        f"{repeats} in-process runs): ZigZag / lowbit = {zz_s / seconds:.0f}x.",
    ]
    if skipped:
        lines.append(f"- Not sent to ZigZag: {', '.join(skipped)}.")
    drift = input_drift(ref, network)
    if drift:
        lines.append(
            f"- **Warning**: lowbit's chip, technology or workload no longer gives the ZigZag inputs this "
            f"reference ran on ({drift} differ); regenerate it with run_zigzag.py."
        )
    lines += ["", layer_table(df), "", breakdown_table(df), ""]
    if summary is not None:
        summary.append(summary_row(network, objective, df, zz_s, seconds, int(prov["lpf_limit"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", action="append", choices=sorted(NETWORKS), help="repeatable; default: all")
    parser.add_argument("--objective", action="append", choices=OBJECTIVES, help="repeatable; default: all")
    parser.add_argument("--repeats", type=int, default=7, help="lowbit timing runs (median; default 7)")
    parser.add_argument("--doc", type=Path, help="also write the tables into this markdown file (between markers)")
    args = parser.parse_args(argv)
    sections: list[str] = []
    summary: list[list[str]] = []
    for network in args.network or list(NETWORKS):
        for objective in args.objective or OBJECTIVES:
            text = report(network, objective, args.repeats, summary)
            if text is not None:
                sections.append(text)
    if not sections:
        raise SystemExit(f"no reference JSON in {REFERENCE}; run benchmarks/zigzag/run_zigzag.py first")
    head = ["#### Summary (network totals, w8a8; ratio = lowbit / ZigZag)", "", _table(SUMMARY_HEADER, summary), ""]
    out = "\n".join(head + sections)
    print(out)
    if args.doc:
        replace_marked_block(args.doc, BEGIN, END, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
