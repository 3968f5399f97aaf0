"""Generate SCALE-Sim v3 reference runs and compare lowbit against them: one command.

Run with lowbit's Python: ``.venv/bin/python benchmarks/scalesim/run_scalesim.py`` (options: ``--help``).

1. Creates SCALE-Sim's own venv outside the repo, at
   ``${LOWBIT_BENCH_VENVS:-~/.cache/lowbit/bench-venvs}/scalesim`` (``scalesim==3.0.0``,
   ``numpy<2``, ``pandas<2.3``); SCALE-Sim is not a lowbit dependency and none of its code is kept.
2. Runs SCALE-Sim (through ``scalesim_job.py`` in that venv, ``--jobs`` at a time) on every run of
   :data:`RUNS`: four rectangular arrays x ws/os/is x CALC/USER bandwidth, one topology of conv and
   FC-like layers. Each run's cfg, topology and SCALE-Sim's COMPUTE_REPORT, BANDWIDTH_REPORT and
   DETAILED_ACCESS_REPORT (no traces) go to ``tests/sim/data/scalesim_gen/<run>/``, with a
   provenance ``README.md`` and ``runs.csv`` (wall time per run).
3. Runs ``compare.py`` over every stored reference (exit status 1 on a compute-cycle mismatch).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import cpu_model  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "sim" / "data" / "scalesim_gen"
JOB = HERE / "scalesim_job.py"
SCALESIM_VERSION = "3.0.0"
REQUIREMENTS = (f"scalesim=={SCALESIM_VERSION}", "numpy<2", "pandas<2.3")
REPORTS = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")

#: The topology of every run (SCALE-Sim conv format, no padding): convs of varied kernel, stride and
#: shape (a stride that does not divide H - F, a stride larger than the kernel, a non-square kernel
#: and ifmap) and FC-like 1x1 layers (M = 1, M = 16 tokens, N below every array width).
TOPOLOGY: tuple[tuple[str, int, int, int, int, int, int, int], ...] = (
    # name, ifmap H, ifmap W, filter H, filter W, channels, filters, stride
    ("C1_7x7_s2", 37, 37, 7, 7, 3, 24, 2),
    ("C2_3x3_s1", 30, 30, 3, 3, 16, 32, 1),
    ("C3_5x5_s2_rem", 24, 24, 5, 5, 8, 20, 2),
    ("C4_1x1", 14, 14, 1, 1, 64, 72, 1),
    ("C5_3x3_s2", 17, 17, 3, 3, 32, 48, 2),
    ("C6_2x2_s3_skip", 23, 23, 2, 2, 12, 28, 3),
    ("C7_3x1_rect", 12, 16, 3, 1, 20, 40, 1),
    ("F1_fc", 1, 1, 1, 1, 512, 128, 1),
    ("F2_fc_tokens", 16, 1, 1, 1, 128, 96, 1),
    ("F3_fc_cls", 1, 1, 1, 1, 200, 10, 1),
)


@dataclass(frozen=True)
class Run:
    """One SCALE-Sim run: array, dataflow, SRAM sizes (kB) and USER bandwidth (None = CALC)."""

    dataflow: str
    rows: int
    cols: int
    sram_kb: tuple[int, int, int]  # ifmap, filter, ofmap
    user_bw: int | None  # words per cycle for each of the three DRAM channels; None = CALC

    @property
    def name(self) -> str:
        """``<dataflow>_<rows>x<cols>_<calc|userN>``, also SCALE-Sim's run_name."""
        bw = "calc" if self.user_bw is None else f"user{self.user_bw}"
        return f"{self.dataflow}_{self.rows}x{self.cols}_{bw}"

    def cfg_text(self) -> str:
        """The SCALE-Sim 3.0.0 cfg of this run."""
        bw = self.user_bw if self.user_bw is not None else 10  # ignored under CALC
        ifmap_kb, filter_kb, ofmap_kb = self.sram_kb
        return f"""[general]
run_name = {self.name}

[architecture_presets]
ArrayHeight:    {self.rows}
ArrayWidth:     {self.cols}
IfmapSramSzkB:   {ifmap_kb}
FilterSramSzkB:  {filter_kb}
OfmapSramSzkB:   {ofmap_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : {bw}
Dataflow : {self.dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {bw}
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {bw}
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: {"CALC" if self.user_bw is None else "USER"}
UseRamulatorTrace: False
"""


# (rows, cols, (ifmap, filter, ofmap) SRAM kB, USER words per cycle)
ARRAYS: tuple[tuple[int, int, tuple[int, int, int], int], ...] = (
    (8, 32, (8, 16, 8), 4),
    (32, 8, (16, 8, 8), 8),
    (16, 64, (32, 32, 16), 16),
    (12, 20, (8, 8, 4), 6),
)
RUNS: tuple[Run, ...] = tuple(
    Run(df, r, c, kb, bw) for r, c, kb, user in ARRAYS for df in ("ws", "os", "is") for bw in (None, user)
)


