"""Real exported layers and the whole digits CNN through lowbit's RTL: the tables of docs/rtl.md, "Real layers".

Run: ``python benchmarks/rtl_layers.py [--quick]`` (Verilator; the exports are made once into
``build/rtl/layer-exports``). Every row is a run of ``rtl.layer``: output codes against the golden integer model,
busy cycles against sim's cost of the same layer (``in_blocks = n_H``) and, for comparison, sim's cost with the
blocks ignored. ``--quick`` runs the per-layer table only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.digits_exports import EXPORTS, make_digits_export
from quant.integer import load_export
from rtl.layer import run_model_rtl, sample_images, verify_layer
from sim.mapping import Mapping

ROOT = Path(__file__).resolve().parents[1]
EXPORT_ROOT = ROOT / "build" / "rtl" / "layer-exports"
ARRAYS = (("fixed", 8, 8), ("bitfusion", 8, 8))


def export_dir(kind: str) -> Path:
    out = EXPORT_ROOT / kind
    if not (out / "meta.json").is_file():
        make_digits_export(kind, out)
    return out


def layer_table() -> list[str]:
    lines = [
        "| export | PE | array | layer | M × K × N | blocks n_V × n_H | MACs | mismatches | measured cycles | "
        "sim, in_blocks = n_H | sim, blocks ignored |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in EXPORTS:
        model = load_export(export_dir(kind))
        for pe_kind, rows, cols in ARRAYS:
            for lay in model.layers:
                c = verify_layer(
                    export_dir(kind),
                    lay.name,
                    rows=rows,
                    cols=cols,
                    pe_kind=pe_kind,
                    images=2,
                    gap_prob=0.3,
                    stall_prob=0.3,
                )
                name = c.layer + (" (perm.)" if c.out_permuted else "")
                lines.append(
                    f"| {kind} | {pe_kind} | {rows}×{cols} | {name} | {c.M} × {c.K} × {c.N} | {c.n_v} × {c.n_h} "
                    f"| {c.macs:,} | {c.mismatches} | {c.measured_cycles:,} | {c.predicted_cycles:,} | "
                    f"{c.single_gemm_cycles:,} |"
                )
    return lines


def _tiled(model) -> dict:  # noqa: ANN001 - quant.integer.IntegerModel
    orders = (1, 3, 5, 2, 4, 0)
    return {lay.name: Mapping(orders[i % len(orders)], 2 + i) for i, lay in enumerate(model.layers)}


def model_tables() -> list[str]:
    lines = [
        "| export | PE | array | preload | mapping | images | mismatches (all layers' codes) | "
        "predictions = golden | measured cycles per layer | sim at the same mappings | measured, all layers | "
        "sim, blocks ignored | wall time |",
        "|---|---|---|---|---|---:|---:|---|---|---|---:|---:|---:|",
    ]
    runs = [
        ("gpfq", "fixed", 8, "serial", False, 16),
        ("ptq-sl", "fixed", 8, "serial", False, 16),
        ("ptq-sl-sort", "bitfusion", 8, "serial", False, 16),
        ("ptq-sl-sort", "bitfusion", 4, "serial", False, 16),
        ("gpfq", "fixed", 8, "overlapped", True, 4),
        ("gpfq", "bitfusion", 8, "overlapped", True, 4),
        ("ptq-sl-sort", "bitfusion", 8, "overlapped", True, 4),
        ("ptq-sl", "fixed", 8, "overlapped", True, 4),
    ]
    for kind, pe_kind, side, preload, tiled, images in runs:
        model = load_export(export_dir(kind))
        t0 = time.perf_counter()
        r = run_model_rtl(
            model,
            sample_images(model, images),
            rows=side,
            cols=side,
            pe_kind=pe_kind,
            preload=preload,
            mappings=_tiled(model) if tiled else None,
        )
        wall = time.perf_counter() - t0
        agree = int((r.predictions == r.golden_predictions).sum())
        lines.append(
            f"| {kind} | {pe_kind} | {side}×{side} | {preload} | {'tiled' if tiled else 'SCALE-Sim'} | {images} | "
            f"{r.mismatches + r.intermediate_mismatches} | {agree} of {images} | "
            f"{', '.join(f'{c.measured_cycles:,}' for c in r.layers)} | "
            f"{', '.join(f'{c.predicted_cycles:,}' for c in r.layers)} | {r.measured_cycles:,} | "
            f"{sum(c.single_gemm_cycles for c in r.layers):,} | {wall:.1f} s |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the per-layer table only")
    args = parser.parse_args()
    print("\n".join(layer_table()))
    if not args.quick:
        print()
        print("\n".join(model_tables()))


if __name__ == "__main__":
    main()
