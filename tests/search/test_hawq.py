"""The HAWQ-V3 ILP on its released instance: lowbit's ILP against exhaustive and exact-staircase optima.

ResNet-18 has 16 tied groups, so all 2^16 assignments are enumerated.  ResNet-50 has 48, so an exact
Pareto staircase (Nemhauser-Ullmann: merge, sort, drop dominated partial sums) is built group by group.
Both are computed from the raw CSV columns, independently of search.hawq's conversion.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.errors import SearchInputError
from search.hawq import (
    HAWQ_BUDGETS,
    HAWQ_FRACTIONS,
    hawq_limit,
    hawq_problem,
    hawq_table,
    load_hawq_instance,
    main,
    markdown_table,
    solve_hawq,
)
from search.ilp import AssignmentModel

DATA = Path(__file__).parent / "data" / "hawq_v3_ilp"
DOCS = Path(__file__).parents[2] / "docs" / "search.md"
NETS = ("resnet18", "resnet50")
REL = 1e-9


def raw_items(net: str, budget: str) -> tuple[float, float, np.ndarray, np.ndarray, float, np.ndarray]:
    """From the raw CSV: all-4-bit cost and Ω, per-group (Δcost, ΔΩ) of moving to 8 bits, the
    all-8-bit cost, and the group labels."""
    raw = pd.read_csv(DATA / f"{net}.csv")
    cost = {
        "size": (0.5 * raw.parameters, 1.0 * raw.parameters),
        "bops": (raw.bops_fp / 64, raw.bops_fp / 16),
        "latency": (raw.latency_int4, raw.latency_int8),
    }[budget]
    c4, c8 = (np.asarray(v, dtype=float) for v in cost)
    s4 = (raw.hutchinson_trace * raw.delta_w4_sq).to_numpy()
    s8 = (raw.hutchinson_trace * raw.delta_w8_sq).to_numpy()
    groups = np.unique(raw.group)
    member = raw.group.to_numpy()[None, :] == groups[:, None]  # [G, L]
    return c4.sum(), s4.sum(), member @ (c8 - c4), member @ (s8 - s4), c8.sum(), groups


def staircase(c0: float, s0: float, dc: np.ndarray, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (cost, Ω) Pareto staircase over all subsets of items: cost ascending, Ω strictly falling."""
    c, s = np.array([c0]), np.array([s0])
    for dci, dsi in zip(dc, ds):
        c2, s2 = np.concatenate([c, c + dci]), np.concatenate([s, s + dsi])
        order = np.lexsort((s2, c2))
        c2, s2 = c2[order], s2[order]
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], s2[:-1]]))
        keep = s2 < best_before
        c, s = c2[keep], s2[keep]
    return c, s


def best_within(c: np.ndarray, s: np.ndarray, limit: float) -> float:
    k = np.searchsorted(c, limit, side="right") - 1
    return float(s[k]) if k >= 0 else np.inf


