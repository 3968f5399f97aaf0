"""Error type for bad input to the quantizers (bits, shapes, NaN weights, empty calibration)."""

from __future__ import annotations

from lowbit_core.errors import InputError

__all__ = ["QuantInputError", "ShippedWeightsError", "TrainingDivergedError", "UnfoldedBatchNormWarning"]


class QuantInputError(InputError):
    """A user-facing, one-line error; the CLI maps it to exit status 2."""


class TrainingDivergedError(QuantInputError):
    """Training diverged (non-finite loss, gradient or parameter; a loss risen by orders of magnitude; training
    accuracy at chance). Nothing is returned or written; the message names the cause and suggests a lower lr."""


class ShippedWeightsError(QuantInputError):
    """A shipped pretrained-weights file is missing, unreadable or fails its sha256 check."""


class UnfoldedBatchNormWarning(UserWarning):
    """A BatchNorm that ``quant.fakequant.prepare`` could not fold into a conv / linear; named in the message."""
