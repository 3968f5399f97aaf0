"""lowbit_requant on Verilator, bit-exact against quant.requant (named *_rtl: tests/quant/test_requant.py exists and
the test directories are not packages, so the basenames must differ)."""

from __future__ import annotations

import pytest

from rtl.runner import run_bench, source

pytestmark = pytest.mark.rtl

REQ = [source("lowbit_requant")]


@pytest.mark.parametrize(
    ("out_bits", "signed"),
    [(8, 0), (8, 1), (4, 0), (32, 1)],
    ids=["u8", "s8", "u4", "s32-logits"],
)
@pytest.mark.parametrize("testcase", ["requant_corners", "requant_random"])
def test_requant(verilator: str, out_bits: int, signed: int, testcase: str) -> None:
    env = {"LOWBIT_REQUANT_SIGNED": str(signed)}
    if testcase == "requant_random" and (out_bits, signed) != (8, 0):
        env["LOWBIT_REQUANT_RANDOM"] = "5000"
    res = run_bench(
        "lowbit_requant", REQ, "rtl.benches.requant_bench", {"OUT_BITS": out_bits}, testcase=testcase, extra_env=env
    )
    assert res.tests == 1
