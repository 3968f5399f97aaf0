"""Compare lowbit with the Bit Fusion (ISCA 2018) authors' simulator on the paper's eight benchmarks.

Runs under lowbit's venv; the reference numbers are JSON in ``reference/`` (no Bit Fusion code is needed)::

    python benchmarks/bitfusion/compare.py                          # all benchmarks, chip defaults
    python benchmarks/bitfusion/compare.py --mapping search --objective latency
    python benchmarks/bitfusion/compare.py --bench resnet18 --per-layer
    python benchmarks/bitfusion/compare.py --doc docs/validation.md   # refresh its tables

For each benchmark it runs ``sim.simulate`` on ``bitfusion_isca18.yaml`` and the workload in ``workloads/``, takes
each layer's row at the pair of ``workloads/<bench>.assignment.csv``, and prints markdown tables of cycles, energy
and DRAM traffic next to the reference, with lowbit / reference ratios and their geometric mean, then the speedup
and energy reduction over Eyeriss that each model implies against the paper's 3.9x / 5.1x.

Energy is compared as *dynamic* energy: the reference has no leakage, so lowbit's ``energy_static_pj`` is listed
apart.  ``--mapping``, ``--objective`` and ``--weight-preload`` set the chip keys of those names; a key the current
chip schema rejects is dropped with a printed note, and the run goes on without it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

import sim  # noqa: E402
from benchmarks.provenance import replace_marked_block  # noqa: E402
from lowbit_core.errors import InputError  # noqa: E402
from lowbit_core.pairs import format_pair  # noqa: E402
from lowbit_core.yamlio import read_yaml  # noqa: E402
from sim.config import Chip, chip_from_dict  # noqa: E402

CHIP_FILE = HERE / "bitfusion_isca18.yaml"
WORKLOADS = HERE / "workloads"
REFERENCE = HERE / "reference"
#: lowbit key -> the authors' benchmark name, in the order of their ``benchlist``.
BENCHMARKS: dict[str, str] = {
    "alexnet": "AlexNet",
    "svhn": "SVHN",
    "cifar10": "CIFAR10",
    "lenet5": "LeNet-5",
    "vgg7": "VGG-7",
    "resnet18": "RESNET-18",
    "rnn": "RNN",
    "lstm": "LSTM",
}
HEADLINE = {"speedup": 3.9, "energy_reduction": 5.1}
BEGIN, END = "<!-- bitfusion-tables:begin -->", "<!-- bitfusion-tables:end -->"


# Chip ----------------------------------------------------------------------------------------------------------
def _with(doc: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """``doc`` with one override; ``weight_preload`` and ``reduction`` live under ``array``, ``output_width``
    under ``memory``."""
    if key in ("weight_preload", "reduction"):
        return {**doc, "array": {**doc["array"], key: value}}
    if key == "output_width":
        return {**doc, "memory": {**doc["memory"], key: value}}
    return {**doc, key: value}


def lowbit_chip(overrides: dict[str, str]) -> tuple[Chip, list[str]]:
    """The Bit Fusion chip with every override the schema accepts, and one note per override (kept or dropped)."""
    doc = read_yaml(CHIP_FILE, "chip file")
    notes: list[str] = []
    for key, value in overrides.items():
        try:
            chip_from_dict(_with(doc, key, value), where=str(CHIP_FILE))
        except InputError as exc:
            reason = str(exc).splitlines()[0]
            notes.append(f"`{key}: {value}` rejected by the current chip schema, running without it ({reason[:200]})")
            continue
        doc = _with(doc, key, value)
        notes.append(f"`{key}: {value}` set")
    chip = chip_from_dict(doc, where=str(CHIP_FILE))
    effective = {k: getattr(chip, k, None) for k in ("mapping", "mapping_objective")}
    effective["weight_preload"] = getattr(chip.array, "weight_preload", None)
    effective["reduction"] = getattr(chip.array, "reduction", None)
    effective["output_width"] = getattr(chip.memory, "output_width", None)
    shown = ", ".join(f"{k}: {v}" for k, v in effective.items() if v is not None)
    notes.append(f"lowbit settings in effect: {shown or 'fixed SCALE-Sim loop order (schema has no mapping keys)'}")
    return chip, notes


# lowbit runs ---------------------------------------------------------------------------------------------------
def assignment(key: str) -> pd.DataFrame:
    """The benchmark's per-layer (w_bits, a_bits), in layer order."""
    return pd.read_csv(WORKLOADS / f"{key}.assignment.csv").sort_values("layer", kind="stable")


