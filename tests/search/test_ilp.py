"""The exact multi-budget ILP against brute force, exact coupling, and infeasibility diagnosis."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from search import AssignmentModel, InfeasibleBudgetError, SearchInputError, build_problem

ALL_PAIRS = [(w, a) for w in (8, 4, 2) for a in (8, 4, 2)]
COLUMNS = ("c0", "c1", "c2")


def make_tables(
    rng: np.random.Generator,
    n_layers: int,
    pairs: list[tuple[int, int]],
    unit_of: list[int],
    coupled: bool,
    float_sens: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random integer costs (and integer or float sensitivities) in the table formats of DESIGN.md."""
    outs = sorted({a for _, a in pairs}) if coupled else [None]
    rows, sens = [], []
    for layer in range(n_layers):
        for w, a in pairs:
            for o in outs:
                row = {"layer": layer, "name": f"L{layer}", "w_bits": w, "a_bits": a, "group": unit_of[layer]}
                if coupled:
                    row["out_bits"] = o
                row.update({c: int(rng.integers(0, 21)) for c in COLUMNS})
                rows.append(row)
            s = float(rng.random() * 50) if float_sens else int(rng.integers(0, 51))
            sens.append({"layer": layer, "w_bits": w, "a_bits": a, "sensitivity": s})
    return pd.DataFrame(rows), pd.DataFrame(sens)


def brute_force(
    costs: pd.DataFrame, sens: pd.DataFrame, pairs, unit_of, limits: dict[str, float], coupled: bool
) -> tuple[float | None, np.ndarray, np.ndarray, dict]:
    """Enumerate every per-unit choice straight from the tables (independent of search.problem)."""
    n_layers, n_units = len(unit_of), max(unit_of) + 1
    choices = np.array(list(itertools.product(range(len(pairs)), repeat=n_units)), dtype=np.int64)
    per_layer = choices[:, unit_of]  # [n, L]
    s_lookup = {(r.layer, r.w_bits, r.a_bits): r.sensitivity for r in sens.itertuples()}
    s_arr = np.array([[s_lookup[(layer, w, a)] for (w, a) in pairs] for layer in range(n_layers)])
    total_s = s_arr[np.arange(n_layers), per_layer].sum(1)
    key = ["layer", "w_bits", "a_bits"] + (["out_bits"] if coupled else [])
    indexed = costs.set_index(key)
    totals = {}
    for col in limits:
        if coupled:
            widths = sorted({a for _, a in pairs})
            arr = np.array(
                [
                    [[indexed.loc[(layer, w, a, o), col] for o in widths] for (w, a) in pairs]
                    for layer in range(n_layers)
                ]
            )
            nxt_a = np.empty_like(per_layer)
            a_of = np.array([widths.index(a) for _, a in pairs])
            nxt_a[:, :-1] = a_of[per_layer[:, 1:]]
            nxt_a[:, -1] = a_of[per_layer[:, -1]]
            totals[col] = arr[np.arange(n_layers), per_layer, nxt_a].sum(1)
        else:
            arr = np.array([[indexed.loc[(layer, w, a), col] for (w, a) in pairs] for layer in range(n_layers)])
            totals[col] = arr[np.arange(n_layers), per_layer].sum(1)
    ok = np.ones(len(choices), dtype=bool)
    for col, lim in limits.items():
        ok &= totals[col] <= lim
    best = float(total_s[ok].min()) if ok.any() else None
    return best, ok, total_s, totals


