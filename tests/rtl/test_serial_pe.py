"""The bit-serial PE (Stripes, Loom, and Stripes serializing the stationary register) on Verilator: exhaustive 2- and
4-bit operand pairs at every signedness, and random widths 1..MAX_BITS with gaps, stalls and a reset; one exhaustive
run on Icarus."""

from __future__ import annotations

import pytest

from rtl.runner import run_bench, source

pytestmark = pytest.mark.rtl

SERIAL = [source("lowbit_serial_pe")]
BENCH = "rtl.benches.serial_pe_bench"


KINDS = {"ids": ["stripes", "loom", "stripes-stationary"], "argvalues": [0, 1, 2]}


@pytest.mark.parametrize("serial", **KINDS)
def test_serial_pe_exhaustive(verilator: str, serial: int) -> None:
    res = run_bench(
        "lowbit_serial_pe",
        SERIAL,
        BENCH,
        {"MAX_BITS": 8, "SERIAL": serial, "ACC_BITS": 32},
        testcase="serial_exhaustive",
    )
    assert res.tests == 1 and res.failures == 0


@pytest.mark.parametrize("serial", **KINDS)
@pytest.mark.parametrize("max_bits,acc_bits", [(8, 17), (16, 40)], ids=["max8-acc17", "max16-acc40"])
def test_serial_pe_random(verilator: str, serial: int, max_bits: int, acc_bits: int) -> None:
    """Random widths up to MAX_BITS, the narrowest accumulator the product allows (wrap-around included)."""
    res = run_bench(
        "lowbit_serial_pe",
        SERIAL,
        BENCH,
        {"MAX_BITS": max_bits, "SERIAL": serial, "ACC_BITS": acc_bits},
        testcase="serial_random",
    )
    assert res.tests == 1 and res.failures == 0


def test_serial_pe_icarus(iverilog: str, verilator: str) -> None:
    """The same bench on Icarus (second simulator): Loom, 2-bit operands exhaustively."""
    res = run_bench(
        "lowbit_serial_pe",
        SERIAL,
        BENCH,
        {"MAX_BITS": 4, "SERIAL": 1, "ACC_BITS": 9},
        simulator="icarus",
        testcase="serial_exhaustive",
        extra_env={"LOWBIT_SERIAL_WIDTHS": "2"},
    )
    assert res.tests == 1 and res.simulator == "icarus"
