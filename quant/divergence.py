"""Stopping training that diverges, with one line that names the cause and suggests a lower learning rate.

Used by :func:`quant.models.train.train_model` (pretraining) and :func:`quant.finetune.finetune` (QAT, QGT, DGMS).
Three causes raise :class:`~quant.errors.TrainingDivergedError`:

* a non-finite loss;
* a task loss (cross-entropy) above ``LOSS_RISE_FACTOR`` times its starting value, the start floored at the
  chance-level loss ln(classes), so a model that starts near zero loss may still move within normal noise;
* after the run, a training accuracy at chance: no more than ``CHANCE_SIGMAS`` binomial standard deviations above
  the majority-class share of the training labels.
"""

from __future__ import annotations

import math

import torch

from quant.errors import TrainingDivergedError

__all__ = ["CHANCE_SIGMAS", "LOSS_RISE_FACTOR", "DivergenceGuard", "chance_accuracy"]

LOSS_RISE_FACTOR = 100.0
CHANCE_SIGMAS = 4.0


def chance_accuracy(labels: torch.Tensor) -> float:
    """The accuracy (fraction) of always predicting the most frequent label."""
    counts = torch.bincount(labels.reshape(-1).long())
    return float(counts.max()) / max(int(labels.numel()), 1)


class DivergenceGuard:
    """Checks one training run. ``hint`` ends every message, e.g. ``"try a lower --lr than 1e+03"``."""

    def __init__(self, label: str, hint: str) -> None:
        self.label = label
        self.hint = hint
        self.start: float | None = None

    def _fail(self, cause: str) -> TrainingDivergedError:
        return TrainingDivergedError(f"{self.label}: training diverged {cause}; stopped, nothing written; {self.hint}")

    def check_loss(self, loss: float, task_loss: float, classes: int, epoch: int, step: int) -> None:
        """After each step's forward pass: ``loss`` is what is minimised, ``task_loss`` its cross-entropy part."""
        where = f"at epoch {epoch}, step {step}"
        if not math.isfinite(loss):
            raise self._fail(f"{where}: non-finite loss ({loss})")
        if self.start is None:
            self.start = task_loss
            return
        floor = max(self.start, math.log(max(classes, 2)))
        if task_loss > LOSS_RISE_FACTOR * floor:
            raise self._fail(
                f"{where}: loss {task_loss:.3g} is over {LOSS_RISE_FACTOR:g}x its starting value "
                f"{self.start:.3g} (floored at the chance-level loss {math.log(max(classes, 2)):.3g})"
            )

    def check_accuracy(self, correct: int, count: int, labels: torch.Tensor, epochs: int) -> None:
        """After the run: ``correct`` of ``count`` training samples right in the last epoch."""
        if count < 1:
            return
        p0 = chance_accuracy(labels)
        bound = p0 + CHANCE_SIGMAS * math.sqrt(p0 * (1 - p0) / count)
        acc = correct / count
        if acc <= bound:
            raise self._fail(
                f"after {epochs} epoch(s): training accuracy {100 * acc:.1f} % is at chance (the "
                f"majority class is {100 * p0:.1f} % of the labels)"
            )
