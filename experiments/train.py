"""``lowbit train``: training-time quantization (QAT, QGT, DGMS) of a built-in model, exported and measured.

Every method fine-tunes the same pretrained float model with the same budget (:class:`quant.finetune.
FinetuneConfig`) and ends in the normal integer flow: b-bit codes in every layer, activations calibrated, the
golden integer model built and measured, and the export written. The output directory holds

* ``model.npz`` and ``meta.json`` -- the integer export (``docs/formats.md``), readable by ``lowbit rtl verify``;
* ``history.csv`` -- one row per epoch (task loss, train accuracy, the method's own curves);
* ``metrics.json`` -- accuracies (float, fake-quant, integer), sizes and the method's summary; written last;
* method tables, e.g. QGT's ``sensitivity.csv`` (the bottleneck signal in ``lowbit solve``'s format).

Everything is built in a staging directory beside the output (:func:`experiments.staging.staged_dir`) and each
file is moved into place atomically, so a failed or interrupted run (bad input, a diverged mixture, Ctrl-C) leaves no
partial result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.staging import staged_dir
from quant.errors import QuantInputError

__all__ = ["TRAIN_METHODS", "TrainResult", "train_method", "train_builtin", "train_user", "user_split"]

TRAIN_METHODS = ("qat", "qgt", "dgms")


@dataclass(frozen=True)
class TrainResult:
    """Accuracies in percent (test set), sizes in bits, time in seconds."""

    model: str
    method: str
    w_bits: int
    a_bits: int
    epochs: int
    lr: float
    seed: int
    float_accuracy: float
    fakequant_accuracy: float
    integer_accuracy: float
    integer_agreement: float
    float_size_bits: int
    weight_size_bits: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_method(method: str) -> Callable[..., Any]:
    """The training function of ``method``: ``f(model, split, w_bits, a_bits, config, progress) -> TrainOutcome``."""
    if method == "qat":
        from quant.qat import qat_train

        return qat_train
    if method == "qgt":
        from quant.qgt import qgt_train

        return qgt_train
    if method == "dgms":
        from quant.dgms import dgms_train

        return dgms_train
    raise QuantInputError(f"unknown training method {method!r} (allowed: {', '.join(TRAIN_METHODS)})")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def train_builtin(
    model_name: str,
    method: str,
    w_bits: int,
    a_bits: int,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    out: Path | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[Any, TrainResult]:
    """Train built-in ``model_name`` with ``method`` at ``w{w_bits}a{a_bits}``; measure it; export to ``out``.

    ``seed`` selects the pretrained float model (as ``lowbit quantize --seed``) and every random choice of the
    fine-tuning. ``options`` are passed to the method (e.g. QGT's ``lam``). Returns (TrainOutcome, TrainResult)."""
    from experiments.quantize import measure_quantized
    from quant.finetune import FinetuneConfig, check_bits
    from quant.models import get_model, model_split

    w_bits, a_bits = check_bits(w_bits, a_bits)
    train = train_method(method)
    defaults = FinetuneConfig()
    config = FinetuneConfig(
        epochs=defaults.epochs if epochs is None else epochs, lr=defaults.lr if lr is None else lr, seed=seed
    )
    model = get_model(model_name, seed=seed)
    split = model_split(model_name)
    start = time.perf_counter()
    outcome = train(model, split, w_bits, a_bits, config, progress, **(options or {}))
    seconds = time.perf_counter() - start
    integer, measured = measure_quantized(model, outcome.model, split, model_name)
    result = TrainResult(
        model=model_name,
        method=method,
        w_bits=w_bits,
        a_bits=a_bits,
        epochs=config.epochs,
        lr=config.lr,
        seed=seed,
        seconds=round(seconds, 2),
        summary=_jsonable(outcome.summary),
        **measured,
    )
    if out is not None:
        _write_outputs(Path(out), integer, outcome, result)
    return outcome, result


def user_split(spec: str, data_path: Path, weights: Path | None = None, seed: int = 0) -> tuple[Any, Any]:
    """``(model, Split)`` for fine-tuning a user's model (or a built-in one) on the ``.npz`` at ``data_path``: it
    needs ``train_x`` / ``train_y`` to train on and ``test_x`` / ``test_y`` to measure; labels must index the
    model's outputs.  Checked before any training starts."""
    import torch

    from experiments.user_inputs import load_model_and_data
    from quant.data import Split
    from quant.errors import QuantInputError
    from quant.models.user import check_model_input
    from quant.user_data import load_user_data

    inputs = load_model_and_data(spec, data_path, weights, seed)
    data = load_user_data(data_path)
    if data.train_x is None:
        raise QuantInputError(f"--data {data_path}: training needs train_x and train_y (labelled training inputs)")
    if data.test_x is None or data.test_y is None:
        raise QuantInputError(f"--data {data_path}: training needs test_x and test_y to measure the trained model")
    out = check_model_input(inputs.model, data.train_x, spec, "train_x")
    classes = int(out.shape[-1]) if out.ndim >= 1 else 0
    for key, y in (("train_y", data.train_y), ("test_y", data.test_y)):
        if int(y.max()) >= classes:
            raise QuantInputError(
                f"--data {data_path}: {key} has label {int(y.max())}, but the model has {classes} outputs"
            )
    calib_y = data.calib_y if data.calib_y is not None else torch.full((len(data.calib_x),), -1, dtype=torch.int64)
    return inputs.model, Split(data.train_x, data.train_y, data.calib_x, calib_y, data.test_x, data.test_y)


def train_user(
    spec: str,
    data_path: Path,
    method: str,
    w_bits: int,
    a_bits: int,
    *,
    weights: Path | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    out: Path | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[Any, TrainResult]:
    """:func:`train_builtin` for a user's model (``spec``, see :mod:`quant.models.user`) on a user's data
    (:func:`user_split`)."""
    import torch

    from experiments.quantize import measure_quantized
    from quant.finetune import FinetuneConfig, check_bits

    w_bits, a_bits = check_bits(w_bits, a_bits)
    train = train_method(method)
    model, split = user_split(spec, data_path, weights, seed)
    defaults = FinetuneConfig()
    config = FinetuneConfig(
        epochs=defaults.epochs if epochs is None else epochs, lr=defaults.lr if lr is None else lr, seed=seed
    )
    torch.manual_seed(seed)
    start = time.perf_counter()
    outcome = train(model, split, w_bits, a_bits, config, progress, **(options or {}))
    seconds = time.perf_counter() - start
    name = Path(str(spec).split(":")[0]).stem
    integer, measured = measure_quantized(model, outcome.model, split, name)
    result = TrainResult(
        model=str(spec),
        method=method,
        w_bits=w_bits,
        a_bits=a_bits,
        epochs=config.epochs,
        lr=config.lr,
        seed=seed,
        seconds=round(seconds, 2),
        summary=_jsonable(outcome.summary),
        **measured,
    )
    if out is not None:
        _write_outputs(Path(out), integer, outcome, result)
    return outcome, result


def _write_outputs(out: Path, integer: Any, outcome: Any, result: TrainResult) -> None:
    """Write every file into a staging directory, then move each into ``out`` atomically, metrics last
    (:func:`experiments.staging.staged_dir`)."""
    with staged_dir(out, last=("metrics.json",)) as stage:
        integer.save(stage)
        outcome.history.to_csv(stage / "history.csv", index=False, float_format="%.9g")
        for name, frame in outcome.tables.items():
            frame.to_csv(stage / f"{name}.csv", index=False, float_format="%.9g")
        (stage / "metrics.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
