"""Real exported layers (GPFQ, PTQ-SL with n_H > 1 and reordered channels) and the whole digits CNN through
``lowbit_layer_top`` (gemm top + zero-point correction + one requant unit per column): output codes bit-exact
against the golden model ``quant.integer``, busy cycles equal to sim's layer cost with ``in_blocks = n_H``.

Two builds serve every RTL test here: a fixed-PE 8x8 array at w4a8 (unsigned activations) and a Bit-Fusion 4x4
array (widths and signedness at run time). M, K, N and the constants are run-time inputs, so builds are shared.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from experiments.digits_exports import EXPORTS
from experiments.digits_exports import make_digits_export as _make_export
from quant.integer import IntegerModel, load_export
from rtl.tools import RtlError


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``export(kind)``: the directory of a digits-cnn w4a8 export, made once per test session and shared by the
    pytest-xdist workers (file lock)."""
    root = tmp_path_factory.getbasetemp().parent / "lowbit-layer-exports"
    root.mkdir(parents=True, exist_ok=True)

    def get(kind: str) -> Path:
        out = root / kind
        with open(root / f"{kind}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if not (out / "meta.json").is_file():
                    _make_export(kind, out)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return out

    return get


def _assert_ok(check) -> None:  # noqa: ANN001 - rtl.layer.LayerCheck
    """0 mismatches; the layer's busy cycles equal sim's layer cost (in_blocks = n_H: the blocks inside the
    reduction loop)."""
    assert check.mismatches == 0, "\n".join(check.messages)
    assert check.measured_cycles == check.predicted_cycles, (check.measured_cycles, check.predicted_cycles)


# ---- host side (no simulator) ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(EXPORTS))
def test_lowering_and_rtl_arithmetic_match_the_golden_model(export, kind: str) -> None:
    """The RTL's arithmetic in numpy (raw-code GEMM mod 2^32, zero-point correction, requant) equals run_layer,
    also with a non-zero input zero point and with signed activation codes."""
    from rtl.layer import _gemm_layout, golden_layer_inputs, lower_layer, rtl_arithmetic, sample_images

    model = load_export(export(kind))
    inputs = golden_layer_inputs(model, sample_images(model, 3))
    for lay in model.layers:
        x = inputs[lay.name]
        variants = [
            (lay, x),
            (dataclasses.replace(lay, in_zero_point=77), x),
            (dataclasses.replace(lay, in_qmin=-128, in_qmax=127, in_zero_point=-51), x - 128),
        ]
        for layer, codes in variants:
            want = _gemm_layout(layer, IntegerModel([layer], [], "t").run_layer(layer.name, codes))
            np.testing.assert_array_equal(
                rtl_arithmetic(layer, lower_layer(layer, codes)),
                want,
                err_msg=f"{kind} layer {layer.name} z_x={layer.in_zero_point}",
            )


def test_constant_word_layout() -> None:
    from rtl.layer import CONST_BITS, constant_word

    word = constant_word(-3, (1 << 31) - 1, -(1 << 31), 5, 62)
    assert CONST_BITS == 107 and word < (1 << CONST_BITS)
    assert word & 0xFFFF_FFFF == (1 << 32) - 3
    assert (word >> 32) & ((1 << 31) - 1) == (1 << 31) - 1
    assert (word >> 63) & 0xFFFF_FFFF == 1 << 31
    assert (word >> 95) & 63 == 5 and word >> 101 == 62


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpfq", "ptq-sl"])
def test_sim_layer_is_the_lowered_gemm_with_the_exports_blocks(export, kind: str) -> None:
    """rtl.layer.sim_layer gives sim the exported layer's GEMM (M, K, N, kernel window) and its n_H channel-aligned
    blocks; sim's blocked cost is the sum of the blocks' GEMMs, which is what the RTL runs. On the 8x8 Bit-Fusion
    array at w4a8 the PTQ-SL conv (K = 144 -> 2 x 72: 5 + 5 row folds of 16 slots instead of 9) costs 11 % more
    than the same layer without blocks."""
    from rtl import prediction
    from rtl.layer import golden_layer_inputs, lower_layer, sample_images, sim_layer

    model = load_export(export(kind))
    inputs = golden_layer_inputs(model, sample_images(model, 2))
    for lay in model.layers:
        view = sim_layer(lay, inputs[lay.name])
        M = lower_layer(lay, inputs[lay.name]).shape[0]
        assert (view.M, view.K, view.N, view.in_blocks) == (M, lay.reduction, lay.out_features, lay.n_h)
        assert view.block_k == tuple(np.diff(lay.col_bounds).tolist())
        blocked = prediction.predicted_layer_cycles(view, 8, 8, "bitfusion", lay.w_bits, lay.in_bits)
        per_block = [
            prediction.predicted_cycles(M, k, lay.out_features, 8, 8, "bitfusion", lay.w_bits, lay.in_bits)
            for k in view.block_k
        ]
        assert blocked == sum(c + 1 for c in per_block) - 1
        single = prediction.predicted_layer_cycles(
            sim_layer(lay, inputs[lay.name], in_blocks=1), 8, 8, "bitfusion", lay.w_bits, lay.in_bits
        )
        if kind == "ptq-sl" and lay.name == "3":
            assert (blocked, single) == (5999, 5399)
        elif lay.n_h == 1:
            assert blocked == single


# ---- single layers in RTL ----------------------------------------------------------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("layer", ["3", "12"])
def test_gpfq_layer_fixed_8x8(verilator: str, export, layer: str) -> None:
    from rtl.layer import verify_layer

    check = verify_layer(
        export("gpfq"), layer, rows=8, cols=8, pe_kind="fixed", images=2, gap_prob=0.2, stall_prob=0.2, seed=1
    )
    _assert_ok(check)
    assert check.n_h == 1 and check.M == (128 if layer == "3" else 2)


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("kind", "layer", "pe_kind"),
    [("ptq-sl", "3", "fixed"), ("ptq-sl-sort", "12", "fixed"), ("ptq-sl-sort", "7", "bitfusion")],
)
def test_ptq_sl_layer_with_input_blocks(verilator: str, export, kind: str, layer: str, pe_kind: str) -> None:
    """n_V = 4 row blocks, n_H = 2 input blocks: the blocks' sums leave the gemm top one by one and combine through
    the requant unit's external accumulator; the reordered export runs in its stored channel order, as the golden
    model does."""
    from rtl.layer import verify_layer

    rows, cols = (8, 8) if pe_kind == "fixed" else (4, 4)
    check = verify_layer(
        export(kind), layer, rows=rows, cols=cols, pe_kind=pe_kind, images=2, gap_prob=0.3, stall_prob=0.3, seed=2
    )
    _assert_ok(check)
    assert check.n_v == 4 and check.n_h == 2
    if kind == "ptq-sl-sort":
        model = load_export(export(kind))
        assert any(np.any(lay.out_perm != np.arange(lay.out_features)) for lay in model.layers)


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("kind", "layer", "pe_kind", "preload"),
    [
        ("gpfq", "3", "stripes", "overlapped"),
        ("ptq-sl", "7", "loom", "serial"),
        ("ptq-sl-sort", "12", "loom", "serial"),
    ],
)
def test_real_layers_on_bit_serial_arrays(
    verilator: str, export, kind: str, layer: str, pe_kind: str, preload: str
) -> None:
    """Exported GPFQ and PTQ-SL layers (n_H = 2 included) on Stripes and Loom arrays at a tiled mapping: the
    codes equal the golden model's and the busy cycles sim's bit-serial cost (a_bits or a_bits x w_bits steps per
    element)."""
    from rtl.layer import check_layer, golden_layer_inputs, sample_images
    from sim.mapping import Mapping

    model = load_export(export(kind))
    x = golden_layer_inputs(model, sample_images(model, 1))[layer]
    check = check_layer(
        model.layer(layer),
        x,
        rows=4,
        cols=4,
        pe_kind=pe_kind,
        gap_prob=0.2,
        stall_prob=0.2,
        seed=5,
        mapping=Mapping(4, 1),
        preload=preload,
    )
    _assert_ok(check)
    assert check.pe_kind == pe_kind and check.loop_order == "MNK"


