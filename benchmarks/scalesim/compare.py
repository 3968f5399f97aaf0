"""Compare lowbit with every stored SCALE-Sim v3 reference run (compatibility mode).

Run: ``.venv/bin/python benchmarks/scalesim/compare.py`` (options: ``--help``).

For each reference under ``tests/sim/data/scalesim*/`` (a directory holding a SCALE-Sim ``.cfg``, its
topology CSV and SCALE-Sim's ``COMPUTE_REPORT.csv``), lowbit evaluates the same chip
(``sim.chip_loader.load_chip(cfg)``: fixed 8-bit PE, SCALE-Sim's fold model) on the same workload
(``sim.workload.read_topology_csv``) at w8a8, and the script prints one table row per run:

* **cycles** - layers whose ``compute_cycles`` equal SCALE-Sim's compute cycles, "Total Cycles" minus
  "Stall Cycles" (the stalls are 0 under CALC bandwidth; under USER, "Total Cycles" includes them);
* **ifmap / filter SRAM reads** - where the run has ``DETAILED_ACCESS_REPORT.csv``: layers whose
  array-side reads, lowbit's ``sram_{ifmap,filter}_bits - dram_{ifmap,filter}_bits`` (the SRAM count
  minus its fills from DRAM) over 8 bits, equal SCALE-Sim's "SRAM IFMAP Reads" / "SRAM Filter Reads"
  (the operand words the array requests, counted from its demand matrices).

``--dram`` adds an informational table of DRAM counts and stall cycles side by side; it never changes
the exit status (docs/validation.md explains why SCALE-Sim 3.0.0's DRAM numbers are comparable only under
CALC bandwidth for operands that fit half their SRAM).

Exit status: 0 if every layer's compute cycles match, 1 if any does not (SRAM-read mismatches are
listed but do not change the status), 2 if no reference is found.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sim import load_chip, simulate  # noqa: E402
from sim.workload import read_topology_csv  # noqa: E402

DATA = REPO / "tests" / "sim" / "data"
REPORTS = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")
BITS = 8  # SCALE-Sim's word is 1 byte


@dataclass(frozen=True)
class Reference:
    """One stored SCALE-Sim run."""

    group: str  # the data directory it lives in (scalesim, scalesim_gen, ...)
    name: str
    cfg: Path
    topology: Path
    compute_report: Path
    access_report: Path | None  # DETAILED_ACCESS_REPORT.csv, if stored


@dataclass
class Result:
    """lowbit against one reference, layer by layer."""

    ref: Reference
    label: str  # "ws 8x32"
    bandwidth: str  # "CALC" or "USER n"
    layers: int
    cycles_exact: int
    scalesim_cycles: int
    lowbit_cycles: int
    ifmap_exact: int | None
    filter_exact: int | None
    mismatches: list[str]


def read_report(path: Path) -> list[dict[str, str]]:
    """A SCALE-Sim report as rows keyed by the stripped header (its lines end in a comma)."""
    with path.open(newline="") as fh:
        rows = [[cell.strip() for cell in row] for row in csv.reader(fh) if any(c.strip() for c in row)]
    header = rows[0]
    return [dict(zip(header, row)) for row in rows[1:]]


def _reference(group: str, name: str, folder: Path) -> Reference | None:
    cfgs = sorted(folder.glob("*.cfg"))
    topologies = sorted(p for p in folder.glob("*.csv") if p.name not in REPORTS)
    if len(cfgs) != 1 or len(topologies) != 1 or not (folder / "COMPUTE_REPORT.csv").is_file():
        return None
    access = folder / "DETAILED_ACCESS_REPORT.csv"
    return Reference(
        group, name, cfgs[0], topologies[0], folder / "COMPUTE_REPORT.csv", access if access.is_file() else None
    )


def discover(data: Path = DATA, extra: Sequence[Path] = ()) -> list[Reference]:
    """Every reference run under ``data/scalesim*/`` and the ``extra`` directories: each directory is a
    run itself or holds one run per subdirectory."""
    refs: list[Reference] = []
    groups = sorted(p for p in data.glob("scalesim*") if p.is_dir())
    groups += [p for p in extra if p.resolve() not in {g.resolve() for g in groups}]
    for group in groups:
        if (group / "COMPUTE_REPORT.csv").is_file():
            ref = _reference(group.name, group.name, group)
            refs += [ref] if ref else []
            continue
        for folder in sorted(p for p in group.iterdir() if p.is_dir() and not p.name.startswith(".")):
            ref = _reference(group.name, folder.name, folder)
            refs += [ref] if ref else []
    return refs


def compare(ref: Reference) -> Result:
    """Evaluate lowbit on ``ref``'s cfg and topology at w8a8 and count the exact matches."""
    chip = load_chip(ref.cfg)
    table = simulate(chip, read_topology_csv(ref.topology), ["w8a8"])
    compute = read_report(ref.compute_report)
    if len(compute) != len(table):
        raise SystemExit(f"{ref.compute_report}: {len(compute)} layers, topology has {len(table)}")
    scalesim = [int(r["Total Cycles"]) - int(r["Stall Cycles"]) for r in compute]
    lowbit = table.compute_cycles.astype(int).tolist()
    names = table.name.tolist()
    mismatches = [
        f"{ref.name} {names[i]}: compute cycles lowbit {lb} != SCALE-Sim {ss}"
        for i, (lb, ss) in enumerate(zip(lowbit, scalesim))
        if lb != ss
    ]
    ifmap_exact = filter_exact = None
    if ref.access_report is not None:
        access = read_report(ref.access_report)
        counts = []
        for operand, column in (("ifmap", "SRAM IFMAP Reads"), ("filter", "SRAM Filter Reads")):
            array_side = (table[f"sram_{operand}_bits"] - table[f"dram_{operand}_bits"]) // BITS
            theirs = [int(float(r[column])) for r in access]
            counts.append(sum(int(a) == b for a, b in zip(array_side, theirs)))
            mismatches += [
                f"{ref.name} {names[i]}: {operand} SRAM reads lowbit {int(a)} != SCALE-Sim {b}"
                for i, (a, b) in enumerate(zip(array_side, theirs))
                if int(a) != b
            ]
        ifmap_exact, filter_exact = counts
    bw = chip.memory.dram_bw_bits_per_cycle
    return Result(
        ref,
        f"{chip.array.dataflow} {chip.array.rows}x{chip.array.cols}",
        "CALC" if bw == "calc" else f"USER {float(bw) / BITS:g}",
        len(table),
        sum(a == b for a, b in zip(lowbit, scalesim)),
        sum(scalesim),
        sum(lowbit),
        ifmap_exact,
        filter_exact,
        mismatches,
    )


