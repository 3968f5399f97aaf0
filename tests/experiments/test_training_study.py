"""experiments.training_study: run lists, resumable cells keyed by the pretrained model, and every table rendered.

The real runs train models (about 24 CPU-minutes in all); here ``run_cell`` is replaced by a deterministic fake
with the same output keys, so the bookkeeping and the tables are tested without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments import training_study as ts


def fake_cell(run: dict[str, Any]) -> dict[str, Any]:
    from quant.models import cache_key

    h = sum(ord(c) for c in json.dumps(run, sort_keys=True))
    acc = 80.0 + (h % 180) / 10
    cell = {**run, "model_key": cache_key(run["model"]), "accuracy": acc, "float_accuracy": 98.0, "seconds": 1.0}
    if run["method"] == "qgt":
        layers = ["0", "3", "7", "12"]
        cell["summary"] = {
            "reg_final": {n: (h + i) % 7 / 100 for i, n in enumerate(layers)},
            "reg_initial": {n: 0.1 + i / 100 for i, n in enumerate(layers)},
        }
        if "rho" in run["extras"]:
            cell.update(rho=0.8, rho_initial=-0.2, sqnr_nsr={n: 0.1 * (i + 1) for i, n in enumerate(layers)})
    if run["method"] == "dgms":
        cell["summary"] = {
            "sparsity": 0.3,
            "zero_codes": 0.35,
            "compression_sparse": 20.0,
            "snap_cost": 0.0,
            "test_accuracy_hard": acc + 1,
            "test_accuracy_snapped": acc,
        }
        if "calib" in run["extras"]:
            cell["calib_accuracy"] = acc - 1
        if "history" in run["extras"]:
            cell["history"] = {
                "first": {"tau_mean": 0.03, "sparsity": 0.3, "train_accuracy": 90.0},
                "last": {"tau_mean": 0.05, "sparsity": 0.32, "train_accuracy": 99.0},
            }
    return cell


def test_every_part_has_distinct_runs() -> None:
    names = [ts._cell_name(r) for p in ts.PARTS for r in ts._runs(p)]
    sizes = {p: len(ts._runs(p)) for p in ts.PARTS}
    assert sizes == {
        "qgt-lambda": 50,
        "qgt-final": 24,
        "qgt-grid": 12,
        "qgt-rho": 18,
        "dgms-epochs": 18,
        "dgms-hard": 24,
        "dgms-free": 12,
        "dgms-tuning": 21,
        "dgms-alpha": 2,
    }
    assert len(set(names)) == len(names)


def test_collect_resumes_and_recomputes_cells_of_another_pretrained_model(tmp_path: Path, monkeypatch) -> None:
    calls: list[dict[str, Any]] = []

    def counting(run: dict[str, Any]) -> dict[str, Any]:
        calls.append(run)
        return fake_cell(run)

    monkeypatch.setattr(ts, "run_cell", counting)
    cells = ts.collect(tmp_path, list(ts.PARTS))
    assert len(calls) == len(cells) == 181
    text = ts.render(cells, list(ts.PARTS))
    for title, _ in ts.RENDER.values():
        assert f"## {title}" in text
    assert "| digits-cnn | 0 | " in text and "ρ = 0.8" in text and "nan" not in text.lower()
    assert "0.030 → 0.050" in text and "| mnist1d-cnn | no | " in text and "| mnist1d-cnn | yes | " in text
    calls.clear()
    again = ts.collect(tmp_path, list(ts.PARTS))
    assert calls == [] and ts.render(again, list(ts.PARTS)) == text
    stale = next((tmp_path / "cells").glob("mnist1d-cnn_dgms_*.json"))
    stale.write_text(stale.read_text().replace('"model_key": "', '"model_key": "0'))
    ts.collect(tmp_path, list(ts.PARTS))
    assert len(calls) == 1 and calls[0]["model"] == "mnist1d-cnn"


@pytest.mark.parametrize(
    "argv", [["--parts", "qgt-magic"], ["--jobs", "0"], ["--scheduler", "local:0"], ["--scheduler", "nonsense"]]
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, argv: list[str]) -> None:
    assert ts.main(["--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:")
    assert not (tmp_path / "training_study.md").exists()
