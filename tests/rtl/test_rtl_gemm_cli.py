"""``lowbit rtl gemm``: a random GEMM verified in Verilator, reported as one JSON line."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main


@pytest.mark.rtl
def test_rtl_gemm_reports_zero_mismatches_and_sim_cycles(verilator, capsys) -> None:
    main(
        [
            "rtl",
            "gemm",
            "--m",
            "9",
            "--k",
            "40",
            "--n",
            "11",
            "--pair",
            "w4a2",
            "--seed",
            "3",
            "--array",
            "4x4",
            "--gaps",
            "0.3",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["mismatches"] == 0 and record["macs"] == 9 * 40 * 11
    assert record["measured_cycles"] == record["predicted_cycles"] > 0
    assert record["clock_cycles"] > record["measured_cycles"]  # gaps and backpressure cost wall-clock cycles only


@pytest.mark.rtl
def test_rtl_gemm_runs_a_mapping_on_an_overlapped_array(verilator, capsys) -> None:
    """A tiled mapping in another loop order on a double-buffered array: still bit-exact, cycles equal to sim's at
    that mapping and profile (fewer than the serial profile's)."""
    main(
        [
            "rtl",
            "gemm",
            "--m",
            "23",
            "--k",
            "40",
            "--n",
            "11",
            "--pair",
            "w8a8",
            "--seed",
            "5",
            "--array",
            "4x4",
            "--pe",
            "fixed",
            "--mapping",
            "MKN:6",
            "--weight-preload",
            "overlapped",
            "--gaps",
            "0.2",
        ]
    )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["mismatches"] == 0 and record["loop_order"] == "MKN" and record["tile_m"] == 6
    assert record["preload"] == "overlapped"
    assert record["measured_cycles"] == record["predicted_cycles"] > 0
    from rtl.prediction import predicted_cycles

    serial = predicted_cycles(23, 40, 11, 4, 4, "fixed", 8, 8, "MKN", 6, "serial")
    assert record["measured_cycles"] < serial


@pytest.mark.rtl
def test_rtl_gemm_on_an_output_stationary_array(verilator, capsys) -> None:
    main(
        [
            "rtl",
            "gemm",
            "--m",
            "13",
            "--k",
            "30",
            "--n",
            "10",
            "--pair",
            "w4a4",
            "--seed",
            "2",
            "--array",
            "4x4",
            "--pe",
            "bitfusion",
            "--dataflow",
            "os",
            "--mapping",
            "MNK",
            "--weight-preload",
            "overlapped",
        ]
    )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["mismatches"] == 0 and record["dataflow"] == "os" and record["loop_order"] == "MNK"
    assert record["measured_cycles"] == record["predicted_cycles"] > 0


@pytest.mark.rtl
def test_rtl_gemm_on_an_input_stationary_array(verilator, capsys) -> None:
    """is runs as the ws top on the transposed GEMM: bit-exact, cycles equal to sim's is cost at the N tile."""
    main(
        [
            "rtl",
            "gemm",
            "--m",
            "9",
            "--k",
            "20",
            "--n",
            "15",
            "--pair",
            "w8a8",
            "--seed",
            "4",
            "--array",
            "3x4",
            "--pe",
            "fixed",
            "--dataflow",
            "is",
            "--mapping",
            "KMN:8",
            "--weight-preload",
            "overlapped",
        ]
    )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["mismatches"] == 0 and record["dataflow"] == "is" and record["loop_order"] == "KMN"
    assert record["tile_m"] == 8 and record["measured_cycles"] == record["predicted_cycles"] > 0


def test_bad_array_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rtl", "gemm", "--m", "2", "--k", "2", "--n", "2", "--array", "8by8"])
    assert exc.value.code == 2 and "bad --array '8by8'" in capsys.readouterr().err


@pytest.mark.parametrize("pair", ["w3a3", "w8a5"])
def test_a_pair_sim_refuses_is_refused_with_sims_message(pair, tmp_path, capsys) -> None:
    """A Bit-Fusion array runs widths 2, 4 and 8 only: `rtl gemm` refuses the others as `sim` does, same words."""
    with pytest.raises(SystemExit) as exc:
        main(["rtl", "gemm", "--m", "2", "--k", "2", "--n", "2", "--pair", pair, "--pe", "bitfusion", "--array", "4x4"])
    rtl_err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(rtl_err.splitlines()) == 1
    chip = tmp_path / "chip.yaml"
    chip.write_text(
        "name: lowbit_rtl_bitfusion_4x4\narray: {rows: 4, cols: 4}\npe: {kind: bitfusion}\n"
        "memory: {ifmap_sram_kib: 64, filter_sram_kib: 64, ofmap_sram_kib: 64}\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--chip", str(chip), "--workload", "resnet18", "--pairs", pair, "--out", str(tmp_path / "t.csv")])
    sim_err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and rtl_err == sim_err
    assert f"pair {pair} is not supported by chip 'lowbit_rtl_bitfusion_4x4'" in rtl_err
    assert not (tmp_path / "t.csv").exists()


def test_json_lines_keep_the_pe_key() -> None:
    """The JSON lines of ``rtl gemm`` and ``rtl verify`` keep their ``pe`` key (the field is ``pe_kind``), in place."""
    import numpy as np

    from rtl.gemm import GemmCheck
    from rtl.layer import LayerCheck

    gemm = GemmCheck(1, 2, 3, 8, 8, 4, 4, "fixed", "verilator", 6, 0, 5, 5, 9)
    layer = LayerCheck(
        "3", "conv2d", 1, 2, 3, 1, 1, 4, 8, 8, 8, "loom", "verilator", 6, 0, 5, 5, 5, 9, False, np.zeros(1)
    )
    for check, fields in ((gemm, list(GemmCheck.__dataclass_fields__)), (layer, list(LayerCheck.__dataclass_fields__))):
        keys = list(check.as_dict())
        assert "pe_kind" not in keys and keys.index("pe") == fields.index("pe_kind")
        assert check.as_dict()["pe"] == check.pe_kind