def run_lowbit(chip: Chip, key: str) -> pd.DataFrame:
    """lowbit's cost rows of ``key``, one per layer, each at its assigned pair."""
    workload = sim.load_workload(WORKLOADS / f"{key}.yaml")
    asg = assignment(key)
    names = [layer.name for layer in workload.layers]
    if list(asg["name"]) != names:
        raise SystemExit(f"{key}: assignment layers {list(asg['name'])} differ from the workload's {names}")
    pairs = sorted({format_pair(p) for p in zip(asg["w_bits"], asg["a_bits"])})
    frame = sim.simulate(chip, workload, pairs)
    rows = asg[["name", "w_bits", "a_bits"]].merge(
        frame, on=["name", "w_bits", "a_bits"], how="left", validate="one_to_one"
    )
    if rows["total_cycles"].isna().any():
        raise SystemExit(f"{key}: no cost row for {list(rows.loc[rows['total_cycles'].isna(), 'name'])}")
    if "energy_reg_pj" not in rows:
        rows["energy_reg_pj"] = 0.0
    rows["energy_dyn_pj"] = rows["energy_pj"] - rows["energy_static_pj"]
    return rows


def check_macs(key: str, ref_layers: list[dict[str, Any]], rows: pd.DataFrame) -> None:
    """Stop unless every layer has the reference's name and MACs (IC * OC * K^2 * O^2 * batch)."""
    ref = [(r["name"], r["in_c"] * r["out_c"] * r["k"] ** 2 * r["out_hw"] ** 2 * r["batch"]) for r in ref_layers]
    low = list(zip(rows["name"], rows["macs"].astype(int)))
    if ref != low:
        bad = [(a, b) for a, b in zip(ref, low) if a != b] or [(len(ref), len(low))]
        raise SystemExit(f"{key}: layers or MACs differ from the reference (reference, lowbit): {bad[:3]}")


# Reference -----------------------------------------------------------------------------------------------------
def load_reference() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The authors' simulator numbers, the Eyeriss numbers of their repo, and the paper's headline figures."""
    return tuple(
        json.loads((REFERENCE / f"{n}.json").read_text())  # type: ignore[return-value]
        for n in ("bitfusion_sim", "eyeriss", "paper")
    )


@dataclass(frozen=True)
class Totals:
    """One benchmark's totals in one model (energy in pJ, traffic in bits)."""

    cycles: float
    compute: float
    stall: float
    energy: float
    core: float
    sram: float
    dram_e: float
    dram_bits: float
    static: float = 0.0


def ref_totals(bench: dict[str, Any]) -> Totals:
    return Totals(
        bench["total_cycles"],
        bench["compute_cycles"],
        bench["mem_stall_cycles"],
        bench["energy_pj"],
        bench["energy_core_pj"],
        bench["energy_sram_pj"],
        bench["energy_dram_pj"],
        bench["dram_read_bits"] + bench["dram_write_bits"],
    )


def low_totals(rows: pd.DataFrame) -> Totals:
    s = rows.sum(numeric_only=True)
    return Totals(
        s["total_cycles"],
        s["compute_cycles"],
        s["stall_cycles"],
        s["energy_dyn_pj"],
        s["energy_mac_pj"] + s["energy_reg_pj"],
        s["energy_sram_pj"],
        s["energy_dram_pj"],
        s["dram_bits"],
        s["energy_static_pj"],
    )


