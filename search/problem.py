"""The bit-allocation problem: validated cost and sensitivity arrays over layers x candidate pairs.

A :class:`Problem` is built from a cost table (``layer``, ``w_bits``, ``a_bits``, the budgeted columns,
optional ``name``, ``group``, ``out_bits`` and ``consumer``) and a sensitivity table (``layer``,
``w_bits``, ``a_bits``, ``sensitivity``, optional ``group``).  Decisions are made per *unit*: a group
of layers that must take the same pair (the union of the ``group`` columns of both tables), or a
single layer.

Coupling: a cost table with an ``out_bits`` column holds one row per (layer, pair, out_bits), the cost
of the layer when its output is stored at ``out_bits``.  Each layer is then charged the row whose
``out_bits`` equals its consumer's activation width; the consumer is the ``consumer`` column's layer
if given, else the next layer in execution order, and the last layer (consumer -1) keeps its own
``a_bits``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lowbit_core.pairs import format_pair
from search.errors import SearchInputError

__all__ = ["Problem", "build_problem", "NOT_ADDITIVE"]

#: Cost-table columns that must not be budgeted: they do not add up over layers (the mapping columns describe).
NOT_ADDITIVE = ("utilization", "tile_m", "tile_n", "tile_k")
_KEYS = ("layer", "w_bits", "a_bits")


@dataclass(frozen=True, eq=False)
class Problem:
    """Arrays of one bit-allocation instance (L layers, P pairs, U units, O output widths).

    ``sensitivity`` is [L, P]; each cost column is [L, P] (plain) or [L, P, O] (coupled, O =
    ``len(out_widths)``).  ``out_index[l, q]`` is the O-index that layer ``l`` pays when its consumer
    takes pair ``q`` (or, for a layer without consumer, when it takes ``q`` itself).
    """

    layers: np.ndarray  # [L] layer ids in execution order
    names: tuple[str, ...]
    pairs: np.ndarray  # [P, 2] (w_bits, a_bits)
    unit_of: np.ndarray  # [L] unit index of each layer
    sensitivity: np.ndarray  # [L, P], >= 0
    costs: dict[str, np.ndarray]
    consumer: np.ndarray  # [L] index (not id) of the consumer layer, -1 if none
    out_widths: np.ndarray | None = None  # [O] when coupled
    method: str = ""
    group_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [U] user group label

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_units(self) -> int:
        return int(self.unit_of.max()) + 1

    @property
    def coupled(self) -> bool:
        return self.out_widths is not None

    @property
    def n_widths(self) -> int:
        """O, the number of output widths a coupled layer's cost depends on (0 when not coupled)."""
        return 0 if self.out_widths is None else len(self.out_widths)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.costs)

    @property
    def pair_labels(self) -> list[str]:
        return [format_pair((w, a)) for w, a in self.pairs]

    def out_index(self) -> np.ndarray:
        """[L, P]: the out-width index layer ``l`` pays when its consumer (or, without one, itself)
        takes pair ``q``."""
        assert self.out_widths is not None
        pos = {int(o): i for i, o in enumerate(self.out_widths)}
        per_pair = np.array([pos[int(a)] for a in self.pairs[:, 1]], dtype=np.int64)
        return np.broadcast_to(per_pair, (self.n_layers, self.n_pairs))

    def layer_choice(self, choice: np.ndarray) -> np.ndarray:
        """Per-unit pair indices [..., U] -> per-layer pair indices [..., L]."""
        return np.asarray(choice)[..., self.unit_of]

    def layer_costs(self, choice: np.ndarray, column: str) -> np.ndarray:
        """Per-layer cost [..., L] of ``column`` under per-unit pair indices ``choice`` [..., U]."""
        pick = self.layer_choice(choice)
        table = self.costs[column]
        rows = np.arange(self.n_layers)
        if table.ndim == 2:
            return table[rows, pick]
        nxt = np.where(self.consumer >= 0, self.consumer, rows)
        out_pick = self.out_index()[rows, pick[..., nxt]]
        return table[rows, pick, out_pick]

    def layer_sensitivity(self, choice: np.ndarray) -> np.ndarray:
        return self.sensitivity[np.arange(self.n_layers), self.layer_choice(choice)]

    def evaluate(self, choice: np.ndarray, columns: Iterable[str] | None = None) -> tuple[np.ndarray, dict]:
        """Total sensitivity [...] and total cost of each column [...] of per-unit choices [..., U]."""
        cols = self.columns if columns is None else tuple(columns)
        return (self.layer_sensitivity(choice).sum(-1), {c: self.layer_costs(choice, c).sum(-1) for c in cols})

    def uniform_choice(self, pair_index: int) -> np.ndarray:
        return np.full(self.n_units, int(pair_index), dtype=np.int64)

    def uniform_totals(self, columns: Iterable[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Total sensitivity [P] and each column's total [P] under every uniform assignment (``pairs`` order)."""
        choices = np.repeat(np.arange(self.n_pairs)[:, None], self.n_units, axis=1)
        return self.evaluate(choices, columns)

    def assignment_frame(self, choice: np.ndarray) -> pd.DataFrame:
        """The assignment table of DESIGN.md plus each layer's sensitivity and costs."""
        pick = self.layer_choice(np.asarray(choice))
        frame = pd.DataFrame(
            {
                "layer": self.layers,
                "name": list(self.names),
                "w_bits": self.pairs[pick, 0],
                "a_bits": self.pairs[pick, 1],
                "group": self.group_ids[self.unit_of],
            }
        )
        if self.coupled:
            rows = np.arange(self.n_layers)
            nxt = np.where(self.consumer >= 0, self.consumer, rows)
            frame["out_bits"] = self.pairs[pick[nxt], 1]
        frame["sensitivity"] = self.layer_sensitivity(choice)
        for col in self.columns:
            frame[col] = self.layer_costs(choice, col)
        return frame

    def choice_from_pairs(self, w_bits: Sequence[int], a_bits: Sequence[int]) -> np.ndarray:
        """Per-unit pair indices from per-layer bits (layers in execution order); groups must agree."""
        index = {(int(w), int(a)): i for i, (w, a) in enumerate(self.pairs)}
        choice = np.full(self.n_units, -1, dtype=np.int64)
        for layer, (w, a) in enumerate(zip(w_bits, a_bits, strict=True)):
            p = index.get((int(w), int(a)))
            if p is None:
                raise SearchInputError(
                    f"layer {self.names[layer]!r}: pair {format_pair((w, a))} is not a candidate "
                    f"({', '.join(self.pair_labels)})"
                )
            unit = self.unit_of[layer]
            if choice[unit] not in (-1, p):
                raise SearchInputError(
                    f"layer {self.names[layer]!r}: its group already takes "
                    f"{self.pair_labels[choice[unit]]}, not {format_pair((w, a))}"
                )
            choice[unit] = p
        return choice


# --- building and validation ----------------------------------------------------------------------------


def _need_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SearchInputError(
            f"{what}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})"
        )


def _int_column(frame: pd.DataFrame, col: str, what: str, minimum: int) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < minimum)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SearchInputError(
            f"{what}: column {col!r} needs integers >= {minimum}; row {row} has {frame[col].iloc[row]!r}"
        )
    return values.astype(np.int64)


def _cost_column(frame: pd.DataFrame, col: str, what: str) -> np.ndarray:
    if col in NOT_ADDITIVE:
        raise SearchInputError(f"budget column {col!r} is not additive over layers and cannot be budgeted")
    if col not in frame.columns:
        numeric = [
            c
            for c in frame.columns
            if c not in (*_KEYS, "name", "group", "out_bits", "consumer")
            and c not in NOT_ADDITIVE
            and pd.api.types.is_numeric_dtype(frame[c])
        ]
        raise SearchInputError(f"unknown budget column {col!r} in the {what} (columns: {', '.join(numeric)})")
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        r = frame.iloc[int(np.flatnonzero(bad)[0])]
        raise SearchInputError(
            f"{what}: column {col!r} must be finite and >= 0; layer {r['layer']} "
            f"{format_pair((r['w_bits'], r['a_bits']))} has {r[col]!r}"
        )
    return values


class _Groups:
    """Union-find over layer ids."""

    def __init__(self, layers: Iterable[int]) -> None:
        self.parent = {int(v): int(v) for v in layers}

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _per_layer(frame: pd.DataFrame, col: str, what: str) -> pd.Series:
    per = frame.groupby("layer")[col].nunique(dropna=False)
    if (per > 1).any():
        layer = int(per.index[np.flatnonzero(per.to_numpy() > 1)[0]])
        raise SearchInputError(f"{what}: layer {layer} has more than one {col!r} value")
    return frame.groupby("layer")[col].first()


def build_problem(  # noqa: C901 - one check per table rule, each with its own message
    costs: pd.DataFrame,
    sensitivity: pd.DataFrame,
    columns: Iterable[str],
    pairs: Iterable[tuple[int, int]] | None = None,
    method: str = "",
) -> Problem:
    """Validate the two tables and build the :class:`Problem` over the cost ``columns`` (those that may be
    budgeted or reported; each must be additive, finite and >= 0).

    ``pairs`` restricts the candidates (default: every pair of the cost table).  Every layer needs a
    cost row for every candidate (and, coupled, every output width) and a sensitivity row per
    candidate; sensitivity rows for pairs that are not candidates are ignored.
    """
    columns = list(dict.fromkeys(columns))
    _need_columns(costs, _KEYS, "cost table")
    _need_columns(sensitivity, (*_KEYS, "sensitivity"), "sensitivity table")
    costs = costs.copy()
    for col, lo in (("layer", 0), ("w_bits", 1), ("a_bits", 1)):
        costs[col] = _int_column(costs, col, "cost table", lo)
        sensitivity = sensitivity.assign(**{col: _int_column(sensitivity, col, "sensitivity table", lo)})
    coupled = "out_bits" in costs.columns
    if coupled:
        costs["out_bits"] = _int_column(costs, "out_bits", "cost table", 1)
    cost_values = {c: _cost_column(costs, c, "cost table") for c in columns}

    keys = [*_KEYS, "out_bits"] if coupled else list(_KEYS)
    dup = costs.duplicated(keys)
    if dup.any():
        r = costs[dup].iloc[0]
        extra = f" out_bits {r['out_bits']}" if coupled else ""
        raise SearchInputError(
            f"cost table: duplicate rows for layer {r['layer']} {format_pair((r['w_bits'], r['a_bits']))}{extra}"
        )

    layer_ids = np.sort(costs["layer"].unique())
    names = (
        _per_layer(costs, "name", "cost table").astype(str)
        if "name" in costs.columns
        else pd.Series(layer_ids.astype(str), index=layer_ids)
    )
    table_pairs = sorted(
        {(int(w), int(a)) for w, a in zip(costs.w_bits, costs.a_bits, strict=True)}, key=lambda p: (-p[0], -p[1])
    )
    if pairs is not None:
        wanted = [(int(w), int(a)) for w, a in pairs]
        absent = [p for p in wanted if p not in table_pairs]
        if absent:
            raise SearchInputError(
                f"pair(s) {', '.join(format_pair(p) for p in absent)} are not in the cost table "
                f"({', '.join(format_pair(p) for p in table_pairs)})"
            )
        table_pairs = list(dict.fromkeys(wanted))
    pair_arr = np.asarray(table_pairs, dtype=np.int64).reshape(-1, 2)
    out_widths = np.asarray(sorted({int(a) for a in pair_arr[:, 1]}), dtype=np.int64) if coupled else None

    # --- costs: every layer x pair (x out width) present exactly once
    n_l, n_p = len(layer_ids), len(pair_arr)
    layer_pos = {int(v): i for i, v in enumerate(layer_ids)}
    pair_pos = {(int(w), int(a)): i for i, (w, a) in enumerate(pair_arr)}
    li = costs["layer"].map(layer_pos).to_numpy()
    pi = np.array([pair_pos.get((int(w), int(a)), -1) for w, a in zip(costs.w_bits, costs.a_bits, strict=True)])
    keep = pi >= 0
    shape: tuple[int, ...] = (n_l, n_p)
    index: tuple[np.ndarray, ...] = (li[keep], pi[keep])
    if coupled:
        assert out_widths is not None
        out_pos = {int(o): i for i, o in enumerate(out_widths)}
        oi = np.array([out_pos.get(int(o), -1) for o in costs["out_bits"]])
        keep &= oi >= 0
        shape, index = (n_l, n_p, len(out_widths)), (li[keep], pi[keep], oi[keep])
    seen = np.zeros(shape, dtype=bool)
    seen[index] = True
    if not seen.all():
        miss = np.argwhere(~seen)[0]
        extra = f" with out_bits {out_widths[miss[2]]}" if coupled and out_widths is not None else ""
        raise SearchInputError(
            f"cost table: layer {layer_ids[miss[0]]} ({names.iloc[miss[0]]!r}) has no row for "
            f"{format_pair(pair_arr[miss[1]])}{extra}; every layer needs every candidate pair"
        )
    cost_arrays: dict[str, np.ndarray] = {}
    for col, values in cost_values.items():
        arr = np.zeros(shape, dtype=np.float64)
        arr[index] = values[keep]
        cost_arrays[col] = arr

    # --- sensitivity: same layers, a row per candidate
    s_layers = set(int(v) for v in sensitivity["layer"].unique())
    if s_layers != set(layer_pos):
        only_c = sorted(set(layer_pos) - s_layers)
        only_s = sorted(s_layers - set(layer_pos))
        raise SearchInputError(
            "sensitivity rows do not match the cost rows: "
            + "; ".join(
                s
                for s in (
                    f"layers {only_c[:5]} have costs but no sensitivity" if only_c else "",
                    f"layers {only_s[:5]} have sensitivity but no costs" if only_s else "",
                )
                if s
            )
        )
    if "name" in sensitivity.columns and "name" in costs.columns:
        s_names = _per_layer(sensitivity, "name", "sensitivity table").astype(str)
        differ = [v for v in layer_ids if s_names[v] != names[v]]
        if differ:
            v = differ[0]
            raise SearchInputError(
                f"sensitivity rows do not match the cost rows: layer {v} is {s_names[v]!r} in the "
                f"sensitivity table but {names[v]!r} in the cost table"
            )
    s_vals = pd.to_numeric(sensitivity["sensitivity"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(s_vals) | (s_vals < 0)
    if bad.any():
        r = sensitivity.iloc[int(np.flatnonzero(bad)[0])]
        raise SearchInputError(
            f"sensitivity table: 'sensitivity' must be finite and >= 0; layer {r['layer']} "
            f"{format_pair((r['w_bits'], r['a_bits']))} has {r['sensitivity']!r}"
        )
    if sensitivity.duplicated(list(_KEYS)).any():
        r = sensitivity[sensitivity.duplicated(list(_KEYS))].iloc[0]
        raise SearchInputError(
            f"sensitivity table: duplicate rows for layer {r['layer']} {format_pair((r['w_bits'], r['a_bits']))}"
        )
    sens = np.full((n_l, n_p), np.nan)
    sli = sensitivity["layer"].map(layer_pos).to_numpy()
    spi = np.array(
        [pair_pos.get((int(w), int(a)), -1) for w, a in zip(sensitivity.w_bits, sensitivity.a_bits, strict=True)]
    )
    sk = spi >= 0
    sens[sli[sk], spi[sk]] = s_vals[sk]
    if np.isnan(sens).any():
        miss = np.argwhere(np.isnan(sens))[0]
        raise SearchInputError(
            f"sensitivity rows do not match the cost rows: layer {layer_ids[miss[0]]} "
            f"({names.iloc[miss[0]]!r}) has no sensitivity for {format_pair(pair_arr[miss[1]])}"
        )

    # --- groups (union of both tables' ties) and consumers
    uf = _Groups(layer_ids)
    for frame, what in ((costs, "cost table"), (sensitivity, "sensitivity table")):
        if "group" in frame.columns:
            g = _per_layer(frame, "group", what)
            for _, members in g.groupby(g):
                ids = [int(v) for v in members.index]
                for other in ids[1:]:
                    uf.union(ids[0], other)
    roots = [uf.find(int(v)) for v in layer_ids]
    unit_index: dict[int, int] = {}
    unit_of = np.array([unit_index.setdefault(r, len(unit_index)) for r in roots], dtype=np.int64)
    if "group" in costs.columns:
        g = _per_layer(costs, "group", "cost table")
        group_ids = np.array([g[layer_ids[np.flatnonzero(unit_of == u)[0]]] for u in range(len(unit_index))])
    else:
        group_ids = np.arange(len(unit_index), dtype=np.int64)

    consumer = np.append(np.arange(1, n_l), -1).astype(np.int64)
    if "consumer" in costs.columns:
        c = _per_layer(costs, "consumer", "cost table")
        consumer = np.array([layer_pos.get(int(c[v]), -1) if int(c[v]) >= 0 else -1 for v in layer_ids])
        unknown = [v for v in layer_ids if int(c[v]) >= 0 and int(c[v]) not in layer_pos]
        if unknown:
            raise SearchInputError(
                f"cost table: layer {unknown[0]} names consumer {int(c[unknown[0]])}, which is not a layer"
            )
    method = method or (str(sensitivity["method"].iloc[0]) if "method" in sensitivity.columns else "")
    return Problem(
        layers=layer_ids.astype(np.int64),
        names=tuple(names.tolist()),
        pairs=pair_arr,
        unit_of=unit_of,
        sensitivity=sens,
        costs=cost_arrays,
        consumer=consumer,
        out_widths=out_widths,
        method=method,
        group_ids=np.asarray(group_ids),
    )