@pytest.mark.rtl
def test_ptq_sl_linear_on_icarus(iverilog: str, export) -> None:
    """The same layer top and bench on the second simulator (a small Bit-Fusion array, n_H = 2 logits layer)."""
    from rtl.layer import verify_layer

    check = verify_layer(export("ptq-sl"), "12", rows=4, cols=4, pe_kind="bitfusion", simulator="icarus", images=2)
    _assert_ok(check)
    assert check.n_h == 2 and check.simulator == "icarus"


@pytest.mark.rtl
def test_blocks_of_one_element_tiles_back_to_back(verilator: str, export) -> None:
    """n_H = 2 with the reduction loop innermost and one-element tiles: every beat has accumulator row 0, so under
    heavy backpressure block 1's beat enters stage 1 right behind block 0's beat of the same output, and must read
    the A that beat is writing on the same edge (the buffer's forwarding)."""
    from rtl.layer import check_layer, golden_layer_inputs, sample_images

    model = load_export(export("ptq-sl"))
    full = model.layer("12")
    x = golden_layer_inputs(model, sample_images(model, 6))["12"]
    # the first 8 inputs of each of its two blocks: each block one row fold of the 4-row array (pack 2 at w4a8), so
    # the two blocks' beats of an output are one fold apart
    keep = np.r_[0:8, full.col_bounds[1] : full.col_bounds[1] + 8]
    lay = dataclasses.replace(
        full,
        w_codes=full.w_codes[:, keep],
        in_channels=16,
        col_bounds=np.array([0, 8, 16]),
        in_perm=np.arange(16),
        in_shape=(16,),
    )
    check = check_layer(
        lay,
        x[:, keep],
        rows=4,
        cols=4,
        pe_kind="bitfusion",
        mapping="NMK:1",
        stall_prob=0.7,
        seed=3,
        preload="overlapped",
    )
    _assert_ok(check)
    assert check.n_h == 2 and check.tile_m == 1 and check.loop_order == "NMK"


