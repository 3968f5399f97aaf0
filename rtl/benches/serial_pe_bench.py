"""cocotb bench for ``lowbit_serial_pe`` (``SERIAL`` 0 Stripes, 1 Loom, 2 Stripes serializing the stationary
register), checked after every edge.

The model below computes each beat's term from the definition (the serialized bits, the whole operands, and their
two's-complement place values), not from the Verilog's shifts, and checks ``psum_out``, ``a_out``, the beat
outputs and ``w_out`` after every edge. Tests (select with ``run_bench(testcase=...)``):

- ``serial_exhaustive``: every runtime width pair in ``$LOWBIT_SERIAL_WIDTHS`` (default ``2,4``: w, a in {2, 4}), all
  four signedness pairs, every (weight, activation) pair of those widths, each element with a random ``psum_in``;
  one element's beats back to back, the weight reloaded between elements;
- ``serial_random``: ``$LOWBIT_PE_RANDOM`` (default 20000) cycles of elements with random widths 1..MAX_BITS and
  signedness, random gaps (no beat), stalls (``en = 0``) with junk on the idle inputs, weight reloads between
  elements and one synchronous reset.

Parameters come from ``$LOWBIT_RTL_PARAMETERS`` (module defaults when missing).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from rtl.benches import env_int, env_str, parameters

_SKIP = os.environ.get("COCOTB_TOPLEVEL", "") != "lowbit_serial_pe"


def _cfg() -> dict[str, int]:
    p = {"MAX_BITS": 8, "SERIAL": 0, "ACC_BITS": 32}
    p.update(parameters())
    return p


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _operand_range(bits: int, signed: int) -> range:
    return range(-(1 << (bits - 1)), 1 << (bits - 1)) if signed else range(0, 1 << bits)


def _place(j: int, bits: int, signed: int) -> int:
    """Value of bit ``j`` of a ``bits``-bit operand: the top bit of a signed one weighs -2^(bits-1)."""
    return -(1 << j) if signed and j == bits - 1 else 1 << j


def beats(w_bits: int, a_bits: int, serial: int) -> list[tuple[int, int]]:
    """The beats (ja, jw) of one element, in the order the host sends them (the streamed operand's bit fastest):
    ``SERIAL`` 0 the a_in bits, 1 both, 2 the w_reg bits."""
    return [(ja, jw) for jw in range(w_bits if serial else 1) for ja in range(1 if serial == 2 else a_bits)]


@dataclass
class Inputs:
    """One cycle's inputs (operands as integers of their width, any sign)."""

    rst_n: int = 1
    en: int = 1
    load_w: int = 0
    w_in: int = 0
    a_in: int = 0
    valid: int = 0
    ja: int = 0
    jw: int = 0
    psum_in: int = 0
    w_bits: int = 1
    a_bits: int = 1
    w_signed: int = 1
    a_signed: int = 1


class SerialModel:
    """Register-level model of ``lowbit_serial_pe``."""

    def __init__(self, cfg: dict[str, int]) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.w_reg = self.a_out = self.local = self.psum_out = 0
        self.valid_out = self.ja_out = self.jw_out = 0

    def term(self, x: Inputs) -> int:
        """This beat's partial product, from the definition."""
        mask = (1 << self.cfg["MAX_BITS"]) - 1
        a_word, w_word = x.a_in & mask, self.w_reg & mask
        a_bit, w_bit = (a_word >> x.ja) & 1, (w_word >> x.jw) & 1
        a_place, w_place = _place(x.ja, x.a_bits, x.a_signed), _place(x.jw, x.w_bits, x.w_signed)
        if self.cfg["SERIAL"] == 1:
            return a_bit * w_bit * a_place * w_place
        w_low, a_low = w_word & ((1 << x.w_bits) - 1), a_word & ((1 << x.a_bits) - 1)
        if self.cfg["SERIAL"] == 2:
            return w_bit * w_place * (_signed(a_low, x.a_bits) if x.a_signed else a_low)
        return a_bit * a_place * (_signed(w_low, x.w_bits) if x.w_signed else w_low)

    def edge(self, x: Inputs) -> None:
        if not x.rst_n:
            self.reset()
            return
        if not x.en:
            return
        if x.valid:
            t = self.local + self.term(x)
            serial = self.cfg["SERIAL"]
            last = (serial == 2 or x.ja == x.a_bits - 1) and (serial == 0 or x.jw == x.w_bits - 1)
            if last:
                self.psum_out = _signed(x.psum_in + t, self.cfg["ACC_BITS"])
                self.local = 0
            else:
                self.local = t
        if x.load_w:
            self.w_reg = x.w_in & ((1 << self.cfg["MAX_BITS"]) - 1)
        self.a_out = x.a_in & ((1 << self.cfg["MAX_BITS"]) - 1)
        self.valid_out, self.ja_out, self.jw_out = x.valid, x.ja, x.jw


def _unsigned(signal) -> int:  # noqa: ANN001 - a cocotb handle
    """A signal's value as an unsigned int (one-bit signals are ``Logic``, wider ones ``LogicArray``)."""
    value = signal.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


async def _drive(dut, cfg: dict[str, int], stimulus: Iterable[Inputs]) -> int:
    """Apply one :class:`Inputs` per cycle and check every output after the edge; returns the cycles driven."""
    mb, acc = cfg["MAX_BITS"], cfg["ACC_BITS"]
    ib = max(1, (mb - 1).bit_length())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    model = SerialModel(cfg)
    cycle = 0
    for cycle, x in enumerate([Inputs(rst_n=0), Inputs(rst_n=0)] + list(stimulus)):
        dut.rst_n.value, dut.en.value, dut.load_w.value = x.rst_n, x.en, x.load_w
        dut.w_in.value = x.w_in & ((1 << mb) - 1)
        dut.a_in.value = x.a_in & ((1 << mb) - 1)
        dut.beat_valid_in.value = x.valid
        dut.beat_ja_in.value = x.ja & ((1 << ib) - 1)
        dut.beat_jw_in.value = x.jw & ((1 << ib) - 1)
        dut.psum_in.value = x.psum_in & ((1 << acc) - 1)
        dut.w_bits.value, dut.a_bits.value = x.w_bits, x.a_bits
        dut.w_signed.value, dut.a_signed.value = x.w_signed, x.a_signed
        model.edge(x)
        await FallingEdge(dut.clk)
        got = {
            "psum_out": _signed(_unsigned(dut.psum_out), acc),
            "a_out": _unsigned(dut.a_out),
            "w_out": _unsigned(dut.w_out),
            "beat_valid_out": _unsigned(dut.beat_valid_out),
            "beat_ja_out": _unsigned(dut.beat_ja_out),
            "beat_jw_out": _unsigned(dut.beat_jw_out),
        }
        want = {
            "psum_out": model.psum_out,
            "a_out": model.a_out,
            "w_out": model.w_reg,
            "beat_valid_out": model.valid_out,
            "beat_ja_out": model.ja_out & ((1 << ib) - 1),
            "beat_jw_out": model.jw_out & ((1 << ib) - 1),
        }
        if got != want:
            bad = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
            raise AssertionError(f"cycle {cycle} ({x}): expected / got {bad}")
    return cycle + 1


def _element(
    w: int, a: int, w_bits: int, a_bits: int, w_signed: int, a_signed: int, psum: int, serial: int, load: bool = True
) -> Iterator[Inputs]:
    """Load ``w`` (one cycle), then the beats of activation ``a`` with ``psum_in = psum`` on every beat."""
    common = {"w_bits": w_bits, "a_bits": a_bits, "w_signed": w_signed, "a_signed": a_signed}
    if load:
        yield Inputs(load_w=1, w_in=w, **common)
    for ja, jw in beats(w_bits, a_bits, serial):
        yield Inputs(a_in=a, valid=1, ja=ja, jw=jw, psum_in=psum, **common)


def _widths() -> list[int]:
    return [int(v) for v in env_str("LOWBIT_SERIAL_WIDTHS", "2,4").split(",")]


@cocotb.test(skip=_SKIP)
async def serial_exhaustive(dut) -> None:
    cfg = _cfg()
    rng = random.Random(1)
    half = 1 << (cfg["ACC_BITS"] - 1)
    widths = [b for b in _widths() if b <= cfg["MAX_BITS"]]

    def stim() -> Iterator[Inputs]:
        for w_bits in widths:
            for a_bits in widths:
                for w_signed in (0, 1):
                    for a_signed in (0, 1):
                        for w in _operand_range(w_bits, w_signed):
                            for a in _operand_range(a_bits, a_signed):
                                yield from _element(
                                    w, a, w_bits, a_bits, w_signed, a_signed, rng.randrange(-half, half), cfg["SERIAL"]
                                )

    n = 4 * sum((1 << wb) * (1 << ab) for wb in widths for ab in widths)
    await _drive(dut, cfg, stim())
    dut._log.info("checked %d (weight, activation) pairs exhaustively", n)


@cocotb.test(skip=_SKIP)
async def serial_random(dut) -> None:
    cfg = _cfg()
    count = env_int("LOWBIT_PE_RANDOM", 20_000)
    rng = random.Random(2)
    mb, serial = cfg["MAX_BITS"], cfg["SERIAL"]
    half = 1 << (cfg["ACC_BITS"] - 1)
    ib = max(1, (mb - 1).bit_length())

    def junk(x: Inputs) -> Inputs:  # an idle cycle: random values the PE must ignore
        x.a_in, x.ja, x.jw = rng.getrandbits(mb), rng.getrandbits(ib), rng.getrandbits(ib)
        return x

    def stim() -> Iterator[Inputs]:
        cycles = 0
        reset_at = count // 2
        while cycles < count:
            w_bits, a_bits = rng.randint(1, mb), rng.randint(1, mb)
            w_signed, a_signed = rng.randint(0, 1), rng.randint(0, 1)
            wr, ar = _operand_range(w_bits, w_signed), _operand_range(a_bits, a_signed)
            w, a = rng.randrange(wr.start, wr.stop), rng.randrange(ar.start, ar.stop)
            reload = rng.random() < 0.7
            for x in _element(
                w, a, w_bits, a_bits, w_signed, a_signed, rng.randrange(-half, half), serial, load=reload
            ):
                while rng.random() < 0.15:  # a gap or a stall before this cycle
                    idle = junk(
                        Inputs(
                            w_bits=w_bits,
                            a_bits=a_bits,
                            w_signed=w_signed,
                            a_signed=a_signed,
                            psum_in=rng.randrange(-half, half),
                        )
                    )
                    if rng.random() < 0.5:
                        idle.en = 0
                        idle.valid, idle.load_w = rng.randint(0, 1), rng.randint(0, 1)
                        idle.w_in = rng.getrandbits(mb)
                    yield idle
                    cycles += 1
                yield x
                cycles += 1
            if cycles >= reset_at:
                yield Inputs(rst_n=0)
                reset_at = 1 << 62

    await _drive(dut, cfg, stim())
