"""``lowbit rtl gemm``: a random GEMM verified in Verilator, reported as one JSON line."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main


@pytest.mark.rtl
def test_rtl_gemm_reports_zero_mismatches_and_sim_cycles(verilator, capsys) -> None:
    main(["rtl", "gemm", "--m", "9", "--k", "40", "--n", "11", "--pair", "w4a2", "--seed", "3", "--array", "4x4",
          "--gaps", "0.3"])
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["mismatches"] == 0 and record["macs"] == 9 * 40 * 11
    assert record["measured_cycles"] == record["predicted_cycles"] > 0
    assert record["clock_cycles"] > record["measured_cycles"]  # gaps and backpressure cost wall-clock cycles only


def test_bad_array_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rtl", "gemm", "--m", "2", "--k", "2", "--n", "2", "--array", "8by8"])
    assert exc.value.code == 2 and "bad --array '8by8'" in capsys.readouterr().err
