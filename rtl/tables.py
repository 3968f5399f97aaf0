"""Markdown tables of ``docs/rtl.md`` made from the records the RTL tests save.

``python -m rtl.tables cycles-table [DIR]`` prints the cycles tables (section "Cycles") from the GEMM records
``tests/rtl/test_gemm.py`` wrote; ``test_docs_cycles_table_is_current`` checks the docs against the suite. (The
area table of section "Synthesis" is :mod:`rtl.synth`'s, ``python -m rtl.synth --table``.)
"""

from __future__ import annotations

from lowbit_core.pairs import format_pair

__all__ = [
    "cycles_table_markdown",
    "main",
]


def cycles_table_markdown(records: list[dict]) -> str:
    """Markdown for docs/rtl.md from GEMM bench records (as saved by ``tests/rtl/test_gemm.py``: keys ``build``,
    ``simulator``, ``pe_kind``, ``rows``, ``cols``, ``dataflow``, ``preload``, ``w_bits``, ``a_bits``, ``M``, ``K``,
    ``N``, ``loop_order``, ``tile_m``, ``folds``, ``macs``, ``table``, ``mismatches``, ``measured_cycles``,
    ``predicted_cycles``): one summary row per build, then every record flagged ``table`` in full."""
    builds: dict[str, list[dict]] = {}
    for r in records:
        builds.setdefault(r["build"], []).append(r)
    lines = [
        "| build | simulator | PE | array | dataflow | preload | pairs | GEMMs | mappings | folds | MACs | "
        "mismatches | measured == sim |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in builds.items():
        r0 = rs[0]
        pairs = sorted({(r["w_bits"], r["a_bits"]) for r in rs}, reverse=True)
        orders = {r["loop_order"] for r in rs}
        tiled = sum(r["tile_m"] < r["N" if r.get("dataflow") == "is" else "M"] for r in rs)
        blocked = sum(r.get("blocks", 1) > 1 for r in rs)
        equal = sum(r["measured_cycles"] == r["predicted_cycles"] for r in rs)
        dataflows = ", ".join(d for d in ("ws", "os", "is") if any(r.get("dataflow", "ws") == d for r in rs))
        preloads = ", ".join(p for p in ("serial", "overlapped") if any(r["preload"] == p for r in rs))
        lines.append(
            f"| {name} | {r0['simulator']} | {r0['pe_kind']} | {r0['rows']}×{r0['cols']} | "
            f"{dataflows} | {preloads} | "
            f"{', '.join(map(format_pair, pairs))} | {len(rs)} | "
            f"{len(orders)} orders, {tiled} tiled{f', {blocked} blocked' if blocked else ''} | "
            f"{min(r['folds'] for r in rs)}–{max(r['folds'] for r in rs)} | {sum(r['macs'] for r in rs):,} | "
            f"{sum(r['mismatches'] for r in rs)} | {equal} of {len(rs)} |"
        )
    lines += [
        "",
        "| PE | array | dataflow | preload | pair | M × K × N | folds | measured cycles | sim compute_cycles |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("table"):
            lines.append(
                f"| {r['pe_kind']} | {r['rows']}×{r['cols']} | {r.get('dataflow', 'ws')} | {r['preload']} | "
                f"{format_pair((r['w_bits'], r['a_bits']))} | {r['M']} × {r['K']} × {r['N']} | {r['folds']} | "
                f"{r['measured_cycles']} | {r['predicted_cycles']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m rtl.tables cycles-table [DIR]``: print the cycles tables of docs/rtl.md from the records the
    GEMM tests saved in ``DIR`` (default ``<build root>/gemm_cycles``)."""
    import json
    import sys
    from pathlib import Path

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "cycles-table" or len(args) > 2:
        print("usage: python -m rtl.tables cycles-table [DIR]", file=sys.stderr)
        return 2
    if len(args) == 2:
        folder = Path(args[1])
    else:
        from rtl.runner import default_build_root

        folder = default_build_root() / "gemm_cycles"
    files = sorted(folder.glob("*.json"))
    if not files:
        print(f"no GEMM records in {folder}: run pytest tests/rtl/test_gemm.py first", file=sys.stderr)
        return 2
    records = [r for f in files for r in json.loads(f.read_text())]
    order = {"verilator": 0, "icarus": 1}
    records.sort(
        key=lambda r: (
            order.get(r["simulator"], 2),
            r["build"].startswith("os-"),
            r["build"].startswith("ov-"),
            r["pe_kind"] != "bitfusion",
            r["rows"] * r["cols"],
            r["build"],
        )
    )
    print(cycles_table_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