def brute_force(c0: float, s0: float, dc: np.ndarray, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every subset of items (2^G rows)."""
    g = len(dc)
    masks = ((np.arange(2**g)[:, None] >> np.arange(g)[None, :]) & 1).astype(float)
    return c0 + masks @ dc, s0 + masks @ ds


@pytest.fixture(scope="module", params=NETS)
def instance(request) -> tuple[str, object, AssignmentModel]:
    problem = hawq_problem(DATA / f"{request.param}.csv")
    return request.param, problem, AssignmentModel(problem, HAWQ_BUDGETS)


def test_staircase_equals_brute_force_on_resnet18() -> None:
    for budget in HAWQ_BUDGETS:
        c0, s0, dc, ds, _, _ = raw_items("resnet18", budget)
        sc, ss = staircase(c0, s0, dc, ds)
        bc, bs = brute_force(c0, s0, dc, ds)
        assert len(sc) > 20
        for limit in [*(sc[:-1] + sc[1:]) / 2, sc[-1] * (1 + REL)]:  # away from float ties at the steps
            within = bs[bc <= limit]
            assert best_within(sc, ss, limit) == pytest.approx(within.min(), rel=1e-12)


@pytest.mark.parametrize("budget", HAWQ_BUDGETS)
@pytest.mark.parametrize("f", HAWQ_FRACTIONS)
def test_ilp_is_optimal(instance, budget: str, f: float) -> None:
    net, problem, model = instance
    c0, s0, dc, ds, c8, groups = raw_items(net, budget)
    limit = hawq_limit(problem, budget, f)
    assert limit == pytest.approx(c0 + f * (c8 - c0), rel=1e-12)  # the notebook's limit
    sol = model.solve({budget: limit})
    assert sol.status == "optimal" and sol.gap == 0.0
    tol = REL * (c8 + abs(c0))
    assert sol.totals[budget] <= limit + tol
    # exact optimum bracketed by the limit +- the solver's feasibility tolerance
    sc, ss = staircase(c0, s0, dc, ds)
    if net == "resnet18":
        bc, bs = brute_force(c0, s0, dc, ds)
        assert bs[bc <= limit].min() == pytest.approx(best_within(sc, ss, limit), rel=1e-12)
    lower, upper = best_within(sc, ss, limit + tol), best_within(sc, ss, limit - tol)
    assert lower * (1 - REL) <= sol.sensitivity <= upper * (1 + REL)
    # the ties hold: layers of one group share their bits
    frame = sol.assignment()
    assert frame.groupby("group").w_bits.nunique().max() == 1
    assert problem.n_units == len(groups)


@pytest.mark.parametrize("budget", HAWQ_BUDGETS)
@pytest.mark.parametrize("f", HAWQ_FRACTIONS)
def test_pruned_and_plain_models_agree(instance, budget: str, f: float) -> None:
    """The exact pipeline's optimum is the plain model's on every one of HAWQ-V3's cases."""
    _, problem, model = instance
    limit = hawq_limit(problem, budget, f)
    plain = AssignmentModel(problem, HAWQ_BUDGETS, prune=False).solve({budget: limit})
    assert model.solve({budget: limit}).sensitivity == pytest.approx(plain.sensitivity, rel=1e-12)


def test_instance_shapes_and_ties() -> None:
    p18, p50 = hawq_problem(DATA / "resnet18.csv"), hawq_problem(DATA / "resnet50.csv")
    assert (p18.n_layers, p18.n_units, p50.n_layers, p50.n_units) == (19, 16, 52, 48)
    ties50 = {tuple(np.flatnonzero(p50.unit_of == u)) for u in range(p50.n_units) if (p50.unit_of == u).sum() > 1}
    assert ties50 == {(0, 3), (10, 13), (23, 26), (42, 45)}  # the notebook's x0=x3, x10=x13, x23=x26, x42=x45
    ties18 = {tuple(np.flatnonzero(p18.unit_of == u)) for u in range(p18.n_units) if (p18.unit_of == u).sum() > 1}
    assert ties18 == {(4, 6), (9, 11), (14, 16)}


def test_load_conversion() -> None:
    costs, sens = load_hawq_instance(DATA / "resnet18.csv")
    raw = pd.read_csv(DATA / "resnet18.csv")
    four = costs[costs.w_bits == 4].set_index("layer")
    eight = costs[costs.w_bits == 8].set_index("layer")
    assert set(zip(costs.w_bits, costs.a_bits)) == {(4, 4), (8, 8)}
    np.testing.assert_allclose(four["size"], 0.5 * raw.parameters)
    np.testing.assert_allclose(eight["size"], raw.parameters)
    np.testing.assert_allclose(four["bops"] * 64, raw.bops_fp)
    np.testing.assert_allclose(eight["bops"] * 16, raw.bops_fp)
    np.testing.assert_allclose(eight["latency"], raw.latency_int8)
    assert (four["group"].to_numpy() == raw.group.to_numpy()).all()
    s4 = sens[sens.w_bits == 4].set_index("layer").sensitivity
    np.testing.assert_allclose(s4, raw.hutchinson_trace * raw.delta_w4_sq)


def test_solve_hawq_matches_the_table_row() -> None:
    sol = solve_hawq(DATA / "resnet18.csv", "latency", 0.5)
    table = hawq_table([DATA / "resnet18.csv"], fractions=[0.5])
    row = table[table.budget == "latency"].iloc[0]
    assert sol.sensitivity == pytest.approx(row.objective, rel=1e-12)
    assert row.layers_4bit == int((sol.assignment().w_bits == 4).sum())


def test_bad_input(tmp_path: Path) -> None:
    raw = pd.read_csv(DATA / "resnet18.csv")
    raw.drop(columns="latency_int8").to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(SearchInputError, match="latency_int8"):
        load_hawq_instance(tmp_path / "a.csv")
    raw.assign(delta_w4_sq=-1.0).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(SearchInputError, match="delta_w4_sq"):
        load_hawq_instance(tmp_path / "b.csv")
    problem = hawq_problem(DATA / "resnet18.csv")
    with pytest.raises(SearchInputError, match="energy"):
        hawq_limit(problem, "energy", 0.5)
    with pytest.raises(SearchInputError, match="fraction"):
        hawq_limit(problem, "size", 1.5)


def test_main(capsys, tmp_path: Path) -> None:
    assert main([str(DATA / "resnet18.csv"), "--table"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| network |") and len(out) == 2 + len(HAWQ_BUDGETS) * len(HAWQ_FRACTIONS)
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "no such HAWQ-V3 instance" in capsys.readouterr().err


def test_docs_table_is_current() -> None:
    """docs/search.md's HAWQ-V3 table is the output of ``python -m search.hawq --table``."""
    text = DOCS.read_text()
    section = text.split("## HAWQ-V3 instance", 1)[1].split("\n## ", 1)[0]
    documented = "\n".join(line for line in section.splitlines() if re.match(r"^\|", line))
    assert documented == markdown_table(hawq_table([DATA / f"{net}.csv" for net in NETS]))
