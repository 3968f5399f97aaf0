"""A large held-out MNIST-1D test set, generated offline, for accuracy comparisons finer than 1000 signals resolve.

MNIST-1D's published test set has 1000 signals (0.1 points each; the binomial standard error of a 97 % accuracy is
0.5 points). :func:`mnist1d_holdout` draws fresh signals from the same generator (``mnist1d.data.make_dataset``,
the package's templates and transforms) with another generator seed, so they are disjoint draws from the training
distribution; never the download. Like the published set, the signals are standardised by their own mean and
standard deviation. Arrays are cached under ``lowbit_cache_dir()/data``.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from quant.data import atomic_write, lowbit_cache_dir
from quant.errors import QuantInputError

__all__ = ["mnist1d_holdout"]

_PUBLISHED_SEED = 42


def _generate(n_samples: int, generator_seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = n_samples, generator_seed, 1.0
    py_state, np_state = random.getstate(), np.random.get_state()  # make_dataset reseeds the global generators
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64)


def mnist1d_holdout(n_samples: int = 10_000, generator_seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` fresh MNIST-1D signals ``[N, 1, 40]`` (float32) and labels ``[N]`` (int64), classes balanced."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 10 or n_samples % 10:
        raise QuantInputError(f"n_samples must be a positive multiple of 10, got {n_samples!r}")
    if isinstance(generator_seed, bool) or not isinstance(generator_seed, int) or generator_seed == _PUBLISHED_SEED:
        raise QuantInputError(f"generator_seed must be an int other than {_PUBLISHED_SEED} (the published data)")
    path = lowbit_cache_dir() / "data" / f"mnist1d-holdout-n{n_samples}-s{generator_seed}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except (OSError, ValueError, KeyError):
        x, y = _generate(n_samples, generator_seed)
        try:
            atomic_write(path, lambda f: np.savez(f, x=x, y=y))
        except OSError:
            pass  # a read-only cache only costs regeneration
    return torch.from_numpy(x[:, None, :].copy()), torch.from_numpy(y.copy())
