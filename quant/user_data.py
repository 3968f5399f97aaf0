"""Users' own data for quantization: an ``.npz`` with ``calib_x`` and, optionally, ``calib_y``, ``test_x``,
``test_y``, and ``train_x`` / ``train_y`` (what ``lowbit train`` fine-tunes on).

``calib_x`` calibrates the activation quantizers and feeds GPFQ / PTQ-SL (and the sensitivity methods; ``calib_y``,
its class labels, is what the ``hessian`` and ``loss`` methods need); ``test_x`` measures the result (``calib_x``
stands in when it is missing). With ``test_y`` the quality is top-1 accuracy; without labels it is
agreement with the float model (top-1 agreement, output SQNR and cosine), as for embedding models. Floating-point
arrays become float32 tensors, integer arrays (token ids) int64. Every problem is a one-line
:class:`~quant.errors.QuantInputError` naming the file and the key.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from quant.errors import QuantInputError

__all__ = ["UserData", "load_user_data"]

_KEYS = ("calib_x", "calib_y", "test_x", "test_y", "train_x", "train_y")


@dataclass(frozen=True, eq=False)
class UserData:
    """Calibration and (optional) test inputs and labels, as tensors with the batch dimension first."""

    calib_x: torch.Tensor
    calib_y: torch.Tensor | None = None
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None


def _tensor(array: np.ndarray, path: Path, key: str) -> torch.Tensor:
    if array.dtype.kind == "c":
        raise QuantInputError(f"--data {path}: {key} is complex")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise QuantInputError(f"--data {path}: {key} has NaN or infinite values")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if array.dtype.kind in "iub":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    raise QuantInputError(f"--data {path}: {key} has dtype {array.dtype}, not numbers")


def load_user_data(path: Path | str) -> UserData:  # noqa: C901 - one check per array of the .npz
    """Read and check the ``.npz`` at ``path`` (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise QuantInputError(f"--data: no such file {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise QuantInputError(f"--data {path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    if "calib_x" not in arrays:
        raise QuantInputError(f"--data {path}: no calib_x (keys: {', '.join(sorted(arrays)) or 'none'})")
    extra = sorted(set(arrays) - set(_KEYS))
    if extra:
        raise QuantInputError(f"--data {path}: unknown keys {', '.join(extra)} (allowed: {', '.join(_KEYS)})")
    for y_key, x_key in (("test_y", "test_x"), ("train_y", "train_x")):
        if y_key in arrays and x_key not in arrays:
            raise QuantInputError(f"--data {path}: {y_key} without {x_key}")
    if "train_x" in arrays and "train_y" not in arrays:
        raise QuantInputError(f"--data {path}: train_x without train_y (training needs labels)")
    calib = arrays["calib_x"]
    if calib.ndim < 2 or len(calib) < 1:
        raise QuantInputError(f"--data {path}: calib_x must be [N, ...] with N >= 1, got shape {calib.shape}")
    out = {"calib_x": _tensor(calib, path, "calib_x")}
    for key in ("test_x", "train_x"):
        if key in arrays:
            other = arrays[key]
            if other.ndim != calib.ndim or other.shape[1:] != calib.shape[1:] or len(other) < 1:
                raise QuantInputError(
                    f"--data {path}: {key} has shape {other.shape}, calib_x {calib.shape}: the "
                    f"per-sample shapes must match"
                )
            out[key] = _tensor(other, path, key)
    for key, x_key in (("calib_y", "calib_x"), ("test_y", "test_x"), ("train_y", "train_x")):
        if key in arrays:
            y = arrays[key]
            if y.ndim != 1 or len(y) != len(arrays[x_key]) or y.dtype.kind not in "iu":
                raise QuantInputError(
                    f"--data {path}: {key} must be integer class labels [N] with N = "
                    f"{len(arrays[x_key])} ({x_key}), got {y.dtype} {y.shape}"
                )
            if y.min() < 0:
                raise QuantInputError(f"--data {path}: {key} has negative labels")
            out[key] = torch.from_numpy(y.astype(np.int64))
    return UserData(**out)
