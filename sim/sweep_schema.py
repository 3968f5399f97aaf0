"""The pydantic schema of a sweep spec's structure (keys, types, ranges, bounds).

:func:`parse_spec` checks what needs no chip or workload: unknown keys, the name, the grid's axes
(a non-empty list, or ``{range: [start, stop], step: s}`` expanded inclusively), the points (flattened
to dotted chip fields), the pairs and ``chips_per_partition``.  :mod:`sim.sweep_spec` then loads the
base chip and the workloads and validates every value against its chip field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Tag,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair, parse_pairs
from lowbit_core.schema import RANGE_ERROR, StrictModel, error_text, first_error, int_range
from sim.config import Chip

__all__ = [
    "SpecDoc",
    "parse_spec",
    "SWEEP_FIELDS",
    "SECTIONS",
    "NOT_SWEPT",
    "SPEC_KEYS",
    "MAX_CHIPS",
    "MAX_RANGE_VALUES",
    "MAX_NAME_CHARS",
]

MAX_CHIPS = 10_000_000
MAX_RANGE_VALUES = 1_000_000
MAX_NAME_CHARS = 128
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Chip fields that cannot be swept: the name is set per variant, pairs belong to the spec.
NOT_SWEPT = {
    "name": "every variant is named '<spec name>-<chip_id>'",
    "pairs": "list the pairs in the spec's top-level 'pairs:'",
}
#: Chip sections (``array``, ``pe``, ``memory``) and their models.
SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in Chip.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}


def _sweep_fields() -> dict[str, tuple[str, ...]]:
    """Dotted name -> path of every sweepable leaf field of :class:`Chip` (sections expanded)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in Chip.model_fields:
        if name in NOT_SWEPT:
            continue
        if name in SECTIONS:
            for sub in SECTIONS[name].model_fields:
                out[f"{name}.{sub}"] = (name, sub)
        else:
            out[name] = (name,)
    return out


#: Every field a grid or point may set, in Chip model order.
SWEEP_FIELDS: dict[str, tuple[str, ...]] = _sweep_fields()


def _check_field(name: Any) -> str:
    if isinstance(name, str) and name in NOT_SWEPT:
        raise ValueError(f"chip field {name!r} cannot be swept ({NOT_SWEPT[name]})")
    if not isinstance(name, str) or name not in SWEEP_FIELDS:
        raise ValueError(f"unknown chip field {name!r} (allowed: {', '.join(SWEEP_FIELDS)})")
    return name


# Numbers of a range -----------------------------------------------------------------------------
def _finite_number(value: Any, handler: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PydanticCustomError(RANGE_ERROR, "must be a finite number")
    return handler(value)


_Number = Annotated[int | float, WrapValidator(_finite_number)]


def _positive_step(value: Any) -> int | float:
    if value <= 0:
        raise ValueError("must be a positive finite number")
    return value


def _two_numbers(value: Any, handler: Any) -> tuple[int | float, int | float]:
    if not isinstance(value, list) or len(value) != 2:
        raise PydanticCustomError(RANGE_ERROR, "must be a list of two finite numbers [start, stop]")
    return handler(value)


class RangeAxis(StrictModel):
    """``{range: [start, stop], step: s}``: start, start + s, ... up to stop inclusive."""

    range: Annotated[tuple[_Number, _Number], WrapValidator(_two_numbers)]
    step: Annotated[_Number, AfterValidator(_positive_step)] = 1

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, doc: Any) -> Any:
        if isinstance(doc, dict) and ("range" not in doc or set(doc) - {"range", "step"}):
            raise ValueError(
                "a range is written {range: [start, stop], step: s} (inclusive); "
                f"got keys {', '.join(map(str, doc)) or '(none)'}"
            )
        return doc

    @model_validator(mode="after")
    def _order(self) -> RangeAxis:
        lo, hi = self.range
        if lo > hi:
            raise ValueError(f"range start must be <= stop (both finite), got {list(self.range)!r}")
        span = (hi - lo) / self.step
        if not math.isfinite(span) or span + 1 > MAX_RANGE_VALUES:
            count = "too many" if not math.isfinite(span) else str(math.floor(span + 1e-9) + 1)
            raise ValueError(f"range gives {count} values (max {MAX_RANGE_VALUES}); use a larger step")
        return self

    def values(self) -> list[Any]:
        lo, hi = self.range
        step = self.step
        if all(isinstance(v, int) for v in (lo, hi, step)):
            return list(range(int(lo), int(hi) + 1, int(step)))
        count = math.floor((hi - lo) / step + 1e-9) + 1
        return [round(lo + i * step, 12) for i in range(count)]


# Grid axes and points -----------------------------------------------------------------------------
_LIST_TAG, _RANGE_TAG = "list-axis", "range-axis"  # discriminator tags: dropped from error locations