@pytest.mark.rtl
def test_zero_point_and_signed_activations_bitfusion(verilator: str, export) -> None:
    """Non-zero input zero points (unsigned and signed codes) exercise the per-channel correction; signed codes
    run the Bit-Fusion PE in its signed-activation mode."""
    from rtl.layer import check_layer, golden_layer_inputs, sample_images

    model = load_export(export("ptq-sl"))
    x = golden_layer_inputs(model, sample_images(model, 1))["3"]
    lay = model.layer("3")
    for layer, codes in [
        (dataclasses.replace(lay, in_zero_point=77), x),
        (dataclasses.replace(lay, in_qmin=-128, in_qmax=127, in_zero_point=-51), x - 128),
    ]:
        _assert_ok(check_layer(layer, codes, rows=4, cols=4, pe_kind="bitfusion"))


@pytest.mark.rtl
def test_layers_back_to_back_in_one_simulation(verilator: str, export, tmp_path: Path) -> None:
    """Three layers (n_H = 1 and 2, M = 64, 1 and 4) in one simulation without reset, with gaps and backpressure:
    the constants of a layer must not be written before the previous layer has fully left the top (a write while
    the gemm top's output FIFO still held the last beat used to be dropped)."""
    from rtl.layer import BENCH, SOURCES, TOP, golden_layer_inputs, layer_job, layer_parameters, sample_images
    from rtl.runner import run_bench

    model = load_export(export("ptq-sl-sort"))
    inputs = golden_layer_inputs(model, sample_images(model, 1))
    jobs = [
        layer_job(model.layer(name), inputs[name], 4, 4, "bitfusion", gap_prob=0.3, stall_prob=0.3, seed=i)[0]
        for i, name in enumerate(["0", "12", "7"])
    ]
    results = tmp_path / "results.json"
    assert [model.layer(name).n_h for name in ["0", "12", "7"]] == [1, 2, 2]
    run_bench(
        TOP,
        SOURCES,
        BENCH,
        layer_parameters(model.layer("12"), 4, 4, "bitfusion"),
        data={"results_path": str(results), "jobs": jobs},
    )
    records = json.loads(results.read_text())
    assert [r["mismatches"] for r in records] == [0, 0, 0]


