"""cocotb bench for ``lowbit_layer_top``: plays exported layers (one or more passes each) through the top and
scoreboards the output codes against the golden model's.

Input (``run_bench(data=...)``, built by :func:`rtl.layer.layer_job`)::

    {"results_path": "/path/results.json",
     "jobs": [{"name": str, "M": int, "N": int,            # output codes [M, N] (GEMM layout)
               "zero_point": int, "out_min": int, "out_max": int, "pad_code": int,
               "passes": [{"consts": [int, ...],         # one constant-memory write per column fold
                           "cfg": {...},                 # rtl.driver.top_config(plan) of the pass's GEMM
                           "beats": [int, ...],          # rtl.driver.gemm_streams(...)[0]
                           "first": bool, "last": bool, "max_cycles": int}, ...],
               "expected": [[int, ...], ...],            # [M][N] golden output codes
               "gap_prob": float, "stall_prob": float, "seed": int}, ...]}

Per pass the bench writes the constants (one column fold per cycle), pulses ``start`` with the pass's
configuration, then once per clock cycle, on the falling edge, offers input beats after random gaps (held until
taken) and drops ``out_ready`` at random. Only the last pass emits codes; every output beat is compared with the
next (m, n0) of :func:`rtl.driver.output_order`: a mismatch names the layer, the output index (m, n), the expected
and actual codes and the clock cycle (counted from the job's first cycle). Padding columns must carry
``pad_code``, and ``out_last`` must mark exactly the final beat. At the end of each pass the busy-cycle counter is
read (``measured = cycle_count - 1``); at the end of the job the scoreboard queue must be empty. The record
``{"name", "mismatches", "pass_measured", "clock_cycles", "outputs", "messages"}`` is appended to
``results_path``.
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
_CFG_PORTS = ("cfg_m", "cfg_row_folds", "cfg_col_folds", "cfg_w_mode", "cfg_a_mode", "cfg_w_signed", "cfg_a_signed")


def _write_results(path: str | None, records: list[dict[str, Any]]) -> None:
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(path)


async def _reset(dut) -> None:
    dut.rst_n.value = 0
    for name in ("start", "in_valid", "in_data", "out_ready", "cfg_we", "cfg_addr", "cfg_data", "cfg_first",
                 "cfg_last", "cfg_zero_point", "cfg_out_min", "cfg_out_max", *_CFG_PORTS):
        getattr(dut, name).value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await FallingEdge(dut.clk)


async def _run_job(dut, job: dict[str, Any], cols: int, out_bits: int) -> dict[str, Any]:
    """Play one layer (all its passes); return its record."""
    rng = random.Random(job.get("seed", 0))
    gap, stall = float(job.get("gap_prob", 0.0)), float(job.get("stall_prob", 0.0))
    M, N = int(job["M"]), int(job["N"])
    expected: list[list[int]] = job["expected"]
    pad_code = int(job["pad_code"])
    signed_mask = (1 << (out_bits + 1)) - 1
    outputs = [[0] * N for _ in range(M)]
    messages: list[str] = []
    mismatches = 0
    pass_measured: list[int] = []
    clk_fall = FallingEdge(dut.clk)
    in_valid_s, in_ready_s, in_data_s = dut.in_valid, dut.in_ready, dut.in_data
    out_valid_s, out_ready_s, out_data_s, out_last_s = dut.out_valid, dut.out_ready, dut.out_data, dut.out_last
    busy_s = dut.busy
    cycle = 0
    where = job["name"]

    for p, ps in enumerate(job["passes"]):
        # constants: one column fold per cycle
        for cf, word in enumerate(ps["consts"]):
            dut.cfg_we.value = 1
            dut.cfg_addr.value = cf
            dut.cfg_data.value = int(word)
            await clk_fall
            cycle += 1
        dut.cfg_we.value = 0
        for name, value in ps["cfg"].items():
            getattr(dut, name).value = int(value)
        dut.cfg_first.value = int(ps["first"])
        dut.cfg_last.value = int(ps["last"])
        dut.cfg_zero_point.value = int(job["zero_point"]) & signed_mask
        dut.cfg_out_min.value = int(job["out_min"]) & signed_mask
        dut.cfg_out_max.value = int(job["out_max"]) & signed_mask
        dut.start.value = 1
        await clk_fall
        cycle += 1
        dut.start.value = 0

        beats: list[int] = ps["beats"]
        emits = bool(ps["last"])
        queue = deque(output_order(M, N, cols)) if emits else deque()
        n_out = len(queue)
        max_cycles = int(ps.get("max_cycles", 1_000_000))
        sent = received = 0
        offering = False
        pass_cycles = 0
        while True:
            await clk_fall
            cycle += 1
            pass_cycles += 1
            if pass_cycles > max_cycles:
                messages.append(f"{where} pass {p}: timeout after {max_cycles} cycles: {sent}/{len(beats)} input "
                                f"beats taken, {received}/{n_out} output beats received, busy={int(busy_s.value)}")
                mismatches += 1
                break
            in_ready = int(in_ready_s.value)
            out_valid = int(out_valid_s.value)
            if not offering and sent < len(beats) and rng.random() >= gap:
                offering = True
                in_data_s.value = beats[sent]
            in_valid_s.value = int(offering)
            if offering and in_ready:
                sent += 1
                offering = False
            ready = int(rng.random() >= stall)
            out_ready_s.value = ready
            if out_valid and ready:
                index = received
                received += 1
                if not emits or not queue:
                    mismatches += 1
                    messages.append(f"{where} pass {p}: unexpected output beat {index} at cycle {cycle}")
                    continue
                got = decode_output_beat(out_data_s.value.to_unsigned(), cols, out_bits)
                last = int(out_last_s.value)
                m, n0 = queue.popleft()
                for c, actual in enumerate(got):
                    n = n0 + c
                    want = expected[m][n] if n < N else pad_code
                    if n < N:
                        outputs[m][n] = actual
                    if actual != want:
                        mismatches += 1
                        if len(messages) < MAX_MESSAGES:
                            pad = " (padding column)" if n >= N else ""
                            messages.append(f"{where}: output index (m={m}, n={n}){pad}: expected {want}, "
                                            f"got {actual} at cycle {cycle} (output beat {index})")
                if last != (not queue):
                    mismatches += 1
                    messages.append(f"{where}: out_last={last} on output beat {index} of {n_out} at cycle {cycle}")
            elif sent == len(beats) and not queue and not int(busy_s.value) and not out_valid:
                break
        in_valid_s.value = 0
        out_ready_s.value = 0
        if queue:
            mismatches += 1
            messages.append(f"{where}: scoreboard queue not empty: {len(queue)} of {n_out} output beats never "
                            f"arrived (next expected (m={queue[0][0]}, n={queue[0][1]}))")
        if sent != len(beats):
            mismatches += 1
            messages.append(f"{where} pass {p}: only {sent} of {len(beats)} input beats were taken")
        pass_measured.append(dut.cycle_count.value.to_unsigned() - 1)
    return {"name": where, "mismatches": mismatches, "pass_measured": pass_measured, "clock_cycles": cycle,
            "outputs": outputs, "messages": messages}


@cocotb.test()
async def layer_jobs(dut) -> None:
    """Run every layer job of the bench input back to back (one reset at the beginning)."""
    data = bench_input()
    assert data and data.get("jobs"), "layer_bench needs run_bench(data={'jobs': [...]})"
    params = parameters()
    cols, out_bits = int(params.get("COLS", 4)), int(params.get("OUT_BITS", 32))
    Clock(dut.clk, 10, unit="ns").start()
    await _reset(dut)
    records: list[dict[str, Any]] = []
    for job in data["jobs"]:
        record = await _run_job(dut, job, cols, out_bits)
        records.append(record)
        _write_results(data.get("results_path"), records)
        dut._log.info("%s: %d mismatches, busy cycles per pass %s, %d clock cycles", record["name"],
                      record["mismatches"], record["pass_measured"], record["clock_cycles"])
        if record["mismatches"]:
            raise AssertionError(f"{record['name']}: {record['mismatches']} mismatches; "
                                 + "; ".join(record["messages"]))
