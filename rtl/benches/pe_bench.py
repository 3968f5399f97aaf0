"""cocotb benches for the PEs: a cycle-accurate Python model checked after every clock edge.

Every cycle loads a new weight (``load_w = 1``; the MAC of that cycle uses the previously loaded weight), so one
MAC (or one fusion pack of products) is checked per cycle. Tests of ``lowbit_mac_pe`` (select with
``run_bench(testcase=...)``; tests of the other PE are skipped):

- ``mac_exhaustive``: every (weight, activation) pair of the configured widths, each with a random ``psum_in``
  (feasible up to 6+6 bits; 4096 pairs at W=A=6);
- ``mac_corners``: all pairs of a corner set (min, min+1, -1, 0, 1, max-1, max, ...) with corner ``psum_in``
  (including wrap-around at the accumulator limits);
- ``mac_random``: ``$LOWBIT_PE_RANDOM`` (default 100000) random MACs with random ``en`` stalls, occasional
  ``load_w = 0`` cycles and one synchronous reset in the middle.

Tests of ``lowbit_fusion_pe`` (all 9 mode pairs x 4 signedness pairs):

- ``fusion_exhaustive``: every operand pair of one product slot (the slot cycles through 0..P-1, the other slots
  hold random operands) for every mode pair except 8 x 8 (10 640 pairs per signedness pair);
- ``fusion_corners``: all pairs of an 8-bit corner set (-128, -127, -1, 0, 1, 126, 127, 128, 254, 255 as valid for
  the signedness) at 8 x 8, plus all-slots-at-extremes packs in every mode;
- ``fusion_random``: ``$LOWBIT_PE_RANDOM`` (default 20000) cycles of random full packs with the modes and
  signedness changing every cycle, random stalls and a reset.

Parameters come from ``$LOWBIT_RTL_PARAMETERS`` (defaults of the module when missing).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from rtl.benches import env_int, parameters

_TOP = os.environ.get("COCOTB_TOPLEVEL", "")
_NOT_MAC = _TOP != "lowbit_mac_pe"
_NOT_FUSION = _TOP != "lowbit_fusion_pe"


def _cfg() -> dict[str, int]:
    p = {"W_BITS": 8, "A_BITS": 8, "ACC_BITS": 32, "W_SIGNED": 1, "A_SIGNED": 1}
    p.update(parameters())
    return p


def _range(bits: int, signed: int) -> range:
    return range(-(1 << (bits - 1)), 1 << (bits - 1)) if signed else range(0, 1 << bits)


def _to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _corners(bits: int, signed: int) -> list[int]:
    r = _range(bits, signed)
    lo, hi = r.start, r.stop - 1
    vals = {lo, lo + 1, hi - 1, hi, 0, 1, (lo + hi) // 2}
    if signed:
        vals |= {-1, -2}
    return sorted(v for v in vals if lo <= v <= hi)


class MacModel:
    """Register-level model of ``lowbit_mac_pe`` (values as Python ints; psum kept modulo 2^ACC_BITS, signed)."""

    def __init__(self, cfg: dict[str, int]) -> None:
        self.cfg = cfg
        self.w_reg = 0
        self.a_out = 0
        self.psum_out = 0

    def edge(self, rst_n: int, en: int, load_w: int, w_in: int, a_in: int, psum_in: int) -> None:
        acc = self.cfg["ACC_BITS"]
        if not rst_n:
            self.w_reg = self.a_out = self.psum_out = 0
        elif en:
            self.psum_out = _to_signed(psum_in + self.w_reg * a_in, acc)
            self.a_out = a_in
            if load_w:
                self.w_reg = w_in


async def _drive(dut, cfg: dict[str, int], stimulus: Iterable[tuple[int, int, int, int, int, int]]) -> int:
    """Apply (rst_n, en, load_w, w_in, a_in, psum_in) per cycle; check outputs after each edge. Returns MACs checked."""
    wb, ab, acc = cfg["W_BITS"], cfg["A_BITS"], cfg["ACC_BITS"]
    wmask, amask, pmask = (1 << wb) - 1, (1 << ab) - 1, (1 << acc) - 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    model = MacModel(cfg)
    # Reset for two cycles.
    dut.rst_n.value = 0
    dut.en.value = 1
    dut.load_w.value = 0
    dut.w_in.value = 0
    dut.a_in.value = 0
    dut.psum_in.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    model.edge(0, 1, 0, 0, 0, 0)
    checked = 0
    cycle = 0
    last = None
    for cycle, (rst_n, en, load_w, w, a, psum) in enumerate(stimulus):
        dut.rst_n.value = rst_n
        dut.en.value = en
        dut.load_w.value = load_w
        dut.w_in.value = w & wmask
        dut.a_in.value = a & amask
        dut.psum_in.value = psum & pmask
        mac = (model.w_reg, a, psum)
        model.edge(rst_n, en, load_w, w, a, psum)
        await FallingEdge(dut.clk)
        got_p = _to_signed(dut.psum_out.value.to_unsigned(), acc)
        got_a = dut.a_out.value.to_unsigned()
        got_w = dut.w_out.value.to_unsigned()
        if got_p != model.psum_out:
            raise AssertionError(
                f"output index {checked} (psum_out, w={mac[0]} a={mac[1]} psum_in={mac[2]} en={en} rst_n={rst_n}): "
                f"expected {model.psum_out}, got {got_p} at cycle {cycle}"
            )
        assert got_a == model.a_out & amask, f"a_out at cycle {cycle}: expected {model.a_out & amask}, got {got_a}"
        assert got_w == model.w_reg & wmask, f"w_out at cycle {cycle}: expected {model.w_reg & wmask}, got {got_w}"
        checked += 1 if (rst_n and en) else 0
        last = cycle
    dut._log.info("checked %d MACs over %d cycles", checked, (last or 0) + 1)
    return checked


def _pairs_stimulus(cfg: dict[str, int], pairs: list[tuple[int, int]], psums: Iterable[int]):
    """Weight of pair i is loaded in cycle i and used in cycle i+1 (a dummy first MAC uses the reset weight 0)."""
    psums = list(psums)
    ws = [w for w, _ in pairs] + [0]
    as_ = [0] + [a for _, a in pairs]
    ps = [0] + psums
    for i in range(len(pairs) + 1):
        yield 1, 1, 1, ws[i], as_[i], ps[i]


@cocotb.test(skip=_NOT_MAC)
async def mac_exhaustive(dut) -> None:
    cfg = _cfg()
    rng = random.Random(1)
    wr, ar = _range(cfg["W_BITS"], cfg["W_SIGNED"]), _range(cfg["A_BITS"], cfg["A_SIGNED"])
    assert len(wr) * len(ar) <= 1 << 16, "exhaustive bench is for narrow widths"
    pairs = [(w, a) for w in wr for a in ar]
    half = 1 << (cfg["ACC_BITS"] - 1)
    psums = [rng.randrange(-half, half) for _ in pairs]
    n = await _drive(dut, cfg, _pairs_stimulus(cfg, pairs, psums))
    assert n == len(pairs) + 1


@cocotb.test(skip=_NOT_MAC)
async def mac_corners(dut) -> None:
    cfg = _cfg()
    wc, ac = _corners(cfg["W_BITS"], cfg["W_SIGNED"]), _corners(cfg["A_BITS"], cfg["A_SIGNED"])
    half = 1 << (cfg["ACC_BITS"] - 1)
    pc = [-half, -half + 1, -1, 0, 1, half - 2, half - 1]
    pairs = [(w, a) for w in wc for a in ac for _ in pc]
    psums = [p for _w in wc for _a in ac for p in pc]
    n = await _drive(dut, cfg, _pairs_stimulus(cfg, pairs, psums))
    assert n == len(pairs) + 1


@cocotb.test(skip=_NOT_MAC)
async def mac_random(dut) -> None:
    cfg = _cfg()
    count = env_int("LOWBIT_PE_RANDOM", 100_000)
    rng = random.Random(2)
    wr, ar = _range(cfg["W_BITS"], cfg["W_SIGNED"]), _range(cfg["A_BITS"], cfg["A_SIGNED"])
    wc, ac = _corners(cfg["W_BITS"], cfg["W_SIGNED"]), _corners(cfg["A_BITS"], cfg["A_SIGNED"])
    half = 1 << (cfg["ACC_BITS"] - 1)

    def stim():
        for i in range(count):
            rst_n = 0 if i == count // 2 else 1
            en = 0 if rng.random() < 0.1 else 1
            load_w = 0 if rng.random() < 0.1 else 1
            w = rng.choice(wc) if rng.random() < 0.2 else rng.randrange(wr.start, wr.stop)
            a = rng.choice(ac) if rng.random() < 0.2 else rng.randrange(ar.start, ar.stop)
            yield rst_n, en, load_w, w, a, rng.randrange(-half, half)

    n = await _drive(dut, cfg, stim())
    assert n > count * 0.8


# --- lowbit_fusion_pe ------------------------------------------------------------------------------------------
MODE_BITS = {0: 2, 1: 4, 2: 8}
BITS_MODE = {2: 0, 4: 1, 8: 2}


def fusion_pack(w_bits: int, a_bits: int) -> int:
    """Products per cycle, ``floor(8/a) * floor(8/w)`` (sim's ``pack``)."""
    return (8 // a_bits) * (8 // w_bits)


def fusion_dot(w_word: int, a_word: int, w_bits: int, a_bits: int, w_signed: int, a_signed: int) -> int:
    """Golden sum of the packed products ``sum_j w_j * a_j`` (element j at bits [j*bits +: bits])."""
    total = 0
    for j in range(fusion_pack(w_bits, a_bits)):
        w = (w_word >> (j * w_bits)) & ((1 << w_bits) - 1)
        a = (a_word >> (j * a_bits)) & ((1 << a_bits) - 1)
        if w_signed:
            w = _to_signed(w, w_bits)
        if a_signed:
            a = _to_signed(a, a_bits)
        total += w * a
    return total


def pack_word(values: list[int], bits: int) -> int:
    """Pack ``values`` LSB-first at ``bits`` each into a 32-bit word (two's complement per element)."""
    word = 0
    for j, v in enumerate(values):
        word |= (v & ((1 << bits) - 1)) << (j * bits)
    return word


# Fusion stimulus item: (rst_n, en, load_w, w_mode, a_mode, w_signed, a_signed, w_in, a_in, psum_in)
FusionCycle = tuple[int, int, int, int, int, int, int, int, int, int]


async def _drive_fusion(dut, stimulus: Iterable[FusionCycle], acc: int) -> int:
    """Apply per-cycle inputs; check psum_out/a_out/w_out against the model after each edge. Returns packs checked."""
    pmask = (1 << acc) - 1
    m32 = (1 << 32) - 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("en", "load_w", "w_mode", "a_mode", "w_signed", "a_signed", "w_in", "a_in", "psum_in"):
        getattr(dut, name).value = 0
    dut.rst_n.value = 0
    dut.en.value = 1
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    w_reg = a_out = psum_out = 0
    checked = 0
    for cycle, (rst_n, en, load_w, wm, am, ws, as_, w_in, a_in, psum_in) in enumerate(stimulus):
        dut.rst_n.value = rst_n
        dut.en.value = en
        dut.load_w.value = load_w
        dut.w_mode.value = wm
        dut.a_mode.value = am
        dut.w_signed.value = ws
        dut.a_signed.value = as_
        dut.w_in.value = w_in & m32
        dut.a_in.value = a_in & m32
        dut.psum_in.value = psum_in & pmask
        used_w = w_reg
        wb, ab = MODE_BITS.get(wm, 8), MODE_BITS.get(am, 8)
        if not rst_n:
            w_reg = a_out = psum_out = 0
        elif en:
            psum_out = _to_signed(psum_in + fusion_dot(used_w, a_in, wb, ab, ws, as_), acc)
            a_out = a_in & m32
            if load_w:
                w_reg = w_in & m32
        await FallingEdge(dut.clk)
        got = _to_signed(dut.psum_out.value.to_unsigned(), acc)
        if got != psum_out:
            raise AssertionError(
                f"output index {checked} (psum_out, w{wb}a{ab} w_signed={ws} a_signed={as_} w_reg=0x{used_w:08x} "
                f"a_in=0x{a_in & m32:08x} psum_in={psum_in}): expected {psum_out}, got {got} at cycle {cycle}"
            )
        got_a, got_w = dut.a_out.value.to_unsigned(), dut.w_out.value.to_unsigned()
        assert got_a == a_out, f"a_out at cycle {cycle}: expected 0x{a_out:08x}, got 0x{got_a:08x}"
        assert got_w == w_reg, f"w_out at cycle {cycle}: expected 0x{w_reg:08x}, got 0x{got_w:08x}"
        checked += 1 if (rst_n and en) else 0
    dut._log.info("checked %d fusion packs", checked)
    return checked


def _fusion_pairs_stimulus(items: list[tuple[int, int, int, int, int, int]], acc: int, rng: random.Random):
    """items: (w_bits, a_bits, w_signed, a_signed, w_word, a_word); the weight word of item i is loaded one cycle
    before its activation word is applied (modes are applied with the activations)."""
    half = 1 << (acc - 1)
    prev = None
    for it in items + [None]:
        w_word = it[4] if it is not None else 0
        if prev is None:
            mode = (2, 2, 1, 1, 0)
        else:
            mode = (BITS_MODE[prev[0]], BITS_MODE[prev[1]], prev[2], prev[3], prev[5])
        yield (1, 1, 1, mode[0], mode[1], mode[2], mode[3], w_word, mode[4], rng.randrange(-half, half))
        prev = it


def _rand_elem(rng: random.Random, bits: int, signed: int) -> int:
    r = _range(bits, signed)
    return rng.randrange(r.start, r.stop)


SIGNS = [(1, 1), (0, 0), (1, 0), (0, 1)]
WIDTHS = [2, 4, 8]


@cocotb.test(skip=_NOT_FUSION)
async def fusion_exhaustive(dut) -> None:
    acc = _cfg()["ACC_BITS"]
    rng = random.Random(3)
    items = []
    for ws, as_ in SIGNS:
        for wb in WIDTHS:
            for ab in WIDTHS:
                if wb == 8 and ab == 8:
                    continue
                p = fusion_pack(wb, ab)
                i = 0
                for w in _range(wb, ws):
                    for a in _range(ab, as_):
                        slot = i % p
                        i += 1
                        wv = [_rand_elem(rng, wb, ws) for _ in range(p)]
                        av = [_rand_elem(rng, ab, as_) for _ in range(p)]
                        wv[slot], av[slot] = w, a
                        # random garbage in the unused high bits must be ignored
                        w_word = pack_word(wv, wb) | (rng.getrandbits(32) & ~((1 << (p * wb)) - 1) & 0xFFFFFFFF)
                        a_word = pack_word(av, ab) | (rng.getrandbits(32) & ~((1 << (p * ab)) - 1) & 0xFFFFFFFF)
                        items.append((wb, ab, ws, as_, w_word, a_word))
    assert len(items) == 4 * 10_640
    n = await _drive_fusion(dut, _fusion_pairs_stimulus(items, acc, rng), acc)
    assert n == len(items) + 1


@cocotb.test(skip=_NOT_FUSION)
async def fusion_corners(dut) -> None:
    acc = _cfg()["ACC_BITS"]
    rng = random.Random(4)
    items = []
    for ws, as_ in SIGNS:
        wc, ac = _corners(8, ws), _corners(8, as_)
        for w in wc:
            for a in ac:
                items.append((8, 8, ws, as_, pack_word([w], 8) | (rng.getrandbits(24) << 8), pack_word([a], 8)))
        for wb in WIDTHS:
            for ab in WIDTHS:
                p = fusion_pack(wb, ab)
                for w in _corners(wb, ws)[:1] + _corners(wb, ws)[-1:]:
                    for a in _corners(ab, as_)[:1] + _corners(ab, as_)[-1:]:
                        items.append((wb, ab, ws, as_, pack_word([w] * p, wb), pack_word([a] * p, ab)))
    n = await _drive_fusion(dut, _fusion_pairs_stimulus(items, acc, rng), acc)
    assert n == len(items) + 1


@cocotb.test(skip=_NOT_FUSION)
async def fusion_random(dut) -> None:
    acc = _cfg()["ACC_BITS"]
    count = env_int("LOWBIT_PE_RANDOM", 20_000)
    rng = random.Random(5)
    half = 1 << (acc - 1)

    def stim():
        for i in range(count):
            rst_n = 0 if i == count // 2 else 1
            en = 0 if rng.random() < 0.1 else 1
            load_w = 0 if rng.random() < 0.1 else 1
            wm, am = rng.choice([0, 1, 2, 3]), rng.choice([0, 1, 2, 3])  # mode 3 behaves as 8-bit
            yield (
                rst_n,
                en,
                load_w,
                wm,
                am,
                rng.getrandbits(1),
                rng.getrandbits(1),
                rng.getrandbits(32),
                rng.getrandbits(32),
                rng.randrange(-half, half),
            )

    n = await _drive_fusion(dut, stim(), acc)
    assert n > count * 0.8