@st.composite
def instances(draw):
    n_pairs = draw(st.integers(1, 9))
    pairs = draw(st.permutations(ALL_PAIRS))[:n_pairs]
    n_layers = draw(st.integers(1, 10))
    max_units = max(1, min(n_layers, int(np.log(20_000) / np.log(max(n_pairs, 2)))))
    n_units = draw(st.integers(1, max_units))
    # every unit gets at least one layer; the rest are tied at random (groups need not be contiguous)
    rest = draw(st.lists(st.integers(0, n_units - 1), min_size=n_layers - n_units, max_size=n_layers - n_units))
    unit_of = draw(st.permutations(list(range(n_units)) + rest))
    first = {}
    unit_of = [first.setdefault(u, len(first)) for u in unit_of]  # units numbered by first appearance
    coupled = draw(st.booleans())
    n_budgets = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    float_sens = draw(st.booleans())
    return pairs, unit_of, coupled, n_budgets, seed, float_sens


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances(), data=st.data())
def test_ilp_objective_equals_brute_force(inst, data) -> None:
    pairs, unit_of, coupled, n_budgets, seed, float_sens = inst
    rng = np.random.default_rng(seed)
    costs, sens = make_tables(rng, len(unit_of), pairs, unit_of, coupled, float_sens)
    cols = list(COLUMNS[:n_budgets])
    # limits between the cheapest and the dearest layer sums, at half-integers: no ties on the boundary
    lo = costs.groupby("layer")[cols].min().sum()
    hi = costs.groupby("layer")[cols].max().sum()
    limits = {c: float(np.floor(lo[c] + data.draw(st.floats(0, 1)) * (hi[c] - lo[c]))) + 0.5 for c in cols}
    best, ok, total_s, totals = brute_force(costs, sens, pairs, unit_of, limits, coupled)
    event(f"{'coupled' if coupled else 'plain'}, {'infeasible' if best is None else 'feasible'}")
    event(f"{len(unit_of)} layers x {len(pairs)} pairs" if len(unit_of) * len(pairs) >= 60 else "smaller")
    problem = build_problem(costs, sens, cols)
    assert problem.n_units == max(unit_of) + 1
    model = AssignmentModel(problem, cols)
    if best is None:
        with pytest.raises(InfeasibleBudgetError) as err:
            model.solve(limits)
        # the diagnosis names budgets with the smallest limit that would do, checked by brute force
        for col, needed in err.value.needed.items():
            others = np.ones(len(ok), dtype=bool)
            for c, lim in limits.items():
                if c != col:
                    others &= totals[c] <= lim
            if others.any() and "held" in str(err.value).split(col, 1)[1].split(";")[0]:
                assert needed == pytest.approx(totals[col][others].min(), abs=1e-9)
            assert needed > limits[col]
        return
    sol = model.solve(limits)
    assert sol.status == "optimal" and sol.gap == 0.0
    assert sol.sensitivity == pytest.approx(best, rel=1e-9, abs=1e-9)
    for col, lim in limits.items():
        assert sol.totals[col] <= lim
    # the product variables equal the products at the optimum (exact linearization)
    assert model.coupling_residual() < 1e-7
    # and the reported totals are those of the chosen assignment in the brute-force enumeration
    mine = [pairs.index(tuple(int(v) for v in problem.pairs[p])) for p in sol.choice]
    index = int(np.ravel_multi_index(mine, (len(pairs),) * problem.n_units))
    assert ok[index]
    assert total_s[index] == pytest.approx(sol.sensitivity, rel=1e-12)
    for col in cols:
        assert totals[col][index] == pytest.approx(sol.totals[col], rel=1e-12)


def test_coupling_changes_the_optimum_and_is_exact() -> None:
    """Two layers: the first layer's stored output is cheap only when the second reads 2 bits."""
    pairs = [(8, 8), (8, 2)]
    rows = []
    for layer in (0, 1):
        for w, a in pairs:
            for o in (2, 8):
                cost = 10 if (layer == 0 and o == 8) else 1
                rows.append({"layer": layer, "w_bits": w, "a_bits": a, "out_bits": o, "dram_bits": cost})
    costs = pd.DataFrame(rows)
    sens = pd.DataFrame(
        [
            {"layer": layer, "w_bits": w, "a_bits": a, "sensitivity": 1.0 if a == 2 else 0.0}
            for layer in (0, 1)
            for w, a in pairs
        ]
    )
    problem = build_problem(costs, sens, ["dram_bits"])
    model = AssignmentModel(problem, ["dram_bits"])
    sol = model.solve({"dram_bits": 5})  # forces the second layer to a2 (layer 0's output at 2 bits)
    assert sol.assignment()["a_bits"].tolist() == [8, 2]
    assert sol.assignment()["out_bits"].tolist() == [2, 2]
    assert sol.totals["dram_bits"] == 1 + 1
    assert model.coupling_residual() < 1e-9
    # uncoupled (out_bits = own a_bits) the same budget needs layer 0 at a2 instead
    plain = costs[costs.out_bits == costs.a_bits].drop(columns="out_bits")
    sol_plain = AssignmentModel(build_problem(plain, sens, ["dram_bits"]), ["dram_bits"]).solve({"dram_bits": 5})
    assert sol_plain.assignment()["a_bits"].tolist() == [2, 8]


def test_groups_take_one_pair_and_limits_can_change_in_place() -> None:
    rng = np.random.default_rng(3)
    costs, sens = make_tables(rng, 6, ALL_PAIRS[:4], [0, 1, 0, 2, 1, 2], coupled=False, float_sens=True)
    problem = build_problem(costs, sens, ["c0"])
    model = AssignmentModel(problem, ["c0"])
    previous = None
    for limit in (1e9, 60.5, 40.5, 30.5):
        try:
            sol = model.solve({"c0": limit})
        except InfeasibleBudgetError:
            break
        table = sol.assignment()
        assert table.groupby("group")[["w_bits", "a_bits"]].nunique().max().max() == 1
        if previous is not None:
            assert sol.sensitivity >= previous - 1e-12  # tighter budget, never better
        previous = sol.sensitivity


