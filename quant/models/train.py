"""Deterministic training and on-disk caching of lowbit's small reference models.

``train_model(name, seed)`` trains a registered model from scratch, bit-reproducibly on CPU:

* the model initialisation and the mini-batch order come from ``seed`` only (``torch.manual_seed`` inside a
  ``fork_rng`` block and a private ``torch.Generator``; the caller's global RNG state is left untouched);
* training runs with ``torch.use_deterministic_algorithms(True)`` and **one intra-op thread**. The thread count
  changes the float summation order of CPU convolutions, so without the pin two machines (or two
  ``OMP_NUM_THREADS`` settings) would produce different weights; one thread is also the fastest setting for these
  tiny models. Both settings are restored afterwards.
* Adam with a cosine learning-rate decay over a fixed number of epochs, no augmentation, no early stopping.

``get_model(name, seed)`` trains on first use and stores the state_dict under
``lowbit_cache_dir()/models/<name>-seed<seed>-<key>.pt``, where ``<key>`` hashes the architecture, the
hyper-parameters, the torch version and the *source code* of the builder's and the data loader's modules and of
the training loop, so an edit to any of them retrains instead of reusing stale weights; later calls load it. Models
are returned in eval mode.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import nn

from quant.data import Split, atomic_write, evaluate_accuracy, load_digits_split, load_mnist1d_split, lowbit_cache_dir
from quant.errors import QuantInputError
from quant.models.digits_cnn import digits_cnn
from quant.models.mnist1d_cnn import mnist1d_cnn

__all__ = [
    "MODELS",
    "ModelSpec",
    "TrainConfig",
    "cache_key",
    "deterministic_cpu",
    "get_model",
    "model_cache_path",
    "model_split",
    "train_model",
]

#: Bump when the cache file layout or the training loop changes in a way the key below cannot see.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters. ``data_seed`` selects the data split the model is trained on (not the init)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    data_seed: int = 0


class ModelSpec(NamedTuple):
    """One registry entry: ``(builder, data loader, training hyper-parameters)``."""

    builder: Callable[[], nn.Module]
    data: Callable[[int], Split]
    hparams: TrainConfig


#: name -> (builder, data loader, training hyper-parameters). Read-only.
MODELS: MappingProxyType[str, ModelSpec] = MappingProxyType(
    {
        "digits-cnn": ModelSpec(
            digits_cnn, load_digits_split, TrainConfig(epochs=20, batch_size=32, lr=3e-3, weight_decay=1e-4)
        ),
        "mnist1d-cnn": ModelSpec(mnist1d_cnn, load_mnist1d_split, TrainConfig(epochs=30, batch_size=64, lr=3e-3)),
    }
)


def _spec(name: object) -> ModelSpec:
    if not isinstance(name, str) or name not in MODELS:
        raise QuantInputError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise QuantInputError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def model_split(name: str) -> Split:
    """The data split ``name`` is trained on (its test set is the one the accuracy targets refer to)."""
    spec = _spec(name)
    return spec.data(spec.hparams.data_seed)


@contextmanager
def deterministic_cpu() -> Iterator[None]:
    """Deterministic algorithms and a single intra-op thread, restoring the caller's settings on exit."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.set_num_threads(threads)


def train_model(name: str, seed: int = 0, epochs: int | None = None, progress: bool = False) -> nn.Module:
    """Train registered model ``name`` from scratch with ``seed``; returns it in eval mode.

    ``epochs`` overrides the registered epoch count (the learning-rate schedule follows it). Same name, seed and
    epochs give bitwise-identical weights. ``progress=True`` prints one line per epoch to stderr.
    """
    spec = _spec(name)
    seed = _check_seed(seed)
    hp = spec.hparams
    if epochs is None:
        epochs = hp.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise QuantInputError(f"epochs must be a positive int, got {epochs!r}")
    split = spec.data(hp.data_seed)
    x, y = split.train_x, split.train_y
    n = len(y)
    steps_per_epoch = math.ceil(n / hp.batch_size)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]), deterministic_cpu():
        torch.manual_seed(seed)
        model = spec.builder()
        opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        order_rng = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=order_rng)
            total, count = 0.0, 0
            for i in range(0, n, hp.batch_size):
                idx = perm[i : i + hp.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single sample
                    continue
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            if not math.isfinite(total):
                raise RuntimeError(f"training {name} diverged at epoch {epoch + 1} (non-finite loss)")
            if progress:
                print(
                    f"[{name} seed {seed}] epoch {epoch + 1}/{epochs} loss {total / count:.4f} "
                    f"({time.perf_counter() - t0:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    if progress:
        acc = evaluate_accuracy(model, split.test_x, split.test_y)
        print(f"[{name} seed {seed}] test accuracy {acc:.2f}%", file=sys.stderr, flush=True)
    return model.eval()


def _source_digest(spec: ModelSpec) -> str:
    """SHA-256 of the code that determines the weights: the builder's and data loader's modules, the training loop."""
    parts = [
        inspect.getsource(inspect.getmodule(spec.builder)),
        inspect.getsource(inspect.getmodule(spec.data)),
        inspect.getsource(deterministic_cpu),
        inspect.getsource(train_model),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_key(name: str) -> str:
    """A 16-hex-digit hash of everything that determines the trained weights except the seed."""
    spec = _spec(name)
    with torch.random.fork_rng(devices=[]):
        arch = repr(spec.builder())
    payload = {
        "version": _CACHE_VERSION,
        "name": name,
        "arch": arch,
        "hparams": asdict(spec.hparams),
        "data": f"{spec.data.__module__}.{spec.data.__qualname__}",
        "torch": torch.__version__,
        "source": _source_digest(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def model_cache_path(name: str, seed: int = 0) -> Path:
    """Where :func:`get_model` stores the trained state_dict of ``name`` / ``seed``."""
    seed = _check_seed(seed)
    return lowbit_cache_dir() / "models" / f"{name}-seed{seed}-{cache_key(name)}.pt"


def _load_cached(name: str, path: Path) -> nn.Module | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):  # building initialises weights; keep the caller's RNG untouched
            model = _spec(name).builder()
        model.load_state_dict(blob["state_dict"], strict=True)
    except Exception:  # noqa: BLE001 - any unreadable / stale / truncated entry is simply retrained
        return None
    return model.eval()


def get_model(name: str, seed: int = 0, progress: bool = False) -> nn.Module:
    """The trained model ``name`` for ``seed`` in eval mode: loaded from the cache, or trained and cached first."""
    _spec(name)
    path = model_cache_path(name, seed)
    if path.is_file():
        model = _load_cached(name, path)
        if model is not None:
            return model
    t0 = time.perf_counter()
    model = train_model(name, seed=seed, progress=progress)
    blob = {
        "name": name,
        "seed": seed,
        "key": cache_key(name),
        "train_seconds": time.perf_counter() - t0,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as exc:
        print(f"warning: could not cache {name} at {path}: {exc}", file=sys.stderr)
    return model
