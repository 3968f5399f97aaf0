"""``lowbit pareto`` end to end on the digits CNN, and ``lowbit sim`` on a built-in model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_cli as run

from experiments.cli import main
from experiments.workloads import BUILTIN_MODELS

PAIRS = "w8a8,w4a8,w4a4,w2a4,w2a2"


def test_builtin_models_are_the_quant_models() -> None:
    from quant.models import MODELS

    assert set(BUILTIN_MODELS) == set(MODELS)


@pytest.fixture(scope="module")
def digits_tables(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pareto")
    main(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            "digits-cnn",
            "--pairs",
            PAIRS,
            "--coupled",
            "--out",
            str(root / "costs.csv"),
        ]
    )
    costs = pd.read_csv(root / "costs.csv")
    assert costs.name.astype(str).unique().tolist() == ["0", "3", "7", "12"]
    keys = costs[["layer", "name", "w_bits", "a_bits"]].drop_duplicates(["layer", "w_bits", "a_bits"])
    # a sensitivity that falls with bits, like a real one (the real ones are tested in tests/quant)
    sens = keys.assign(sensitivity=(1.0 + keys.layer) * (4.0**-keys.w_bits + 4.0**-keys.a_bits))
    sens.to_csv(root / "sens.csv", index=False)
    return root / "costs.csv", root / "sens.csv"


@pytest.mark.slow
def test_pareto_measures_every_point(digits_tables, tmp_path, capsys) -> None:
    costs, sens = digits_tables
    code, out, err = run(
        [
            "pareto",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--x",
            "latency_us",
            "--points",
            "6",
            "--model",
            "digits-cnn",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0, err
    points = pd.read_csv(tmp_path / "points.csv")
    quality = pd.read_csv(tmp_path / "quality.csv")
    meta = json.loads((tmp_path / "pareto.json").read_text())
    assert set(points.kind) == {"ilp", "greedy", "uniform"}
    assert points.accuracy.between(0, 100).all() and (points.float_accuracy > 90).all()
    assert len(points[points.kind == "uniform"]) == len(PAIRS.split(","))
    ilp = points[points.kind == "ilp"].sort_values("latency_us")
    # a front: more latency never buys more sensitivity
    assert (np.diff(ilp.sensitivity.to_numpy()) <= 1e-12).all()
    # every latency budget tried: the exact optimum is never worse than greedy in sensitivity
    for budget in points.latency_us.unique():
        best = {
            k: points[(points.kind == k) & (points.latency_us <= budget)].sensitivity.min() for k in ("ilp", "greedy")
        }
        assert not best["greedy"] < best["ilp"] - 1e-12
    assert len(quality) == points.latency_us.nunique()
    assert meta["model"] == "digits-cnn" and meta["ilp_points"] == int((points.kind == "ilp").sum())
    assert (tmp_path / "accuracy_fronts.pdf").stat().st_size > 0


def test_pareto_without_a_model_writes_the_front_only(digits_tables, tmp_path, capsys) -> None:
    costs, sens = digits_tables
    code, _, err = run(
        [
            "pareto",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--x",
            "energy_pj",
            "--budget",
            "latency_us=60%",
            "--points",
            "5",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0, err
    points = pd.read_csv(tmp_path / "points.csv")
    assert "accuracy" not in points.columns and not (tmp_path / "quality.csv").exists()
    ilp = points[points.kind == "ilp"]
    limit = json.loads((tmp_path / "pareto.json").read_text())["limits"]["latency_us"]
    assert (ilp.latency_us <= limit).all()


def test_pareto_rejects_a_model_whose_layers_differ(digits_tables, tmp_path, capsys) -> None:
    costs, sens = digits_tables
    code, _, err = run(
        [
            "pareto",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--points",
            "3",
            "--model",
            "mnist1d-cnn",
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
