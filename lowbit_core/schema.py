"""Shared pieces of lowbit's pydantic config schemas: strict models, bounded numbers, one-line errors.

Chips, technologies, sweep specs and workload files (:mod:`sim`) build their schemas from these.  This module
loads pydantic, so ``lowbit_core``'s ``__init__`` does not import it.

Every number read from a config is checked at the boundary: finite (no ``.inf``/``.nan``), not a
boolean, and inside a physically meaningful range.  A bound violation reads
``array.clock_mhz: must be a finite number in [0.001, 100000] MHz (1 kHz to 100 GHz), got inf``.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

__all__ = [
    "StrictModel",
    "float_range",
    "int_range",
    "error_text",
    "first_error",
    "format_validation",
    "number_text",
    "RANGE_ERROR",
    "SRAM_KIB_RANGE",
    "SramKiB",
]

#: pydantic error type of a number outside its range (or not a number at all).
RANGE_ERROR = "number_range"
_MAX_SHOWN = 60  # characters of a bad value quoted in a message


class StrictModel(BaseModel):
    """Frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def number_text(x: float) -> str:
    """``1000.0`` -> ``1000``, ``0.001`` -> ``0.001``: exact, without a trailing ``.0``."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else repr(float(x))


def _range_rules(kind: type, lo: float, hi: float, above: bool, unit: str, note: str) -> tuple[Any, ...]:
    noun = "an integer" if kind is int else "a finite number"
    opening = "(" if above else "["
    unit_text = f" {unit}" if unit else ""
    note_text = f" ({note})" if note else ""
    message = f"must be {noun} in {opening}{number_text(lo)}, {number_text(hi)}]{unit_text}{note_text}"

    def check(value: Any, handler: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(RANGE_ERROR, message)
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(RANGE_ERROR, message) from None

    bounds = Field(gt=lo, le=hi) if above else Field(ge=lo, le=hi)
    extra = (Field(allow_inf_nan=False),) if kind is float else ()
    return (bounds, *extra, WrapValidator(check))


def float_range(lo: float, hi: float, *, above: bool = False, unit: str = "", note: str = "") -> tuple[Any, ...]:
    """The pydantic rules of a finite float in ``[lo, hi]`` (``(lo, hi]`` when ``above``), booleans refused, with a
    one-line message naming the range: ``Annotated[float, *float_range(0.0, 1e4, unit="pJ")]``."""
    return _range_rules(float, lo, hi, above, unit, note)


def int_range(lo: int, hi: int, *, unit: str = "", note: str = "") -> tuple[Any, ...]:
    """The pydantic rules of an integer in ``[lo, hi]``, booleans and fractional numbers refused:
    ``Annotated[int, *int_range(2, 16, unit="bits")]``."""
    return _range_rules(int, lo, hi, False, unit, note)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def error_text(err: Any, allowed_keys: tuple[str, ...] | None = None) -> str:
    """The message of one pydantic error, without its location: ``must be ..., got X``."""
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown field" + (f" (allowed: {', '.join(allowed_keys)})" if allowed_keys else "")
    elif kind == "missing":
        msg = "missing field"
    elif kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    elif msg.startswith("Input should be"):
        msg = "must be" + msg.removeprefix("Input should be")
    show = kind not in ("missing", "extra_forbidden") and "input" in err and not isinstance(err["input"], dict)
    return f"{msg}, got {_shown(err['input'])}" if show else msg


def _loc_text(loc: tuple) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part == "[key]":
            parts.append(" (key)")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple) -> tuple[str, ...] | None:
    """The field names of the (nested) model that ``loc`` points into, if it is one."""
    cls = model
    for part in loc:
        info = cls.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        found = [
            a for a in (info.annotation, *get_args(info.annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not found:
            return None
        cls = found[0]
    return tuple(cls.model_fields)


def first_error(exc: ValidationError) -> Any:
    """The error a one-line message reports: the first one or, when a mapping that holds it also has an unknown key,
    that key's (the outermost such mapping's first): a misspelt key is also a missing field, and the unknown name
    is the one that explains both."""
    errors = exc.errors()
    first = tuple(errors[0]["loc"])
    unknown = [
        e for e in errors if e["type"] == "extra_forbidden" and tuple(e["loc"])[:-1] == first[: len(e["loc"]) - 1]
    ]
    return min(unknown, key=lambda e: len(e["loc"]), default=errors[0])


def format_validation(exc: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """``where: field.path: message, got value (and N more)`` for :func:`first_error` of ``exc``; an unknown
    field lists the allowed ones when ``model`` (the validated model) is given."""
    errors = exc.errors()
    err = first_error(exc)
    loc = _loc_text(tuple(err["loc"])) or "(top level)"
    keys = _fields_at(model, tuple(err["loc"])[:-1]) if model is not None else None
    extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {loc}: {error_text(err, keys)}{extra}"


#: SRAM sizes (chip memories, technology SRAM points): 1 bit to 1 TiB, in KiB.
SRAM_KIB_RANGE = (1 / 8192, float(2**30))
SramKiB = Annotated[float, *float_range(*SRAM_KIB_RANGE, unit="KiB", note="1 bit to 1 TiB")]
