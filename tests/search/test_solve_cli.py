"""``lowbit solve`` end to end: files written, budgets honoured, bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_cli as run

from sim import simulate

PAIRS = "w8a8,w4a8,w4a4,w2a4,w2a2"


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("solve")
    costs = simulate("bitfusion_edge", "resnet18", PAIRS, coupled=True)
    keys = costs[["layer", "name", "w_bits", "a_bits"]].drop_duplicates(["layer", "w_bits", "a_bits"])
    rng = np.random.default_rng(0)
    scale = rng.lognormal(size=keys.layer.max() + 1)[keys.layer]
    sens = keys.assign(sensitivity=scale * (4.0**-keys.w_bits + 0.5 * 4.0**-keys.a_bits), method="synthetic")
    costs.to_csv(root / "costs.csv", index=False)
    sens.to_csv(root / "sens.csv", index=False)
    return root / "costs.csv", root / "sens.csv", costs


def test_solve_writes_assignment_within_budgets(tables, tmp_path, capsys) -> None:
    costs, sens, frame = tables
    code, out, err = run(
        [
            "solve",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--budget",
            "latency_us=50%",
            "--budget",
            "energy_pj=40%",
            "--out",
            str(tmp_path / "a"),
        ],
        capsys,
    )
    assert code == 0, err
    table = pd.read_csv(tmp_path / "a" / "assignment.csv")
    meta = json.loads((tmp_path / "a" / "assignment.json").read_text())
    assert list(table.columns[:4]) == ["layer", "name", "w_bits", "a_bits"]
    assert meta["status"] == "optimal" and meta["gap"] == 0 and meta["coupled"] is True
    # the budgets hold when the assignment is re-costed from the table, with each output at its consumer's width
    chosen = table.merge(frame, on=["layer", "w_bits", "a_bits", "out_bits"], suffixes=("", "_table"))
    assert len(chosen) == len(table)
    nxt = np.append(table.a_bits.to_numpy()[1:], table.a_bits.iloc[-1])
    assert (table.out_bits.to_numpy() == nxt).all()
    for col in ("latency_us", "energy_pj"):
        used = chosen[f"{col}_table"].sum()
        assert used == pytest.approx(meta["budgets"][col]["used"], rel=1e-12)
        assert used <= meta["budgets"][col]["limit"]
    plain = frame[frame.out_bits == frame.a_bits]
    w8a8 = plain[(plain.w_bits == 8) & (plain.a_bits == 8)]
    assert meta["budgets"]["latency_us"]["limit"] == pytest.approx(0.5 * w8a8.latency_us.sum(), rel=1e-12)
    assert "optimal" in out


def test_infeasible_budget_names_the_budget_and_the_smallest_limit(tables, tmp_path, capsys) -> None:
    costs, sens, _ = tables
    code, _, err = run(
        [
            "solve",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--budget",
            "latency_us=1",
            "--out",
            str(tmp_path / "b"),
        ],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1 and "latency_us <= 1 cannot be met" in err and "smallest feasible limit" in err
    assert not (tmp_path / "b").exists()


def _bad(tmp_path: Path, costs: pd.DataFrame | None = None, sens: pd.DataFrame | None = None) -> list[str]:
    argv = ["solve", "--out", str(tmp_path / "out"), "--budget", "latency_us=1e12"]
    if costs is not None:
        costs.to_csv(tmp_path / "c.csv", index=False)
    if sens is not None:
        sens.to_csv(tmp_path / "s.csv", index=False)
    return [*argv, "--costs", str(tmp_path / "c.csv"), "--sensitivity", str(tmp_path / "s.csv")]


@pytest.mark.parametrize(
    ("break_costs", "break_sens", "message"),
    [
        (lambda c: c.assign(latency_us=c.latency_us.where(c.index != 7, -3.0)), None, "must be finite and >= 0"),
        (lambda c: c.assign(latency_us=c.latency_us.where(c.index != 7, np.nan)), None, "must be finite and >= 0"),
        (lambda c: c[~((c.layer == 4) & (c.w_bits == 2) & (c.a_bits == 2))], None, "has no row for w2a2"),
        (None, lambda s: s[s.layer != 3], "sensitivity rows do not match the cost rows"),
        (None, lambda s: s.assign(layer=s.layer + 1), "sensitivity rows do not match the cost rows"),
        (lambda c: c.drop(columns="latency_us"), None, "unknown budget column 'latency_us'"),
    ],
)
def test_bad_inputs_are_one_line_with_exit_2(tables, tmp_path, capsys, break_costs, break_sens, message) -> None:
    costs, sens, _ = tables
    c, s = pd.read_csv(costs), pd.read_csv(sens)
    argv = _bad(tmp_path, break_costs(c) if break_costs else c, break_sens(s) if break_sens else s)
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("latency_us", "write COLUMN=VALUE"),
        ("latency_us=abc", "is not a number"),
        ("latency_us=-4", "finite number >= 0"),
        ("utilization=0.5", "not additive"),
    ],
)
def test_bad_budgets(tables, tmp_path, capsys, budget, message) -> None:
    costs, sens, _ = tables
    code, _, err = run(
        ["solve", "--costs", str(costs), "--sensitivity", str(sens), "--budget", budget, "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and message in err and err.count("\n") == 1


def test_malformed_and_missing_tables(tables, tmp_path, capsys) -> None:
    _, sens, _ = tables
    (tmp_path / "bad.csv").write_text('layer,w_bits\n"1,2\n')
    for path, message in (
        (tmp_path / "bad.csv", "cannot read cost table"),
        (tmp_path / "none.csv", "no such"),
        (tmp_path / "x.txt", "use .csv or .parquet"),
    ):
        code, _, err = run(
            [
                "solve",
                "--costs",
                str(path),
                "--sensitivity",
                str(sens),
                "--budget",
                "latency_us=1",
                "--out",
                str(tmp_path / "o"),
            ],
            capsys,
        )
        assert code == 2 and message in err, err
