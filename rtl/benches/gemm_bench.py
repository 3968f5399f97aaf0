"""cocotb bench for ``lowbit_gemm_top``: plays GEMM jobs through the valid/ready streams and scoreboards the results.

Input (``run_bench(data=...)``, read with :func:`rtl.benches.bench_input`)::

    {"results_path": "/path/results.json",       # where the bench writes one record per job
     "jobs": [{"name": str, "M": int, "N": int,  # GEMM output shape
               "cfg": {"cfg_m": ..., ...},       # rtl.driver.top_config(plan)
               "beats": [int, ...],              # rtl.driver.gemm_streams(...)[0]
               "expected": [[int, ...], ...],    # [M][N] exact products (compared modulo 2^ACC_BITS)
               "gap_prob": float,                # probability that in_valid stays low in a cycle
               "stall_prob": float,              # probability that out_ready is low in a cycle
               "seed": int, "max_cycles": int}, ...]}

Per job the bench pulses ``start`` with the job's configuration, then once per clock cycle, on the falling edge,
reads ``in_ready`` / ``out_valid`` / ``out_data`` (registered outputs, independent of this cycle's ``in_valid`` and
``out_ready``) and decides ``in_valid`` and ``out_ready`` for the next rising edge: a beat is offered after a
random gap and then held until it is taken (AXI-stream rule), ``out_ready`` drops at random. Every output beat is
compared with the next entry of the scoreboard queue (order: :func:`rtl.driver.output_order`); padding columns past
``N`` must be 0 and ``out_last`` must mark exactly the final beat. A mismatch names the output index (m, n), the
expected and actual values and the clock cycle (counted from the job's ``start``). At the end the queue must be
empty and every input beat consumed; the record ``{"name", "mismatches", "busy_cycles", "measured_cycles",
"clock_cycles", "in_beats", "out_beats"}`` is appended to ``results_path`` with ``measured_cycles = cycle_count - 1``
(the index of the last busy cycle, sim's ``compute_cycles`` convention).
"""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from rtl.benches import bench_input, parameters
from rtl.driver import decode_output_beat, output_order

#: Mismatch messages kept per job (all are counted).
MAX_MESSAGES = 8