def _frac(n: int | None, total: int) -> str:
    return "-" if n is None else f"{n}/{total}"


def format_table(results: Sequence[Result]) -> str:
    """The comparison as a markdown table, one row per run and a total row."""
    lines = [
        "| data | run | array | DRAM bandwidth | layers | cycles exact | SCALE-Sim compute cycles | "
        "ifmap SRAM reads exact | filter SRAM reads exact |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.ref.group} | {r.ref.name} | {r.label} | {r.bandwidth} | {r.layers} | "
            f"{r.cycles_exact}/{r.layers} | {r.scalesim_cycles} | {_frac(r.ifmap_exact, r.layers)} | "
            f"{_frac(r.filter_exact, r.layers)} |"
        )
    layers = sum(r.layers for r in results)
    with_access = [r for r in results if r.ifmap_exact is not None]
    access_layers = sum(r.layers for r in with_access)
    lines.append(
        f"| **all** | {len(results)} runs | | | {layers} | "
        f"{sum(r.cycles_exact for r in results)}/{layers} | {sum(r.scalesim_cycles for r in results)} | "
        f"{sum(r.ifmap_exact or 0 for r in with_access)}/{access_layers} | "
        f"{sum(r.filter_exact or 0 for r in with_access)}/{access_layers} |"
    )
    return "\n".join(lines)