@pytest.mark.rtl
def test_mismatch_names_index_expected_actual_and_cycle(verilator: str, export) -> None:
    from rtl.layer import check_layer, golden_layer_inputs, sample_images

    model = load_export(export("gpfq"))
    lay = model.layer("12")
    x = golden_layer_inputs(model, sample_images(model, 2))["12"]
    wrong = model.run_layer("12", x).reshape(-1, lay.out_features).copy()
    wrong[1, 7] += 1
    check = check_layer(lay, x, rows=8, cols=8, pe_kind="fixed", expected=wrong)
    assert check.mismatches == 1
    msg = check.messages[0]
    assert "output index (m=1, n=7)" in msg and f"expected {wrong[1, 7]}, got {wrong[1, 7] - 1}" in msg
    assert "at cycle" in msg


# ---- the whole model ---------------------------------------------------------------------------------------------
@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "pe_kind", "images"), [("gpfq", "fixed", 16), ("ptq-sl-sort", "bitfusion", 8)])
def test_whole_digits_cnn_through_the_rtl(verilator: str, export, kind: str, pe_kind: str, images: int) -> None:
    """Every layer in RTL, fed the RTL's own codes of the layer before: all intermediate codes and the predictions
    equal the golden model's, and every layer's busy cycles equal sim's."""
    from rtl.layer import run_model_rtl, sample_images

    model = load_export(export(kind))
    rows, cols = (8, 8) if pe_kind == "fixed" else (4, 4)
    result = run_model_rtl(model, sample_images(model, images), rows=rows, cols=cols, pe_kind=pe_kind)
    for check in result.layers:
        _assert_ok(check)
    assert len(result.layers) == 4 and result.intermediate_mismatches == 0
    np.testing.assert_array_equal(result.predictions, result.golden_predictions)
    assert result.ok


def _tiled_mappings(model) -> dict:  # noqa: ANN001 - quant.integer.IntegerModel
    """A tiled mapping per layer, every layer in another loop order (sim's candidates: order, tile choice >= 2)."""
    from sim.mapping import Mapping

    orders = (1, 3, 5, 2, 4, 0)
    return {lay.name: Mapping(orders[i % len(orders)], 2 + i) for i, lay in enumerate(model.layers)}


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("kind", "pe_kind", "preload"),
    [("gpfq", "fixed", "overlapped"), ("gpfq", "bitfusion", "overlapped"), ("ptq-sl-sort", "bitfusion", "overlapped")],
)
def test_whole_digits_cnn_through_tiled_mappings(verilator: str, export, kind: str, pe_kind: str, preload: str) -> None:
    """The whole network with every layer at a tiled mapping in another loop order (2-D tiles of the output grid
    for the convolutions), on overlapped arrays (PTQ-SL's n_H = 2 blocks inside the reduction loop): bit-exact,
    and each layer's busy cycles equal sim's at that mapping and profile."""
    from rtl.layer import run_model_rtl, sample_images

    model = load_export(export(kind))
    rows, cols = (8, 8) if pe_kind == "fixed" else (4, 4)
    mappings = _tiled_mappings(model)
    result = run_model_rtl(
        model, sample_images(model, 4), rows=rows, cols=cols, pe_kind=pe_kind, mappings=mappings, preload=preload
    )
    for check in result.layers:
        _assert_ok(check)
        assert check.preload == preload and check.tile_m < check.M, check.layer
    assert len({c.loop_order for c in result.layers}) == 4 and result.ok


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("kind", "pe_kind", "preload", "order"),
    [
        ("gpfq", "fixed", "overlapped", "MNK"),
        ("ptq-sl-sort", "bitfusion", "serial", "NMK"),
        ("gpfq", "stripes", "overlapped", "NMK"),
    ],
)
def test_whole_digits_cnn_on_output_stationary_arrays(
    verilator: str, export, kind: str, pe_kind: str, preload: str, order: str
) -> None:
    """Every layer on an output-stationary array (the layer top's DATAFLOW = 1): bit-exact, cycles equal to sim's
    os cost at the order and profile (PTQ-SL's blocks: one fold each per output tile)."""
    from rtl.layer import run_model_rtl, sample_images

    model = load_export(export(kind))
    rows, cols = (8, 8) if pe_kind == "fixed" else (4, 4)
    images = 1 if pe_kind == "stripes" else 2
    result = run_model_rtl(
        model,
        sample_images(model, images),
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        preload=preload,
        dataflow="os",
        mappings={lay.name: order for lay in model.layers},
    )
    for check in result.layers:
        _assert_ok(check)
        assert check.dataflow == "os" and check.loop_order == order
    assert result.ok


