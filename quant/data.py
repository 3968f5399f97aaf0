"""Offline, seeded datasets for lowbit's quantization experiments.

Two real datasets are available without any network access:

* **digits** -- scikit-learn's bundled ``load_digits()``: 1797 real 8x8 handwritten digits, 10 classes.
  :func:`load_digits_split` returns images as float32 ``[N, 1, 8, 8]`` in ``[0, 1]`` (pixel / 16) and a
  stratified split of **1200 train / 200 calibration / 397 test** images, shuffled by ``seed``.
* **mnist1d** -- the procedurally generated MNIST-1D (Greydanus 2020), built locally by
  ``mnist1d.data.make_dataset``: 4000 train / 1000 test signals of length 40, 10 classes.
  :func:`load_mnist1d_split` returns float32 ``[N, 1, 40]`` inputs. The signals themselves always come from the
  package's published generator seed (42, so numbers are comparable with the MNIST-1D paper); ``seed`` only
  chooses which **256** training signals form the (class-stratified) calibration set, leaving **3744** for
  training. The test set is the published 1000 signals.

Generated arrays are cached as ``.npz`` under :func:`lowbit_cache_dir` (``$LOWBIT_CACHE`` or
``~/.cache/lowbit``); every cache write is atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lowbit_core.files import atomic_write
from quant.errors import QuantInputError

__all__ = [
    "DIGITS_SIZES",
    "MNIST1D_CALIB",
    "Split",
    "atomic_write",
    "calibration_batch",
    "evaluate_accuracy",
    "load_digits_split",
    "load_mnist1d_split",
    "lowbit_cache_dir",
]

#: (train, calibration, test) sizes of the digits split; they add up to the 1797 images.
DIGITS_SIZES: tuple[int, int, int] = (1200, 200, 397)
#: Number of mnist1d training signals held out for calibration.
MNIST1D_CALIB: int = 256
_MNIST1D_GENERATOR_SEED = 42
_NUM_CLASSES = 10


@dataclass(frozen=True, eq=False)
class Split:
    """A train / calibration / test split. ``*_x`` are float32 tensors ``[N, C, ...]``, ``*_y`` int64 ``[N]``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (without the batch dimension), e.g. ``(1, 8, 8)``."""
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return _NUM_CLASSES

    def sizes(self) -> tuple[int, int, int]:
        """``(train, calibration, test)`` sample counts."""
        return (len(self.train_y), len(self.calib_y), len(self.test_y))


# --------------------------------------------------------------------------------------------------------------------
# cache


def lowbit_cache_dir() -> Path:
    """The cache directory: ``$LOWBIT_CACHE`` if set and non-empty, else ``~/.cache/lowbit``. Not created here."""
    env = os.environ.get("LOWBIT_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lowbit"


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise QuantInputError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(y))`` that interleaves the classes evenly.

    The r-th (shuffled) member of a class of size n gets the key (r + 1/2) / n, and the keys are sorted (ties
    broken at random), so every prefix of the order holds each class in proportion to its frequency, within one.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        keys[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    return np.lexsort((rng.random(len(y)), keys))


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest-remainder rule, ties to the lower class)."""
    exact = counts * total / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    short = total - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    return quota


