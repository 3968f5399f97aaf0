"""GEMMs through ``lowbit_gemm_top`` (cocotb on Verilator, one configuration on Icarus): bit-exact results and
measured busy cycles equal to sim's ``compute_cycles``.

Each build (array shape x PE kind x weight-preload profile x, for the fixed PE, widths and signedness) runs many
GEMMs in one simulation: M, the fold counts, the mapping (loop order and stream tiles) and the PE's run-time widths
are configuration, so builds are shared. Jobs mix random and corner-biased operands (extremes of the
signed/unsigned ranges), GEMMs smaller and larger than the array (several row and column folds), SCALE-Sim's
untiled NKM schedule and random mappings from sim's candidate set (every loop order, tiles that do not divide M),
and streams with and without random valid gaps and output backpressure.

The records of every run land in ``<build root>/gemm_cycles/<build>.json``; ``python -m rtl.tables cycles-table``
renders them as the table of ``docs/rtl.md`` (section "Cycles").
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from rtl import encoding, gemm_plan, kinds, prediction
from rtl.gemm import BENCH, TOP, gemm_job
from rtl.runner import SRC_DIR, TOP_PARTS, default_build_root, run_bench, source

pytestmark = pytest.mark.rtl

FUSION_PAIRS = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]
SIGNS = [(True, True), (True, False), (False, True), (False, False)]


@dataclass(frozen=True)
class Build:
    """One HDL build of a top (one build directory)."""

    id: str
    pe_kind: str
    rows: int
    cols: int
    w_bits: int = 8  # fixed PE only (Bit Fusion, Stripes, Loom: run-time)
    a_bits: int = 8
    w_signed: bool = True
    a_signed: bool = True
    max_m: int = 64  # the largest M of the build's jobs
    overlap_hw: bool = False  # ws: the double-buffered weight registers (the build then runs both profiles)
    simulator: str = "verilator"
    dataflow: str = "ws"  # ws, os, or is (a ws top of kinds.transposed_kind PEs running is GEMMs only)
    is_jobs: bool = False  # a ws build that also runs input-stationary GEMMs (the transposed ws GEMM)
    max_blocks: int = 1  # > 1: the top's MAX_BLOCKS; every third ws/os job then splits K into 2..max_blocks blocks

    @property
    def profiles(self) -> tuple[str, ...]:
        """The timing profiles the build runs (run-time configuration)."""
        return ("serial", "overlapped") if self.overlap_hw or self.dataflow == "os" else ("serial",)

    @property
    def psum_rows(self) -> int:
        """Partial-sum rows of the build: enough for every mapping of an M <= max_m GEMM with up to 4 column folds
        inside the row-fold loop (jobs whose mapping needs more take an order with the row folds innermost)."""
        return 4 * self.max_m

    @property
    def array(self) -> str:
        """The array the build's top holds: ws or os (an is build is a ws array on the transposed GEMM)."""
        return "os" if self.dataflow == "os" else "ws"

    @property
    def parameters(self) -> dict[str, int]:
        pe_kind = kinds.transposed_kind(self.pe_kind) if self.dataflow == "is" else self.pe_kind
        return encoding.top_parameters(
            self.rows,
            self.cols,
            pe_kind,
            self.w_bits,
            self.a_bits,
            self.w_signed,
            self.a_signed,
            psum_rows=self.psum_rows,
            preload="overlapped" if self.overlap_hw else "serial",
            dataflow=self.array,
            max_blocks=self.max_blocks,
        )

    @property
    def top(self) -> str:
        return kinds.DATAFLOWS[self.dataflow]

    @property
    def sources(self) -> list[Path]:
        pe_module = {"bitfusion": "lowbit_fusion_pe", "fixed": "lowbit_mac_pe"}.get(self.pe_kind, "lowbit_serial_pe")
        return [
            source(self.top),
            source(f"lowbit_systolic_{self.array}"),
            source(pe_module),
            *(SRC_DIR / part for part in TOP_PARTS),
        ]


@dataclass(frozen=True)
class Job:
    """One GEMM of a build's run."""

    name: str
    M: int
    K: int
    N: int
    w_bits: int
    a_bits: int
    w_signed: bool
    a_signed: bool
    values: str  # "random", "corner" (80 % corner values) or "extreme" (every operand at its range minimum)
    gap_prob: float
    stall_prob: float
    seed: int
    table: bool = False  # listed row by row in docs/rtl.md
    order: int = 0  # loop order (sim.mapping.ORDERS index; 0 is SCALE-Sim's NKM)
    tile_m: int = 0  # elements per stream tile of M (of N for is; 0: untiled)
    preload: str = "serial"  # the timing profile this GEMM runs
    dataflow: str = "ws"  # ws, os, or is (a ws build running the transposed GEMM)
    n_blocks: int = 1  # reduction blocks (rtl.gemm_plan.block_split): the top sends each block's product


