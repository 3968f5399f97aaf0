"""cocotb bench for ``lowbit_gemm_top``: plays GEMM jobs through the valid/ready streams and scoreboards the results.

Input (``run_bench(data=...)``, read with :func:`rtl.benches.bench_input`)::

    {"results_path": "/path/results.json",       # where the bench writes one record per job
     "jobs": [{"name": str, "M": int, "N": int,  # GEMM output shape
               "cfg": {"cfg_order": ..., ...},   # rtl.encoding.top_config(plan)
               "w_beats": [int, ...],            # rtl.encoding.gemm_streams(...)[0]: the weight stream
               "beats": [int, ...],              # rtl.encoding.gemm_streams(...)[1]: the activation stream
               "outputs": [[m, n0], ...],        # rtl.encoding.output_order(plan): each output beat's rows
               "expected": [[int, ...], ...],    # [M][N] exact products (compared modulo 2^ACC_BITS)
               "blocks": int,                    # optional, reduction blocks: then "outputs" holds [m, n0, b]
                                                 # (rtl.encoding.block_output_order) and "expected" [b][M][N]
               "gap_prob": float,                # probability that in_valid stays low in a cycle
               "stall_prob": float,              # probability that out_ready is low in a cycle
               "seed": int, "max_cycles": int}, ...]}

Per job the bench pulses ``start`` with the job's configuration, then plays both input streams and the output
stream with random gaps and backpressure (:func:`rtl.benches.streams.play_streams`). Every output beat is
compared with the next entry of the scoreboard queue (``outputs``); padding columns past ``N`` must be 0,
``out_fold`` must be the beat's column fold (with blocks ``out_block`` its block and ``out_block_last`` whether
that is the last) and ``out_last`` must mark exactly the final beat. A mismatch names
the output index (m, n), the expected and actual values and the clock cycle (counted from the job's ``start``).
At the end the queue must be empty and every input beat consumed; the record ``{"name", "mismatches",
"busy_cycles", "measured_cycles", "clock_cycles", "in_beats", "out_beats"}`` is appended to ``results_path`` with
``measured_cycles = cycle_count - 1`` (the index of the last busy cycle, sim's ``compute_cycles`` convention).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge

from rtl.benches import bench_input, parameters
from rtl.benches.streams import play_streams, run_jobs
from rtl.encoding import decode_output_beat

#: Inputs held at 0 through reset; the configuration inputs are the jobs' ``cfg`` keys (the ws and os tops differ).
_STREAM_PORTS = ("start", "w_valid", "w_data", "in_valid", "in_data", "out_ready")


def _unsigned(signal) -> int:  # noqa: ANN001 - a cocotb handle
    """A signal's value as an unsigned int (one-bit signals are ``Logic``, wider ones ``LogicArray``)."""
    value = signal.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


def _wrap(value: int, bits: int) -> int:
    """``value`` modulo 2^bits as a signed two's-complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


async def _run_job(dut, job: dict[str, Any], cols: int, acc_bits: int) -> dict[str, Any]:
    """Play one job; return its record (mismatch messages under ``"messages"``)."""
    rng = random.Random(job.get("seed", 0))
    n_blocks = int(job.get("blocks", 1))
    expected: list[list[list[int]]] = job["expected"] if "blocks" in job else [job["expected"]]
    N = int(job["N"])
    queue = deque((int(o[0]), int(o[1]), int(o[2]) if len(o) > 2 else 0) for o in job["outputs"])
    out_fold = dut.out_fold

    def check(index: int, data: int, last: int, cycle: int) -> list[str]:
        m, n0, b = queue.popleft()
        wrong = []
        fold = out_fold.value.to_unsigned()
        if fold != n0 // cols:
            wrong.append(f"output beat {index} (m={m}): out_fold = {fold}, expected {n0 // cols} at cycle {cycle}")
        if "blocks" in job:
            block, block_last = _unsigned(dut.out_block), _unsigned(dut.out_block_last)
            if (block, block_last) != (b, int(b == n_blocks - 1)):
                wrong.append(
                    f"output beat {index} (m={m}): out_block = {block}, out_block_last = {block_last}, "
                    f"expected {b}, {int(b == n_blocks - 1)} at cycle {cycle}"
                )
        for c, actual in enumerate(decode_output_beat(data, cols, acc_bits)):
            n = n0 + c
            want = _wrap(expected[b][m][n], acc_bits) if n < N else 0
            if actual != want:
                pad = " (padding column)" if n >= N else ""
                wrong.append(
                    f"output index (m={m}, n={n}){pad}: expected {want}, got {actual} at cycle {cycle} "
                    f"(output beat {index})"
                )
        return wrong

    for name, value in job["cfg"].items():
        getattr(dut, name).value = int(value)
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    res = await play_streams(
        dut,
        {"w": job["w_beats"], "in": job["beats"]},
        queue,
        check,
        rng,
        gap_prob=float(job.get("gap_prob", 0.0)),
        stall_prob=float(job.get("stall_prob", 0.0)),
        max_cycles=int(job.get("max_cycles", 1_000_000)),
    )
    busy_cycles = dut.cycle_count.value.to_unsigned()
    return {
        "name": job["name"],
        "mismatches": res.mismatches,
        "busy_cycles": busy_cycles,
        "measured_cycles": busy_cycles - 1,
        "clock_cycles": res.cycles,
        "in_beats": res.sent,
        "out_beats": res.received,
        "messages": res.messages,
    }


def _describe(r: dict[str, Any]) -> str:
    return (
        f"{r['mismatches']} mismatches, busy {r['busy_cycles']} cycles (measured {r['measured_cycles']}), "
        f"{r['clock_cycles']} clock cycles"
    )


@cocotb.test()
async def gemm_jobs(dut) -> None:
    """Run every job of the bench input back to back (one reset at the beginning)."""
    params = parameters()
    cols, width = int(params.get("COLS", 4)), int(params.get("ACC_BITS", 32))
    data = bench_input() or {}
    cfg_ports = sorted({name for job in data.get("jobs", ()) for name in job["cfg"]})
    await run_jobs(
        dut, "gemm_bench", (*_STREAM_PORTS, *cfg_ports), lambda job: _run_job(dut, job, cols, width), _describe
    )
