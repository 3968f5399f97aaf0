"""Error type for bad input to the quantizers (bits, shapes, NaN weights, empty calibration)."""

from __future__ import annotations

__all__ = ["QuantInputError"]


class QuantInputError(ValueError):
    """A user-facing, one-line error; the CLI maps it to exit status 2."""