BUILDS = [
    # serial weight preload only (OVERLAP = 0: the weights shift through the PEs' own registers)
    Build("bitfusion-2x2", "bitfusion", 2, 2),
    Build("fixed-w4a4-3x5", "fixed", 3, 5, 4, 4, max_blocks=4),
    Build("fixed-w2a2-2x2", "fixed", 2, 2, 2, 2),
    Build("fixed-w8a8-1x1", "fixed", 1, 1, 8, 8, max_m=16),
    # bit-serial: an element takes a (Stripes) or a*w (Loom) steps, so short M keeps the runs short
    Build("stripes-4x4", "stripes", 4, 4, max_m=16),
    Build("loom-3x5", "loom", 3, 5, max_m=8),
    Build("loom-1x1", "loom", 1, 1, max_m=4),
    # double-buffered weight registers (OVERLAP = 1): every GEMM in either profile, set at run time
    Build("ov-bitfusion-4x4", "bitfusion", 4, 4, overlap_hw=True, max_blocks=4),
    Build("ov-bitfusion-3x5", "bitfusion", 3, 5, overlap_hw=True, is_jobs=True),
    Build("ov-bitfusion-8x8", "bitfusion", 8, 8, max_m=128, overlap_hw=True),
    Build("ov-fixed-w8a8-8x8", "fixed", 8, 8, 8, 8, max_m=128, overlap_hw=True, is_jobs=True, max_blocks=4),
    Build("ov-fixed-w4a8u-4x16", "fixed", 4, 16, 4, 8, a_signed=False, overlap_hw=True),
    Build("ov-fixed-w8a8-1x1", "fixed", 1, 1, 8, 8, max_m=16, overlap_hw=True),
    Build("ov-stripes-8x8", "stripes", 8, 8, max_m=64, overlap_hw=True),
    Build("ov-loom-8x8", "loom", 8, 8, max_m=64, overlap_hw=True),
    Build("ov-loom-2x3", "loom", 2, 3, max_m=8, overlap_hw=True, is_jobs=True, max_blocks=4),
    # output-stationary arrays (both profiles): the reduction streams through, each PE keeps one output
    Build("os-fixed-w8a8-8x8", "fixed", 8, 8, 8, 8, max_m=128, dataflow="os"),
    Build("os-bitfusion-4x4", "bitfusion", 4, 4, dataflow="os", max_blocks=4),
    Build("os-fixed-w4a8u-5x3", "fixed", 5, 3, 4, 8, a_signed=False, dataflow="os", max_blocks=4),
    Build("os-fixed-w2a2-1x1", "fixed", 1, 1, 2, 2, max_m=16, dataflow="os"),
    Build("os-fixed-w4a4-6x1", "fixed", 6, 1, 4, 4, dataflow="os"),
    Build("os-stripes-4x4", "stripes", 4, 4, max_m=16, dataflow="os"),
    Build("os-loom-3x2", "loom", 3, 2, max_m=8, dataflow="os", max_blocks=4),
    # input-stationary Stripes: the transposed GEMM's stationary operand is the activation, so the PE serializes
    # its stationary register (PE_KIND 4); the other kinds run is GEMMs in their ws builds (is_jobs)
    Build("is-stripes-3x4", "stripes", 3, 4, max_m=8, overlap_hw=True, dataflow="is"),
]
ICARUS_BUILDS = [
    Build("icarus-bitfusion-2x2", "bitfusion", 2, 2, simulator="icarus"),
    Build("icarus-fixed-w4a4-3x5", "fixed", 3, 5, 4, 4, simulator="icarus"),
    Build("icarus-stripes-2x3", "stripes", 2, 3, max_m=8, simulator="icarus"),
    Build(
        "icarus-ov-fixed-w4a4-3x4", "fixed", 3, 4, 4, 4, overlap_hw=True, simulator="icarus", is_jobs=True, max_blocks=4
    ),
    Build("icarus-os-bitfusion-2x3", "bitfusion", 2, 3, dataflow="os", simulator="icarus"),
]


