"""cocotb bench for ``lowbit_layer_top``: plays exported layers (one or more passes each) through the top and
scoreboards the output codes against the golden model's.

Input (``run_bench(data=...)``, built by :func:`rtl.layer.layer_job`)::

    {"results_path": "/path/results.json",
     "jobs": [{"name": str, "M": int, "N": int,            # output codes [M, N] (GEMM layout)
               "zero_point": int, "out_min": int, "out_max": int, "pad_code": int,
               "passes": [{"consts": [int, ...],         # one constant-memory write per column fold
                           "cfg": {...},                 # rtl.driver.top_config(plan) of the pass's GEMM
                           "w_beats": [int, ...],        # rtl.driver.gemm_streams(...)[0]: weights
                           "beats": [int, ...],          # rtl.driver.gemm_streams(...)[1]: activations
                           "outputs": [[m, n0], ...],    # rtl.driver.output_order(plan)
                           "first": bool, "last": bool, "max_cycles": int}, ...],
               "expected": [[int, ...], ...],            # [M][N] golden output codes
               "gap_prob": float, "stall_prob": float, "seed": int}, ...]}

Per pass the bench writes the constants (one column fold per cycle), pulses ``start`` with the pass's
configuration, then once per clock cycle, on the falling edge, offers the beats of both input streams after random
gaps (held until taken) and drops ``out_ready`` at random. Only the last pass emits codes; every output beat is
compared with the next (m, n0) of the pass's ``outputs``: a mismatch names the layer, the output index (m, n), the
expected and actual codes and the clock cycle (counted from the job's first cycle). Padding columns must carry
``pad_code``, and ``out_last`` must mark exactly the final beat. At the end of each pass the busy-cycle counter is
read (``measured = cycle_count - 1``); at the end of the job the scoreboard queue must be empty. The record
``{"name", "mismatches", "pass_measured", "clock_cycles", "outputs", "messages"}`` is appended to
``results_path``.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge

from rtl.benches import parameters
from rtl.benches.streams import MAX_MESSAGES, play_streams, run_jobs
from rtl.driver import decode_output_beat

_CFG_PORTS = ("cfg_order", "cfg_row_folds", "cfg_col_folds", "cfg_tile_h", "cfg_tiles_h", "cfg_tile_h_last",
              "cfg_tile_w", "cfg_tiles_w", "cfg_tile_w_last", "cfg_k_slots", "cfg_m_folds", "cfg_m_last",
              "cfg_overlap", "cfg_w_mode", "cfg_a_mode", "cfg_w_signed", "cfg_a_signed", "cfg_w_bits", "cfg_a_bits")
_PORTS = ("start", "w_valid", "w_data", "in_valid", "in_data", "out_ready", "cfg_we", "cfg_addr", "cfg_data",
          "cfg_first", "cfg_last", "cfg_zero_point", "cfg_out_min", "cfg_out_max", *_CFG_PORTS)


async def _run_job(dut, job: dict[str, Any], cols: int, out_bits: int) -> dict[str, Any]:
    """Play one layer (all its passes); return its record."""
    rng = random.Random(job.get("seed", 0))
    M, N = int(job["M"]), int(job["N"])
    expected: list[list[int]] = job["expected"]
    pad_code = int(job["pad_code"])
    signed_mask = (1 << (out_bits + 1)) - 1
    outputs = [[0] * N for _ in range(M)]
    messages: list[str] = []
    mismatches = 0
    pass_measured: list[int] = []
    clk_fall = FallingEdge(dut.clk)
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

        # only the last pass emits codes
        queue = deque((int(m), int(n0)) for m, n0 in ps["outputs"]) if ps["last"] else deque()

        def check(index: int, data: int, last: int, at: int, queue: deque = queue) -> list[str]:
            m, n0 = queue.popleft()
            wrong = []
            for c, actual in enumerate(decode_output_beat(data, cols, out_bits)):
                n = n0 + c
                want = expected[m][n] if n < N else pad_code
                if n < N:
                    outputs[m][n] = actual
                if actual != want:
                    pad = " (padding column)" if n >= N else ""
                    wrong.append(f"output index (m={m}, n={n}){pad}: expected {want}, got {actual} at cycle {at} "
                                 f"(output beat {index})")
            return wrong

        res = await play_streams(dut, {"w": ps["w_beats"], "in": ps["beats"]}, queue, check, rng,
                                 gap_prob=float(job.get("gap_prob", 0.0)),
                                 stall_prob=float(job.get("stall_prob", 0.0)),
                                 max_cycles=int(ps.get("max_cycles", 1_000_000)), label=f"{where} pass {p}",
                                 cycle0=cycle)
        cycle += res.cycles
        mismatches += res.mismatches
        messages += res.messages[:max(0, MAX_MESSAGES - len(messages))]
        pass_measured.append(dut.cycle_count.value.to_unsigned() - 1)
    return {"name": where, "mismatches": mismatches, "pass_measured": pass_measured, "clock_cycles": cycle,
            "outputs": outputs, "messages": messages}


def _describe(r: dict[str, Any]) -> str:
    return f"{r['mismatches']} mismatches, busy cycles per pass {r['pass_measured']}, {r['clock_cycles']} clock cycles"


@cocotb.test()
async def layer_jobs(dut) -> None:
    """Run every job of the bench input back to back (one reset at the beginning)."""
    params = parameters()
    cols, width = int(params.get("COLS", 4)), int(params.get("OUT_BITS", 32))
    await run_jobs(dut, "layer_bench", _PORTS, lambda job: _run_job(dut, job, cols, width), _describe)
