"""The shipped pretrained weights (quant.models.shipped): manifest, sha256, cache keys, loading, and retraining."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import quant.models.shipped as shipped
import quant.models.train as train_mod
from quant.data import evaluate_accuracy
from quant.errors import ShippedWeightsError
from quant.models import MODELS, cache_key, get_model, model_split, train_model
from quant.models.fingerprint import cpu_fingerprint, describe
from quant.models.ship import SHIPPED_SEEDS, check_shipped

REGEN = "regenerate the shipped weights with `make models` (python -m quant.models.ship) and commit them"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWBIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def weights_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the shipped weights that get_model reads instead of the package's."""
    copy = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, copy)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", copy)
    return copy


def _no_training(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("get_model trained a model that should have been loaded")

    monkeypatch.setattr(train_mod, "train_model", refuse)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_model_and_seed_is_shipped_with_its_sha256_and_current_key() -> None:
    """Fails when the model, data or training code changed without regenerating the shipped weights."""
    manifest = shipped.read_manifest()
    assert {(m, s) for m in MODELS for s in SHIPPED_SEEDS} <= set(manifest), "missing shipped seeds; " + REGEN
    for (name, seed), entry in manifest.items():
        blob = entry.path().read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry.sha256, f"{entry.file} altered; {REGEN}"
        assert entry.cache_key == cache_key(name), (
            f"{entry.file} was trained under cache key {entry.cache_key}, but the current code gives "
            f"{cache_key(name)}: the model, its data loader or the training loop changed; {REGEN}"
        )
        assert entry.file == f"{name}-seed{seed}.npz" and entry.fingerprint["isa"] is not None
        assert {"cpu", "isa", "torch", "torch_cpu_capability"} <= set(entry.fingerprint)
    assert check_shipped() == []


def test_shipped_files_are_plain_arrays_without_pickle() -> None:
    entry = shipped.read_manifest()[("digits-cnn", 0)]
    with np.load(entry.path(), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert all(a.dtype != object for a in arrays.values())
    assert shipped.npz_bytes(arrays) == entry.path().read_bytes()  # same arrays, same bytes


@pytest.mark.parametrize("name", sorted(MODELS))
def test_get_model_loads_the_shipped_weights_without_training(name, cache, monkeypatch) -> None:
    _no_training(monkeypatch)
    entry = shipped.read_manifest()[(name, 1)]
    model = get_model(name, seed=1)
    with np.load(entry.path(), allow_pickle=False) as f:
        for k, v in model.state_dict().items():
            assert np.array_equal(v.numpy(), f[k]), k
    assert not model.training and not cache.exists()  # nothing trained, nothing cached
    split = model_split(name)
    assert round(evaluate_accuracy(model, split.test_x, split.test_y), 4) == entry.test_accuracy


def test_an_altered_shipped_file_is_an_error_naming_it(cache, weights_copy, monkeypatch) -> None:
    _no_training(monkeypatch)
    path = weights_copy / "digits-cnn-seed0.npz"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ShippedWeightsError, match=r"digits-cnn-seed0\.npz fail their sha256 check") as err:
        get_model("digits-cnn", seed=0)
    assert "\n" not in str(err.value)
    path.unlink()
    with pytest.raises(ShippedWeightsError, match=r"digits-cnn-seed0\.npz missing"):
        get_model("digits-cnn", seed=0)


def _short_training(monkeypatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    real = train_mod.train_model

    def one_epoch(name, seed=0, epochs=None, progress=False):
        calls.append((name, seed))
        return real(name, seed=seed, epochs=1, progress=progress)

    monkeypatch.setattr(train_mod, "train_model", one_epoch)
    return calls


def test_stale_shipped_weights_are_not_used(cache, weights_copy, monkeypatch, capsys) -> None:
    """A manifest key that the code no longer gives (someone edited the training code): train here, warn."""
    manifest = weights_copy / shipped.MANIFEST_NAME
    doc = json.loads(manifest.read_text())
    for e in doc["files"]:
        e["cache_key"] = "0" * 16
    manifest.write_text(json.dumps(doc))
    calls = _short_training(monkeypatch)
    monkeypatch.setattr(train_mod, "_NOTED", set())
    model = get_model("digits-cnn", seed=2)
    err = capsys.readouterr().err
    assert calls == [("digits-cnn", 2)] and "warning: the shipped weights of digits-cnn seed 2" in err
    assert "make models" in err and err.count("\n") == 1
    with np.load(weights_copy / "digits-cnn-seed2.npz", allow_pickle=False) as f:
        assert not np.array_equal(model.state_dict()["0.weight"].numpy(), f["0.weight"])
    assert train_mod.model_cache_path("digits-cnn", 2).is_file()
    assert check_shipped(weights_copy)  # and the check names the problem


def test_an_unshipped_seed_is_trained_with_a_one_line_note(cache, monkeypatch, capsys) -> None:
    calls = _short_training(monkeypatch)
    monkeypatch.setattr(train_mod, "_NOTED", set())
    seed = max(SHIPPED_SEEDS) + 1
    first = get_model("mnist1d-cnn", seed=seed)
    err = capsys.readouterr().err
    assert calls == [("mnist1d-cnn", seed)] and err.count("\n") == 1
    assert f"mnist1d-cnn seed {seed} is not shipped" in err and "specific to this machine's CPU" in err
    again = get_model("mnist1d-cnn", seed=seed)  # from the local cache, silently
    assert len(calls) == 1 and capsys.readouterr().err == "" and _same_state(first, again)


def test_fingerprint_names_the_kernel_overrides(monkeypatch) -> None:
    from quant.models.fingerprint import KERNEL_ENV

    for var in KERNEL_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    fp = cpu_fingerprint()
    assert fp["kernel_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"} and fp["torch"] == torch.__version__
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in describe(fp)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert cpu_fingerprint() != fp and train_mod.kernels_key() != ""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_retraining_seed_0_reproduces_the_shipped_weights(name) -> None:
    """Retrain seed 0 from scratch. On the kind of machine that made the shipped file (equal fingerprint: CPU, ISA
    flags, torch, kernel overrides) the weights are bitwise equal. Elsewhere the float kernels differ, which
    perturbs training like another seed: the test accuracies must then agree within 4 binomial standard errors of
    the difference of two independent accuracies (about 3.4 points for digits' 397 images, 3.0 for mnist1d's 1000
    signals), wider than the spread between shipped seeds. A stale cache key (training code changed without
    regenerating) fails first."""
    entry = shipped.read_manifest()[(name, 0)]
    assert entry.cache_key == cache_key(name), f"{entry.file}: cache key changed; {REGEN}"
    retrained, reference = train_model(name, seed=0), get_model(name, seed=0)
    if entry.fingerprint == cpu_fingerprint():
        assert _same_state(retrained, reference), f"same machine kind, different weights; {REGEN}"
        return
    split = model_split(name)
    n = len(split.test_y)
    a = evaluate_accuracy(retrained, split.test_x, split.test_y) / 100
    b = evaluate_accuracy(reference, split.test_x, split.test_y) / 100
    p = (a + b) / 2
    margin = 4 * math.sqrt(2 * p * (1 - p) / n)
    assert abs(a - b) <= margin, (
        f"retrained on {describe(cpu_fingerprint())}: {100 * a:.2f} % against the shipped {100 * b:.2f} % (made "
        f"on {describe(entry.fingerprint)}), beyond {100 * margin:.2f} points"
    )