def _stratified_partition(y: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Seeded stratified partition of ``range(len(y))`` into parts of ``sizes``; the last part takes the rest.

    Each of the first parts holds every class in proportion to its frequency (largest-remainder quotas, so within
    one sample of exact). Returned index arrays are sorted.
    """
    classes, counts = np.unique(y, return_counts=True)
    quotas = [_apportion(counts, n) for n in sizes[:-1]]
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for ci, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, q in enumerate(quotas):
            parts[k].append(idx[start : start + q[ci]])
            start += int(q[ci])
        parts[-1].append(idx[start:])
    out = [np.sort(np.concatenate(p)) for p in parts]
    if [len(p) for p in out[:-1]] != list(sizes[:-1]) or len(out[-1]) != sizes[-1]:  # pragma: no cover
        raise QuantInputError(f"cannot split {len(y)} samples into {sizes}")
    return out


def _to_split(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, calib: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Split:
    def fx(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def fy(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return Split(fx(x[train]), fy(y[train]), fx(x[calib]), fy(y[calib]), fx(x_test), fy(y_test))


# --------------------------------------------------------------------------------------------------------------------
# digits


def load_digits_split(seed: int = 0) -> Split:
    """scikit-learn's 1797 real 8x8 digits as a stratified 1200 / 200 / 397 train / calibration / test split.

    Images are float32 ``[N, 1, 8, 8]`` scaled to ``[0, 1]``; labels are int64. The same ``seed`` always gives
    identical tensors; different seeds give different (but equally stratified) splits.
    """
    from sklearn.datasets import load_digits

    seed = _check_seed(seed)
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    n_train, n_calib, n_test = DIGITS_SIZES
    if len(y) != n_train + n_calib + n_test:  # pragma: no cover - guards against a changed scikit-learn dataset
        raise QuantInputError(f"load_digits() returned {len(y)} images, expected {sum(DIGITS_SIZES)}")
    test, calib, train = _stratified_partition(y, (n_test, n_calib, n_train), seed)
    return _to_split(x, y, train, calib, x[test], y[test])


# --------------------------------------------------------------------------------------------------------------------
# mnist1d


def _mnist1d_args() -> object:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    args.seed = _MNIST1D_GENERATOR_SEED
    return args


def _mnist1d_cache_path(args: object) -> Path:
    fields = {k: v for k, v in sorted(vars(args).items()) if k != "url"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return lowbit_cache_dir() / "data" / f"mnist1d-{digest}.npz"


def _generate_mnist1d(args: object) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset

    # make_dataset seeds and draws from the *global* `random` and `np.random` generators; keep the caller's state.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _valid_mnist1d(arrays: dict[str, np.ndarray]) -> bool:
    x, y, xt, yt = (arrays.get(k) for k in ("x", "y", "x_test", "y_test"))
    if any(a is None for a in (x, y, xt, yt)):
        return False
    return (
        x.ndim == 2
        and xt.ndim == 2
        and x.shape[1] == xt.shape[1]
        and len(x) == len(y)
        and len(xt) == len(yt)
        and len(y) > MNIST1D_CALIB
        and bool(np.isfinite(x).all() and np.isfinite(xt).all())
    )


def _load_mnist1d_arrays() -> dict[str, np.ndarray]:
    args = _mnist1d_args()
    path = _mnist1d_cache_path(args)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            if _valid_mnist1d(arrays):
                return arrays
        except (OSError, ValueError, KeyError):
            pass  # unreadable or truncated cache entry: regenerate it below
    arrays = _generate_mnist1d(args)
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError:
        pass  # a read-only cache is not an error; the data is simply regenerated next time
    return arrays


def load_mnist1d_split(seed: int = 0) -> Split:
    """MNIST-1D (generated offline): 3744 train / 256 calibration / 1000 test signals, float32 ``[N, 1, 40]``.

    The signals are the package's published dataset (generator seed 42, already standardized by ``make_dataset``);
    ``seed`` picks the class-stratified calibration subset carved out of the 4000 training signals.
    """
    seed = _check_seed(seed)
    arrays = _load_mnist1d_arrays()
    x = arrays["x"].astype(np.float32)[:, None, :]
    y = arrays["y"].astype(np.int64)
    calib, train = _stratified_partition(y, (MNIST1D_CALIB, len(y) - MNIST1D_CALIB), seed)
    return _to_split(x, y, train, calib, arrays["x_test"].astype(np.float32)[:, None, :], arrays["y_test"])


# --------------------------------------------------------------------------------------------------------------------
# calibration and evaluation


def calibration_batch(split: Split, n: int) -> torch.Tensor:
    """The first ``n`` calibration inputs of ``split`` (deterministic, class-stratified order), ``[n, C, ...]``."""
    if not isinstance(split, Split):
        raise QuantInputError(f"calibration_batch needs a Split, got {type(split).__name__}")
    available = len(split.calib_x)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= available:
        raise QuantInputError(f"calibration batch size must be an int in [1, {available}], got {n!r}")
    # calib indices are sorted by dataset position; re-interleave classes so that small batches stay stratified
    order = torch.from_numpy(_stratified_order(split.calib_y.numpy(), 0))
    return split.calib_x[order[: int(n)]].clone()


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in percent, in eval mode under ``torch.no_grad()``.

    The model's previous train/eval mode is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise QuantInputError("x and y must be torch tensors")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise QuantInputError(f"x must be [N, ...] and y [N] of the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise QuantInputError("cannot evaluate accuracy on an empty set")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise QuantInputError(f"batch must be a positive int, got {batch!r}")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for i in range(0, len(y), batch):
                logits = model(x[i : i + batch])
                correct += int((logits.argmax(dim=1) == y[i : i + batch]).sum())
    finally:
        model.train(was_training)
    return 100.0 * correct / len(y)
