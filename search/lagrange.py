"""Lower bounds on a pairwise function with one fixed choice: min-marginals by dynamic programming.

For a :class:`~search.pairwise.Pairwise` function ``f`` the min-marginal ``M[u, p]`` is ``min f(x)`` over all
assignments with ``x_u = p``.  On a forest of edges two passes of min-sum message passing give every ``M[u, p]``
exactly.  Edges that would close a cycle (tied groups, dense skips) are replaced by a lower bound,
``table[p, q] >= min_q table[p, q]`` folded into one endpoint's unary term, so ``M`` stays a lower bound; the
edges with the widest spread are kept in the forest so the bound loses as little as possible.

With ``f = objective + sum_b lambda_b * (cost_b - limit_b)`` and ``lambda >= 0`` this is a Lagrangian bound: no
assignment with ``x_u = p`` that meets the budgets has an objective below ``M[u, p]``.
"""

from __future__ import annotations

import numpy as np

from search.pairwise import Pairwise

__all__ = ["min_marginals"]


def _spanning_forest(f: Pairwise) -> tuple[list[int], np.ndarray]:
    """Indices of the edges kept in a forest (widest spread first) and the unary terms with the others folded
    in (``f`` holds one function)."""
    n_units = f.n_units
    parent = list(range(n_units))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    unary = f.unary[0].copy()
    tables = f.tables[0]
    kept: list[int] = []
    spread = np.ptp(tables.reshape(len(tables), -1), axis=1) if len(tables) else np.zeros(0)
    for e in np.argsort(-spread, kind="stable"):
        u, v = (int(i) for i in f.edges[e])
        ru, rv = root(u), root(v)
        if ru != rv:
            parent[ru] = rv
            kept.append(int(e))
        else:  # a cycle: keep a lower bound of the edge on u's side
            unary[u] += tables[e].min(axis=1)
    return kept, unary


def min_marginals(f: Pairwise) -> np.ndarray:
    """[U, P] lower bounds (exact on forests) of ``min f`` with unit ``u`` fixed to pair ``p`` (``f`` holds
    one function, e.g. from :meth:`Pairwise.combine`)."""
    n_units = f.n_units
    kept, unary = _spanning_forest(f)
    neighbours: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_units)]
    for e in kept:  # each table oriented [pair of this unit, pair of the neighbour]
        u, v = (int(i) for i in f.edges[e])
        neighbours[u].append((v, f.tables[0, e]))
        neighbours[v].append((u, f.tables[0, e].T))
    # order every tree from a root: parents before children
    order: list[int] = []
    parent = np.full(n_units, -1)
    tree = np.full(n_units, -1)
    roots: list[int] = []
    for start in range(n_units):
        if tree[start] >= 0:
            continue
        tree[start] = len(roots)
        roots.append(start)
        stack = [start]
        while stack:
            u = stack.pop()
            order.append(u)
            for v, _ in neighbours[u]:
                if tree[v] < 0:
                    tree[v] = tree[u]
                    parent[v] = u
                    stack.append(v)
    table_to_parent: dict[int, np.ndarray] = {}  # [pair of child, pair of parent]
    for u in range(n_units):
        for v, table in neighbours[u]:
            if parent[u] == v:
                table_to_parent[u] = table
    up = np.zeros_like(unary)  # sum of the messages from a unit's children, per pair of the unit
    message_up: dict[int, np.ndarray] = {}
    for u in reversed(order):  # leaves first
        if parent[u] >= 0:
            msg = (unary[u] + up[u])[:, None] + table_to_parent[u]
            message_up[u] = msg.min(axis=0)
            up[parent[u]] += message_up[u]
    down = np.zeros_like(unary)  # the message from a unit's parent, per pair of the unit
    for u in order:  # roots first
        p = parent[u]
        if p >= 0:
            outside = unary[p] + up[p] - message_up[u] + down[p]  # parent's belief without u's message
            down[u] = (outside[None, :] + table_to_parent[u]).min(axis=1)
    # every other tree takes its own minimum
    tree_min = np.array([(unary[r] + up[r]).min() for r in roots])
    return unary + up + down + (tree_min.sum() - tree_min[tree])[:, None]
