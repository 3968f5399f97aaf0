"""Per-layer bit assignments as the quantizing verbs take them: a mapping, a ``lowbit solve`` table or a
:class:`search.ilp.Solution`, checked against a model's layer names (shared by :mod:`experiments.quantize` and
:mod:`experiments.measure`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from quant.errors import QuantInputError
from quant.quantizer import MAX_BITS, MIN_BITS

__all__ = ["Assignment", "normalize_assignment"]

#: Per-layer (w_bits, a_bits) keyed by quant-layer name, as a mapping, a search assignment table
#: (columns ``name``, ``w_bits``, ``a_bits``) or any object with an ``assignment()`` method returning one
#: (e.g. :class:`search.ilp.Solution`).
Assignment = Mapping[str, tuple[int, int]] | pd.DataFrame | Any


def _bits(value: object, what: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer | float | np.floating)
        or not np.isfinite(value)
        or value != int(value)
        or not MIN_BITS <= int(value) <= MAX_BITS
    ):
        raise QuantInputError(f"{what} must be an integer in {MIN_BITS}..{MAX_BITS}, got {value!r}")
    return int(value)


def normalize_assignment(assignment: Assignment, layer_names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Validated per-layer ``(w_bits, a_bits)`` in the order of ``layer_names`` (the model's quant layers).

    Names are compared as strings, so a table read from CSV whose ``name`` column became integers still matches.
    Raises :class:`QuantInputError` naming missing or extra layers, duplicate names or bad bits."""
    if not isinstance(assignment, pd.DataFrame | Mapping) and callable(getattr(assignment, "assignment", None)):
        assignment = assignment.assignment()
    if isinstance(assignment, pd.DataFrame):
        missing = [c for c in ("name", "w_bits", "a_bits") if c not in assignment.columns]
        if missing:
            raise QuantInputError(
                f"assignment table: missing column(s) {', '.join(missing)} "
                f"(has: {', '.join(map(str, assignment.columns))})"
            )
        names = [str(n) for n in assignment["name"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise QuantInputError(f"assignment table: layer name(s) listed more than once: {', '.join(dupes)}")
        pairs = dict(zip(names, zip(assignment["w_bits"].tolist(), assignment["a_bits"].tolist())))
    elif isinstance(assignment, Mapping):
        pairs = {}
        for key, value in assignment.items():
            if str(key) in pairs:
                raise QuantInputError(f"assignment: layer name {str(key)!r} listed more than once")
            if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
                raise QuantInputError(f"assignment: layer {str(key)!r} needs a (w_bits, a_bits) pair, got {value!r}")
            pairs[str(key)] = tuple(value)
    else:
        raise QuantInputError(
            "assignment must be a mapping name -> (w_bits, a_bits) or a table with columns "
            f"name, w_bits, a_bits; got {type(assignment).__name__}"
        )
    wanted = [str(n) for n in layer_names]
    missing = [n for n in wanted if n not in pairs]
    extra = [n for n in pairs if n not in wanted]
    if missing or extra:
        parts = ([f"missing layer(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown layer(s) {', '.join(extra)}"] if extra else []
        )
        raise QuantInputError(f"assignment: {'; '.join(parts)} (the model's quantized layers: {', '.join(wanted)})")
    return tuple(
        (_bits(pairs[n][0], f"layer {n!r}: w_bits"), _bits(pairs[n][1], f"layer {n!r}: a_bits")) for n in wanted
    )
