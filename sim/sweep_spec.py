"""Sweep specs: a base chip, a grid and/or explicit points of chip overrides, workloads and pairs.

A spec is YAML validated on load; every error is one line naming the field (and, for a chip
variant, its ``chip_id`` and overrides)::

    name: edge-sweep
    chip: bitfusion_edge              # preset name, chip YAML path or SCALE-Sim .cfg
    grid:                             # cartesian product, first key slowest
      array.rows: [8, 16, 32]
      array.cols: {range: [8, 64], step: 8}     # inclusive
      array.dataflow: [ws, os, is]
    points:                           # extra variants, after the grid
      - {array.rows: 64, array.cols: 8}
    workloads: [resnet18, mobilenet_v2]
    pairs: [w8a8, w4a4, w2a2]         # default: the base chip's supported pairs
    chips_per_partition: 500

Variant ``i`` (its ``chip_id``) is the ``i``-th grid combination in :func:`itertools.product`
order over the grid keys as written, then the points in order; it is named ``<name>-<i>``.

The structure (keys, types, ranges, bounds) is a pydantic schema, :mod:`sim.sweep_schema`; unknown
keys are errors and every number is finite and bounded.  Validation is exact but cheap: each grid
value is checked alone against its field, each distinct section (``array``, ``pe``, ``memory``)
combination is validated once, and every variant is then validated as a whole
:class:`~sim.config.Chip` (section instances reused, so this costs a few microseconds per variant).
Checks that depend only on the PE and technology (pairs, MAC energy) run once per distinct
non-geometry combination.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair, format_pair
from lowbit_core.yamlio import read_yaml
from sim.chip_loader import load_chip
from sim.chipbatch import mac_energy_pj
from sim.config import Chip
from sim.sweep_schema import MAX_CHIPS, SECTIONS, SPEC_KEYS, SWEEP_FIELDS, parse_spec

__all__ = [
    "SweepSpec",
    "Expansion",
    "load_sweep_spec",
    "sweep_spec_from_dict",
    "SWEEP_FIELDS",
    "SPEC_KEYS",
    "MAX_CHIPS",
]

#: Sections whose fields only enter the cost model elementwise (no cross-section validation).
_GEOMETRY = ("array", "memory")


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _err_text(err: Any) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return msg


@dataclass(frozen=True, eq=False)
class Expansion:
    """Every chip variant of a spec, as per-field codes into per-field value lists.

    ``fields`` are the swept dotted fields (grid keys as written, then new point keys);
    ``levels[f]`` the distinct validated values of ``f`` (the base value first when points set a
    field the grid does not); ``codes[f]`` an int array [n_chips] indexing ``levels[f]``.
    ``static_mw`` holds each variant's ``Chip.static_power_mw()``; ``group`` maps each variant
    to a representative of its non-geometry combination, with that group's MAC energies for the
    spec's pairs in ``group_mac_pj`` / ``group_act_mac_pj`` [G, P].
    """

    spec_name: str
    base: Chip
    n_chips: int
    n_grid: int
    fields: tuple[str, ...]
    levels: dict[str, tuple[Any, ...]]
    codes: dict[str, np.ndarray]
    section_index: dict[str, np.ndarray]
    section_items: dict[str, tuple[BaseModel, ...]]
    static_mw: np.ndarray
    group: np.ndarray
    group_mac_pj: np.ndarray
    group_act_mac_pj: np.ndarray
    _top: dict[str, Any] = field(repr=False, default_factory=dict)

    def __len__(self) -> int:
        return self.n_chips

    def chip_name(self, chip_id: int) -> str:
        return f"{self.spec_name}-{chip_id}"

    @cached_property
    def chip_names(self) -> tuple[str, ...]:
        return tuple(f"{self.spec_name}-{i}" for i in range(self.n_chips))

    def overrides(self, chip_id: int) -> dict[str, Any]:
        """The swept fields' values of variant ``chip_id``."""
        return {f: self.levels[f][int(self.codes[f][chip_id])] for f in self.fields}

    def describe(self, chip_id: int) -> str:
        """``chip 5 (array.rows=16, array.dataflow=os)`` or ``points[1] = chip 30 (...)``."""
        return _describe(vars(self), chip_id)

    def _doc(self, chip_id: int) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self._top)
        doc["name"] = self.chip_name(chip_id)
        for f in self.fields:
            if "." not in f:
                doc[f] = self.levels[f][int(self.codes[f][chip_id])]
        for sec in SECTIONS:
            doc[sec] = self.section_items[sec][int(self.section_index[sec][chip_id])]
        return doc

    def chip(self, chip_id: int) -> Chip:
        """The validated :class:`Chip` of variant ``chip_id``."""
        if not 0 <= chip_id < self.n_chips:
            raise IndexError(f"chip_id {chip_id} out of range 0..{self.n_chips - 1}")
        return Chip.model_validate(self._doc(chip_id))