def venv_root() -> Path:
    """``$LOWBIT_BENCH_VENVS`` or ``~/.cache/lowbit/bench-venvs``."""
    env = os.environ.get("LOWBIT_BENCH_VENVS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lowbit" / "bench-venvs"


def _versions(python: Path) -> dict[str, str] | None:
    """Versions of Python, scalesim, numpy and pandas in a venv, or None if scalesim is missing."""
    code = (
        "import importlib.metadata as m, platform\n"
        "print(platform.python_version())\n"
        "for p in ('scalesim', 'numpy', 'pandas'): print(m.version(p))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    py, scalesim, numpy, pandas = done.stdout.split()
    return {"python": py, "scalesim": scalesim, "numpy": numpy, "pandas": pandas}


def ensure_venv(venv: Path, reinstall: bool = False) -> tuple[Path, dict[str, str]]:
    """Create SCALE-Sim's venv at ``venv`` if needed; return its python and the package versions."""
    if venv.resolve().is_relative_to(REPO):
        raise SystemExit(f"refusing to put SCALE-Sim's venv inside the repo ({venv})")
    python = venv / "bin" / "python"
    versions = _versions(python) if python.exists() else None
    if versions is None or versions["scalesim"] != SCALESIM_VERSION or reinstall:
        print(f"creating SCALE-Sim venv at {venv} ({' '.join(REQUIREMENTS)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS], check=True
        )
        versions = _versions(python)
        if versions is None:
            raise SystemExit(f"{venv}: scalesim is not importable after pip install")
    return python, versions


def topology_csv() -> str:
    """:data:`TOPOLOGY` as a SCALE-Sim topology CSV (trailing comma on every line)."""
    header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"
    return "\n".join([header, *(",".join(map(str, row)) + "," for row in TOPOLOGY)]) + "\n"


def layout_csv() -> str:
    """A layout file for :data:`TOPOLOGY`: 3.0.0 always parses one, but with
    ``IfmapCustomLayout``/``FilterCustomLayout: False`` its values are never used."""
    header = "Layer name," + ",".join(f"f{i}" for i in range(20)) + ","
    return "\n".join([header, *(f"{row[0]}," + ",".join(["1"] * 20) + "," for row in TOPOLOGY)]) + "\n"


def run_one(python: Path, run: Run, work: Path, out: Path) -> float:
    """Simulate ``run`` in ``work`` and move its inputs and reports to ``out/<run>``; return wall seconds."""
    job = work / run.name
    job.mkdir()
    (job / "config.cfg").write_text(run.cfg_text())
    (job / "topology.csv").write_text(topology_csv())
    (job / "layout.csv").write_text(layout_csv())
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(JOB), "config.cfg", "topology.csv", "layout.csv", "out"],
        cwd=job,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    reports = job / "out" / run.name
    # SCALE-Sim calls exit() (status 0) on some input errors, so the reports are the real check
    if done.returncode != 0 or not all((reports / r).is_file() for r in REPORTS):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"SCALE-Sim failed on {run.name} (exit {done.returncode}):\n{tail}")
    stage = out / f".{run.name}.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in ("config.cfg", "topology.csv"):
        shutil.copyfile(job / name, stage / name)
    for name in REPORTS:
        shutil.copyfile(reports / name, stage / name)
    final = out / run.name
    shutil.rmtree(final, ignore_errors=True)
    stage.rename(final)
    return seconds


def _read_runs_csv(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["run"]: row for row in csv.DictReader(fh)}


def write_provenance(
    out: Path, timings: dict[str, float], versions: dict[str, str], command: str, jobs: int, wall: float
) -> None:
    """Merge ``timings`` into ``out/runs.csv`` and rewrite ``out/README.md``."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = _read_runs_csv(out / "runs.csv")
    by_name = {r.name: r for r in RUNS}
    for name, seconds in timings.items():
        r = by_name[name]
        rows[name] = {
            "run": name,
            "dataflow": r.dataflow,
            "rows": str(r.rows),
            "cols": str(r.cols),
            "sram_kb": "/".join(map(str, r.sram_kb)),
            "bandwidth": "CALC" if r.user_bw is None else f"USER {r.user_bw}",
            "wall_seconds": f"{seconds:.1f}",
            "date": now,
        }
    fields = ["run", "dataflow", "rows", "cols", "sram_kb", "bandwidth", "wall_seconds", "date"]
    ordered = [rows[r.name] for r in RUNS if r.name in rows]
    with (out / "runs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(ordered)
    table = [
        "| run | array | dataflow | SRAM kB (ifmap/filter/ofmap) | bandwidth (words/cycle) | wall s |",
        "|---|---|---|---|---|---|",
    ]
    table += [
        f"| {row['run']} | {row['rows']}x{row['cols']} | {row['dataflow']} | {row['sram_kb']} | "
        f"{row['bandwidth']} | {row['wall_seconds']} |"
        for row in ordered
    ]
    total = sum(float(row["wall_seconds"]) for row in ordered)
    venv_hint = "${LOWBIT_BENCH_VENVS:-~/.cache/lowbit/bench-venvs}/scalesim"
    text = f"""# SCALE-Sim v3 reference runs (generated)

