"""Verilator line coverage of ``rtl/src`` over a representative set of benches.

Every design is built with ``--coverage-line`` and run on the same stimuli as its tests (the layer top on three
layers of an integer export the caller supplies: ``python -m experiments.rtl_coverage`` makes the PTQ-SL export of
the digits CNN and runs everything); the per-file counts of covered line points are merged across runs
(docs/rtl.md, "Coverage").
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from rtl import encoding, kinds
from rtl.gemm import BENCH, SOURCES, TOP, gemm_job, random_operands
from rtl.runner import SRC_DIR, coverage_points, default_build_root, run_bench

__all__ = ["coverage_runs", "coverage_by_file", "coverage_markdown"]


def _gemm_data(
    rows: int,
    cols: int,
    pe_kind: str,
    pairs: Sequence[tuple[int, int]],
    results: Path,
    dataflow: str = "ws",
    both_profiles: bool = False,
    order_start: int = 0,
    blocks: int = 1,
) -> dict:
    """GEMM jobs on one build: per pair a multi-fold and a one-fold GEMM; with ``both_profiles`` each also runs
    overlapped, and ws builds add tiled mappings in the loop orders from ``order_start`` on and an
    input-stationary GEMM; with ``blocks > 1`` the second GEMM of each pair splits K into that many blocks."""
    jobs = []
    tiled = order_start
    shapes = [(5, None), (3, None)] if not both_profiles else [(5, None), (3, None), (7, 2), (6, 3)]
    for i, (w, a) in enumerate(pairs):
        pack = kinds.pack_factor(pe_kind, w, a)
        for j, (m, tile) in enumerate(shapes):
            k, n = (2 * rows * pack + 1, 2 * cols + 1) if j % 2 == 0 else (rows * pack, cols)
            A, B = random_operands(m, k, n, w, a, seed=10 * i + j)
            preload = "overlapped" if both_profiles and j % 2 else "serial"
            # an is GEMM runs on the same build unless its PE differs on the transpose (Stripes: PE_KIND 4)
            same_pe = kinds.transposed_kind(pe_kind) == pe_kind
            flow = "is" if dataflow == "ws" and both_profiles and j == 3 and same_pe else dataflow
            if flow == "os":
                order = 4 if j >= 2 else None  # MNK, or SCALE-Sim's NMK
            elif tile:
                order, tiled = tiled % 6, tiled + 1
            else:
                order = 0
            n_blocks = blocks if j == 1 and flow != "is" else 1
            job, _ = gemm_job(
                f"cov{i}_{j}",
                A,
                B,
                rows,
                cols,
                pe_kind,
                w,
                a,
                gap_prob=0.3,
                stall_prob=0.3,
                seed=i + j,
                order=order,
                tile_m=tile if flow != "os" else None,
                preload=preload,
                dataflow=flow,
                n_blocks=n_blocks,
            )
            jobs.append(job)
    return {"results_path": str(results), "jobs": jobs}


def _layer_data(results: Path, export_root: Path, dataflow: str = "ws") -> tuple[dict, dict]:
    """(bench data, Verilog parameters) of a layer-top coverage run: layers 0, 12 and 7 of the export (for the
    digits CNN's PTQ-SL 4 x 2 export: n_H = 1 and 2, conv and linear) back to back on a 4 x 4 Bit-Fusion
    ``dataflow`` array, with gaps and backpressure."""
    from quant.integer import load_export
    from rtl.layer import golden_layer_inputs, layer_job, layer_parameters, sample_images
    from sim.mapping import Mapping

    model = load_export(export_root)
    inputs = golden_layer_inputs(model, sample_images(model, 1))
    # ws: layer 0 at a mapping whose tiles cut the output columns too (the gemm top's 2-D tile steps)
    mappings = {"0": Mapping(1, 5)} if dataflow == "ws" else {}
    jobs = [
        layer_job(
            model.layer(name),
            inputs[name],
            4,
            4,
            "bitfusion",
            gap_prob=0.3,
            stall_prob=0.3,
            seed=i,
            dataflow=dataflow,
            mapping=mappings.get(name),
        )[0]
        for i, name in enumerate(["0", "12", "7"])
    ]
    # layer 12 has n_H = 2: the build holds two reduction blocks
    params = layer_parameters(model.layer("12"), 4, 4, "bitfusion", psum_rows=64, min_psum_rows=64, dataflow=dataflow)
    return {"results_path": str(results), "jobs": jobs}, params


def coverage_runs(layer_export: Path, out_dir: Path | None = None) -> list[Path]:
    """Run the coverage builds (the layer top on ``layer_export``, an integer export of the digits CNN with
    PTQ-SL 4 x 2 scales); return copies of their ``coverage.dat`` files (in ``out_dir``, default
    ``build/rtl/coverage``)."""
    out = out_dir or default_build_root() / "coverage"
    out.mkdir(parents=True, exist_ok=True)
    mac = [SRC_DIR / "lowbit_mac_pe.v"]
    dats = []
    with tempfile.TemporaryDirectory(prefix="lowbit-cov-") as tmp:
        runs = [
            ("lowbit_mac_pe", mac, "rtl.benches.pe_bench", {"W_BITS": 4, "A_BITS": 4}, None, {}),
            ("lowbit_fusion_pe", [SRC_DIR / "lowbit_fusion_pe.v"], "rtl.benches.pe_bench", {"ACC_BITS": 32}, None, {}),
            ("lowbit_requant", [SRC_DIR / "lowbit_requant.v"], "rtl.benches.requant_bench", {"OUT_BITS": 8}, None, {}),
            (
                TOP,
                SOURCES,
                BENCH,
                encoding.top_parameters(3, 3, "bitfusion"),
                "bitfusion",
                {"pairs": [(8, 8), (4, 2), (2, 4)]},
            ),
            (TOP, SOURCES, BENCH, encoding.top_parameters(3, 3, "fixed", 4, 4), "fixed", {"pairs": [(4, 4)]}),
            # double-buffered weights (both profiles, mappings, is GEMMs), bit-serial PEs, the os top
            (
                TOP,
                SOURCES,
                BENCH,
                encoding.top_parameters(3, 3, "bitfusion", preload="overlapped", max_blocks=4),
                "bitfusion",
                {"pairs": [(8, 8), (4, 2)], "both": True, "blocks": 3},
            ),
            (
                TOP,
                SOURCES,
                BENCH,
                encoding.top_parameters(3, 3, "loom", preload="overlapped"),
                "loom",
                {"pairs": [(2, 2), (3, 2)], "both": True, "order_start": 3},
            ),
            (
                "lowbit_gemm_os_top",
                SOURCES,
                BENCH,
                encoding.top_parameters(3, 3, "fixed", 4, 4, dataflow="os", max_blocks=4),
                "fixed",
                {"pairs": [(4, 4)], "both": True, "dataflow": "os", "blocks": 3},
            ),
            (
                "lowbit_gemm_os_top",
                SOURCES,
                BENCH,
                encoding.top_parameters(3, 3, "loom", dataflow="os"),
                "loom",
                {"pairs": [(3, 2)], "both": True, "dataflow": "os"},
            ),
        ]
        for n_run, (top, sources, bench, params, pe_kind, extra) in enumerate(runs):
            data = None
            if pe_kind is not None:
                data = _gemm_data(
                    params["ROWS"],
                    params["COLS"],
                    pe_kind,
                    extra["pairs"],
                    Path(tmp) / f"{n_run}.json",
                    extra.get("dataflow", "ws"),
                    extra.get("both", False),
                    extra.get("order_start", 0),
                    extra.get("blocks", 1),
                )
            res = run_bench(top, sources, bench, params, coverage=True, data=data)
            assert res.coverage_dat is not None
            keep = out / f"{top}_{len(dats)}.dat"
            keep.write_bytes(res.coverage_dat.read_bytes())
            dats.append(keep)
        from rtl import layer

        for dataflow in ("ws", "os"):
            data, params = _layer_data(Path(tmp) / f"layers_{dataflow}.json", layer_export, dataflow)
            res = run_bench(layer.TOP, layer.SOURCES, layer.BENCH, params, coverage=True, data=data)
            assert res.coverage_dat is not None
            keep = out / f"{layer.TOP}_{len(dats)}.dat"
            keep.write_bytes(res.coverage_dat.read_bytes())
            dats.append(keep)
    return dats


def coverage_by_file(dat_files: Sequence[Path]) -> dict[str, tuple[int, int]]:
    """{source file: (covered line points, total line points)} merged over ``dat_files``."""
    out: dict[str, list[int]] = {}
    for (fname, _, _), hits in coverage_points(dat_files).items():
        entry = out.setdefault(fname, [0, 0])
        entry[0] += hits > 0
        entry[1] += 1
    return {f: (c, t) for f, (c, t) in sorted(out.items())}


def coverage_markdown(by_file: dict[str, tuple[int, int]]) -> str:
    lines = ["| file | covered | points | line coverage |", "|---|---:|---:|---:|"]
    for f, (c, t) in by_file.items():
        lines.append(f"| `{f}` | {c} | {t} | {100 * c / t:.1f} % |")
    c, t = sum(v[0] for v in by_file.values()), sum(v[1] for v in by_file.values())
    lines.append(f"| **all of rtl/src** | {c} | {t} | {100 * c / t:.1f} % |")
    return "\n".join(lines)