@dataclass(frozen=True, eq=False)
class SweepSpec:
    """A validated sweep spec.  ``pairs`` is resolved (the base chip's pairs when not given)."""

    name: str
    chip: str
    base_chip: Chip
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    points: tuple[dict[str, Any], ...]
    workload_sources: tuple[str, ...]
    workloads: tuple[Any, ...]
    pairs: tuple[Pair, ...]
    pairs_given: bool
    chips_per_partition: int | None
    source: str
    expansion: Expansion

    @property
    def n_chips(self) -> int:
        return self.expansion.n_chips

    @property
    def swept_fields(self) -> tuple[str, ...]:
        return self.expansion.fields

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able echo of the spec with ranges expanded and values validated."""
        return {
            "name": self.name,
            "chip": self.chip,
            "base_chip": self.base_chip.model_dump(mode="json"),
            "grid": {f: list(vals) for f, vals in self.grid},
            "points": [dict(p) for p in self.points],
            "workloads": list(self.workload_sources),
            "pairs": [format_pair(p) for p in self.pairs],
            "chips_per_partition": self.chips_per_partition,
        }


def load_sweep_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep spec YAML file (relative chip/workload paths: spec dir first)."""
    p = Path(path)
    doc = read_yaml(p, "sweep spec file")
    return sweep_spec_from_dict(doc, where=str(p), base_dir=p.parent)


def _resolve(entry: str, base_dir: Path | None) -> str:
    """A relative path that exists next to the spec wins over the current directory."""
    if base_dir is not None and not Path(entry).is_absolute():
        candidate = base_dir / entry
        if candidate.is_file():
            return str(candidate)
    return entry