Generated by `benchmarks/scalesim/run_scalesim.py`; do not edit by hand, re-run it instead.

- **Tool:** PyPI `scalesim=={versions["scalesim"]}` with `numpy=={versions["numpy"]}` (`numpy<2`) and
  `pandas=={versions["pandas"]}` (`pandas<2.3`), Python {versions["python"]}, in its own venv at
  `{venv_hint}` (outside this repo; SCALE-Sim is not a lowbit dependency).
- **Command:** `{command}` ({jobs} SCALE-Sim process(es) at a time; this invocation took {wall:.0f} s of wall time).
- **Last generated:** {now}, on {cpu_model()} ({os.cpu_count()} logical CPUs).
- **Through the Python API** (`scalesim_job.py`): `scalesim(save_disk_space=True, verbose=False, config=...,
  topology=..., layout=...).run_scale(top_path=...)`; 3.0.0's `scale.py` ignores `-s`. No traces are kept.
- **Layout file:** 3.0.0 always parses one; with `IfmapCustomLayout`/`FilterCustomLayout: False` its values
  are never used, so the script writes a placeholder (one row of 1s per layer) and does not keep it.

Each directory `<dataflow>_<rows>x<cols>_<calc|userN>` holds the run's `config.cfg` and `topology.csv`
(the same 10-layer file in every run) and SCALE-Sim's `COMPUTE_REPORT.csv`, `BANDWIDTH_REPORT.csv` and
`DETAILED_ACCESS_REPORT.csv`, byte for byte. `userN` runs use `InterfaceBandwidth: USER` with N words per
cycle on each of SCALE-Sim's three DRAM channels (`IfmapSRAMBankBandwidth`, `FilterSRAMBankBandwidth`,
`Bandwidth`; one bank each); `calc` runs use `InterfaceBandwidth: CALC`.

Under USER bandwidth SCALE-Sim's "Total Cycles" includes its "Stall Cycles"; its compute cycles are
"Total Cycles" - "Stall Cycles" (under CALC the stalls are 0). `tests/sim/test_engine_scalesim_gen.py`
checks lowbit's `compute_cycles` against that, layer by layer; `benchmarks/scalesim/compare.py` prints
the comparison (see `docs/validation.md`).

Wall time per run (`runs.csv`; the sum is {total:.0f} s of SCALE-Sim time):

{chr(10).join(table)}
"""
    (out / "README.md").write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Create the venv, generate the selected runs, write provenance and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="SCALE-Sim processes at a time (default: min(2, CPUs))",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="TEXT", help="only runs whose name contains TEXT (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the runs go (default: %(default)s)")
    parser.add_argument("--venv", type=Path, default=None, help="SCALE-Sim's venv (default: <venv root>/scalesim)")
    parser.add_argument("--reinstall", action="store_true", help="recreate SCALE-Sim's venv")
    parser.add_argument("--no-compare", action="store_true", help="skip compare.py at the end")
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    args = parser.parse_args(argv)
    runs = [r for r in RUNS if not args.only or any(t in r.name for t in args.only)]
    if not runs:
        print(f"no run matches --only {' '.join(args.only)} (see --list)", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(r.name for r in runs))
        return 0
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    start = time.perf_counter()
    python, versions = ensure_venv(args.venv or venv_root() / "scalesim", args.reinstall)
    print(
        f"SCALE-Sim {versions['scalesim']} (numpy {versions['numpy']}, pandas {versions['pandas']}); "
        f"{len(runs)} run(s), {args.jobs} at a time",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    # slowest first (is, then ws, then os; USER before CALC) so the last job does not run alone
    order = sorted(runs, key=lambda r: ({"is": 0, "ws": 1, "os": 2}[r.dataflow], r.user_bw is None))
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lowbit-scalesim-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, python, run, Path(tmp), args.out): run for run in order}
        for i, future in enumerate(as_completed(futures), start=1):
            run = futures[future]
            timings[run.name] = future.result()
            print(f"[{i:2d}/{len(runs)}] {run.name:<20} {timings[run.name]:6.1f} s", flush=True)
    wall = time.perf_counter() - start
    command = "python benchmarks/scalesim/run_scalesim.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    write_provenance(args.out, timings, versions, command, args.jobs, wall)
    print(f"wrote {len(runs)} run(s) to {args.out} in {wall:.0f} s (SCALE-Sim time {sum(timings.values()):.0f} s)")
    if args.no_compare:
        return 0
    sys.path.insert(0, str(HERE))
    import compare  # noqa: E402 - needs lowbit's environment, so imported only here

    print()
    return compare.main([] if args.out.resolve() == DEFAULT_OUT.resolve() else ["--runs", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
