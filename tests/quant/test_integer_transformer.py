"""The integer graph of a transformer: attention products, permutes, token pooling and float glue (LayerNorm,
softmax, GELU, scaling) between integer GEMMs; the golden model against fake-quant, and the stored graph checked."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from experiments.quantize import quantize_model
from quant.errors import QuantInputError
from quant.export import build_integer_model, export_model
from quant.integer import IntegerModel, load_export
from quant.models import model_split
from tests.user_nets import transformer


@pytest.fixture(scope="module")
def split():  # noqa: ANN201
    return model_split("digits-cnn")


def _quantized(split, method: str, w_bits: int, seed: int = 0) -> torch.nn.Module:  # noqa: ANN001
    torch.manual_seed(seed)
    return quantize_model(transformer(seed), split.calib_x[:128], w_bits, 8, method)


@pytest.mark.parametrize(("method", "w_bits"), [("rtn", 8), ("rtn", 4), ("gpfq", 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_golden_transformer_tracks_fake_quant(split, method: str, w_bits: int, seed: int) -> None:  # noqa: ANN001
    q = _quantized(split, method, w_bits, seed)
    golden = build_integer_model(q, split.calib_x[:1], name="transformer")
    ops = [n["op"] for n in golden.graph]
    assert ops.count("matmul") == 4 and "glue" in ops and "permute" in ops
    logits, pred = golden.run(split.test_x.numpy())
    with torch.no_grad():
        fq = q(split.test_x).double().numpy()
    # the GEMMs are exact; the glue runs in float64 here and in float32 in fake-quant, so a code near a rounding
    # tie can move by one LSB and carry on: predictions agree, logits agree to a fraction of their range
    assert np.mean(pred == fq.argmax(1)) >= 0.99
    rel = np.abs(logits - fq).max(axis=1) / np.abs(fq).max()
    assert np.median(rel) <= 1e-3 and rel.max() <= 0.05


@pytest.mark.parametrize(("method", "gran"), [("ptq-sl", "channel"), ("ptq-sl", "4x2"), ("gpfq-paper", "channel")])
def test_every_post_training_method_exports_a_transformer(split, method: str, gran: str) -> None:  # noqa: ANN001
    from experiments.quantize import parse_granularity

    q = quantize_model(transformer(0), split.calib_x[:128], 4, 8, method, parse_granularity(gran))
    _, pred = build_integer_model(q, split.calib_x[:1], name="transformer").run(split.test_x.numpy())
    with torch.no_grad():
        assert np.mean(pred == q(split.test_x).argmax(1).numpy()) >= 0.99


def test_products_run_as_linear_layers_with_b_as_weights(split) -> None:  # noqa: ANN001
    """Each (sample, head) slice of a product is the template Linear layer with b's codes as its weights: the
    arithmetic the RTL runs."""
    q = _quantized(split, "rtn", 8)
    golden = build_integer_model(q, split.calib_x[:1], name="transformer")
    captured = {}

    def spy(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        captured[name] = (a, b)
        return golden.run_product(name, a, b)

    from quant.integer_graph import run_graph

    run_graph(golden.graph, golden.quantize_input(split.test_x[:3].numpy()), golden.run_layer, run_product=spy)
    assert len(captured) == 4
    for name, (a, b) in captured.items():
        want = golden.run_product(name, a, b)
        template = golden.layer(name)
        for idx in np.ndindex(*a.shape[:-2]):
            lay = dataclasses.replace(template, w_codes=np.ascontiguousarray(b[idx].T).astype(np.int8), product=False)
            one = type(golden)([lay], [], "one", None)
            assert np.array_equal(one.run_layer(lay.name, a[idx]), want[idx]), (name, idx)


def test_export_round_trip_and_tampering(split, tmp_path) -> None:  # noqa: ANN001
    q = _quantized(split, "rtn", 4)
    out = tmp_path / "tx"
    export_model(q, split.calib_x[:1], out, name="transformer")
    model = load_export(out)
    a, _ = model.run(split.test_x[:16].numpy())
    b, _ = build_integer_model(q, split.calib_x[:1], name="transformer").run(split.test_x[:16].numpy())
    assert np.array_equal(a, b)

    def tampered(edit) -> str:  # noqa: ANN001
        broken = copy.deepcopy(model.graph)
        edit(broken)
        bad = IntegerModel(model.layers, model.pre_ops, model.name, broken)
        d = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        bad.save(d)
        with pytest.raises(QuantInputError) as info:
            load_export(d)
        return str(info.value)

    glue = next(i for i, n in enumerate(model.graph) if n["op"] == "glue" and n["fn"] == "softmax")
    matmul = next(i for i, n in enumerate(model.graph) if n["op"] == "matmul")
    gemm = next(i for i, n in enumerate(model.graph) if n["op"] == "gemm")
    assert "fn must be one of" in tampered(lambda g: g[glue].update(fn="exp"))
    assert "softmax dim" in tampered(lambda g: g[glue]["params"].update(dim=0))
    assert "no product layer" in tampered(lambda g: g[matmul].update(layer=g[gemm]["layer"]))
    assert "quantizers of its operands" in tampered(lambda g: g[matmul].update(inputs=g[matmul]["inputs"][::-1]))


def test_glue_float_values_only_feed_glue(split, tmp_path) -> None:  # noqa: ANN001
    q = _quantized(split, "rtn", 8)
    model = build_integer_model(q, split.calib_x[:1], name="transformer")
    names = [n["name"] for n in model.graph]
    float_node = next(n for n in model.graph if n["op"] == "glue" and n["q"] is None)  # scores / sqrt(d)
    reader = next(n for n in model.graph if float_node["name"] in n["inputs"])
    assert reader["op"] == "glue" and reader["fn"] == "softmax"
    later = next(i for i, n in enumerate(model.graph) if n["op"] == "matmul" and i > names.index(reader["name"]))
    broken = copy.deepcopy(model.graph)
    broken[later]["inputs"][0] = float_node["name"]  # a product reading the float scores directly
    IntegerModel(model.layers, model.pre_ops, model.name, broken).save(tmp_path / "bad")
    with pytest.raises(QuantInputError, match="reads a float value"):
        load_export(tmp_path / "bad")


def _padded(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as 8 tokens of 8 pixels, each sample cut to a random length (4..8), padding zeroed and masked."""
    g = torch.Generator().manual_seed(seed)
    tokens = x.reshape(len(x), 8, 8).clone()
    keep = torch.arange(8)[None, :] < torch.randint(4, 9, (len(x),), generator=g)[:, None]
    tokens[~keep] = 0
    return tokens, torch.where(keep, 0.0, -1e4)[:, None, None, :], keep


