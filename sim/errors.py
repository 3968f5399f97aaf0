"""Error type for bad user input to the simulator (configs, workloads, pairs)."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A user-facing, one-line error about bad input; the CLI maps it to exit status 2.

    The message names the file and field (or cause) so the user can fix it.
    """
