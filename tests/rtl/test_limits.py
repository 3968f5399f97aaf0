"""rtl.limits: what one RTL run may ask for, refused before operands are drawn or anything is built."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtl import gemm_plan, limits
from rtl.gemm import check_gemm, random_operands, verify_gemm
from rtl.limits import (
    MAX_ARRAY_PES,
    MAX_ARRAY_SIDE,
    MAX_FOLDS,
    MAX_HOST_BYTES,
    MAX_RUN_CYCLES,
    RunEstimate,
    check_array,
    check_operand_sizes,
    check_probability,
    check_run,
    check_seed,
    check_simulator,
    gemm_estimate,
)
from rtl.tools import MESSAGE_CHARS, RtlError, one_line


@pytest.fixture(autouse=True)
def _no_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may reach a build: the runner's entry point fails the test."""
    monkeypatch.setattr("rtl.runner.run_bench", lambda *_a, **_k: pytest.fail("a build started"))


def test_array_limits_are_inclusive() -> None:
    assert check_array(32, 32) == (32, 32) and check_array(4, MAX_ARRAY_SIDE) == (4, MAX_ARRAY_SIDE)
    assert check_array(np.int64(1), 1) == (1, 1)
    for rows, cols, needle in (
        (33, 32, "1,056 PEs"),
        (1, MAX_ARRAY_SIDE + 1, "per side"),
        (4096, 4096, "16,777,216 PEs"),
        (0, 8, "positive"),
        (8, True, "positive"),
        (8.0, 8, "positive"),
    ):
        with pytest.raises(RtlError, match=needle):
            check_array(rows, cols)
    assert MAX_ARRAY_PES == 32 * 32


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_probability_in_zero_one(value: float) -> None:
    assert check_probability(value, "gap_prob") == float(value)


@pytest.mark.parametrize("value", [1, 1.0, -0.1, 1.5, math.nan, math.inf, -math.inf, "0.5", None, True])
def test_probability_refused(value) -> None:
    with pytest.raises(RtlError, match=r"^stall_prob must be"):
        check_probability(value, "stall_prob")


def test_seed_and_simulator() -> None:
    assert check_seed(0) == 0 and check_seed(np.uint16(9)) == 9
    for bad in (-1, 0.5, False):
        with pytest.raises(RtlError, match="seed"):
            check_seed(bad)
    assert check_simulator("icarus") == "icarus"
    with pytest.raises(RtlError, match="simulator must be one of verilator, icarus"):
        check_simulator("modelsim")


def test_operand_sizes_bound_the_memory_before_drawing(monkeypatch) -> None:
    side = math.isqrt(MAX_HOST_BYTES // 16)  # A and B of side x side int64 fit exactly
    assert check_operand_sizes(side, side, side) == (side, side, side)
    with pytest.raises(RtlError, match=r"about [\d,]+ MiB; the limit of one RTL run is 1,024 MiB"):
        check_operand_sizes(side + 1, side + 1, side + 1)
    monkeypatch.setattr(np.random, "default_rng", lambda *_a: pytest.fail("operands drawn"))
    with pytest.raises(RtlError, match="operands alone"):
        random_operands(10**6, 10**6, 1, 8, 8, 0)
    for kwargs, needle in (({"seed": -1}, "seed"), ({"w_bits": 9}, "w_bits"), ({"a_bits": 1}, "a_bits")):
        args = {"M": 2, "K": 2, "N": 2, "w_bits": 8, "a_bits": 8, "seed": 0, **kwargs}
        with pytest.raises(RtlError, match=needle):
            random_operands(**args)


def test_estimate_follows_the_plan() -> None:
    plan = gemm_plan.plan_gemm(40, 100, 20, 8, 8, "fixed", 8, 8)
    est = gemm_estimate(40, 100, 20, 8, 8, "fixed", 8, 8)
    # serial preload, untiled: per fold 2R + C - 2 + M busy steps, plus one step per stream beat
    busy = plan.folds * (2 * 8 + 8 - 2 + 40)
    assert est.cycles == busy + plan.w_beats + plan.in_beats + plan.out_beats
    assert est.folds == max(plan.row_folds, plan.col_folds)
    tiled = gemm_estimate(40, 100, 20, 8, 8, "fixed", 8, 8, tile_m=10)  # 4 tiles: 4x the loads and fills
    assert (
        tiled.cycles
        == 4 * plan.folds * (2 * 8 + 8 - 2) + plan.folds * 40 + 4 * plan.w_beats + plan.in_beats + plan.out_beats
    )
    assert est.host_bytes >= 8 * (40 * 100 + 100 * 20) + 256 * 8 * 4  # operands and the psum buffer at least
    gappy = gemm_estimate(40, 100, 20, 8, 8, "fixed", 8, 8, gap_prob=0.75)
    assert gappy.cycles == math.ceil(est.cycles / 0.25) and gappy.host_bytes == est.host_bytes
    assert est + gappy == RunEstimate(est.cycles + gappy.cycles, 2 * est.host_bytes, est.folds)


def test_check_run_names_the_estimate_and_the_limit() -> None:
    check_run("ok", RunEstimate(MAX_RUN_CYCLES, MAX_HOST_BYTES, MAX_FOLDS))
    for est, needle in (
        (RunEstimate(MAX_RUN_CYCLES + 1, 0), "10,000,001 clock cycles; the limit of one RTL run is 10,000,000"),
        (RunEstimate(0, MAX_HOST_BYTES + 1), "1,024 MiB of host memory"),
        (RunEstimate(0, 0, MAX_FOLDS + 1), "65,536 folds"),
    ):
        with pytest.raises(RtlError, match=needle):
            check_run("GEMM", est)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rows": 64, "cols": 64}, "4,096 PEs"),
        ({"gap_prob": 1.0}, "gap_prob"),
        ({"stall_prob": math.nan}, "stall_prob"),
        ({"pe_kind": "nope"}, "PE kind"),
        ({"simulator": "nope"}, "simulator"),
        ({"M": 10_000, "K": 1000, "N": 1000}, "clock cycles"),
        ({"M": 1, "K": 70_000, "N": 1, "rows": 1, "cols": 1}, "folds"),
    ],
)
def test_check_gemm_refuses_before_any_build(kwargs: dict, needle: str) -> None:
    args = {"M": 4, "K": 4, "N": 4, "w_bits": 8, "a_bits": 8, **kwargs}
    with pytest.raises(RtlError, match=needle):
        check_gemm(**args)
    if "M" not in kwargs:  # verify_gemm runs the same checks on its operands, before the build
        A, B = random_operands(4, 4, 4, 8, 8, 0)
        rest = {k: v for k, v in args.items() if k not in ("M", "K", "N", "w_bits", "a_bits")}
        with pytest.raises(RtlError, match=needle):
            verify_gemm(A, B, 8, 8, **rest)


def test_layer_runs_are_checked_before_loading_or_building(tmp_path) -> None:
    from rtl.layer import verify_layer

    missing = tmp_path / "no-export"
    for kwargs, needle in (
        ({"rows": 40, "cols": 40}, "PEs"),
        ({"gap_prob": -0.5}, "gap_prob"),
        ({"seed": -1}, "seed"),
        ({"images": 0}, "images"),
        ({"simulator": "x"}, "simulator"),
    ):
        with pytest.raises(RtlError, match=needle):  # an RtlError, not the missing export's QuantInputError
            verify_layer(missing, "0", **kwargs)


def test_one_line_flattens_and_cuts() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("x " * 1000)
    assert len(long) == MESSAGE_CHARS and long.endswith("...") and "\n" not in long
    assert limits.MAX_RUN_CYCLES == 10_000_000
