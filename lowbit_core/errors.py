"""The error root every package's errors derive from, and the exit status the CLI gives each kind."""

from __future__ import annotations

__all__ = ["LowbitError", "InputError", "EXIT_BAD_INPUT"]

#: Bad input, or a cause the user can fix (a missing tool, an unreachable scheduler).
EXIT_BAD_INPUT = 2


class LowbitError(Exception):
    """Root of lowbit's own errors: a one-line message for the user and the exit status the CLI ends with."""

    exit_status: int = EXIT_BAD_INPUT


class InputError(LowbitError, ValueError):
    """Bad user input (a file, field, option or value named in the message) or a user-fixable cause: exit 2.

    Each package raises its own subclass (``SearchInputError``, ``QuantInputError``, ``RtlError``) so that callers
    can tell where it came from; the CLI needs only this class.
    """

    exit_status = EXIT_BAD_INPUT
