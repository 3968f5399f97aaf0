"""The valid/ready stream player shared by the GEMM and layer benches (cocotb; used inside a simulation).

Once per clock cycle, on the falling edge, it reads each input's ``*_ready`` and ``out_valid`` / ``out_data``
(registered outputs: no ready depends on this cycle's valid, the tops register their inputs) and decides each
``*_valid`` and ``out_ready`` for the next rising edge: a beat is offered after a random gap and then held until it
is taken (AXI-stream rule), and ``out_ready`` drops at random.  Each output beat taken goes to a checker that pops
the scoreboard queue.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from lowbit_core.files import atomic_path
from rtl.benches import bench_input

__all__ = ["MAX_MESSAGES", "StreamResult", "play_streams", "reset", "run_jobs", "write_results"]

#: Mismatch messages kept per job (all are counted).
MAX_MESSAGES = 8

#: ``check(index, data, last, cycle) -> messages``: one message per wrong element of output beat ``index``.
BeatCheck = Callable[[int, int, int, int], list[str]]


@dataclass
class StreamResult:
    """Counts of one stream pass; ``cycles`` are clock cycles spent in the pass, ``sent`` / ``received`` beats."""

    mismatches: int = 0
    messages: list[str] = field(default_factory=list)
    cycles: int = 0
    sent: int = 0
    received: int = 0

    def fail(self, message: str, count: int = 1) -> None:
        self.mismatches += count
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)


async def reset(dut, zero_ports: tuple[str, ...]) -> None:
    """Hold ``rst_n`` low for 3 cycles with every port of ``zero_ports`` at 0, then release it."""
    dut.rst_n.value = 0
    for name in zero_ports:
        getattr(dut, name).value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await FallingEdge(dut.clk)


async def run_jobs(
    dut,
    bench: str,
    zero_ports: tuple[str, ...],
    run_job: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], str],
) -> None:
    """Run every job of the bench input back to back after one reset; after each job, rewrite the results file
    and log ``describe(record)``. The first job with mismatches fails the test with its messages."""
    data = bench_input()
    assert data and data.get("jobs"), f"{bench} needs run_bench(data={{'jobs': [...]}})"
    Clock(dut.clk, 10, unit="ns").start()
    await reset(dut, zero_ports)
    records: list[dict[str, Any]] = []
    for job in data["jobs"]:
        record = await run_job(job)
        records.append(record)
        write_results(data.get("results_path"), records)
        dut._log.info("%s: %s", record["name"], describe(record))
        if record["mismatches"]:
            raise AssertionError(
                f"job {record['name']}: {record['mismatches']} mismatches; " + "; ".join(record["messages"])
            )


def write_results(path: str | None, records: list[dict[str, Any]]) -> None:
    """Write the job records as JSON through a temporary file and a rename."""
    if path:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(records, indent=1))


async def play_streams(
    dut,
    inputs: dict[str, list[int]],
    queue: deque,
    check: BeatCheck,
    rng: random.Random,
    *,
    gap_prob: float,
    stall_prob: float,
    max_cycles: int,
    label: str = "",
    cycle0: int = 0,
) -> StreamResult:
    """Offer the beats of every input stream and take output beats until everything is sent, ``queue`` is empty
    and the top is idle. ``inputs`` maps a port prefix (``w`` for ``w_valid``/``w_ready``/``w_data``, ``in``
    for the activations) to its beats; each stream has its own random gaps.

    Messages start with ``label`` (when given) and name clock cycles counted from ``cycle0``."""
    prefix = f"{label}: " if label else ""
    result = StreamResult()
    clk_fall = FallingEdge(dut.clk)
    ports = {
        name: (getattr(dut, f"{name}_valid"), getattr(dut, f"{name}_ready"), getattr(dut, f"{name}_data"))
        for name in inputs
    }
    out_valid_s, out_ready_s, out_data_s, out_last_s = dut.out_valid, dut.out_ready, dut.out_data, dut.out_last
    busy_s = dut.busy
    n_out = len(queue)
    sent = dict.fromkeys(inputs, 0)
    offering = dict.fromkeys(inputs, False)  # valid is high with beats[sent] on the data port
    received = 0

    def all_sent() -> bool:
        return all(sent[name] == len(beats) for name, beats in inputs.items())

    while True:
        await clk_fall
        result.cycles += 1
        cycle = cycle0 + result.cycles
        if result.cycles > max_cycles:
            taken = ", ".join(f"{sent[n]}/{len(b)} {n} beats taken" for n, b in inputs.items())
            result.fail(
                f"{prefix}timeout after {max_cycles} cycles: {taken}, "
                f"{received}/{n_out} output beats received, busy={int(busy_s.value)}"
            )
            break
        out_valid = int(out_valid_s.value)
        _offer_inputs(inputs, ports, sent, offering, rng, gap_prob)
        # output: random backpressure; a beat with out_valid & out_ready is taken at the coming rising edge
        ready = int(rng.random() >= stall_prob)
        out_ready_s.value = ready
        if out_valid and ready:
            index = received
            received += 1
            if not queue:
                result.fail(
                    f"{prefix}unexpected output beat {index} (all {n_out} expected beats already "
                    f"received) at cycle {cycle}"
                )
                continue
            last = int(out_last_s.value)
            for message in check(index, out_data_s.value.to_unsigned(), last, cycle):
                result.fail(f"{prefix}{message}")
            if last != (not queue):
                result.fail(f"{prefix}out_last={last} on output beat {index} of {n_out} at cycle {cycle}")
        elif all_sent() and not queue and not int(busy_s.value) and not out_valid:
            break
    for valid_s, _, _ in ports.values():
        valid_s.value = 0
    out_ready_s.value = 0
    _check_leftovers(result, prefix, queue, n_out, inputs, sent)
    result.sent, result.received = sum(sent.values()), received
    return result


def _offer_inputs(
    inputs: dict[str, list[int]],
    ports: dict[str, tuple[Any, Any, Any]],
    sent: dict[str, int],
    offering: dict[str, bool],
    rng: random.Random,
    gap_prob: float,
) -> None:
    """One cycle of every input stream: after a random gap offer the next beat, then hold it until taken (a beat
    offered while its ``*_ready`` is high is taken at the coming rising edge and counted in ``sent``)."""
    for name, beats in inputs.items():
        valid_s, ready_s, data_s = ports[name]
        ready = int(ready_s.value)
        if not offering[name] and sent[name] < len(beats) and rng.random() >= gap_prob:
            offering[name] = True
            data_s.value = beats[sent[name]]
        valid_s.value = int(offering[name])
        if offering[name] and ready:  # taken at the coming rising edge
            sent[name] += 1
            offering[name] = False


def _check_leftovers(
    result: StreamResult,
    prefix: str,
    queue: deque,
    n_out: int,
    inputs: dict[str, list[int]],
    sent: dict[str, int],
) -> None:
    """Fail ``result`` for output beats that never arrived and for input beats that were never taken."""
    if queue:
        result.fail(
            f"{prefix}scoreboard queue not empty: {len(queue)} of {n_out} output beats never arrived "
            f"(next expected (m={queue[0][0]}, n={queue[0][1]}))"
        )
    for name, beats in inputs.items():
        if sent[name] != len(beats):
            result.fail(f"{prefix}only {sent[name]} of {len(beats)} {name} beats were taken")
