"""The shared, deterministic fine-tuning loop of lowbit's training-time quantizers (QAT, QGT, DGMS).

Every method starts from the same pretrained float model (``quant.models.get_model``), wraps it with
:func:`quant.fakequant.prepare` (BatchNorm folded, every Conv/Linear a :class:`~quant.fakequant.QuantLayer`), and
fine-tunes it here with the same budget: Adam with a cosine learning-rate decay over ``epochs`` epochs of the
model's training split. What differs between methods is

* the **training-time weight** of each layer: ``QuantLayer.weight_fn`` maps the float weight to the weight the
  forward pass uses (QAT: fake-quant with a straight-through estimator; DGMS: the soft mixture assignment; QGT:
  the float weight itself);
* an **extra loss** added to the task loss (QGT's regularizer), given the training progress in [0, 1).

Activations are fake-quantized at ``a_bits`` throughout, with a straight-through estimator
(:meth:`~quant.fakequant.ActQuant.ste`). Determinism follows :func:`quant.models.train.train_model`: the seed
fixes every random choice (mini-batch order, any initialisation done by the method inside the loop), training runs
with deterministic algorithms and one intra-op thread, and the caller's global RNG state is left untouched. The
same seed therefore gives bitwise-identical weights.

Divergence stops training with :class:`~quant.errors.TrainingDivergedError` (a :class:`QuantInputError`, so the
CLI prints one line and exits 2; nothing is returned or written): a non-finite loss, gradient or parameter, a task
loss risen by orders of magnitude over its start, or a training accuracy at chance after the run (the checks of
:mod:`quant.divergence`). The message names the cause and suggests a lower ``--lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from quant.data import Split
from quant.divergence import DivergenceGuard
from quant.errors import QuantInputError, TrainingDivergedError
from quant.fakequant import QuantLayer, quant_layers, tensor_quants
from quant.models.train import deterministic_cpu
from quant.progress import progress_bar

__all__ = [
    "MIN_BITS",
    "MAX_BITS",
    "FinetuneConfig",
    "TrainOutcome",
    "TrainingDivergedError",
    "check_bits",
    "finetune",
    "training_mode",
    "ste_round",
]

MIN_BITS, MAX_BITS = 2, 8

#: the extra-loss callback: progress in [0, 1) -> (scalar loss tensor to add, {name: float to log})
ExtraLoss = Callable[[float], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning budget, shared by QAT, QGT and DGMS. ``lr`` is Adam's peak learning rate (cosine decay)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise QuantInputError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise QuantInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise QuantInputError(f"lr must be a positive finite number, got {self.lr!r}")


@dataclass
class TrainOutcome:
    """What a training-time method returns.

    ``model`` is the final fake-quant model: b-bit weight codes installed in every QuantLayer (``w_codes``) and
    activation quantizers calibrated, ready for :func:`quant.export.export_model`. ``history`` has one row per
    epoch (``epoch``, ``task_loss``, ``train_accuracy`` and the method's own logged values); ``summary`` holds
    JSON-ready scalars and lists (e.g. sparsity); ``tables`` holds extra frames to write (e.g. QGT's
    sensitivity table)."""

    model: nn.Module
    history: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def check_bits(w_bits: Any, a_bits: Any) -> tuple[int, int]:
    """Validate a (w_bits, a_bits) pair for training: integers in 2..8."""
    for name, v in (("w_bits", w_bits), ("a_bits", a_bits)):
        if isinstance(v, bool) or not isinstance(v, int) or not MIN_BITS <= v <= MAX_BITS:
            raise QuantInputError(f"{name} must be an integer in {MIN_BITS}..{MAX_BITS}, got {v!r}")
    return int(w_bits), int(a_bits)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` in the forward pass, identity gradient in the backward pass (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


@contextmanager
def training_mode(model: nn.Module) -> Iterator[list[QuantLayer]]:
    """Switch every QuantLayer to training: activation fake-quant with a straight-through estimator. Restores
    eval mode and clears every ``weight_fn`` on exit."""
    layers = [m for _, m in quant_layers(model)]
    tensors = [m for _, m in tensor_quants(model)]
    for m in layers + tensors:
        m.ste = True
    model.train()
    try:
        yield layers
    finally:
        model.eval()
        for m in layers + tensors:
            m.ste = False
        for m in layers:
            m.weight_fn = None


def _lr_hint(config: FinetuneConfig) -> str:
    return f"try a lower --lr than {config.lr:g}"


def _check_finite_params(model: nn.Module, where: str, hint: str) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise TrainingDivergedError(
                f"training diverged {where}: parameter {name} is non-finite (NaN/inf); stopped, nothing written; {hint}"
            )


def finetune(
    model: nn.Module,
    split: Split,
    config: FinetuneConfig,
    *,
    extra_loss: ExtraLoss | None = None,
    on_epoch: Callable[[int], dict[str, float]] | None = None,
    label: str = "fine-tune",
    progress: bool = False,
    parameters: list[nn.Parameter] | None = None,
) -> pd.DataFrame:
    """Fine-tune ``model`` (a prepared fake-quant model, in place) on ``split``'s training set; return the history.

    The caller sets each QuantLayer's ``weight_fn`` beforehand (inside :func:`training_mode`) and may pass
    ``parameters`` (default: all of the model's parameters, ``weight_fn`` modules included). ``extra_loss(progress)``
    is added to the cross-entropy; ``on_epoch(epoch)`` returns more values to log after each epoch.
    """
    params = list(model.parameters()) if parameters is None else list(parameters)
    if not params:
        raise QuantInputError("nothing to train: the model has no parameters")
    x, y = split.train_x, split.train_y
    n = len(y)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    rows: list[dict[str, float]] = []
    hint = _lr_hint(config)
    guard = DivergenceGuard(label, hint)
    with (
        torch.random.fork_rng(devices=[]),
        deterministic_cpu(),
        progress_bar(progress, config.epochs, label) as advance,
    ):
        torch.manual_seed(config.seed)
        opt = torch.optim.Adam(params, lr=config.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
        order = torch.Generator().manual_seed(config.seed)
        step = 0
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=order)
            sums: dict[str, float] = {}
            count = correct = 0
            for i in range(0, n, config.batch_size):
                idx = perm[i : i + config.batch_size]
                logits = model(x[idx])
                task = nn.functional.cross_entropy(logits, y[idx])
                loss = task
                logged = {"task_loss": float(task.detach())}
                if extra_loss is not None:
                    extra, values = extra_loss(step / total_steps)
                    loss = loss + extra
                    logged.update(values)
                guard.check_loss(float(loss.detach()), logged["task_loss"], logits.shape[1], epoch + 1, step + 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for p in params:
                    if p.grad is not None and not torch.isfinite(p.grad).all():
                        raise TrainingDivergedError(
                            f"{label}: training diverged at epoch {epoch + 1}, step "
                            f"{step + 1}: non-finite gradient; stopped, nothing written; "
                            f"{hint}"
                        )
                opt.step()
                sched.step()
                step += 1
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
                count += len(idx)
                correct += int((logits.detach().argmax(1) == y[idx]).sum())
            _check_finite_params(model, f"at epoch {epoch + 1}", hint)
            row = {
                "epoch": epoch + 1,
                **{k: v / count for k, v in sums.items()},
                "train_accuracy": 100.0 * correct / count,
            }
            if on_epoch is not None:
                row.update(on_epoch(epoch + 1))
            rows.append(row)
            advance()
        guard.check_accuracy(correct, count, y, config.epochs)
    return pd.DataFrame(rows)