# Formatting ----------------------------------------------------------------------------------------------------
def geomean(values: Iterable[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else float("nan")


def _int(x: float) -> str:
    return f"{x:,.0f}"


def _uj(pj: float) -> str:
    return f"{pj / 1e6:,.1f}"


def _sci(x: float) -> str:
    return f"{x:.3e}"


def _r(x: float) -> str:
    return f"{x:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ratio_table(
    title: str, ref: dict[str, Totals], low: dict[str, Totals], cols: Sequence[tuple[str, str, Any]]
) -> str:
    """One row per benchmark: for each (label, field, formatter) the reference, lowbit and lowbit/reference."""
    header = ["benchmark"]
    for label, _, _ in cols:
        header += [f"{label} ref", "lowbit", "ratio"]
    rows, ratios = [], {f: [] for _, f, _ in cols}
    for key in ref:
        row = [key]
        for _, field, fmt in cols:
            a, b = getattr(low[key], field), getattr(ref[key], field)
            ratios[field].append(a / b if b else float("nan"))
            row += [fmt(b), fmt(a), _r(ratios[field][-1])]
        rows.append(row)
    geo = ["**geomean**"]
    for _, field, _ in cols:
        geo += ["", "", f"**{_r(geomean(ratios[field]))}**"]
    rows.append(geo)
    return f"**{title}**\n\n" + table(header, rows)


def report(keys: Sequence[str], overrides: dict[str, str], per_layer: bool) -> str:
    """The full markdown report: setup notes, the side-by-side tables, the Eyeriss comparison."""
    sim_ref, eyeriss, paper = load_reference()
    chip, notes = lowbit_chip(overrides)
    rows = {k: run_lowbit(chip, k) for k in keys}
    for k in keys:
        check_macs(k, sim_ref["benchmarks"][k]["layers"], rows[k])
    ref = {k: ref_totals(sim_ref["benchmarks"][k]) for k in keys}
    low = {k: low_totals(rows[k]) for k in keys}
    prov = sim_ref["provenance"]
    out = [
        f"Chip `{CHIP_FILE.relative_to(REPO)}`; reference: the authors' simulator at "
        f"`{prov['commit'][:12]}` (`bf_e_conf.ini`, run {prov['date_utc']}).  Batch 16; cycles at 500 MHz for the "
        "whole batch; energy in µJ, lowbit's dynamic energy (MAC + register + SRAM + DRAM) against the reference's "
        "(core + SRAM + DRAM; it models no leakage).",
        "",
    ]
    out += [f"- {n}." for n in notes] + [""]
    out.append(ratio_table("Cycles", ref, low, [("total", "cycles", _int), ("compute", "compute", _int)]))
    out += [
        "",
        ratio_table(
            "Dynamic energy (µJ) and DRAM traffic (bits)",
            ref,
            low,
            [("energy", "energy", _uj), ("DRAM bits", "dram_bits", _sci)],
        ),
    ]
    out += [
        "",
        ratio_table(
            "Energy breakdown (µJ): reference core vs lowbit MAC + register; SRAM; DRAM",
            ref,
            low,
            [("core/MAC", "core", _uj), ("SRAM", "sram", _uj), ("DRAM", "dram_e", _uj)],
        ),
    ]
    static = sum(t.static for t in low.values())
    out += [
        "",
        f"lowbit's static energy, not in the ratios above: {_uj(static)} µJ over these benchmarks "
        f"({static / sum(t.energy + t.static for t in low.values()):.1%} of its total).",
    ]
    out += ["", eyeriss_table(keys, ref, low, eyeriss, paper)]
    if per_layer:
        for k in keys:
            out += ["", layer_table(k, sim_ref["benchmarks"][k]["layers"], rows[k])]
    return "\n".join(out) + "\n"


def eyeriss_table(
    keys: Sequence[str], ref: dict[str, Totals], low: dict[str, Totals], eyeriss: dict[str, Any], paper: dict[str, Any]
) -> str:
    """Speedup and energy reduction over Eyeriss implied by each model (Eyeriss numbers from the authors' repo)."""
    rows, cols = [], {"rs": [], "ls": [], "re": [], "le": []}
    for k in keys:
        e = eyeriss["benchmarks"][k]
        vals = {
            "rs": e["cycles"] / ref[k].cycles,
            "ls": e["cycles"] / low[k].cycles,
            "re": e["energy_pj"] / ref[k].energy,
            "le": e["energy_pj"] / low[k].energy,
        }
        for c, v in vals.items():
            cols[c].append(v)
        rows.append([k, _int(e["cycles"]), _uj(e["energy_pj"])] + [_r(vals[c]) for c in ("rs", "ls", "re", "le")])
    geo = {c: geomean(v) for c, v in cols.items()}
    rows.append(["**geomean**", "", ""] + [f"**{_r(geo[c])}**" for c in ("rs", "ls", "re", "le")])
    head = paper["paper"]["vs_eyeriss"]
    rows.append(["paper (ISCA 2018)", "", "", _r(head["speedup"]), "", _r(head["energy_reduction"]), ""])
    note = (
        f"lowbit's geomeans against the paper's headline: speedup {_r(geo['ls'])} / {HEADLINE['speedup']} = "
        f"{geo['ls'] / HEADLINE['speedup']:.2f}, energy reduction {_r(geo['le'])} / "
        f"{HEADLINE['energy_reduction']} = {geo['le'] / HEADLINE['energy_reduction']:.2f}"
        + ("" if len(keys) == len(BENCHMARKS) else " (subset of the benchmarks: not comparable to the headline)")
        + "."
    )
    return (
        "**Over Eyeriss** (Eyeriss cycles and energy from the authors' `results/eyeriss_results.csv`, combined as "
        "their notebook does)\n\n"
        + table(
            [
                "benchmark",
                "Eyeriss cycles",
                "Eyeriss µJ",
                "speedup ref",
                "speedup lowbit",
                "energy red. ref",
                "energy red. lowbit",
            ],
            rows,
        )
        + "\n\n"
        + note
    )


def layer_table(key: str, ref_layers: list[dict[str, Any]], rows: pd.DataFrame) -> str:
    """Per-layer cycles, dynamic energy and DRAM bits, reference vs lowbit."""
    out = []
    for r, (_, l) in zip(ref_layers, rows.iterrows()):
        if r["name"] != l["name"]:
            raise SystemExit(f"{key}: layer order differs ({r['name']} vs {l['name']})")
        ref_dram = r["dram_read_bits"] + r["dram_write_bits"]
        order = str(l["loop_order"]) if "loop_order" in l else "-"
        out.append(
            [
                l["name"],
                format_pair((l["w_bits"], l["a_bits"])),
                _int(r["total_cycles"]),
                _int(l["total_cycles"]),
                _r(l["total_cycles"] / r["total_cycles"]),
                _uj(r["energy_pj"]),
                _uj(l["energy_dyn_pj"]),
                _r(l["energy_dyn_pj"] / r["energy_pj"]),
                _sci(ref_dram),
                _sci(l["dram_bits"]),
                _r(l["dram_bits"] / ref_dram),
                order,
            ]
        )
    return f"**{key}, per layer**\n\n" + table(
        [
            "layer",
            "pair",
            "cycles ref",
            "lowbit",
            "ratio",
            "µJ ref",
            "lowbit",
            "ratio",
            "DRAM ref",
            "lowbit",
            "ratio",
            "lowbit order",
        ],
        out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--bench", action="append", choices=list(BENCHMARKS), help="benchmark to run (repeatable; default: all eight)"
    )
    ap.add_argument("--mapping", choices=["search", "scalesim"], help="set the chip's `mapping` key")
    ap.add_argument("--objective", choices=["latency", "energy", "edp"], help="set the chip's `mapping_objective`")
    ap.add_argument(
        "--weight-preload",
        choices=["serial", "overlapped"],
        help="set `array.weight_preload` (Bit Fusion's FU-local weight buffers are closest to overlapped)",
    )
    ap.add_argument(
        "--reduction",
        choices=["lowered", "per_tap"],
        help="set `array.reduction` (Bit Fusion runs one pass per kernel tap: per_tap)",
    )
    ap.add_argument(
        "--output-width",
        choices=["activation", "accumulator"],
        help="set `memory.output_width` (Bit Fusion writes 32-bit outputs: accumulator)",
    )
    ap.add_argument("--per-layer", action="store_true", help="also print per-layer tables")
    ap.add_argument("--doc", type=Path, help=f"also write the report between {BEGIN} and {END} in this file")
    args = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in (
            ("mapping", args.mapping),
            ("mapping_objective", args.objective),
            ("weight_preload", args.weight_preload),
            ("reduction", args.reduction),
            ("output_width", args.output_width),
        )
        if v is not None
    }
    text = report(args.bench or list(BENCHMARKS), overrides, args.per_layer)
    print(text, end="")
    if args.doc:
        replace_marked_block(args.doc, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
