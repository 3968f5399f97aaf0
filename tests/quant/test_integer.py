"""Integer export and the golden integer model against the fake-quant torch model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.export import build_integer_model, export_model
from quant.fakequant import QuantLayer, calibrate_activations, prepare, quant_layers
from quant.integer import (
    FORMAT_VERSION,
    META_NAME,
    NPZ_NAME,
    IntegerModel,
    load_export,
)
from quant.quantizer import Blocks, dequantize, expand_blocks
from quant.rtn import rtn_layer, rtn_quantize


# ------------------------------------------------------------------------------------------------------- fixtures
def random_cnn(conv1d: bool = False, seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU-MaxPool-Conv-ReLU-Flatten-Linear with non-trivial BN statistics (folded by prepare)."""
    torch.manual_seed(seed)
    conv, bn, pool = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d) if conv1d else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
    spatial = 4  # length 16 -> pool 8 -> stride 2: 4 ; 8x8 -> pool 4x4 -> stride 2: 2x2
    model = nn.Sequential(
        conv(3, 8, 3, padding=1),
        bn(8),
        nn.ReLU(),
        pool(2),
        conv(8, 12, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * spatial, 10),
    )
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def random_inputs(n: int, conv1d: bool = False, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 3, 16) if conv1d else (n, 3, 8, 8), generator=g)


def quantized(model: nn.Module, calib: torch.Tensor, w_bits: int, gran: str | Blocks, a_bits: int) -> nn.Module:
    q = rtn_quantize(prepare(model), w_bits, gran)
    calibrate_activations(q, calib, a_bits)
    return q


