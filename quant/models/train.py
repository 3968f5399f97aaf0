"""Deterministic training and on-disk caching of lowbit's small reference models.

``train_model(name, seed)`` trains a registered model from scratch, bit-reproducibly on CPU:

* the model initialisation and the mini-batch order come from ``seed`` only (``torch.manual_seed`` inside a
  ``fork_rng`` block and a private ``torch.Generator``; the caller's global RNG state is left untouched);
* training runs with ``torch.use_deterministic_algorithms(True)`` and **one intra-op thread**. The thread count
  changes the float summation order of CPU convolutions, so without the pin two machines (or two
  ``OMP_NUM_THREADS`` settings) would produce different weights; one thread is also the fastest setting for these
  tiny models. Both settings are restored afterwards.
* Adam with a cosine learning-rate decay over a fixed number of epochs, no augmentation, no early stopping.

Training stops with :class:`~quant.errors.TrainingDivergedError` if it diverges (:mod:`quant.divergence`).

``get_model(name, seed)`` returns the model in eval mode, from the first of:

1. the **shipped weights** (:mod:`quant.models.shipped`: package data, the same on every machine), if that seed is
   shipped and its manifest entry was trained under the current :func:`cache_key`; the file's sha256 is checked;
2. the local cache ``lowbit_cache_dir()/models/<name>-seed<seed>-<key>-<kernels>.pt``, where ``<kernels>`` hashes
   :func:`quant.models.fingerprint.cpu_fingerprint` (CPU, ISA, torch): weights trained on this machine;
3. training now, then caching. A seed that is not shipped gets a one-line note on stderr (its weights are specific
   to this CPU); a shipped seed whose key no longer matches (the model or training code was edited) gets a warning
   naming the command that regenerates the shipped weights.

``cache_key(name)`` hashes the architecture, the hyper-parameters and the *source code* of the builder, the data
loader and the training loop, each with the functions and constants of its own module that it uses, so an edit to
any of them retrains instead of reusing stale weights (an edit elsewhere in those modules does not). It leaves out
the torch version and the CPU, which change the float kernels but not the recipe; the local cache file name
carries them instead.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch import nn

from quant.data import Split, atomic_write, evaluate_accuracy, load_digits_split, load_mnist1d_split, lowbit_cache_dir
from quant.divergence import DivergenceGuard
from quant.errors import QuantInputError, ShippedWeightsError
from quant.models.digits_cnn import digits_cnn
from quant.models.digits_mobilenet import digits_mobilenet
from quant.models.digits_resnet import digits_resnet
from quant.models.fingerprint import cpu_fingerprint, describe
from quant.models.mnist1d_cnn import mnist1d_cnn
from quant.models.shipped import REGENERATE, load_shipped_state, read_manifest

__all__ = [
    "MODELS",
    "ModelSpec",
    "TrainConfig",
    "cache_key",
    "deterministic_cpu",
    "get_model",
    "kernels_key",
    "model_cache_path",
    "model_split",
    "shipped_seeds",
    "train_model",
]

#: Bump when the cache file layout or the training loop changes in a way the key below cannot see.
_CACHE_VERSION = 2


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
        # the real architectures (residual adds and downsampling; depthwise convs and inverted residuals) at digits'
        # size: graph exports, for the closed loop on networks users study
        "digits-resnet": ModelSpec(
            digits_resnet, load_digits_split, TrainConfig(epochs=20, batch_size=32, lr=3e-3, weight_decay=1e-4)
        ),
        "digits-mobilenet": ModelSpec(
            digits_mobilenet, load_digits_split, TrainConfig(epochs=30, batch_size=32, lr=3e-3, weight_decay=1e-4)
        ),
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
    guard = DivergenceGuard(f"{name} seed {seed}", f"lower the learning rate of {name} (TrainConfig.lr = {hp.lr:g})")
    with torch.random.fork_rng(devices=[]), deterministic_cpu():
        torch.manual_seed(seed)
        model = spec.builder()
        opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        order_rng = torch.Generator().manual_seed(seed)
        model.train()
        step = 0
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=order_rng)
            total, count, correct = 0.0, 0, 0
            for i in range(0, n, hp.batch_size):
                idx = perm[i : i + hp.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single sample
                    continue
                logits = model(x[idx])
                loss = nn.functional.cross_entropy(logits, y[idx])
                step += 1
                value = float(loss.detach())
                guard.check_loss(value, value, logits.shape[1], epoch + 1, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += value * len(idx)
                count += len(idx)
                correct += int((logits.detach().argmax(1) == y[idx]).sum())
            if progress:
                print(
                    f"[{name} seed {seed}] epoch {epoch + 1}/{epochs} loss {total / count:.4f} "
                    f"({time.perf_counter() - t0:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        guard.check_accuracy(correct, count, y, epochs)
    if progress:
        acc = evaluate_accuracy(model, split.test_x, split.test_y)
        print(f"[{name} seed {seed}] test accuracy {acc:.2f}%", file=sys.stderr, flush=True)
    return model.eval()


#: the training loop whose code :func:`cache_key` hashes (not looked up by name, so a test may stub train_model)
_TRAINING_LOOP = train_model


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _plain_constant(value: object) -> bool:
    return isinstance(value, int | float | str | bool | bytes | tuple | frozenset) and " at 0x" not in repr(value)


def _module_class(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, nn.Module)


def _code_closure(func: Callable[..., object]) -> list[str]:
    """The source of ``func`` and of every function and ``nn.Module`` class of its own module that it uses
    (transitively, a class's methods included), plus the plain constants (numbers, strings, tuples) of that module
    they read: the code that decides what ``func`` does, without the rest of its module (a docstring or an
    unrelated helper elsewhere in it does not count)."""
    module = vars(inspect.getmodule(func))
    parts: dict[str, str] = {}
    todo: list[Any] = [func]
    while todo:
        f = inspect.unwrap(todo.pop())
        key = f"{f.__module__}.{f.__qualname__}"
        if key in parts:
            continue
        parts[key] = inspect.getsource(f)
        codes = [m.__code__ for m in vars(f).values() if inspect.isfunction(m)] if inspect.isclass(f) else [f.__code__]
        for name in sorted(set().union(*(_names_used(c) for c in codes))):
            obj = module.get(name)
            if (inspect.isfunction(obj) or _module_class(obj)) and obj.__module__ == f.__module__:
                todo.append(obj)
            elif _plain_constant(obj):
                parts[f"{f.__module__}.{name}"] = f"{name} = {obj!r}"
    return [parts[k] for k in sorted(parts)]


def _source_digest(spec: ModelSpec) -> str:
    """SHA-256 of the code that determines the weights: the builder, the data loader and the training loop, each
    with the functions and constants of its own module that it uses (:func:`_code_closure`)."""
    parts = [*_code_closure(spec.builder), *_code_closure(spec.data), *_code_closure(_TRAINING_LOOP)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_key(name: str) -> str:
    """A 16-hex-digit hash of the recipe of ``name``'s weights (architecture, hyper-parameters, the code of the
    builder, data loader and training loop): everything except the seed and the float kernels (CPU, torch)."""
    spec = _spec(name)
    with torch.random.fork_rng(devices=[]):
        arch = repr(spec.builder())
    payload = {
        "version": _CACHE_VERSION,
        "name": name,
        "arch": arch,
        "hparams": asdict(spec.hparams),
        "data": f"{spec.data.__module__}.{spec.data.__qualname__}",
        "source": _source_digest(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def kernels_key() -> str:
    """An 8-hex-digit hash of :func:`~quant.models.fingerprint.cpu_fingerprint`: which float kernels train here."""
    return hashlib.sha256(json.dumps(cpu_fingerprint(), sort_keys=True).encode()).hexdigest()[:8]


def model_cache_path(name: str, seed: int = 0) -> Path:
    """Where :func:`get_model` caches the state_dict of ``name`` / ``seed`` trained on this machine."""
    seed = _check_seed(seed)
    return lowbit_cache_dir() / "models" / f"{name}-seed{seed}-{cache_key(name)}-{kernels_key()}.pt"


def _build(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # building initialises weights; keep the caller's RNG untouched
        model = _spec(name).builder()
    model.load_state_dict(state, strict=True)
    return model.eval()


def _load_cached(name: str, path: Path) -> nn.Module | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return _build(name, blob["state_dict"])
    except Exception:  # noqa: BLE001 - any unreadable / stale / truncated entry is simply retrained
        return None


_NOTED: set[tuple[str, str, int]] = set()


def _note_once(kind: str, name: str, seed: int, message: str) -> None:
    """Print ``message`` on stderr the first time this process meets (kind, name, seed)."""
    if (kind, name, seed) not in _NOTED:
        _NOTED.add((kind, name, seed))
        print(message, file=sys.stderr, flush=True)


def shipped_seeds(name: str) -> list[int]:
    """The seeds of ``name`` whose weights ship with lowbit (whatever their cache key)."""
    _spec(name)
    return sorted(seed for model, seed in read_manifest() if model == name)


def get_model(name: str, seed: int = 0, progress: bool = False) -> nn.Module:
    """The trained model ``name`` for ``seed`` in eval mode: the shipped weights, else the local cache, else trained
    here and cached (see the module docstring)."""
    _spec(name)
    seed = _check_seed(seed)
    key = cache_key(name)
    entry = read_manifest().get((name, seed))
    if entry is not None and entry.cache_key == key:
        state = load_shipped_state(entry)
        try:
            return _build(name, {k: torch.from_numpy(v) for k, v in state.items()})
        except (RuntimeError, ValueError) as exc:
            raise ShippedWeightsError(f"shipped weights {entry.path()} do not fit {name}: {exc}") from None
    if entry is not None:
        _note_once(
            "stale",
            name,
            seed,
            f"warning: the shipped weights of {name} seed {seed} were trained under cache key "
            f"{entry.cache_key}, but the model or training code now gives {key}; using weights trained on "
            f"this machine instead; regenerate the shipped ones with {REGENERATE}",
        )
    path = model_cache_path(name, seed)
    if path.is_file():
        model = _load_cached(name, path)
        if model is not None:
            return model
    if entry is None:
        shipped = ", ".join(map(str, shipped_seeds(name))) or "none"
        _note_once(
            "local",
            name,
            seed,
            f"note: {name} seed {seed} is not shipped with lowbit (shipped seeds: {shipped}); training it "
            f"here, so its weights are specific to this machine's CPU: {describe(cpu_fingerprint())}",
        )
    t0 = time.perf_counter()
    model = train_model(name, seed=seed, progress=progress)
    blob = {
        "name": name,
        "seed": seed,
        "key": key,
        "fingerprint": cpu_fingerprint(),
        "train_seconds": time.perf_counter() - t0,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as exc:
        print(f"warning: could not cache {name} at {path}: {exc}", file=sys.stderr)
    return model