def _pairs_of(build: Build) -> list[tuple[int, int, bool, bool]]:
    """(w_bits, a_bits, w_signed, a_signed) the build runs, in rotation."""
    if build.pe_kind == "fixed":
        return [(build.w_bits, build.a_bits, build.w_signed, build.a_signed)]
    # all nine run-time pairs, with all four signedness combinations in rotation; odd widths now and then (Bit
    # Fusion rounds them up to its 2/4/8 fields; a bit-serial PE runs them as they are)
    out = [(w, a, *SIGNS[i % 4]) for i, (w, a) in enumerate(FUSION_PAIRS)]
    out += [(3, 5, True, True), (7, 6, True, False), (5, 3, False, True)]
    return out


def jobs_of(build: Build, quick: bool = False) -> list[Job]:
    """The deterministic job list of ``build``: small, exact-fit, multi-fold and large GEMMs over its pairs."""
    rng = random.Random(build.id)
    R, C, Mx = build.rows, build.cols, build.max_m
    pairs = _pairs_of(build)
    jobs: list[Job] = []

    def add(
        kind: str,
        M: int,
        K: int,
        N: int,
        pair: tuple[int, int, bool, bool],
        values: str,
        table: bool = False,
        stream: tuple[float, float] | None = None,
    ) -> None:
        i = len(jobs)
        gap, stall = stream if stream is not None else ((0.0, 0.0) if i % 2 == 0 else (0.3, 0.3))
        w, a, ws, as_ = pair
        # the table rows run SCALE-Sim's schedule with serial preload; the others alternate the build's profiles and
        # (is_jobs) every fourth is an input-stationary GEMM
        dataflow = "is" if build.is_jobs and i % 4 == 3 and not table else build.dataflow
        preload = "serial" if table else build.profiles[(i // 2) % len(build.profiles)]
        # every third job and the table rows: SCALE-Sim's untiled schedule (ws NKM, os NMK, is MKN)
        stream = N if dataflow == "is" else M  # is streams N: its tiles cut N
        order, tile_m = 0, stream
        if dataflow == "os":  # os: SCALE-Sim's NMK or MNK, no stream tiles
            order = 4 if i % 3 and not table and rng.random() < 0.5 else 1
        elif i % 3 and not table:
            order, tile_m = rng.randrange(6), rng.choice(gemm_plan.offered_tile_rows(stream))
            # the partial sums of the ws GEMM the array runs (is: the transpose's)
            shape = (N, K, M) if dataflow == "is" else (M, K, N)
            need = gemm_plan.psum_rows_needed(
                gemm_plan.plan_gemm(*shape, R, C, build.pe_kind, w, a, order=order, tile_m=tile_m)
            )
            if need > build.psum_rows:  # too many partial sums for the buffer: keep the row folds innermost
                order = rng.choice([1, 4])
        # reduction blocks (their own generator, so the other draws stay as they were)
        blocks = 1
        if build.max_blocks > 1 and dataflow != "is" and not table and i % 3 == 2 and K > 1:
            blocks = random.Random(f"{build.id}/{i}/blocks").randint(2, min(build.max_blocks, K))
        jobs.append(
            Job(
                f"{build.id}/{i}-{kind}",
                M,
                K,
                N,
                w,
                a,
                ws,
                as_,
                values,
                gap,
                stall,
                rng.randrange(1 << 30),
                table,
                order,
                tile_m,
                preload,
                dataflow,
                blocks,
            )
        )

    rounds = max(1, 12 // len(pairs))  # a fixed build has one pair: run its mix several times
    for p, pair in enumerate(pairs * rounds):
        pack = kinds.pack_factor(build.pe_kind, pair[0], pair[1])
        depth = R * pack  # reduction elements one row fold covers
        # smaller than the array: one fold with partial rows/columns
        add(
            "small",
            rng.randint(1, max(1, Mx // 8)),
            rng.randint(1, depth),
            rng.randint(1, C),
            pair,
            "corner" if p % 2 else "random",
        )
        # several row and column folds, K and N not multiples of the tile
        add(
            "folds",
            rng.randint(2, Mx // 2),
            rng.randint(depth + 1, 3 * depth),
            rng.randint(C + 1, 3 * C),
            pair,
            "random" if p % 2 else "corner",
            table=p == 0,
        )
        if quick:
            continue
        # exact fit: one fold, full tile
        add("exact", rng.randint(1, Mx), depth, C, pair, "corner")
    if quick:
        return jobs
    full = pairs[0]
    pack = kinds.pack_factor(build.pe_kind, full[0], full[1])
    # corners of M and of the accumulator range; heavy stalls on both streams
    add("m1", 1, 2 * R * pack + 1, 2 * C + 1, full, "extreme", stream=(0.5, 0.5))
    add("mmax", Mx, R * pack, C, full, "extreme", stream=(0.0, 0.7))
    add(
        "stall",
        rng.randint(1, Mx),
        rng.randint(1, 2 * R * pack),
        rng.randint(1, 2 * C),
        full,
        "corner",
        stream=(0.7, 0.7),
    )
    if build.pe_kind in kinds.SERIAL_KINDS and R * C >= 64:
        # bulk random MACs at the pair with the fewest beats per element (w8a2 Stripes, w2a2 Loom), full M
        cheap = min(pairs, key=lambda p: (kinds.beats_per_element(build.pe_kind, p[0], p[1]), -p[0] * p[1]))
        for _ in range(2):
            add("bulk", Mx, 16 * R, 8 * C, cheap, "random")
    # large GEMMs (most of the suite's MACs): many folds, full M
    for k in range(3):
        pair = pairs[k * len(pairs) // 3]
        pack = kinds.pack_factor(build.pe_kind, pair[0], pair[1])
        add(
            "large",
            Mx,
            4 * R * pack + rng.randint(0, R * pack - 1),
            4 * C - rng.randint(0, C - 1) if C > 1 else 4,
            pair,
            "random",
            table=k == 0 or len(pairs) > 1,
        )
    return jobs


def operands(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """A [M, K] and B [K, N] for ``job``: uniform random, corner-biased or all at the range minimum."""
    rng = np.random.default_rng(job.seed)

    def draw(shape: tuple[int, int], bits: int, signed: bool) -> np.ndarray:
        lo, hi = kinds.operand_range(bits, signed)
        if job.values == "extreme":
            return np.full(shape, lo if signed else hi, dtype=np.int64)
        x = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
        if job.values == "corner":
            corners = np.array(sorted({lo, lo + 1, hi - 1, hi, 0, 1} | ({-1} if signed else set())), dtype=np.int64)
            pick = rng.random(shape) < 0.8
            x = np.where(pick, rng.choice(corners, size=shape), x)
        return x

    return draw((job.M, job.K), job.a_bits, job.a_signed), draw((job.K, job.N), job.w_bits, job.w_signed)


def _tile(job: Job) -> int | None:
    """The job's stream tile (of M; of N for is; None: untiled, and always for os, whose stream loop is the row
    folds)."""
    return (job.tile_m or None) if job.dataflow != "os" else None


def _predicted(
    build: Build,
    M: int,
    K: int,
    N: int,
    w: int,
    a: int,
    order: int | None = None,
    tile: int | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
    n_blocks: int = 1,
) -> int:
    """sim's compute_cycles for the GEMM on the build's array at the dataflow and profile (``n_blocks`` reduction
    blocks: sim's ``in_blocks``)."""
    if dataflow == "is":
        return prediction.predicted_is_cycles(
            M, K, N, build.rows, build.cols, build.pe_kind, w, a, order or 0, tile, preload
        )
    return prediction.predicted_cycles(
        M, K, N, build.rows, build.cols, build.pe_kind, w, a, order, tile, preload, dataflow, n_blocks
    )


def _order_name(job: Job, plan: gemm_plan.GemmPlan) -> str:
    """sim's loop_order of the job (is: in the GEMM's own dimensions, not the transpose's)."""
    from sim.mapping import gemm_order_name

    return gemm_order_name(2, plan.order) if job.dataflow == "is" else plan.order_name


def _bench_job(build: Build, job: Job) -> tuple[dict, dict]:
    """(bench input for ``job``, its table record without the measurement)."""
    A, B = operands(job)
    entry, plan = gemm_job(
        job.name,
        A,
        B,
        build.rows,
        build.cols,
        build.pe_kind,
        job.w_bits,
        job.a_bits,
        job.w_signed,
        job.a_signed,
        gap_prob=job.gap_prob,
        stall_prob=job.stall_prob,
        seed=job.seed,
        order=job.order,
        tile_m=_tile(job),
        preload=job.preload,
        dataflow=job.dataflow,
        n_blocks=job.n_blocks,
    )
    assert gemm_plan.psum_rows_needed(plan) <= build.psum_rows, job
    record = {
        "name": job.name,
        "build": build.id,
        "simulator": build.simulator,
        "pe_kind": build.pe_kind,
        "rows": build.rows,
        "cols": build.cols,
        "w_bits": job.w_bits,
        "a_bits": job.a_bits,
        "M": job.M,
        "K": job.K,
        "N": job.N,
        "preload": job.preload,
        "dataflow": job.dataflow,
        "blocks": job.n_blocks,
        "loop_order": _order_name(job, plan),
        "tile_m": plan.tile_elements,
        "folds": plan.folds,
        "macs": plan.macs,
        "table": job.table,
        "predicted_cycles": _predicted(
            build,
            job.M,
            job.K,
            job.N,
            job.w_bits,
            job.a_bits,
            job.order,
            _tile(job),
            job.preload,
            job.dataflow,
            job.n_blocks,
        ),
    }
    return entry, record


def run_jobs(build: Build, jobs: list[Job], tmp_path: Path) -> list[dict]:
    """Run ``jobs`` on ``build`` in one simulation; return one record per job (bench result + prediction)."""
    entries, records = zip(*(_bench_job(build, j) for j in jobs))
    results_path = tmp_path / f"{build.id}.results.json"
    run_bench(
        build.top,
        build.sources,
        BENCH,
        build.parameters,
        simulator=build.simulator,
        data={"results_path": str(results_path), "jobs": list(entries)},
    )
    measured = json.loads(results_path.read_text())
    assert [m["name"] for m in measured] == [j.name for j in jobs]
    return [
        {**rec, **{k: m[k] for k in ("mismatches", "measured_cycles", "busy_cycles", "clock_cycles")}}
        for rec, m in zip(records, measured)
    ]


def _check(records: list[dict]) -> None:
    bad = [
        f"{r['name']}: M={r['M']} K={r['K']} N={r['N']} w{r['w_bits']}a{r['a_bits']} "
        f"mismatches={r['mismatches']} measured={r['measured_cycles']} sim={r['predicted_cycles']}"
        for r in records
        if r["mismatches"] or r["measured_cycles"] != r["predicted_cycles"]
    ]
    assert not bad, "GEMMs with mismatches or cycles != sim:\n" + "\n".join(bad)


def _save(build: Build, jobs: list[Job], records: list[dict]) -> None:
    out = default_build_root() / "gemm_cycles" / f"{build.id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**r, "job": asdict(j)} for j, r in zip(jobs, records)]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(out)


@pytest.mark.parametrize("build", BUILDS, ids=[b.id for b in BUILDS])
def test_gemm_verilator(verilator: str, build: Build, tmp_path: Path) -> None:
    """Every job of the build: 0 mismatches and measured busy cycles - 1 == sim's compute_cycles."""
    jobs = jobs_of(build)
    records = run_jobs(build, jobs, tmp_path)
    _save(build, jobs, records)
    _check(records)


@pytest.mark.parametrize("build", ICARUS_BUILDS, ids=[b.id for b in ICARUS_BUILDS])
def test_gemm_icarus(iverilog: str, build: Build, tmp_path: Path) -> None:
    """The same top on Icarus (simulator portability), on a quick subset of the jobs."""
    jobs = jobs_of(build, quick=True)
    records = run_jobs(build, jobs, tmp_path)
    _save(build, jobs, records)
    _check(records)


def test_suite_checks_a_million_random_macs() -> None:
    """The RTL GEMM suite covers >= 10^6 MACs with random operands (every job is run and checked above), and so
    does each bit-serial kind on its own."""
    random_macs = sum(j.M * j.K * j.N for b in BUILDS for j in jobs_of(b) if j.values == "random")
    assert random_macs >= 1_000_000, random_macs
    for kind in kinds.SERIAL_KINDS:
        macs = sum(j.M * j.K * j.N for b in BUILDS if b.pe_kind == kind for j in jobs_of(b) if j.values == "random")
        assert macs >= 1_000_000, (kind, macs)


CHEAPEST = next(b for b in BUILDS if b.id == "fixed-w2a2-2x2")


def _mutation_jobs(build: Build) -> list[Job]:
    return [Job("mutant/0", 3, 5, 3, build.w_bits, build.a_bits, build.w_signed, build.a_signed, "random", 0.3, 0.3, 7)]


def test_wrong_expected_value_is_reported(verilator: str, tmp_path: Path) -> None:
    """A corrupted expected value fails the bench with its output index, expected and actual values and cycle."""
    build = CHEAPEST
    job = _mutation_jobs(build)[0]
    entry, _ = _bench_job(build, job)
    true_value = entry["expected"][2][1]
    entry["expected"][2][1] = true_value + 1
    with pytest.raises(AssertionError) as info:
        run_bench(
            TOP,
            build.sources,
            BENCH,
            build.parameters,
            data={"results_path": str(tmp_path / "r.json"), "jobs": [entry]},
        )
    msg = str(info.value)
    assert f"output index (m=2, n=1): expected {true_value + 1}, got {true_value} at cycle" in msg, msg


def test_missing_input_beat_is_reported(verilator: str, tmp_path: Path) -> None:
    """A stream one beat short times out and names the outputs that never arrived (queue not empty)."""
    build = CHEAPEST
    job = _mutation_jobs(build)[0]
    entry, _ = _bench_job(build, job)
    entry["beats"] = entry["beats"][:-1]
    entry["max_cycles"] = 400
    with pytest.raises(AssertionError) as info:
        run_bench(
            TOP,
            build.sources,
            BENCH,
            build.parameters,
            data={"results_path": str(tmp_path / "r.json"), "jobs": [entry]},
        )
    msg = str(info.value)
    assert "timeout after 400 cycles" in msg and "scoreboard queue not empty" in msg, msg


def _docs_tables() -> tuple[list[list[str]], list[list[str]]]:
    """(summary rows, detail rows) of the cycles tables in docs/rtl.md, as lists of cell strings."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "rtl.md").read_text()
    start = text.index("<!-- cycles-table")
    block = text[start : text.index("<!-- /cycles-table -->", start)]
    summary: list[list[str]] = []
    detail: list[list[str]] = []
    target = summary
    for line in block.splitlines()[1:]:
        if not line.startswith("|"):
            target = detail if summary else summary
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("build", "PE") or set(cells[0]) <= {"-"}:
            continue
        target.append(cells)
    return summary, detail


def test_docs_cycles_table_is_current() -> None:
    """docs/rtl.md's cycles tables (``python -m rtl.tables cycles-table``) list this suite's builds and flagged
    GEMMs, and every listed cycle count equals sim's prediction (no RTL run needed for this check)."""
    summary, detail = _docs_tables()
    suite = {b.id: (b, jobs_of(b, quick=b.simulator == "icarus")) for b in BUILDS + ICARUS_BUILDS}
    assert sorted(row[0] for row in summary) == sorted(suite), (
        "rerun the GEMM tests and python -m rtl.tables cycles-table: the builds in docs/rtl.md differ from the suite"
    )
    for row in summary:
        build, jobs = suite[row[0]]
        n = len(jobs)
        assert row[4] == ", ".join(sorted({j.dataflow for j in jobs}, key=("ws", "os", "is").index)), row
        assert row[5] == ", ".join(p for p in ("serial", "overlapped") if any(j.preload == p for j in jobs)), row
        assert row[7] == str(n) and row[11] == "0" and row[12] == f"{n} of {n}", row
    want = sorted(
        (b.pe_kind, f"{b.rows}×{b.cols}", j.dataflow, j.preload, f"w{j.w_bits}a{j.a_bits}", f"{j.M} × {j.K} × {j.N}")
        for b, jobs in suite.values()
        for j in jobs
        if j.table
    )
    assert sorted(tuple(row[:6]) for row in detail) == want, "docs/rtl.md's GEMM rows differ from the suite's"
    for pe_kind, array, dataflow, preload, pair, mkn, folds, measured, sim in detail:
        rows, cols = (int(x) for x in array.split("×"))
        w, a = (int(x) for x in pair[1:].split("a"))
        M, K, N = (int(x) for x in mkn.split("×"))
        build = Build("docs", pe_kind, rows, cols, dataflow=dataflow)
        predicted = _predicted(build, M, K, N, w, a, preload=preload, dataflow=dataflow)
        plan = (
            gemm_plan.plan_gemm(N, K, M, rows, cols, pe_kind, a, w, preload=preload)
            if dataflow == "is"
            else gemm_plan.plan_gemm(M, K, N, rows, cols, pe_kind, w, a, preload=preload, dataflow=dataflow)
        )
        assert (int(folds), int(measured), int(sim)) == (plan.folds, predicted, predicted), (pe_kind, array, pair, mkn)
