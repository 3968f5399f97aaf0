"""lowbit's YAML workload format: its pydantic schema and :func:`read_yaml_workload`.

:mod:`sim.workload` describes the format.  The schema is built on :mod:`lowbit_core.schema`, like the chip's
(:mod:`sim.config`) and the sweep spec's (:mod:`sim.sweep_schema`): a file is a :class:`WorkloadFile`, and each of
its layers is either a shorthand, chosen by ``type`` (:class:`ConvLayer`, :class:`GemmLayer`, :class:`MatmulLayer`:
the arguments of :func:`~sim.workload.layer.conv`, :func:`~sim.workload.layer.gemm` or
:func:`~sim.workload.layer.matmul`), or an :class:`ExplicitLayer` (the :class:`~sim.workload.layer.Layer` fields,
with ``kind``).  Every size is an integer in 1..``MAX_DIM`` (``pad`` from 0; booleans, fractions and strings
refused), and layer names are unique.  An error is one line naming the file, the layer and the field::

    net.yaml: layers[3] (fc): tokens: must be an integer in [1, 16777216], got 1.5

The checks of the builders and of :class:`~sim.workload.layer.Layer` (a kernel larger than its padded input,
asymmetric padding, groups, input blocks, the size of a layer) run on the validated layers; their errors name the
file and the layer too.  This module loads pydantic; :mod:`sim.workload` imports it only to read a YAML file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Strict,
    Tag,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lowbit_core.errors import InputError
from lowbit_core.schema import RANGE_ERROR, StrictModel, error_text, first_error, format_validation, int_range
from lowbit_core.yamlio import read_yaml
from sim.workload.layer import MAX_DIM, Layer, LayerKind, Workload, conv, gemm, matmul

__all__ = [
    "WorkloadFile",
    "ConvLayer",
    "GemmLayer",
    "MatmulLayer",
    "ExplicitLayer",
    "LayerDoc",
    "SHORTHAND",
    "read_yaml_workload",
]


def _one_or_two(lowest: int) -> Callable[[Any, Any], Any]:
    """A size or a list of two (``[h, w]``), with one message naming both."""
    message = f"must be an integer in [{lowest}, {MAX_DIM}] or a list of two such integers"

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(RANGE_ERROR, message) from None

    return check


_Size = Annotated[int, Strict(), *int_range(1, MAX_DIM)]
_Pad = Annotated[int, Strict(), *int_range(0, MAX_DIM)]
_SizeOrPair = Annotated[_Size | tuple[_Size, _Size], WrapValidator(_one_or_two(1))]
_PadOrPair = Annotated[_Pad | tuple[_Pad, _Pad], WrapValidator(_one_or_two(0))]


def _non_empty(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


_Name = Annotated[str, BeforeValidator(_non_empty)]


class ConvLayer(StrictModel):
    """``{type: conv, ...}``: the arguments of :func:`~sim.workload.layer.conv` (a ``dwconv`` when ``groups > 1``)."""

    type: Literal["conv"]
    name: _Name
    in_hw: _SizeOrPair
    in_c: _Size
    out_c: _Size
    k: _SizeOrPair
    stride: _Size = 1
    pad: _PadOrPair = 0
    groups: _Size = 1
    batch: _Size = 1
    in_blocks: _Size = 1

    def layer(self) -> Layer:
        return conv(**self.model_dump(exclude={"type"}))


class GemmLayer(StrictModel):
    """``{type: gemm, ...}``: the arguments of :func:`~sim.workload.layer.gemm`."""

    type: Literal["gemm"]
    name: _Name
    tokens: _Size
    in_features: _Size
    out_features: _Size
    batch: _Size = 1
    in_blocks: _Size = 1

    def layer(self) -> Layer:
        return gemm(**self.model_dump(exclude={"type"}))


class MatmulLayer(StrictModel):
    """``{type: matmul, ...}``: the arguments of :func:`~sim.workload.layer.matmul`."""

    type: Literal["matmul"]
    name: _Name
    rows: _Size
    inner: _Size
    cols: _Size
    heads: _Size = 1
    batch: _Size = 1

    def layer(self) -> Layer:
        return matmul(**self.model_dump(exclude={"type"}))


class ExplicitLayer(StrictModel):
    """The :class:`~sim.workload.layer.Layer` fields, with their defaults."""

    name: _Name
    kind: LayerKind
    in_h: _Size
    in_w: _Size
    in_c: _Size
    out_c: _Size
    k_h: _Size = 1
    k_w: _Size = 1
    stride: _Size = 1
    groups: _Size = 1
    out_h: _Size = 1
    out_w: _Size = 1
    batch: _Size = 1
    pad: _Pad = 0
    in_blocks: _Size = 1

    def layer(self) -> Layer:
        return Layer(**self.model_dump())


#: The shorthand forms by ``type``.
SHORTHAND: dict[str, type[ConvLayer | GemmLayer | MatmulLayer]] = {
    "conv": ConvLayer,
    "gemm": GemmLayer,
    "matmul": MatmulLayer,
}
_EXPLICIT = "explicit"  # the discriminator's tag of the explicit form (the shorthand's tags are their types)
_FORMS: dict[str, type[StrictModel]] = {**SHORTHAND, _EXPLICIT: ExplicitLayer}


def _one_of(names: Any) -> str:
    """``'a', 'b' or 'c'``, as pydantic lists a Literal's values."""
    quoted = [repr(n) for n in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _layer_form(item: Any) -> Any:
    """The checks that come before choosing a layer's form: a mapping, with a known ``type`` or none."""
    if not isinstance(item, dict):
        raise ValueError("must be a mapping of layer fields")
    if "type" in item and "kind" in item:
        raise ValueError("give 'type' (shorthand) or 'kind' (explicit fields), not both")
    kind = item.get("type")
    if "type" in item and (not isinstance(kind, str) or kind not in SHORTHAND):
        raise ValueError(f"type: must be one of {_one_of(SHORTHAND)}, got {kind!r}")
    return item


def _form_tag(item: Any) -> str | None:
    return item.get("type", _EXPLICIT) if isinstance(item, dict) else None


#: One layer: the shorthand its ``type`` names, or (no ``type``) the explicit form.
LayerDoc = Annotated[
    Annotated[ConvLayer, Tag("conv")]
    | Annotated[GemmLayer, Tag("gemm")]
    | Annotated[MatmulLayer, Tag("matmul")]
    | Annotated[ExplicitLayer, Tag(_EXPLICIT)],
    Discriminator(_form_tag),
    BeforeValidator(_layer_form),
]


class WorkloadFile(StrictModel):
    """A workload file as written: ``name`` (None: the file's stem), ``layers`` and a free-text ``description``."""

    name: str | None = None
    layers: list[LayerDoc]
    description: Any = None

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _non_empty(value)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of layers")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> WorkloadFile:
        first: dict[str, int] = {}
        for i, layer in enumerate(self.layers):
            j = first.setdefault(layer.name, i)
            if j != i:
                raise ValueError(f"layers[{i}]: duplicate layer name {layer.name!r} (first at layers[{j}])")
        return self


def _message(exc: ValidationError, path: Path, doc: Mapping[str, Any]) -> str:
    """:func:`format_validation`'s line, with a layer's error placed at ``layers[i] (name)`` and an unknown field
    answered with the fields of the layer's form."""
    err = first_error(exc)
    loc = tuple(err["loc"])
    count = len(exc.errors())
    more = f" (and {count - 1} more)" if count > 1 else ""
    if not loc:  # a rule over the whole file
        return f"{path}: {error_text(err)}{more}"
    if len(loc) < 2 or loc[0] != "layers" or not isinstance(loc[1], int):
        return format_validation(exc, str(path), WorkloadFile)
    i, rest = loc[1], loc[2:]
    form = _FORMS.get(rest[0]) if rest and isinstance(rest[0], str) else None  # the discriminator's tag
    field = ".".join(str(part) for part in rest[1 if form else 0 :])
    item = doc["layers"][i]
    name = item.get("name") if isinstance(item, dict) else None
    where = f"{path}: layers[{i}]" + (f" ({name})" if isinstance(name, str) and name.strip() else "")
    text = error_text(err, tuple(form.model_fields) if form else None)
    return f"{where}: {field}: {text}{more}" if field else f"{where}: {text}{more}"


def read_yaml_workload(path: str | os.PathLike[str]) -> Workload:
    """Read a workload in lowbit's YAML format (see :mod:`sim.workload`); an error is a one-line
    :class:`~lowbit_core.errors.InputError` naming the file, the layer and the field."""
    p = Path(path)
    doc = read_yaml(p, "workload file")
    if not isinstance(doc, dict):
        raise InputError(
            f"{p}: a workload file must be a mapping with 'layers' (and optional 'name'), got {type(doc).__name__}"
        )
    try:
        spec = WorkloadFile.model_validate(doc)
    except ValidationError as exc:
        raise InputError(_message(exc, p, doc)) from None
    layers: list[Layer] = []
    for i, item in enumerate(spec.layers):
        try:
            layers.append(item.layer())
        except InputError as exc:  # the builder's and Layer's own checks
            raise InputError(f"{p}: layers[{i}]: {exc}") from None
    return Workload(p.stem if spec.name is None else spec.name, tuple(layers))