def test_minimum_and_cost_objective() -> None:
    rng = np.random.default_rng(5)
    costs, sens = make_tables(rng, 4, ALL_PAIRS, [0, 1, 2, 3], coupled=True, float_sens=False)
    problem = build_problem(costs, sens, ["c0", "c1"])
    model = AssignmentModel(problem, ["c0", "c1"])
    _, ok, _, totals = brute_force(costs, sens, ALL_PAIRS, [0, 1, 2, 3], {"c0": 1e9, "c1": 30.5}, True)
    assert model.minimum("c0", {"c1": 30.5}) == totals["c0"][ok].min()
    assert model.minimum("c0", {"c1": -0.5}) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c, s: c.assign(c0=c.c0.where(c.index != 3, -1)), "must be finite and >= 0"),
        (lambda c, s: c.assign(c0=c.c0.where(c.index != 2, np.nan)), "must be finite and >= 0"),
        (lambda c, s: c.drop(index=5), "has no row for"),
        (lambda c, s: c.assign(w_bits=c.w_bits.astype(float).where(c.index != 1, 2.5)), "needs integers"),
        (lambda c, s: pd.concat([c, c.iloc[[0]]]), "duplicate rows"),
    ],
)
def test_bad_cost_tables(mutate, message) -> None:
    rng = np.random.default_rng(0)
    costs, sens = make_tables(rng, 3, ALL_PAIRS[:3], [0, 1, 2], coupled=False, float_sens=True)
    with pytest.raises(SearchInputError, match=message):
        build_problem(mutate(costs, sens), sens, ["c0"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s[s.layer != 2], "have costs but no sensitivity"),
        (lambda s: s.assign(layer=s.layer.where(s.layer != 2, 7)), "do not match the cost rows"),
        (lambda s: s.drop(index=4), "has no sensitivity for"),
        (lambda s: s.assign(sensitivity=s.sensitivity.where(s.index != 0, np.nan)), "finite and >= 0"),
        (lambda s: s.assign(sensitivity=-s.sensitivity - 1), "finite and >= 0"),
        (lambda s: s.assign(name="x"), "is 'x' in the sensitivity table but 'L0'"),
        (lambda s: s.drop(columns="sensitivity"), "missing column"),
    ],
)
def test_bad_sensitivity_tables(mutate, message) -> None:
    rng = np.random.default_rng(0)
    costs, sens = make_tables(rng, 3, ALL_PAIRS[:3], [0, 1, 2], coupled=False, float_sens=True)
    with pytest.raises(SearchInputError, match=message):
        build_problem(costs, mutate(sens), ["c0"])


def test_unknown_and_non_additive_budget_columns() -> None:
    rng = np.random.default_rng(0)
    costs, sens = make_tables(rng, 2, ALL_PAIRS[:2], [0, 1], coupled=False, float_sens=True)
    with pytest.raises(SearchInputError, match="unknown budget column 'latency'.*c0, c1, c2"):
        build_problem(costs, sens, ["latency"])
    with pytest.raises(SearchInputError, match="not additive"):
        build_problem(costs.assign(utilization=0.5), sens, ["utilization"])


def test_coupled_table_needs_every_output_width() -> None:
    rng = np.random.default_rng(0)
    costs, sens = make_tables(rng, 2, [(8, 8), (4, 4)], [0, 1], coupled=True, float_sens=True)
    with pytest.raises(SearchInputError, match="with out_bits 4"):
        build_problem(costs[~((costs.layer == 1) & (costs.out_bits == 4) & (costs.w_bits == 8))], sens, ["c0"])


def test_re_solving_one_model_at_a_raised_limit_finds_the_new_optimum() -> None:
    """HiGHS 1.16 kept the previous optimum when a persistent MIP was re-solved after its budget row was raised
    (docs/search.md, "Solver notes"); every limit of a sequence must give the fresh model's optimum."""
    pairs = [(8, 8), (8, 4), (4, 8), (4, 4)]
    sens = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 3, 1, 2], [0, 0, 0, 0]], float)
    bops = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [4, 0, 3, 1], [0, 0, 0, 0]], float)
    costs = pd.DataFrame(
        [
            {"layer": lay, "w_bits": w, "a_bits": a, "bops": bops[lay, p]}
            for lay in range(5)
            for p, (w, a) in enumerate(pairs)
        ]
    )
    table = pd.DataFrame(
        [
            {"layer": lay, "w_bits": w, "a_bits": a, "sensitivity": sens[lay, p]}
            for lay in range(5)
            for p, (w, a) in enumerate(pairs)
        ]
    )
    problem = build_problem(costs, table, ["bops"])
    persistent = AssignmentModel(problem, ["bops"])
    for limit in (4.0, 4.0, 5.0, 1.0, 5.0, 3.0, 4.0, 5.0):
        got = persistent.solve({"bops": limit})
        fresh = AssignmentModel(problem, ["bops"]).solve({"bops": limit})
        assert got.sensitivity == fresh.sensitivity, limit
    assert persistent.solve({"bops": 5.0}).sensitivity == 0.0