def capture(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Float32 inputs (before the input quantizer) and outputs of every QuantLayer in the fake-quant model."""
    ins: dict[str, torch.Tensor] = {}
    outs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in quant_layers(model):

        def hook(_mod, inp, out, name=name):
            ins[name], outs[name] = inp[0].detach(), out.detach()

        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return ins, outs


def channel_axis(y: np.ndarray, kind: str) -> tuple[int, ...]:
    """Shape to broadcast a per-output-channel vector against layer outputs."""
    return (1, -1) + (1,) * (y.ndim - 2) if kind != "linear" else (1,) * (y.ndim - 1) + (-1,)


def check_layerwise(q: nn.Module, golden: IntegerModel, x: torch.Tensor) -> dict[str, float]:
    """Every layer, fed the fake-quant model's own input codes, must satisfy the documented bound

        |y_code - clamp(y_exact / s_y + z_y)| <= 1/2 + delta_r       (y_exact: fake-quant layer in float64)

    equal the half-up rounding of the exact value wherever it is further than delta_r from a tie, and stay within
    one code of the float32 fake-quant model's own next-layer codes.  Returns the worst observed excess per layer."""
    ins, _ = capture(q, x)
    layers = dict(quant_layers(q))
    stats = {}
    for lay in golden.layers:
        m = layers[lay.name]
        codes_in = m.act.codes(ins[lay.name])
        y = golden.run_layer(lay.name, codes_in)
        m64 = copy.deepcopy(m).double()
        # exact float64 weights (the float32 model rounds codes * scale to float32; that is its own error)
        full = expand_blocks(m.w_scales, m.out_features, m.in_channels, m.kernel)
        m64.w_deq = torch.as_tensor(dequantize(m.w_codes, full).reshape(m.layer.weight.shape))
        with torch.no_grad():
            ref = m64(torch.as_tensor((codes_in - m.act.zero_point) * m.act.scale))
            if lay.relu:
                ref = torch.relu(ref)
        u = ref.numpy() / lay.out_scale + lay.out_zero_point
        clamped = np.clip(u, lay.out_qmin, lay.out_qmax)
        delta = lay.error_bound_lsb().reshape(channel_axis(y, lay.kind))
        err = np.abs(y - clamped)
        assert np.all(err <= 0.5 + delta + 1e-6), (lay.name, float((err - 0.5 - delta).max()))
        # dequantized: the same bound in real units
        deq = (y - lay.out_zero_point) * lay.out_scale
        real = (clamped - lay.out_zero_point) * lay.out_scale
        assert np.all(np.abs(deq - real) <= (0.5 + delta + 1e-6) * lay.out_scale)
        away = np.abs(u - np.floor(u) - 0.5) > delta + 1e-6
        np.testing.assert_array_equal(y[away], np.clip(np.floor(u + 0.5), lay.out_qmin, lay.out_qmax)[away])
        # the float32 fake-quant layer on the same input codes: the next layer's codes agree within one code.
        # (Its own float32 input quantizer can round a near-tie input differently from ActQuant.codes, which is
        # float64; the float32 layer is therefore fed the dequantized codes.)
        with torch.no_grad():
            f32 = m(torch.as_tensor((codes_in - m.act.zero_point) * m.act.scale, dtype=torch.float32)).double().numpy()
        if lay.relu:
            f32 = np.maximum(f32, 0.0)
        q32 = np.clip(np.rint(f32 / lay.out_scale) + lay.out_zero_point, lay.out_qmin, lay.out_qmax)
        if not lay.logits:
            assert np.abs(y - q32).max() <= 1
            assert np.mean(y != q32) <= 0.01, (lay.name, np.mean(y != q32))
        stats[lay.name] = float((err - delta).max())
    return stats


CASES = [("channel", 8), ("channel", 4), (Blocks(2, 2), 8), (Blocks(2, 2), 4), (Blocks(4, 3), 8), (Blocks(4, 3), 4)]


# ---------------------------------------------------------------------------------------- golden vs fake-quant
@pytest.mark.parametrize("conv1d", [False, True], ids=["conv2d", "conv1d"])
@pytest.mark.parametrize(("gran", "a_bits"), CASES, ids=[f"{g}-a{a}" for g, a in CASES])
def test_golden_tracks_fake_quant_within_the_bound(tmp_path: Path, conv1d: bool, gran, a_bits: int) -> None:
    model = random_cnn(conv1d)
    q = quantized(model, random_inputs(256, conv1d, seed=2), 4, gran, a_bits)
    x = random_inputs(1000, conv1d)
    golden = load_export(export_model(q, x[:4], tmp_path))
    if isinstance(gran, Blocks):
        assert [(lay.n_v, lay.n_h) for lay in golden.layers] == [(gran.n_v, gran.n_h)] * 3
    check_layerwise(q, golden, x[:200])
    logits, pred = golden.run(x.numpy())
    with torch.no_grad():
        ref = q(x)
    assert np.mean(pred == ref.argmax(1).numpy()) >= 0.99
    assert logits.shape == (1000, 10) and logits.dtype == np.float64
    # codes in -> the same result as float in
    codes = golden.quantize_input(x)
    np.testing.assert_array_equal(golden.run(codes)[1], pred)


@pytest.mark.parametrize("w_bits", [2, 8])
def test_other_weight_bits_and_mixed_activation_bits(tmp_path: Path, w_bits: int) -> None:
    model = random_cnn()
    q = rtn_quantize(prepare(model), w_bits, Blocks(2, 2))
    names = [n for n, _ in quant_layers(q)]
    calibrate_activations(q, random_inputs(256, seed=2), dict(zip(names, [8, 4, 6])))
    golden = load_export(export_model(q, random_inputs(2), tmp_path))
    assert [lay.in_bits for lay in golden.layers] == [8, 4, 6]
    assert [lay.out_bits for lay in golden.layers] == [4, 6, 32]
    check_layerwise(q, golden, random_inputs(200))


def test_conv_geometry_dilation_asymmetric_stride_and_same_padding(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding="same"),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 2 * 2, 4),
    ).eval()
    x = torch.randn(300, 3, 8, 8)
    q = quantized(model, x[:100], 4, Blocks(3, 2), 8)
    golden = load_export(export_model(q, x[:2], tmp_path))
    assert golden.layers[0].padding == ((1, 1), (2, 2)) and golden.layers[1].padding == ((1, 1), (1, 1))
    assert golden.layers[1].relu and golden.layers[1].ops[0]["op"] == "maxpool"
    check_layerwise(q, golden, x[:100])
    with torch.no_grad():
        ref = q(x).argmax(1).numpy()
    assert np.mean(golden.run(x)[1] == ref) >= 0.99