def _wrap(value: int, bits: int) -> int:
    """``value`` modulo 2^bits as a signed two's-complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _write_results(path: str | None, records: list[dict[str, Any]]) -> None:
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(path)


async def _reset(dut) -> None:
    dut.rst_n.value = 0
    dut.start.value = 0
    dut.in_valid.value = 0
    dut.in_data.value = 0
    dut.out_ready.value = 0
    for name in ("cfg_m", "cfg_row_folds", "cfg_col_folds", "cfg_w_mode", "cfg_a_mode", "cfg_w_signed",
                 "cfg_a_signed"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await FallingEdge(dut.clk)


async def _run_job(dut, job: dict[str, Any], cols: int, acc_bits: int) -> dict[str, Any]:
    """Play one job; return its record (mismatch messages under ``"messages"``)."""
    rng = random.Random(job.get("seed", 0))
    gap, stall = float(job.get("gap_prob", 0.0)), float(job.get("stall_prob", 0.0))
    beats: list[int] = job["beats"]
    expected: list[list[int]] = job["expected"]
    M, N = int(job["M"]), int(job["N"])
    max_cycles = int(job.get("max_cycles", 1_000_000))
    queue = deque(output_order(M, N, cols))
    n_out = len(queue)

    clk_fall = FallingEdge(dut.clk)
    for name, value in job["cfg"].items():
        getattr(dut, name).value = int(value)
    dut.start.value = 1
    await clk_fall
    dut.start.value = 0

    in_valid_s, in_ready_s, in_data_s = dut.in_valid, dut.in_ready, dut.in_data
    out_valid_s, out_ready_s, out_data_s, out_last_s = dut.out_valid, dut.out_ready, dut.out_data, dut.out_last
    busy_s = dut.busy
    messages: list[str] = []
    mismatches = 0
    sent = received = 0
    offering = False  # in_valid is high with beats[sent] on in_data
    cycle = 0
    while True:
        await clk_fall
        cycle += 1
        if cycle > max_cycles:
            messages.append(f"timeout after {max_cycles} cycles: {sent}/{len(beats)} input beats taken, "
                            f"{received}/{n_out} output beats received, busy={int(busy_s.value)}")
            mismatches += 1
            break
        in_ready = int(in_ready_s.value)
        out_valid = int(out_valid_s.value)
        # input: after a random gap offer the next beat, then hold it until taken
        if not offering and sent < len(beats) and rng.random() >= gap:
            offering = True
            in_data_s.value = beats[sent]
        in_valid_s.value = int(offering)
        if offering and in_ready:  # taken at the coming rising edge
            sent += 1
            offering = False
        # output: random backpressure; a beat with out_valid & out_ready is taken at the coming rising edge
        ready = int(rng.random() >= stall)
        out_ready_s.value = ready
        if out_valid and ready:
            index = received
            received += 1
            got = decode_output_beat(out_data_s.value.to_unsigned(), cols, acc_bits)
            last = int(out_last_s.value)
            if not queue:
                mismatches += 1
                messages.append(f"unexpected output beat {index} (all {n_out} expected beats already received) "
                                f"at cycle {cycle}")
                continue
            m, n0 = queue.popleft()
            for c, actual in enumerate(got):
                n = n0 + c
                want = _wrap(expected[m][n], acc_bits) if n < N else 0
                if actual != want:
                    mismatches += 1
                    if len(messages) < MAX_MESSAGES:
                        pad = " (padding column)" if n >= N else ""
                        messages.append(f"output index (m={m}, n={n}){pad}: expected {want}, got {actual} "
                                        f"at cycle {cycle} (output beat {index})")
            if last != (not queue):
                mismatches += 1
                messages.append(f"out_last={last} on output beat {index} of {n_out} at cycle {cycle}")
        elif sent == len(beats) and not queue and not int(busy_s.value) and not out_valid:
            break
    in_valid_s.value = 0
    out_ready_s.value = 0
    if queue:
        mismatches += 1
        messages.append(f"scoreboard queue not empty: {len(queue)} of {n_out} output beats never arrived "
                        f"(next expected (m={queue[0][0]}, n={queue[0][1]}))")
    if sent != len(beats):
        mismatches += 1
        messages.append(f"only {sent} of {len(beats)} input beats were taken")
    busy_cycles = dut.cycle_count.value.to_unsigned()
    return {"name": job["name"], "mismatches": mismatches, "busy_cycles": busy_cycles,
            "measured_cycles": busy_cycles - 1, "clock_cycles": cycle, "in_beats": sent, "out_beats": received,
            "messages": messages}


@cocotb.test()
async def gemm_jobs(dut) -> None:
    """Run every job of the bench input back to back (one reset at the beginning)."""
    data = bench_input()
    assert data and data.get("jobs"), "gemm_bench needs run_bench(data={'jobs': [...]})"
    params = parameters()
    cols, acc_bits = int(params.get("COLS", 4)), int(params.get("ACC_BITS", 32))
    Clock(dut.clk, 10, unit="ns").start()
    await _reset(dut)
    records: list[dict[str, Any]] = []
    for job in data["jobs"]:
        record = await _run_job(dut, job, cols, acc_bits)
        records.append(record)
        _write_results(data.get("results_path"), records)
        dut._log.info("%s: %d mismatches, busy %d cycles (measured %d), %d clock cycles", record["name"],
                      record["mismatches"], record["busy_cycles"], record["measured_cycles"], record["clock_cycles"])
        if record["mismatches"]:
            raise AssertionError(f"job {record['name']}: {record['mismatches']} mismatches; "
                                 + "; ".join(record["messages"]))