def sweep_spec_from_dict(doc: Any, where: str = "sweep spec", base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a spec mapping (see the module docstring); errors are one-line :class:`InputError`.

    The structure is checked first (:func:`sim.sweep_schema.parse_spec`), then the base chip, the
    workloads and every grid and point value against its chip field.
    """
    parsed = parse_spec(doc, where)
    base_dir = Path(base_dir) if base_dir is not None else None
    try:
        base = load_chip(_resolve(parsed.chip, base_dir))
    except InputError as exc:
        raise InputError(f"{where}: chip: {exc}") from None

    from sim.workload import load_workload

    workloads: list[Any] = []
    seen: dict[Any, Any] = {}
    for i, entry in enumerate(parsed.workloads):
        try:
            wl = load_workload(_resolve(entry, base_dir))
        except InputError as exc:
            raise InputError(f"{where}: workloads[{i}]: {exc}") from None
        if wl.name in seen:
            raise InputError(f"{where}: workloads[{i}]: workload name {wl.name!r} repeats workloads[{seen[wl.name]}]")
        seen[wl.name] = i
        workloads.append(wl)
    pairs = parsed.pairs if parsed.pairs is not None else tuple(base.supported_pairs)

    base_doc = base.model_dump()
    grid = [
        (fname, tuple(_coerce(base_doc, fname, v, f"{where}: grid.{fname}[{j}]") for j, v in enumerate(values)))
        for fname, values in parsed.grid
    ]
    points = [
        {k: _coerce(base_doc, k, v, f"{where}: points[{j}].{k}") for k, v in flat.items()}
        for j, flat in enumerate(parsed.points)
    ]
    n_grid = math.prod(len(v) for _, v in grid) if grid else 0
    n_chips = n_grid + len(points)
    if n_chips > MAX_CHIPS:
        raise InputError(f"{where}: the spec expands to {n_chips} chips (max {MAX_CHIPS}); split the sweep")

    expansion = _expand(parsed.name, base, base_doc, grid, points, pairs, parsed.pairs is not None, n_grid, where)
    return SweepSpec(
        name=parsed.name,
        chip=parsed.chip,
        base_chip=base,
        grid=tuple(grid),
        points=tuple(points),
        workload_sources=parsed.workloads,
        workloads=tuple(workloads),
        pairs=pairs,
        pairs_given=parsed.pairs is not None,
        chips_per_partition=parsed.chips_per_partition,
        source=where,
        expansion=expansion,
    )


# Validation -----------------------------------------------------------------------------------
_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(fname: str) -> TypeAdapter:
    """A validator for one Chip field with its constraints (not its model's validators)."""
    if fname not in _ADAPTERS:
        path = SWEEP_FIELDS[fname]
        owner = SECTIONS[path[0]] if len(path) == 2 else Chip
        info = owner.model_fields[path[-1]]
        ann: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        _ADAPTERS[fname] = TypeAdapter(ann)
    return _ADAPTERS[fname]


def _coerce(base_doc: dict, fname: str, value: Any, at: str) -> Any:
    """Validate one value of one field alone; return it as the Chip model stores it."""
    if isinstance(value, (list, dict)):
        raise InputError(f"{at}: expected a single value for {fname}, got {value!r}")
    path = SWEEP_FIELDS[fname]
    try:
        if len(path) == 2:
            sec, leaf = path
            try:
                return getattr(SECTIONS[sec].model_validate({**base_doc[sec], leaf: value}), leaf)
            except ValidationError as exc:
                if any(e["loc"][:1] == (leaf,) for e in exc.errors()):
                    raise
                # only invalid together with the base section's other fields: the variants decide
        return _adapter(fname).validate_python(value)
    except ValidationError as exc:
        err = next((e for e in exc.errors() if e["loc"][:1] == (path[-1],)), exc.errors()[0])
        raise InputError(f"{at}: {fname} = {_fmt(value)} is invalid: {_err_text(err)}") from None


def _levels_and_codes(
    grid: list[tuple[str, tuple[Any, ...]]], points: list[dict[str, Any]], base: Chip, n_grid: int
) -> tuple[tuple[str, ...], dict[str, tuple], dict[str, np.ndarray]]:
    fields = [f for f, _ in grid]
    for p in points:
        fields += [f for f in p if f not in fields]
    n = n_grid + len(points)
    levels: dict[str, list[Any]] = {}
    codes: dict[str, np.ndarray] = {}
    radix = [len(v) for _, v in grid]
    strides = [math.prod(radix[k + 1 :]) for k in range(len(radix))]
    idx = np.arange(n_grid, dtype=np.int64)
    for f in fields:
        codes[f] = np.zeros(n, dtype=np.int32)
        if f in dict(grid):
            k = fields.index(f)
            levels[f] = list(grid[k][1])
            codes[f][:n_grid] = (idx // strides[k]) % radix[k]
        else:
            levels[f] = [_base_value(base, f)]  # grid rows keep the base value
    for j, p in enumerate(points):
        for f in fields:
            v = p.get(f, _base_value(base, f))
            code = _find(levels[f], v)
            if code < 0:
                levels[f].append(v)
                code = len(levels[f]) - 1
            codes[f][n_grid + j] = code
    return tuple(fields), {f: tuple(v) for f, v in levels.items()}, codes


def _find(values: list[Any], v: Any) -> int:
    for i, x in enumerate(values):
        if type(x) is type(v) and x == v:
            return i
    return -1


def _base_value(base: Chip, fname: str) -> Any:
    obj: Any = base
    for part in SWEEP_FIELDS[fname]:
        obj = getattr(obj, part)
    return obj


def _combos(codes: dict[str, np.ndarray], names: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(first variant of each distinct combination of ``names``, per-variant combination index)."""
    if not names:
        return np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    stacked = np.stack([codes[f].astype(np.int64) for f in names], axis=1)
    _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _expand(
    name: str,
    base: Chip,
    base_doc: dict,
    grid: list,
    points: list,
    pairs: tuple[Pair, ...],
    pairs_given: bool,
    n_grid: int,
    where: str,
) -> Expansion:
    fields, levels, codes = _levels_and_codes(grid, points, base, n_grid)
    n = n_grid + len(points)
    top = {k: getattr(base, k) for k in Chip.model_fields if k not in SECTIONS and k != "name"}

    # One validated instance per distinct section combination.
    section_index: dict[str, np.ndarray] = {}
    section_items: dict[str, tuple[BaseModel, ...]] = {}
    exp_args: dict[str, Any] = dict(
        spec_name=name, base=base, n_chips=n, n_grid=n_grid, fields=fields, levels=levels, codes=codes
    )
    for sec, model in SECTIONS.items():
        names = [f for f in fields if SWEEP_FIELDS[f][0] == sec and len(SWEEP_FIELDS[f]) == 2]
        first, inverse = _combos(codes, names, n)
        items = []
        for i in first:
            values = {SWEEP_FIELDS[f][1]: levels[f][int(codes[f][i])] for f in names}
            try:
                items.append(model.model_validate({**base_doc[sec], **values}) if names else getattr(base, sec))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join([sec, *map(str, err["loc"])])
                desc = _describe(exp_args, int(i))
                raise InputError(f"{where}: {desc}: {loc}: {_err_text(err)}") from None
        section_index[sec] = inverse
        section_items[sec] = tuple(items)

    # Every variant as a whole chip (section instances are not revalidated) + its static power.
    static = np.empty(n, dtype=np.float64)
    top_fields = [f for f in fields if "." not in f]
    top_levels = [(f, levels[f], codes[f]) for f in top_fields]
    sec_cols = [(sec, section_items[sec], section_index[sec]) for sec in SECTIONS]
    validate = Chip.model_validate
    for i in range(n):
        doc = dict(top)
        doc["name"] = f"{name}-{i}"
        for f, lv, cd in top_levels:
            doc[f] = lv[cd[i]]
        for sec, sec_items, index in sec_cols:
            doc[sec] = sec_items[index[i]]
        try:
            chip = validate(doc)
            static[i] = chip.static_power_mw()
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(map(str, err["loc"])) or "chip"
            raise InputError(f"{where}: {_describe(exp_args, i)}: {loc}: {_err_text(err)}") from None
        except InputError as exc:
            raise InputError(f"{where}: {_describe(exp_args, i)}: {exc}") from None

    # Pairs and MAC energies once per distinct non-geometry combination.
    others = [f for f in fields if SWEEP_FIELDS[f][0] not in _GEOMETRY]
    first, group = _combos(codes, others, n)
    mac = np.empty((len(first), len(pairs)), dtype=np.float64)
    act = np.empty_like(mac)
    exp = Expansion(
        **exp_args,
        section_index=section_index,
        section_items=section_items,
        static_mw=static,
        group=group,
        group_mac_pj=mac,
        group_act_mac_pj=act,
        _top=top,
    )
    supported_hint = (
        ""
        if pairs_given
        else " (the spec gives no pairs: the base chip's pairs are used; list pairs every variant supports)"
    )
    for g, i in enumerate(first):
        chip = exp.chip(int(i))
        bad = [p for p in pairs if p not in set(chip.supported_pairs)]
        if bad:
            listed = ",".join(format_pair(p) for p in chip.supported_pairs)
            raise InputError(
                f"{where}: pairs: {format_pair(bad[0])} is not supported by {exp.describe(int(i))} "
                f"(supported: {listed}){supported_hint}"
            )
        try:
            mac[g] = [mac_energy_pj(chip, w, a) for w, a in pairs]
            act[g] = [mac_energy_pj(chip, a, a) for _, a in pairs]
        except InputError as exc:
            raise InputError(f"{where}: {exp.describe(int(i))}: {exc}") from None
    return exp


def _describe(exp_args: dict, chip_id: int) -> str:
    fields, levels, codes, n_grid = (
        exp_args["fields"],
        exp_args["levels"],
        exp_args["codes"],
        exp_args["n_grid"],
    )
    sets = ", ".join(f"{f}={_fmt(levels[f][int(codes[f][chip_id])])}" for f in fields)
    head = f"chip {chip_id}" if chip_id < n_grid else f"points[{chip_id - n_grid}] = chip {chip_id}"
    return f"{head} ({sets})" if sets else head
