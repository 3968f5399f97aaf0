"""Columns of a problem as pairwise functions of the units' choices.

Every per-layer table of a :class:`~search.problem.Problem` adds up to ``sum_u unary[u, p_u] + sum_e
table_e[p_u(e), p_v(e)]`` over units: a layer's cost depends on its own unit's pair and, when coupled, on the
width its consumer's unit reads.  A layer whose consumer sits in its own unit (or that has none) is unary; so is
the separable part of a coupled cost.  The exact pipeline (:mod:`search.exact`) bounds, repairs and scores
assignments with this form; reported totals always come from :meth:`Problem.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.problem import Problem

__all__ = ["Pairwise", "pairwise_terms"]


@dataclass(frozen=True)
class Pairwise:
    """K functions on one edge set: ``unary`` [K, U, P], ``edges`` [E, 2] unit pairs (u < v) and ``tables``
    [K, E, P, P] indexed [k, e, pair of u, pair of v]."""

    names: tuple[str, ...]
    unary: np.ndarray
    edges: np.ndarray
    tables: np.ndarray

    @property
    def n_units(self) -> int:
        return self.unary.shape[1]

    def _incidence(self) -> tuple[np.ndarray, np.ndarray]:
        n_e = len(self.edges)
        at_u = np.zeros((self.n_units, n_e))
        at_v = np.zeros((self.n_units, n_e))
        at_u[self.edges[:, 0], np.arange(n_e)] = 1.0
        at_v[self.edges[:, 1], np.arange(n_e)] = 1.0
        return at_u, at_v

    def totals(self, choice: np.ndarray) -> np.ndarray:
        """[K]: each function's value at per-unit pair indices ``choice`` [U]."""
        value = self.unary[:, np.arange(self.n_units), choice].sum(axis=1)
        if len(self.edges):
            value = value + self.tables[
                :, np.arange(len(self.edges)), choice[self.edges[:, 0]], choice[self.edges[:, 1]]
            ].sum(axis=1)
        return value

    def move_totals(self, choice: np.ndarray) -> np.ndarray:
        """[K, U, P]: each function's value when unit ``u`` alone switches to pair ``p``."""
        local = self.unary.copy()
        if len(self.edges):
            at_u, at_v = self._incidence()
            rows = np.arange(len(self.edges))
            # with v's pair held: a column of each table; with u's pair held: a row
            column = self.tables[:, rows, :, choice[self.edges[:, 1]]].transpose(1, 0, 2)  # [K, E, P]
            row = self.tables[:, rows, choice[self.edges[:, 0]], :]  # adjacent indices: already [K, E, P]
            local += at_u @ column + at_v @ row
        own = local[:, np.arange(self.n_units), choice]  # [K, U]
        return self.totals(choice)[:, None, None] + local - own[:, :, None]

    def combine(self, weights: Sequence[float]) -> Pairwise:
        """One function: ``sum_k weights[k] * function_k`` (the Lagrangian of an objective and budgets)."""
        w = np.asarray(weights, dtype=np.float64)
        return Pairwise(
            ("combined",),
            np.tensordot(w, self.unary, axes=1)[None],
            self.edges,
            np.tensordot(w, self.tables, axes=1)[None],
        )


def pairwise_terms(problem: Problem, tables: dict[str, np.ndarray], scales: dict[str, float]) -> Pairwise:
    """The named per-layer ``tables`` ([L, P] or coupled [L, P, O]) of ``problem``, each times its scale."""
    pr = problem
    names = tuple(tables)
    unary = np.zeros((len(names), pr.n_units, pr.n_pairs))
    edge_tables: dict[tuple[int, int], np.ndarray] = {}
    own = pr.out_index()[0] if pr.coupled else None  # out-width index of each pair's own a_bits
    pairs = np.arange(pr.n_pairs)
    for k, name in enumerate(names):
        table = np.asarray(tables[name], dtype=np.float64) * scales[name]
        if table.ndim == 2:
            np.add.at(unary[k], pr.unit_of, table)
            continue
        for layer in range(pr.n_layers):
            u = int(pr.unit_of[layer])
            c = int(pr.consumer[layer])
            v = int(pr.unit_of[c]) if c >= 0 else u
            if v == u:  # no consumer, or the consumer takes the same pair
                unary[k, u] += table[layer, pairs, own]
                continue
            block = table[layer][:, own]  # [pair of u, pair of v]
            # the separable part goes to the units' unary terms; only a true interaction becomes an edge
            base_u, base_v = block[:, 0], block[0, :] - block[0, 0]
            unary[k, u] += base_u
            unary[k, v] += base_v
            rest = block - base_u[:, None] - base_v[None, :]
            if not np.any(rest):
                continue
            key, oriented = ((u, v), rest) if u < v else ((v, u), rest.T)
            slot = edge_tables.setdefault(key, np.zeros((len(names), pr.n_pairs, pr.n_pairs)))
            slot[k] += oriented
    keys = sorted(edge_tables)
    edges = np.array(keys, dtype=np.int64).reshape(-1, 2)
    stacked = (
        np.stack([edge_tables[key] for key in keys], axis=1)
        if keys
        else np.zeros((len(names), 0, pr.n_pairs, pr.n_pairs))
    )
    return Pairwise(names, unary, edges, stacked)