def dram_row(ref: Reference) -> str | None:
    """One informational row of DRAM counts for ``ref`` (None without an access report).

    An operand "fits" when its distinct words fit half its SRAM (SCALE-Sim and lowbit both load it
    once then); otherwise both re-read it, each with its own policy, and the counts are not comparable.
    """
    if ref.access_report is None:
        return None
    chip = load_chip(ref.cfg)
    workload = read_topology_csv(ref.topology)
    table = simulate(chip, workload, ["w8a8"])
    access = read_report(ref.access_report)
    stalls = sum(int(r["Stall Cycles"]) for r in read_report(ref.compute_report))
    cells = []
    operands = (
        ("ifmap", "DRAM IFMAP Reads", chip.memory.ifmap_sram_kib, "ifmap_used_elems"),
        ("filter", "DRAM Filter Reads", chip.memory.filter_sram_kib, "weight_elems"),
    )
    for operand, column, kib, attr in operands:
        distinct = [getattr(lay, attr) for lay in workload.layers]
        ours = (table[f"dram_{operand}_bits"] // BITS).astype(int).tolist()
        theirs = [int(float(r[column])) for r in access]
        fits = [d <= kib * 1024 / 2 for d in distinct]
        hit = [a == b for a, b in zip(ours, theirs)]
        n_fit = sum(fits)
        cells.append(
            f"{sum(h for h, f in zip(hit, fits) if f)}/{n_fit} + "
            f"{sum(h for h, f in zip(hit, fits) if not f)}/{len(fits) - n_fit}"
        )
    ours_o = (table.dram_ofmap_bits // BITS).astype(int).tolist()
    theirs_o = [int(float(r["DRAM OFMAP Writes"])) for r in access]
    bw = chip.memory.dram_bw_bits_per_cycle
    return (
        f"| {ref.name} | {'CALC' if bw == 'calc' else f'USER {float(bw) / BITS:g}'} | {cells[0]} | {cells[1]} | "
        f"{sum(a == b for a, b in zip(ours_o, theirs_o))}/{len(ours_o)} | {sum(theirs_o)} | {sum(ours_o)} | "
        f"{stalls} | {int(table.stall_cycles.sum())} |"
    )


def format_dram_table(refs: Sequence[Reference]) -> str:
    """Informational DRAM and stall comparison (markdown) for the runs with access reports."""
    lines = [
        "| run | DRAM bandwidth | ifmap DRAM reads exact (fits + does not) | filter DRAM reads exact "
        "(fits + does not) | ofmap DRAM writes exact | SCALE-Sim ofmap DRAM writes | lowbit ofmap DRAM bytes | "
        "SCALE-Sim stall cycles | lowbit stall cycles |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row for row in map(dram_row, refs) if row]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Compare every reference under ``--data`` and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="directory holding scalesim*/ (default: %(default)s)")
    parser.add_argument(
        "--runs",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also compare the runs in DIR (a run directory or a directory of runs; repeatable)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only runs whose data/run name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--dram",
        action="store_true",
        help="also print DRAM counts and stalls side by side (informational, never fails)",
    )
    args = parser.parse_args(argv)
    refs = [
        r for r in discover(args.data, args.runs) if not args.only or any(t in f"{r.group}/{r.name}" for t in args.only)
    ]
    if not refs:
        print(f"no SCALE-Sim reference runs under {args.data}/scalesim*/", file=sys.stderr)
        return 2
    results = [compare(ref) for ref in refs]
    print("lowbit vs SCALE-Sim v3: fixed 8-bit PE at w8a8, chip and workload read from SCALE-Sim's own files")
    print(format_table(results))
    mismatches = [m for r in results for m in r.mismatches]
    cycle_mismatches = [m for m in mismatches if "compute cycles" in m]
    if mismatches:
        print(f"\n{len(mismatches)} mismatch(es):")
        print("\n".join(f"  {m}" for m in mismatches))
    layers = sum(r.layers for r in results)
    if args.dram:
        print("\nDRAM traffic and stalls (informational; see docs/validation.md for why they differ):")
        print(format_dram_table(refs))
    print(f"\ncompute cycles: {layers - len(cycle_mismatches)}/{layers} layers exact over {len(results)} runs")
    return 1 if cycle_mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