def _axis_kind(value: Any) -> str | None:
    return _RANGE_TAG if isinstance(value, dict) else _LIST_TAG if isinstance(value, list) else None


def _non_empty_axis(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("empty list of values (an empty grid axis sweeps nothing)")
    return values


_Axis = Annotated[
    Annotated[list[Any], AfterValidator(_non_empty_axis), Tag(_LIST_TAG)] | Annotated[RangeAxis, Tag(_RANGE_TAG)],
    Discriminator(
        _axis_kind,
        custom_error_type="grid_axis",
        custom_error_message="expected a list of values or {range: [start, stop], step: s}",
    ),
]


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name in SECTIONS:
            out.update(_flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _point(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping of chip fields to values, e.g. {array.rows: 64}")
    flat = _flatten(doc)
    if not flat:
        raise ValueError("empty point (set at least one chip field)")
    for name in flat:
        _check_field(name)
    return flat


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"must be a non-empty string of letters, digits, '_', '.' or '-' (at most {MAX_NAME_CHARS} characters)"
        )
    return value


def _text(what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be {what}")
        return value

    return BeforeValidator(check)


_REQUIRED = ("name", "chip", "workloads")
_NONE_IS_ABSENT = (*_REQUIRED, "pairs", "chips_per_partition")


class SpecSchema(StrictModel):
    """A sweep spec as written (see :mod:`sim.sweep_spec`)."""

    name: Annotated[str, BeforeValidator(_name)]
    chip: Annotated[str, _text("a preset name, a chip YAML path or a SCALE-Sim .cfg path")]
    grid: dict[str, _Axis] | None = None
    points: list[Annotated[dict[str, Any], BeforeValidator(_point)]] | None = None
    workloads: list[Annotated[str, _text("a zoo name or a path")]]
    pairs: tuple[Pair, ...] | None = None
    chips_per_partition: Annotated[int, *int_range(1, MAX_CHIPS, unit="chips")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _none_is_absent(cls, doc: Any) -> Any:
        """``name:`` with no value is the same as leaving the key out."""
        if isinstance(doc, dict):
            return {k: v for k, v in doc.items() if not (k in _NONE_IS_ABSENT and v is None)}
        return doc

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("must be a non-empty mapping of chip fields to value lists, e.g. {array.rows: [8, 16]}")
        for key in value:
            _check_field(key)
        return value

    @field_validator("points", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of mappings of chip fields to values")
        return value

    @field_validator("workloads", mode="before")
    @classmethod
    def _workloads(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of zoo names or paths")
        return value

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if not isinstance(value, (str, list)):
            raise ValueError("must be a list such as [w8a8, w4a4]")
        try:
            return tuple(parse_pairs(value))
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _something_to_sweep(self) -> SpecSchema:
        if self.grid is None and self.points is None:
            raise ValueError("nothing to sweep: give grid (a mapping of chip fields to value lists) and/or points")
        return self


@dataclass(frozen=True)
class SpecDoc:
    """A structurally valid spec: grid axes expanded, points flattened, pairs parsed (None: not given)."""

    name: str
    chip: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    points: tuple[dict[str, Any], ...]
    workloads: tuple[str, ...]
    pairs: tuple[Pair, ...] | None
    chips_per_partition: int | None


SPEC_KEYS = tuple(SpecSchema.model_fields)


def _message(exc: ValidationError, where: str) -> str:
    err = first_error(exc)
    loc = [p for p in err["loc"] if p not in (_LIST_TAG, _RANGE_TAG)]
    if len(loc) == 1 and err["type"] == "missing":
        return f"{where}: missing field {loc[0]!r}"
    if len(loc) == 1 and err["type"] == "extra_forbidden":
        return f"{where}: unknown field {loc[0]!r} (allowed: {', '.join(SPEC_KEYS)})"
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return f"{where}: {text}: {error_text(err)}" if text else f"{where}: {error_text(err)}"


def parse_spec(doc: Any, where: str) -> SpecDoc:
    """Validate a spec mapping's structure; errors are one-line :class:`InputError` naming the field path."""
    if not isinstance(doc, dict):
        raise InputError(
            f"{where}: expected a mapping with {', '.join(_REQUIRED)} and grid/points, got {type(doc).__name__}"
        )
    try:
        spec = SpecSchema.model_validate(doc)
    except ValidationError as exc:
        raise InputError(_message(exc, where)) from None
    grid = tuple(
        (key, tuple(axis.values() if isinstance(axis, RangeAxis) else axis)) for key, axis in (spec.grid or {}).items()
    )
    return SpecDoc(
        name=spec.name,
        chip=spec.chip,
        grid=grid,
        points=tuple(spec.points or ()),
        workloads=tuple(spec.workloads),
        pairs=spec.pairs,
        chips_per_partition=spec.chips_per_partition,
    )
