"""cocotb bench for ``lowbit_layer_top``: plays exported layers through the top and scoreboards the output codes
against the golden model's.

Input (``run_bench(data=...)``, built by :func:`rtl.layer.layer_job`)::

    {"results_path": "/path/results.json",
     "jobs": [{"name": str, "M": int, "N": int,            # output codes [M, N] (GEMM layout)
               "zero_point": int, "out_min": int, "out_max": int, "pad_code": int,
               "consts": [[addr, int], ...],             # constant-memory writes: a column fold of one block each
               "cfg": {...},                             # rtl.encoding.top_config(plan) of the layer's GEMM
               "w_beats": [int, ...],                    # rtl.encoding.gemm_streams(...)[0]: weights
               "beats": [int, ...],                      # rtl.encoding.gemm_streams(...)[1]: activations
               "outputs": [[m, n0], ...],                # rtl.encoding.output_order(plan): the last block's beats
               "max_cycles": int,
               "expected": [[int, ...], ...],            # [M][N] golden output codes
               "gap_prob": float, "stall_prob": float, "seed": int}, ...]}

Per job the bench writes the constants (one column fold of one block per cycle), pulses ``start`` with the
configuration, then once per clock cycle, on the falling edge, offers the beats of both input streams after random
gaps (held until taken) and drops ``out_ready`` at random. The top emits codes for its last block's beats only;
every output beat is compared with the next (m, n0) of ``outputs``: a mismatch names the layer, the output index
(m, n), the expected and actual codes and the clock cycle (counted from the job's first cycle). Padding columns
must carry ``pad_code``, and ``out_last`` must mark exactly the final beat. At the end the busy-cycle counter is
read (``measured = cycle_count - 1``) and the scoreboard queue must be empty. The record ``{"name", "mismatches",
"measured", "clock_cycles", "outputs", "messages"}`` is appended to ``results_path``.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge

from rtl.benches import parameters
from rtl.benches.streams import MAX_MESSAGES, play_streams, run_jobs
from rtl.encoding import decode_output_beat

_CFG_PORTS = (
    "cfg_order",
    "cfg_row_folds",
    "cfg_col_folds",
    "cfg_tile_h",
    "cfg_tiles_h",
    "cfg_tile_h_last",
    "cfg_tile_w",
    "cfg_tiles_w",
    "cfg_tile_w_last",
    "cfg_block_last",
    "cfg_k_slots",
    "cfg_blocks_m1",
    "cfg_m_folds",
    "cfg_m_last",
    "cfg_overlap",
    "cfg_w_mode",
    "cfg_a_mode",
    "cfg_w_signed",
    "cfg_a_signed",
    "cfg_w_bits",
    "cfg_a_bits",
)
_PORTS = (
    "start",
    "w_valid",
    "w_data",
    "in_valid",
    "in_data",
    "out_ready",
    "cfg_we",
    "cfg_addr",
    "cfg_data",
    "cfg_zero_point",
    "cfg_out_min",
    "cfg_out_max",
    *_CFG_PORTS,
)


async def _run_job(dut, job: dict[str, Any], cols: int, out_bits: int) -> dict[str, Any]:
    """Play one layer; return its record."""
    rng = random.Random(job.get("seed", 0))
    M, N = int(job["M"]), int(job["N"])
    expected: list[list[int]] = job["expected"]
    pad_code = int(job["pad_code"])
    signed_mask = (1 << (out_bits + 1)) - 1
    outputs = [[0] * N for _ in range(M)]
    clk_fall = FallingEdge(dut.clk)
    cycle = 0
    where = job["name"]

    # constants: one column fold of one block per cycle
    for addr, word in job["consts"]:
        dut.cfg_we.value = 1
        dut.cfg_addr.value = int(addr)
        dut.cfg_data.value = int(word)
        await clk_fall
        cycle += 1
    dut.cfg_we.value = 0
    for name, value in job["cfg"].items():
        getattr(dut, name).value = int(value)
    dut.cfg_zero_point.value = int(job["zero_point"]) & signed_mask
    dut.cfg_out_min.value = int(job["out_min"]) & signed_mask
    dut.cfg_out_max.value = int(job["out_max"]) & signed_mask
    dut.start.value = 1
    await clk_fall
    cycle += 1
    dut.start.value = 0

    queue = deque((int(m), int(n0)) for m, n0 in job["outputs"])

    def check(index: int, data: int, last: int, at: int) -> list[str]:
        m, n0 = queue.popleft()
        wrong = []
        for c, actual in enumerate(decode_output_beat(data, cols, out_bits)):
            n = n0 + c
            want = expected[m][n] if n < N else pad_code
            if n < N:
                outputs[m][n] = actual
            if actual != want:
                pad = " (padding column)" if n >= N else ""
                wrong.append(
                    f"output index (m={m}, n={n}){pad}: expected {want}, got {actual} at cycle {at} "
                    f"(output beat {index})"
                )
        return wrong

    res = await play_streams(
        dut,
        {"w": job["w_beats"], "in": job["beats"]},
        queue,
        check,
        rng,
        gap_prob=float(job.get("gap_prob", 0.0)),
        stall_prob=float(job.get("stall_prob", 0.0)),
        max_cycles=int(job.get("max_cycles", 1_000_000)),
        label=where,
        cycle0=cycle,
    )
    return {
        "name": where,
        "mismatches": res.mismatches,
        "measured": dut.cycle_count.value.to_unsigned() - 1,
        "clock_cycles": cycle + res.cycles,
        "outputs": outputs,
        "messages": res.messages[:MAX_MESSAGES],
    }


def _describe(r: dict[str, Any]) -> str:
    return f"{r['mismatches']} mismatches, busy cycles {r['measured'] + 1}, {r['clock_cycles']} clock cycles"


@cocotb.test()
async def layer_jobs(dut) -> None:
    """Run every job of the bench input back to back (one reset at the beginning)."""
    params = parameters()
    cols, width = int(params.get("COLS", 4)), int(params.get("OUT_BITS", 32))
    await run_jobs(dut, "layer_bench", _PORTS, lambda job: _run_job(dut, job, cols, width), _describe)