def test_input_blocks_are_reduction_blocks_of_one_gemm(export) -> None:
    """A PTQ-SL layer is one GEMM: its n_H blocks split the reduction (each packs its own slots and starts its own
    row folds, as sim's in_blocks), one build holds them (MAX_BLOCKS), and the constants of block h, column fold cf
    go to address h * MAX_NF + cf."""
    from rtl.layer import golden_layer_inputs, layer_job, layer_parameters, sample_images

    model = load_export(export("ptq-sl"))
    lay = model.layer("3")
    x = golden_layer_inputs(model, sample_images(model, 1))["3"]
    job, plan, _ = layer_job(lay, x, 4, 4, "bitfusion", preload="overlapped")
    sizes = tuple(np.diff(lay.col_bounds).tolist())
    assert lay.n_h == 2 and plan.block_sizes == sizes and plan.K == lay.reduction
    slots = [math.ceil(k / plan.pack) for k in sizes]
    assert plan.row_folds == sum(math.ceil(kp / 4) for kp in slots)  # each block starts its own folds
    params = layer_parameters(lay, 4, 4, "bitfusion", preload="overlapped")
    assert params["MAX_BLOCKS"] == 2 and params["OVERLAP"] == 1
    nf = -(-lay.out_features // 4)
    assert [a for a, _ in job["consts"]] == [h * params["MAX_NF"] + cf for h in range(2) for cf in range(nf)]
    assert job["cfg"]["cfg_block_last"] & 0xFFFF == plan.block_last_folds[0]


def test_layer_mapping_takes_sims_tiles(export) -> None:
    """The gemm top's tiles for a conv are sim's RowTiles (rows of the output grid x columns), and a cost-table
    style ``ORDER:TILE_M`` names sim's candidate."""
    from rtl.layer import golden_layer_inputs, layer_mapping, parse_layer_mapping, sample_images, sim_layer
    from sim.mapping import Mapping

    model = load_export(export("gpfq"))
    x = golden_layer_inputs(model, sample_images(model, 2))["3"]
    lowered = sim_layer(model.layer("3"), x)
    tiles = layer_mapping(lowered, Mapping(1, 3))
    assert tiles.grid_w == lowered.out_w and tiles.order == 1
    assert tiles.tile_h * tiles.tile_w < lowered.M
    named = parse_layer_mapping(f"NMK:{tiles.tile_h * tiles.tile_w}", lowered)
    assert (
        named.order == 1
        and layer_mapping(lowered, named).tile_h * layer_mapping(lowered, named).tile_w == tiles.tile_h * tiles.tile_w
    )
    with pytest.raises(RtlError, match="tile_m = 7 is not a stream tile"):
        parse_layer_mapping("NMK:7", lowered)


@pytest.mark.rtl
def test_rtl_verify_cli_prints_one_json_line(verilator: str, export, capsys) -> None:
    from experiments.cli import main

    main(["rtl", "verify", "--export", str(export("ptq-sl")), "--layer", "12", "--array", "8x8", "--pe", "fixed"])
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["mismatches"] == 0 and record["n_h"] == 2
    assert record["measured_cycles"] == record["predicted_cycles"] > 0
    assert "0 mismatches" in out[0] and "sim predicts" in out[0]


def test_rtl_verify_unknown_layer_is_one_line(export, capsys) -> None:
    from experiments.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["rtl", "verify", "--export", str(export("gpfq")), "--layer", "99"])
    assert exc.value.code == 2 and "no layer '99'" in capsys.readouterr().err
