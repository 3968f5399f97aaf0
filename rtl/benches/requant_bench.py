"""cocotb bench for ``lowbit_requant``: bit-exact against :func:`quant.requant.requantize`.

Each output is 1..4 beats (n_H input blocks): ``A = (B << T) + sum_h M_h * P_h`` then
``clamp(rounding_shift(A, S) + z, lo, hi)``. The expected codes come from ``quant.requant.requantize`` (numpy int64,
the golden model's own function); a cycle-accurate register model also checks ``acc_out`` after every beat and the
exact cycle of every ``out_valid``. A scoreboard of expected codes must be empty at the end.

Tests (select with ``run_bench(testcase=...)``):

- ``requant_corners``: rounding ties (A = k * 2^S +- 2^(S-1), +-1) for every S in 1..62 and negative values,
  saturation edges (exactly lo-1, lo, hi, hi+1 after the shift), the extreme multipliers 0, 1, 2^30, 2^31-1 and
  partial sums +-(2^31-1), -2^31, bias shifts 0..S;
- ``requant_random``: ``$LOWBIT_REQUANT_RANDOM`` (default 20000) random outputs with 1..4 beats, random shifts,
  zero points and clamp ranges (plain saturation and fused-ReLU clamps), random gaps, stalls (``en = 0``) and
  external-accumulator beats (``in_acc_ext = 1`` with ``acc_in`` from the model's running A).

Output range: ``$LOWBIT_REQUANT_SIGNED`` (0/1, default 0) selects signed or unsigned codes of ``OUT_BITS``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from quant.integer import requantize
from rtl.benches import env_int, parameters


def _cfg() -> dict[str, int]:
    p = {"PSUM_BITS": 32, "MULT_BITS": 31, "ACC_BITS": 64, "BIAS_BITS": 32, "SHIFT_BITS": 6, "OUT_BITS": 8}
    p.update(parameters())
    return p


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class Output:
    """One output: beats (M_h, P_h), bias B, bias shift T, shift S, zero point, clamp bounds."""

    beats: list[tuple[int, int]]
    bias: int
    bias_shift: int
    shift: int
    zero_point: int
    lo: int
    hi: int
    ext: list[bool]  # per beat after the first: take acc_in from the (emulated) external buffer

    def acc(self) -> int:
        return (self.bias << self.bias_shift) + sum(m * p for m, p in self.beats)

    def golden(self) -> int:
        """Expected code from quant.requant.requantize (the golden model's function)."""
        y = requantize(np.array([self.acc()], dtype=np.int64), self.shift, self.zero_point, self.lo, self.hi)
        return int(y[0])


def _code_range(cfg: dict[str, int], signed: int) -> tuple[int, int]:
    ob = cfg["OUT_BITS"]
    return (-(1 << (ob - 1)), (1 << (ob - 1)) - 1) if signed else (0, (1 << ob) - 1)


def _fits(out: Output, cfg: dict[str, int]) -> bool:
    """The export's accumulator bound: |A| + 2^(S-1) <= 2^(ACC-1) - 1, |P| in int PSUM_BITS, M, B in range."""
    lim = (1 << (cfg["ACC_BITS"] - 1)) - 1
    bb, pb, mb = cfg["BIAS_BITS"], cfg["PSUM_BITS"], cfg["MULT_BITS"]
    return (
        abs(out.acc()) + (1 << (out.shift - 1)) <= lim
        and 1 <= out.shift <= 62
        and 0 <= out.bias_shift <= out.shift
        and -(1 << (bb - 1)) <= out.bias < (1 << (bb - 1))
        and all(0 <= m < (1 << mb) and -(1 << (pb - 1)) <= p < (1 << (pb - 1)) for m, p in out.beats)
    )


async def _run(dut, outputs: list[Output], rng: random.Random, gaps: bool, signed: int) -> int:
    cfg = _cfg()
    ab, ob = cfg["ACC_BITS"], cfg["OUT_BITS"]
    amask = (1 << ab) - 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in (
        "in_valid",
        "in_first",
        "in_last",
        "in_acc_ext",
        "psum",
        "mult",
        "bias",
        "bias_shift",
        "acc_in",
        "shift",
        "zero_point",
        "out_min",
        "out_max",
    ):
        getattr(dut, name).value = 0
    dut.rst_n.value = 0
    dut.en.value = 1
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst_n.value = 1

    cycles = _schedule(outputs, rng, gaps)

    expected: deque[tuple[int, int]] = deque((i, o.golden()) for i, o in enumerate(outputs))
    # register model
    acc_q = 0
    acc_valid = acc_last = 0
    out_valid = 0
    out_code = 0
    s_q = zp_q = lo_q = hi_q = 0
    last_out_index = -1
    running = 0  # the emulated external accumulator buffer (A after the previous beat of the current output)
    for cycle, (en, beat) in enumerate(cycles):
        dut.en.value = en
        _drive(dut, cfg, outputs, beat, running, rng)
        # --- model of the edge ---
        if en:
            new_out_valid = acc_valid & acc_last
            if new_out_valid:
                a_s = _signed(acc_q, ab)
                y = (a_s >> s_q) + ((a_s >> (s_q - 1)) & 1 if s_q else 0) + zp_q
                out_code = min(max(y, lo_q), hi_q)
            out_valid = new_out_valid
            acc_valid = int(beat is not None)
            acc_last = int(beat is not None and beat[1] == len(outputs[beat[0]].beats) - 1)
            if beat is not None:
                i, h = beat
                out = outputs[i]
                m, p = out.beats[h]
                base = (out.bias << out.bias_shift) if h == 0 else running
                acc_q = (base + m * p) & amask
                running = _signed(acc_q, ab)
                if h == len(out.beats) - 1:
                    s_q, zp_q, lo_q, hi_q = out.shift, out.zero_point, out.lo, out.hi
        await FallingEdge(dut.clk)
        # --- compare ---
        got_av = int(dut.acc_valid.value)
        assert got_av == acc_valid, f"acc_valid at cycle {cycle}: expected {acc_valid}, got {got_av}"
        if acc_valid:
            got_acc = dut.acc_out.value.to_unsigned()
            if got_acc != acc_q:
                raise AssertionError(
                    f"acc_out (beat {beat}): expected {_signed(acc_q, ab)}, got {_signed(got_acc, ab)} at cycle {cycle}"
                )
        got_ov = int(dut.out_valid.value)
        assert got_ov == out_valid, f"out_valid at cycle {cycle}: expected {out_valid}, got {got_ov}"
        if out_valid and en:
            idx, want = expected.popleft()
            last_out_index = idx
            raw = dut.out_code.value.to_unsigned()
            got = _signed(raw, ob) if signed else raw
            o = outputs[idx]
            assert want == out_code, f"bench model disagrees with quant.requant for output {idx}: {out_code} {want}"
            if got != want:
                raise AssertionError(
                    f"output index {idx} (A={o.acc()} S={o.shift} z={o.zero_point} clamp=[{o.lo},{o.hi}] "
                    f"n_H={len(o.beats)}): expected {want}, got {got} at cycle {cycle}"
                )
    assert not expected, f"scoreboard not empty: {len(expected)} outputs never appeared (last seen {last_out_index})"
    dut._log.info("checked %d outputs over %d cycles", len(outputs), len(cycles))
    return len(outputs)


def _schedule(outputs: list[Output], rng: random.Random, gaps: bool) -> list[tuple[int, tuple[int, int] | None]]:
    """Per-cycle input sequence: (en, beat or None); beat = (out index, h). With ``gaps``, idle cycles (some with
    ``en = 0``) and stalled cycles (the beat presented with ``en = 0``, not sampled) fall between the beats."""
    cycles: list[tuple[int, tuple[int, int] | None]] = []
    for i, out in enumerate(outputs):
        for h in range(len(out.beats)):
            while gaps and rng.random() < 0.15:
                cycles.append((int(rng.random() < 0.5), None))
            if gaps and rng.random() < 0.1:
                cycles.append((0, (i, h)))  # stalled cycle: the beat is presented but not sampled
            cycles.append((1, (i, h)))
    cycles += [(1, None)] * 3
    return cycles


def _drive(
    dut, cfg: dict[str, int], outputs: list[Output], beat: tuple[int, int] | None, running: int, rng: random.Random
) -> None:
    """Put one cycle's inputs on the ports: beat ``h`` of output ``i`` (junk on the fields only a first or a last
    beat uses, ``acc_in`` = ``running`` on an external-accumulator beat), or junk with ``in_valid = 0``."""
    ab, ob = cfg["ACC_BITS"], cfg["OUT_BITS"]
    amask = (1 << ab) - 1
    if beat is None:
        dut.in_valid.value = 0
        dut.psum.value = rng.getrandbits(cfg["PSUM_BITS"])  # junk on idle cycles must be ignored
        dut.in_first.value = rng.getrandbits(1)
        dut.in_last.value = rng.getrandbits(1)
    else:
        i, h = beat
        out = outputs[i]
        m, p = out.beats[h]
        first, last = h == 0, h == len(out.beats) - 1
        ext = (not first) and out.ext[h - 1]
        dut.in_valid.value = 1
        dut.in_first.value = int(first)
        dut.in_last.value = int(last)
        dut.in_acc_ext.value = int(ext)
        dut.psum.value = p & ((1 << cfg["PSUM_BITS"]) - 1)
        dut.mult.value = m
        dut.bias.value = (out.bias if first else rng.getrandbits(cfg["BIAS_BITS"])) & ((1 << cfg["BIAS_BITS"]) - 1)
        dut.bias_shift.value = out.bias_shift if first else rng.randrange(0, 63)
        dut.acc_in.value = (running if ext else rng.getrandbits(ab)) & amask
        dut.shift.value = out.shift if last else rng.randrange(1, 63)
        obm = (1 << (ob + 1)) - 1
        dut.zero_point.value = (out.zero_point if last else rng.getrandbits(ob)) & obm
        dut.out_min.value = (out.lo if last else 0) & obm
        dut.out_max.value = (out.hi if last else 0) & obm


def _random_output(rng: random.Random, cfg: dict[str, int], signed: int) -> Output:
    qmin, qmax = _code_range(cfg, signed)
    pb, mb = cfg["PSUM_BITS"], cfg["MULT_BITS"]
    n_h = rng.choice([1, 1, 2, 3, 4])
    while True:
        shift = rng.choice([rng.randrange(1, 63), rng.randrange(20, 40), rng.randrange(28, 34)])
        beats = []
        budget = (1 << (pb - 1)) - 1  # sum_h |P_h| fits int32 (the export's row bound)
        for _ in range(n_h):
            m = rng.choice(
                [rng.randrange(0, 1 << mb), rng.randrange(1 << (mb - 1), 1 << mb), rng.randrange(0, 1 << 12)]
            )
            mag = rng.choice([budget, 1 << 20, 1 << 12, 300])
            p = rng.randrange(-mag, mag + 1) // n_h
            beats.append((m, p))
        # choose a bias that keeps the typical result near the clamp range: B * 2^T ~ random in +-2^(S+8)
        bias_shift = rng.randrange(0, shift + 1)
        bias = rng.randrange(-(1 << 31), 1 << 31) >> rng.randrange(0, 31)
        zp = rng.randrange(qmin, qmax + 1)
        if rng.random() < 0.3:
            lo, hi = max(qmin, zp), qmax  # fused ReLU
        else:
            lo, hi = qmin, qmax
        ext = [rng.random() < 0.5 for _ in range(n_h - 1)]
        out = Output(beats, bias, bias_shift, shift, zp, lo, hi, ext)
        # steer about half of the outputs into the unsaturated range by picking the shift from A's magnitude
        if rng.random() < 0.5 and out.acc() != 0:
            s = max(1, min(62, abs(out.acc()).bit_length() - rng.randrange(0, max(1, cfg["OUT_BITS"]))))
            out.shift = s
            out.bias_shift = min(out.bias_shift, s)
        if _fits(out, cfg):
            return out


@cocotb.test()
async def requant_random(dut) -> None:
    cfg = _cfg()
    signed = env_int("LOWBIT_REQUANT_SIGNED", 0)
    count = env_int("LOWBIT_REQUANT_RANDOM", 20_000)
    rng = random.Random(11 + signed)
    outputs = [_random_output(rng, cfg, signed) for _ in range(count)]
    n = await _run(dut, outputs, rng, gaps=True, signed=signed)
    assert n == count


@cocotb.test()
async def requant_corners(dut) -> None:
    cfg = _cfg()
    signed = env_int("LOWBIT_REQUANT_SIGNED", 0)
    rng = random.Random(21 + signed)
    outputs = corner_outputs(cfg, signed, rng)
    n = await _run(dut, outputs, rng, gaps=False, signed=signed)
    assert n == len(outputs) and n > 3000


def corner_outputs(cfg: dict[str, int], signed: int, rng: random.Random) -> list[Output]:
    """Rounding ties for every shift, saturation edges, extreme multipliers/partial sums/bias shifts."""
    qmin, qmax = _code_range(cfg, signed)
    zps = sorted({qmin, 0, (qmin + qmax) // 2, qmax})
    outputs = _rounding_ties(cfg, qmin, qmax, zps, rng)
    outputs += _saturation_edges(cfg, qmin, qmax, zps)
    outputs += _extreme_operands(cfg, qmin, qmax, zps, rng)
    return [out for out in outputs if _fits(out, cfg)]


def _exact_output(acc_target: int, shift: int, zp: int, lo: int, hi: int, cfg: dict[str, int]) -> Output:
    """An output whose accumulator A is exactly ``acc_target``."""
    pmax, pmin = (1 << (cfg["PSUM_BITS"] - 1)) - 1, -(1 << (cfg["PSUM_BITS"] - 1))
    mmax = (1 << cfg["MULT_BITS"]) - 1
    # realise A exactly with one beat M = 1, P = part, plus the bias (T = 0) for the rest
    part = max(pmin, min(pmax, acc_target))
    rest = acc_target - part
    if not (-(1 << 31) <= rest < (1 << 31)):
        # large A: M * P with a big multiplier, bias absorbs the remainder
        m = mmax
        p = max(pmin, min(pmax, acc_target // m))
        rest = acc_target - m * p
        t = 0
        while not (-(1 << 31) <= rest >> t < (1 << 31)) and t < shift:
            t += 1
        b = rest >> t
        return Output([(m, p)], b, t, shift, zp, lo, hi, [])
    return Output([(1, part)], rest, 0, shift, zp, lo, hi, [])


def _rounding_ties(cfg: dict[str, int], qmin: int, qmax: int, zps: list[int], rng: random.Random) -> list[Output]:
    """A = k * 2^S + d around the rounding ties (d = +-2^(S-1), +-1) and around 0, for every shift S in 1..62."""
    outputs: list[Output] = []
    for s in range(1, 63):
        half = 1 << (s - 1)
        for k in (-3, -2, -1, 0, 1, 2, 5):
            for d in (-half - 1, -half, -half + 1, -1, 0, 1, half - 1, half, half + 1):
                outputs.append(_exact_output(k * (1 << s) + d, s, zps[rng.randrange(len(zps))], qmin, qmax, cfg))
    return outputs


def _saturation_edges(cfg: dict[str, int], qmin: int, qmax: int, zps: list[int]) -> list[Output]:
    """Saturation edges: after the shift the value is lo-1, lo, lo+1, hi-1, hi, hi+1 (zero point 0 and others)."""
    outputs: list[Output] = []
    for s in (1, 7, 16, 31, 45, 62):
        for zp in zps:
            for target in (qmin - 1, qmin, qmin + 1, qmax - 1, qmax, qmax + 1, qmin - 1000, qmax + 1000):
                for d in (-(1 << (s - 1)) - 1, -(1 << (s - 1)), 0, (1 << (s - 1)) - 1):
                    outputs.append(_exact_output(((target - zp) << s) + d, s, zp, qmin, qmax, cfg))
                    # fused ReLU clamp
                    outputs.append(_exact_output(((target - zp) << s) + d, s, zp, max(qmin, zp), qmax, cfg))
    return outputs


def _extreme_operands(cfg: dict[str, int], qmin: int, qmax: int, zps: list[int], rng: random.Random) -> list[Output]:
    """Extreme multipliers, partial sums and bias shifts, and a multi-block output per multiplier."""
    pmax, pmin = (1 << (cfg["PSUM_BITS"] - 1)) - 1, -(1 << (cfg["PSUM_BITS"] - 1))
    mmax = (1 << cfg["MULT_BITS"]) - 1
    zp0 = 0
    outputs: list[Output] = []
    for m in (0, 1, 1 << 30, mmax):
        for p in (pmin, pmin + 1, -1, 0, 1, pmax):
            for s in (1, 30, 31, 62):
                for t in (0, s // 2, s):
                    for b in (-(1 << 31), -1, 0, 1, (1 << 31) - 1):
                        outputs.append(Output([(m, p)], b, t, s, zps[rng.randrange(len(zps))], qmin, qmax, []))
        outputs.append(Output([(m, pmin // 2), (m, pmax // 2 + 1), (m, -1)], 0, 0, 31, zp0, qmin, qmax, [True, False]))
    return outputs
