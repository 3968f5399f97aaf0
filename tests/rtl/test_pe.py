"""PE benches on Verilator: fixed-width MAC PE (exhaustive narrow widths, 8-bit corners, random) and fusion PE."""

from __future__ import annotations

import pytest

from rtl.runner import run_bench, source

pytestmark = pytest.mark.rtl

MAC = [source("lowbit_mac_pe")]


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("signs", [(1, 1), (0, 0), (1, 0), (0, 1)], ids=["ss", "uu", "su", "us"])
def test_mac_pe_exhaustive(verilator: str, bits: int, signs: tuple[int, int]) -> None:
    params = {"W_BITS": bits, "A_BITS": bits, "ACC_BITS": 2 * bits + 4, "W_SIGNED": signs[0], "A_SIGNED": signs[1]}
    res = run_bench("lowbit_mac_pe", MAC, "rtl.benches.pe_bench", params, testcase="mac_exhaustive,mac_corners")
    assert res.tests == 2 and res.failures == 0


def test_mac_pe_int8(verilator: str) -> None:
    """8-bit signed corners (all pairs x psum corners) and 10^5 random MACs with stalls and a reset."""
    params = {"W_BITS": 8, "A_BITS": 8, "ACC_BITS": 32, "W_SIGNED": 1, "A_SIGNED": 1}
    res = run_bench("lowbit_mac_pe", MAC, "rtl.benches.pe_bench", params, testcase="mac_corners,mac_random")
    assert res.tests == 2


@pytest.mark.parametrize(
    "params",
    [
        {"W_BITS": 8, "A_BITS": 8, "ACC_BITS": 32, "W_SIGNED": 1, "A_SIGNED": 0},
        {"W_BITS": 4, "A_BITS": 8, "ACC_BITS": 24, "W_SIGNED": 1, "A_SIGNED": 0},
        {"W_BITS": 8, "A_BITS": 4, "ACC_BITS": 20, "W_SIGNED": 1, "A_SIGNED": 1},
    ],
    ids=["w8a8u", "w4a8u", "w8a4"],
)
def test_mac_pe_mixed(verilator: str, params: dict[str, int]) -> None:
    exhaustive = "mac_exhaustive," if params["W_BITS"] + params["A_BITS"] <= 12 else ""
    res = run_bench(
        "lowbit_mac_pe",
        MAC,
        "rtl.benches.pe_bench",
        params,
        testcase=f"{exhaustive}mac_corners",
        extra_env={"LOWBIT_PE_RANDOM": "20000"},
    )
    assert res.tests >= 1


FUSION = [source("lowbit_fusion_pe")]


@pytest.mark.parametrize("testcase", ["fusion_exhaustive", "fusion_corners", "fusion_random"])
def test_fusion_pe(verilator: str, testcase: str) -> None:
    res = run_bench("lowbit_fusion_pe", FUSION, "rtl.benches.pe_bench", {"ACC_BITS": 32}, testcase=testcase)
    assert res.tests == 1


def test_mac_pe_icarus(iverilog: str, verilator: str) -> None:
    """The same bench on Icarus (second simulator): W = A = 4 exhaustive and corners."""
    params = {"W_BITS": 4, "A_BITS": 4, "ACC_BITS": 12}
    res = run_bench(
        "lowbit_mac_pe", MAC, "rtl.benches.pe_bench", params, simulator="icarus", testcase="mac_exhaustive,mac_corners"
    )
    assert res.tests == 2 and res.simulator == "icarus"


def test_fusion_pe_icarus(iverilog: str, verilator: str) -> None:
    res = run_bench(
        "lowbit_fusion_pe",
        FUSION,
        "rtl.benches.pe_bench",
        {"ACC_BITS": 32},
        simulator="icarus",
        testcase="fusion_corners",
    )
    assert res.tests == 1


def test_coverage_summary(verilator: str) -> None:
    """Line coverage through the runner: coverage.dat is produced and parsed (points of rtl/src only)."""
    from rtl.runner import coverage_points, coverage_summary

    params = {"W_BITS": 2, "A_BITS": 2, "ACC_BITS": 8}
    res = run_bench(
        "lowbit_mac_pe",
        MAC,
        "rtl.benches.pe_bench",
        params,
        coverage=True,
        testcase="mac_random",
        extra_env={"LOWBIT_PE_RANDOM": "2000"},
    )
    assert res.coverage_dat is not None and res.coverage_dat.is_file()
    covered, total = coverage_summary([res.coverage_dat])
    assert 0 < covered <= total
    assert all(f == "lowbit_mac_pe.v" for f, _, _ in coverage_points([res.coverage_dat]))
    assert covered / total > 0.5