@pytest.mark.parametrize("seed", [0, 1])
def test_a_two_input_encoder_with_an_attention_mask(split, seed: int) -> None:  # noqa: ANN001
    """Embeddings and an additive mask as two graph inputs; the mask reaches the scores through a glue add; the
    golden model takes a tuple of inputs and tracks fake-quant on the padded batch."""
    from quant.fakequant import calibrate_activations, prepare
    from quant.rtn import rtn_quantize
    from tests.user_nets import masked_encoder

    tokens, mask, keep = _padded(split.calib_x[:128], seed)
    q = prepare(masked_encoder(seed))
    calibrate_activations(q, (tokens, mask), 8)
    rtn_quantize(q, 4)
    golden = build_integer_model(q, (tokens[:1], mask[:1]), name="masked")
    ops = [n["op"] for n in golden.graph]
    assert ops[:2] == ["input", "input"] and any(n["op"] == "glue" and n["fn"] == "add" for n in golden.graph)
    t_tokens, t_mask, t_keep = _padded(split.test_x[:128], seed + 10)
    out = golden.logits(golden.execute((t_tokens.numpy(), t_mask.numpy())).codes)
    with torch.no_grad():
        fq = q(t_tokens, t_mask).double().numpy()
    k = t_keep.numpy()[..., None]
    a, b = (out * k).sum(1), (fq * k).sum(1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cos) >= 0.9999 and cos.min() >= 0.99
    with pytest.raises(QuantInputError, match="takes 2 inputs"):
        golden.execute(t_tokens.numpy())