def test_layer_without_relu_and_asymmetric_output_saturates_exactly(tmp_path: Path) -> None:
    """No ReLU after conv1: the next quantizer is asymmetric (zero point > 0) and the clamp is plain saturation."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Conv1d(4, 3, 3), nn.Flatten(), nn.Linear(3 * 6, 5)).eval()
    x = torch.randn(400, 2, 10)
    q = quantized(model, x[:100], 4, "channel", 4)
    golden = load_export(export_model(q, x[:2], tmp_path))
    first = golden.layers[0]
    assert not first.relu and first.out_zero_point > 0 and (first.out_qmin, first.out_qmax) == (0, 15)
    check_layerwise(q, golden, x * 3)  # 3x larger inputs: many codes saturate at both ends
    y = golden.run_layer(first.name, golden.quantize_input(x * 3))
    assert (y == 0).any() and (y == 15).any()


def test_zero_block_and_bias_only_channel(tmp_path: Path) -> None:
    """An all-zero weight block gets the neighbouring scale for its (unused) multiplier and the bias."""
    model = random_cnn()
    q = quantized(model, random_inputs(128, seed=2), 4, Blocks(2, 2), 8)
    (n0, first), *_ = quant_layers(q)
    codes = first.w_codes.copy()
    codes[:4, : first.kernel * 2] = 0  # block (0, 0) all zero
    first.set_weight_codes(codes, first.w_scales, first.w_spec, first.blocks)
    calibrate_activations(q, random_inputs(128, seed=2), 8)
    golden = load_export(export_model(q, random_inputs(2), tmp_path))
    eff = golden.layer(n0).effective_scales()
    assert eff[0, 0] == first.w_scales[0, 1]
    check_layerwise(q, golden, random_inputs(100))


# --------------------------------------------------------------------------------------------------- round trip
def test_export_round_trip_is_lossless_and_deterministic(tmp_path: Path) -> None:
    model = random_cnn()
    q = quantized(model, random_inputs(128, seed=2), 4, Blocks(4, 3), 8)
    x = random_inputs(64)
    built = build_integer_model(q, x[:3], name="tiny")
    out = export_model(q, x[:3], tmp_path / "a", name="tiny")
    assert out == tmp_path / "a" and not any(p.name.endswith(".tmp") for p in out.iterdir())
    loaded = load_export(out)
    a, b = built.arrays(), loaded.arrays()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # against the torch model itself
    for (name, m), lay in zip(quant_layers(q), loaded.layers):
        assert lay.name == name and lay.w_codes.dtype == np.int8
        np.testing.assert_array_equal(lay.w_codes, m.w_codes)
        assert lay.w_scales.tobytes() == np.asarray(m.w_scales, dtype=np.float64).tobytes()
        assert lay.in_scale == m.act.scale and lay.in_zero_point == m.act.zero_point
        assert lay.bias_real.tobytes() == m.layer.bias.detach().double().numpy().tobytes()
        assert lay.bias.dtype == np.int32 and lay.multiplier.dtype == np.int32 and lay.shift.dtype == np.int32
    # byte-identical re-save and identical results
    loaded.save(tmp_path / "b")
    assert (tmp_path / "a" / NPZ_NAME).read_bytes() == (tmp_path / "b" / NPZ_NAME).read_bytes()
    export_model(q, x[:3], tmp_path / "c", name="tiny")
    assert (tmp_path / "a" / NPZ_NAME).read_bytes() == (tmp_path / "c" / NPZ_NAME).read_bytes()
    np.testing.assert_array_equal(built.run(x)[0], loaded.run(x)[0])
    meta = json.loads((out / META_NAME).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["model_name"] == "tiny"
    assert [s["name"] for s in meta["layer_summaries"]] == [lay.name for lay in loaded.layers]
    summary = meta["layer_summaries"][0]
    assert summary["n_v"] == 4 and summary["n_h"] == 3 and summary["psum_bits_needed"] <= 32
    assert summary["in_shape"] == [3, 8, 8] and summary["ops_after"][0] == {"op": "relu"}


def test_load_rejects_tampered_or_foreign_exports(tmp_path: Path) -> None:
    q = quantized(random_cnn(), random_inputs(64, seed=2), 4, "channel", 8)
    out = export_model(q, random_inputs(2), tmp_path)
    npz = (out / NPZ_NAME).read_bytes()
    (out / NPZ_NAME).write_bytes(npz[:-10])
    with pytest.raises(QuantInputError, match="sha256"):
        load_export(out)
    (out / NPZ_NAME).write_bytes(npz)
    meta = json.loads((out / META_NAME).read_text())
    (out / META_NAME).write_text(json.dumps({**meta, "format_version": "lowbit-integer/0"}))
    with pytest.raises(QuantInputError, match="format_version"):
        load_export(out)
    with pytest.raises(QuantInputError, match="cannot read"):
        load_export(tmp_path / "missing")


# A layer field the datapath ignores, edited through the API and saved (so the sha256 and meta.json are consistent):
# the loader must still refuse it, because it disagrees with the fields the datapath uses.
def _edit_scales(lay) -> None:  # noqa: ANN001 - IntegerLayer
    lay.w_scales = lay.w_scales * 3.0


def _edit_bias_real(lay) -> None:  # noqa: ANN001
    lay.bias_real = lay.bias_real + 1.0


INCONSISTENT_EDITS = {
    "w_scales": (_edit_scales, "w_scales"),
    "bias_real": (_edit_bias_real, "bias_real"),
    "in_bits": (lambda lay: setattr(lay, "in_bits", 4), "4-bit grid"),
    "in_scale": (lambda lay: setattr(lay, "in_scale", lay.in_scale * 2), "in_scale"),
    "out_bits": (lambda lay: setattr(lay, "out_bits", 6), "6-bit grid"),
    "relu": (lambda lay: setattr(lay, "relu", False), "relu"),
    "in_shape": (lambda lay: setattr(lay, "in_shape", (8, 5, 5)), "in_shape"),
    "in_perm": (lambda lay: setattr(lay, "in_perm", lay.in_perm[::-1].copy()), "in_perm"),
    "logits": (lambda lay: setattr(lay, "logits", True), "logits"),
    "stride": (lambda lay: setattr(lay, "stride", (1,)), "stride"),
}


@pytest.mark.parametrize("field", sorted(INCONSISTENT_EDITS))
def test_load_refuses_fields_that_disagree_with_the_datapath(tmp_path: Path, field: str) -> None:
    q = quantized(random_cnn(), random_inputs(64, seed=2), 4, Blocks(2, 2), 8)
    golden = build_integer_model(q, random_inputs(2))
    edit, needle = INCONSISTENT_EDITS[field]
    edit(golden.layers[1])
    golden.save(tmp_path)
    with pytest.raises(QuantInputError) as info:
        load_export(tmp_path)
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_load_names_the_first_meta_field_that_disagrees(tmp_path: Path) -> None:
    out = export_model(quantized(random_cnn(), random_inputs(64, seed=2), 4, "channel", 8), random_inputs(2), tmp_path)
    meta = json.loads((out / META_NAME).read_text())
    meta["layer_summaries"][1]["out_clamp"] = [0, 127]
    (out / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(QuantInputError, match=r"layer_summaries\[1\].out_clamp\[1\] is 127 but model\.npz gives"):
        load_export(out)
    meta["layer_summaries"][1]["out_clamp"] = [0, 255]
    meta["layer_summaries"][1]["relu_fused"] = 1  # equal to True in Python, but not the same JSON value
    (out / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(QuantInputError, match=r"relu_fused is 1 but model\.npz gives true"):
        load_export(out)


def test_save_refuses_a_file_path_before_writing(tmp_path: Path) -> None:
    golden = build_integer_model(quantized(random_cnn(), random_inputs(64, seed=2), 4, "channel", 8), random_inputs(2))
    (tmp_path / "taken").write_text("a file\n")
    for target in (tmp_path / "taken", tmp_path / "taken" / "below"):
        with pytest.raises(QuantInputError, match="is a file"):
            golden.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_permutations_are_stored(tmp_path: Path) -> None:
    q = quantized(random_cnn(), random_inputs(64, seed=2), 4, "channel", 8)
    names = [n for n, _ in quant_layers(q)]
    perm0 = np.random.default_rng(0).permutation(8)
    perm1 = np.random.default_rng(1).permutation(12)
    golden = load_export(export_model(q, random_inputs(2), tmp_path, perms={names[0]: perm0, names[1]: perm1}))
    np.testing.assert_array_equal(golden.layers[0].out_perm, perm0)
    np.testing.assert_array_equal(golden.layers[1].in_perm, perm0)
    np.testing.assert_array_equal(golden.layers[1].out_perm, perm1)
    expanded = golden.layers[2].in_perm.reshape(12, 4)  # Flatten: 4 features per channel
    np.testing.assert_array_equal(expanded[:, 0] // 4, perm1)
    np.testing.assert_array_equal(golden.layers[0].in_perm, np.arange(3))
    with pytest.raises(QuantInputError, match="permutation"):
        export_model(q, random_inputs(2), tmp_path, perms={names[0]: np.zeros(8, dtype=int)})
    with pytest.raises(QuantInputError, match="unknown layers"):
        export_model(q, random_inputs(2), tmp_path, perms={"nope": perm0})
    with pytest.raises(QuantInputError, match="classes"):
        export_model(q, random_inputs(2), tmp_path, perms={names[2]: np.arange(10)[::-1].copy()})


# --------------------------------------------------------------------------------------------------- bad inputs
def good_model() -> nn.Module:
    return quantized(random_cnn(), random_inputs(64, seed=2), 4, Blocks(2, 2), 8)


@pytest.mark.parametrize("where", ["weight", "bias", "w_scales", "act_scale", "example"])
def test_nan_anywhere_is_refused(tmp_path: Path, where: str) -> None:
    q = good_model()
    (_, first), *_ = quant_layers(q)
    x = random_inputs(2)
    if where == "weight":
        first.layer.weight.data[0, 0, 0, 0] = float("nan")
    elif where == "bias":
        first.layer.bias.data[1] = float("inf")
    elif where == "w_scales":
        first.w_scales = first.w_scales.copy()
        first.w_scales[0, 0] = float("nan")
    elif where == "act_scale":
        first.act = type(first.act)(first.act.spec, float("nan"), 0)
    else:
        x[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantInputError):
        export_model(q, x, tmp_path)
    assert not (tmp_path / NPZ_NAME).exists()


def test_unsupported_modules_are_named(tmp_path: Path) -> None:
    q = good_model()
    q[3] = nn.AvgPool2d(2)
    with pytest.raises(QuantInputError, match=r"3 \(AvgPool2d\)"):
        export_model(q, random_inputs(2), tmp_path)

    class Residual(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.inner(x)

    q = good_model()
    q[2] = Residual(nn.ReLU())
    with pytest.raises(QuantInputError, match="Residual"):
        export_model(q, random_inputs(2), tmp_path)
    with pytest.raises(QuantInputError, match=r"cannot run on example_x .*size of tensor"):
        export_model(Residual(good_model()), random_inputs(2), tmp_path)
    q = good_model()
    q[2] = nn.GELU()
    with pytest.raises(QuantInputError, match="GELU"):
        export_model(q, random_inputs(2), tmp_path)
    unfolded = prepare(random_cnn(), fold_bn=False)
    with pytest.raises(QuantInputError, match="BatchNorm2d"):
        export_model(unfolded, random_inputs(2), tmp_path)


def test_missing_codes_or_activation_quantizers(tmp_path: Path) -> None:
    q = good_model()
    (name, first), *_ = quant_layers(q)
    first.clear_weight_quant()
    with pytest.raises(QuantInputError, match=f"{name} \\(weight codes\\)"):
        export_model(q, random_inputs(2), tmp_path)
    q = good_model()
    _, (name, second), _ = quant_layers(q)
    second.act = None
    with pytest.raises(QuantInputError, match=f"{name} \\(input quantizer\\)"):
        export_model(q, random_inputs(2), tmp_path)
    with pytest.raises(QuantInputError, match="no QuantLayer"):
        export_model(nn.Sequential(nn.ReLU()), random_inputs(2), tmp_path)


@pytest.mark.parametrize(("groups", "blocks"), [(2, Blocks(1, 1)), (4, Blocks(2, 1)), (2, Blocks(2, 2))])
def test_grouped_conv_runs_each_group_against_its_rows(tmp_path: Path, groups: int, blocks: Blocks) -> None:
    """A grouped / depthwise conv exports with ``groups``; its golden output equals the integer convolution of the
    codes (float64 conv of integers is exact here) requantized, and it reloads."""
    torch.manual_seed(groups)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=groups, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 3)
    ).eval()
    q = prepare(model)
    for _, m in quant_layers(q):
        rtn_layer(m, 4, blocks if m.groups > 1 else "channel")
    calibrate_activations(q, torch.randn(32, 4, 8, 8), 8)
    golden = load_export(export_model(q, torch.randn(2, 4, 8, 8), tmp_path))
    lay = golden.layers[0]
    assert lay.groups == groups and lay.in_channels == 4 // groups
    x = torch.randn(5, 4, 8, 8)
    codes = golden.quantize_input(x)
    w = torch.as_tensor(lay.w_codes.astype(np.float64)).reshape(8, 4 // groups, 3, 3)
    xs = torch.as_tensor((codes - lay.in_zero_point).astype(np.float64))
    exact_conv = torch.nn.functional.conv2d(xs, w, padding=1, groups=groups).numpy()  # [N, 8, 8, 8] integers
    got = golden.run_layer(lay.name, codes)
    # requantize the exact integer conv per (row block, column block): here n_h = 1 or per-group blocks
    if lay.n_h == 1:
        rows = lay.row_block()
        mult = lay.multiplier[rows, 0].astype(np.int64)[None, :, None, None]
        shift = lay.shift[rows].astype(np.int64)[None, :, None, None]
        acc = (lay.bias.astype(np.int64) << lay.bias_shift[rows].astype(np.int64))[None, :, None, None]
        acc = acc + exact_conv.astype(np.int64) * mult
        want = np.clip(((acc + (np.int64(1) << (shift - 1))) >> shift) + lay.out_zero_point, lay.out_qmin, lay.out_qmax)
        assert np.array_equal(got, want)
    with torch.no_grad():
        fq = q(x).double().numpy()
    logits, _ = golden.run(x)
    assert np.abs(logits - fq).max() <= 1e-3 * np.abs(fq).max()


def test_golden_input_validation(tmp_path: Path) -> None:
    golden = load_export(export_model(good_model(), random_inputs(2), tmp_path))
    with pytest.raises(QuantInputError, match="non-finite"):
        golden.run(np.full((1, 3, 8, 8), np.nan))
    with pytest.raises(QuantInputError, match="outside"):
        golden.run(np.full((1, 3, 8, 8), 300, dtype=np.int64))
    with pytest.raises(QuantInputError, match="no layer"):
        golden.run_layer("nope", np.zeros((1, 3, 8, 8), dtype=np.int64))
    with pytest.raises(QuantInputError, match="integer codes"):
        golden.run_layer(golden.layers[0].name, np.zeros((1, 3, 8, 8)))
    with pytest.raises(QuantInputError, match="input shape"):
        golden.run_layer(golden.layers[0].name, np.zeros((1, 2, 8, 8), dtype=np.int64))


def test_mlp_with_flatten_before_the_first_layer(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)).eval()
    x = torch.randn(500, 3, 4)
    q = quantized(model, x[:100], 4, Blocks(3, 3), 8)
    golden = load_export(export_model(q, x[:2], tmp_path))
    assert golden.pre_ops == [{"op": "flatten", "start_dim": 1, "end_dim": -1}]
    with torch.no_grad():
        ref = q(x).argmax(1).numpy()
    assert np.mean(golden.run(x)[1] == ref) >= 0.99
    assert isinstance(quant_layers(q)[0][1], QuantLayer)


# ------------------------------------------------------------------------------------ real models (slow)
def _digits():
    models = pytest.importorskip("quant.models")
    data = pytest.importorskip("quant.data")
    return models.get_model("digits-cnn"), data.load_digits_split()


def _check_real(tmp_path: Path, q: nn.Module, split, min_acc: float) -> None:
    golden = load_export(export_model(q, split.calib_x[:2], tmp_path))
    check_layerwise(q, golden, split.test_x[:100])
    _, pred = golden.run(split.test_x)
    with torch.no_grad():
        ref = q(split.test_x).argmax(1).numpy()
    assert np.mean(pred == ref) >= 0.99
    assert np.mean(pred == split.test_y.numpy()) >= min_acc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("w_bits", "gran", "a_bits"), [(8, "channel", 8), (4, "channel", 8), (4, (4, 2), 8), (4, (8, 4), 4)]
)
def test_digits_cnn_rtn(tmp_path: Path, w_bits: int, gran, a_bits: int) -> None:
    model, split = _digits()
    q = prepare(model)
    for _, m in quant_layers(q):  # clamp the block grid to each layer (the first conv has one input channel)
        blocks = gran if isinstance(gran, str) else Blocks(min(gran[0], m.out_features), min(gran[1], m.in_channels))
        rtn_layer(m, w_bits, blocks)
    calibrate_activations(q, split.calib_x, a_bits)
    _check_real(tmp_path, q, split, 0.85)


@pytest.mark.slow
def test_digits_cnn_gpfq(tmp_path: Path) -> None:
    gpfq = pytest.importorskip("quant.gpfq")
    model, split = _digits()
    q = prepare(model)
    calibrate_activations(q, split.calib_x, 8)
    gpfq.gpfq_quantize(q, split.calib_x, 4)
    calibrate_activations(q, split.calib_x, 8)
    _check_real(tmp_path, q, split, 0.85)


@pytest.mark.slow
@pytest.mark.parametrize("reorder", [False, "sort"])
def test_digits_cnn_ptq_sl_with_input_blocks(tmp_path: Path, reorder) -> None:
    ptq_sl = pytest.importorskip("quant.ptq_sl")
    model, split = _digits()
    q = prepare(model)
    ptq_sl.ptq_sl_quantize(q, split.calib_x, 4, blocks=(4, 2), reorder=reorder)
    calibrate_activations(q, split.calib_x, 8)
    assert any(m.blocks.n_h > 1 for _, m in quant_layers(q))
    _check_real(tmp_path, q, split, 0.85)
    golden = load_export(tmp_path)
    if reorder:
        assert any(np.any(lay.out_perm != np.arange(lay.out_features)) for lay in golden.layers)
