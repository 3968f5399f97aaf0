"""QGT-style training (quant.qgt): the regularizer, its schedule, training, the bottleneck sensitivity table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from quant.errors import QuantInputError
from quant.fakequant import quant_layers
from quant.finetune import FinetuneConfig, TrainingDivergedError
from quant.models import get_model, model_split
from quant.qgt import (
    QGT_COLUMNS,
    SCALE_GRID,
    bottleneck_rank_correlation,
    channel_scales,
    grid_codes,
    grid_weight,
    lambda_at,
    layer_residuals,
    qgt_sensitivity,
    qgt_train,
    relative_residual,
    spearman,
)
from quant.quantizer import QuantSpec
from quant.sensitivity import write_sensitivity

PAIRS = [(8, 8), (4, 8), (3, 8), (2, 8), (2, 2)]


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, object]:
    return get_model("digits-cnn"), model_split("digits-cnn")


@pytest.fixture(scope="module")
def outcome(digits):
    model, split = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = qgt_train(model, split, 2, 8, FinetuneConfig(epochs=2), lam=10.0, final="rtn", pairs=PAIRS)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the float model was modified"
    return out


# ------------------------------------------------------------------------------------------------------------------
# the regularizer


def _brute_force_mse(row: np.ndarray, bits: int) -> float:
    """Least squared rounding error of one channel over SCALE_GRID multiples of its max-abs scale."""
    spec = QuantSpec(bits)
    base = np.abs(row).max() / spec.qmax
    return min(
        float(np.sum((np.clip(np.rint(row / (m * base)), spec.qmin, spec.qmax) * m * base - row) ** 2))
        for m in SCALE_GRID
    )


def test_regularizer_matches_a_hand_computation() -> None:
    w = torch.tensor([[0.9, 0.2, -0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    # max-abs grid at 2 bits: scale 0.9, Q = [0.9, 0, -0.9]; the all-zero channel is on the grid
    assert float(relative_residual(w, 2, "max")) == pytest.approx((0.2**2 + 0.4**2) / 1.1, rel=1e-12)
    # MSE grid: multiple 0.8 (scale 0.72), Q = [0.72, 0, -0.72], error 0.18^2 + 0.2^2 + 0.22^2 = 0.1208
    assert float(channel_scales(w, 2, "mse")[0, 0]) == pytest.approx(0.72, rel=1e-12)
    assert float(relative_residual(w, 2, "mse")) == pytest.approx(0.1208 / 1.1, rel=1e-12)
    rows = torch.randn(6, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for bits in (2, 3, 4):
        expected = sum(_brute_force_mse(r, bits) for r in rows.numpy()) / float((rows**2).sum())
        assert float(relative_residual(rows, bits, "mse")) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("grid", ["mse", "max"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weights_on_the_grid_have_zero_residual(grid: str, bits: int) -> None:
    spec = QuantSpec(bits)
    gen = torch.Generator().manual_seed(bits)
    codes = torch.randint(-spec.qmax, spec.qmax + 1, (5, 12), generator=gen).double()
    codes[:, 0] = spec.qmax  # the max-abs weight is a top code, so max|w| / qmax is the grid's scale
    w = codes * torch.tensor([[0.1], [0.02], [1.5], [3.0], [0.7]], dtype=torch.float64)
    assert float(relative_residual(w, bits, grid)) == pytest.approx(0.0, abs=1e-24)
    assert float(relative_residual(torch.zeros(3, 4), bits, grid)) == 0.0


def test_mse_grid_also_fits_the_negative_extra_code() -> None:
    w = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 1.0, -2.0]], dtype=torch.float64) * 0.3  # codes -2..1 at scale 0.3
    assert float(relative_residual(w, 2, "mse")) == pytest.approx(0.0, abs=1e-24)
    assert float(relative_residual(w, 2, "max")) > 0.05  # max-abs puts 0.6 at the top code: -2 cannot be used


@pytest.mark.parametrize("grid", ["mse", "max"])
def test_gradient_flows_only_through_the_weight(grid: str) -> None:
    w = torch.randn(4, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    relative_residual(w, 2, grid).backward()
    with torch.no_grad():
        expected = 2 * (w - grid_weight(w, 2, grid)) / (w**2).sum()
    assert torch.allclose(w.grad, expected, rtol=1e-12, atol=0)


def test_lambda_schedules() -> None:
    assert lambda_at(0.0, 2.0, "linear", 0.5) == 0.0
    assert lambda_at(0.25, 2.0, "linear", 0.5) == pytest.approx(1.0)
    assert lambda_at(0.5, 2.0, "linear", 0.5) == 2.0
    assert lambda_at(0.9, 2.0, "linear", 0.5) == 2.0
    assert lambda_at(0.0, 2.0, "constant", 0.5) == 2.0
    assert lambda_at(0.0, 2.0, "exp", 0.5) == pytest.approx(2e-3)
    assert lambda_at(0.25, 2.0, "exp", 0.5) == pytest.approx(2.0 * math.sqrt(1e-3))
    assert lambda_at(0.6, 2.0, "exp", 0.5) == 2.0
    assert lambda_at(0.0, 2.0, "linear", 0.0) == 2.0  # no warm-up: constant
    assert lambda_at(0.3, 0.0, "exp", 0.5) == 0.0


# ------------------------------------------------------------------------------------------------------------------
# training


def test_training_pulls_the_weights_onto_the_grid(outcome) -> None:
    s, h = outcome.summary, outcome.history
    names = list(s["reg_initial"])
    assert s["method"] == "qgt" and s["final"] == "rtn" and s["grid"] == "mse"
    assert np.mean(list(s["reg_final"].values())) < 0.7 * np.mean(list(s["reg_initial"].values()))  # 2 epochs
    assert s["bottlenecks"] == sorted(names, key=lambda n: -s["reg_final"][n])
    assert {"epoch", "task_loss", "train_accuracy", "reg_total", "lambda", *(f"reg/{n}" for n in names)} <= set(h)
    assert len(h) == 2 and h["reg_total"].iloc[-1] < h["reg_total"].iloc[0]
    assert h["reg_total"].to_numpy() == pytest.approx(h[[f"reg/{n}" for n in names]].sum(axis=1).to_numpy())
    table = outcome.tables["bottlenecks"]
    assert list(table["name"]) == names and sorted(table["rank"]) == list(range(1, len(names) + 1))


def test_rtn_final_installs_the_training_grid_codes(outcome) -> None:
    layers = quant_layers(outcome.model)
    assert layers and all(m.w_codes is not None and m.act is not None for _, m in layers)
    for _, m in layers:
        codes, scales = grid_codes(m, 2, "mse")
        np.testing.assert_array_equal(m.w_codes, codes)
        np.testing.assert_array_equal(m.w_scales, scales)
    assert layer_residuals(outcome.model, 2) == pytest.approx(outcome.summary["reg_final"], rel=1e-12)


def test_same_seed_gives_identical_codes_and_history(digits, outcome) -> None:
    model, split = digits
    again = qgt_train(model, split, 2, 8, FinetuneConfig(epochs=2), lam=10.0, final="rtn", pairs=PAIRS)
    for (_, a), (_, b) in zip(quant_layers(outcome.model), quant_layers(again.model)):
        np.testing.assert_array_equal(a.w_codes, b.w_codes)
        np.testing.assert_array_equal(a.w_scales, b.w_scales)
    pd.testing.assert_frame_equal(outcome.history, again.history)
    pd.testing.assert_frame_equal(outcome.tables["sensitivity"], again.tables["sensitivity"])


@pytest.mark.parametrize("final", ["rtn-bc", "gpfq"])
def test_other_final_quantizers(digits, final: str) -> None:
    from accuracy_stats import assert_beats, correct

    from quant.fakequant import calibrate_activations, prepare
    from quant.rtn import rtn_quantize

    model, split = digits
    out = qgt_train(model, split, 2, 8, FinetuneConfig(epochs=1), final=final, pairs=[(2, 8)])
    assert all(m.w_codes is not None for _, m in quant_layers(out.model))
    rtn = prepare(model)  # the baseline: max-abs RTN w2a8 of the pretrained model loses a third of the images
    calibrate_activations(rtn, split.calib_x, 8)
    rtn_quantize(rtn, 2)
    assert_beats(correct(out.model, split.test_x, split.test_y), correct(rtn, split.test_x, split.test_y), final)


def test_a_non_finite_loss_stops_training(digits) -> None:
    model, split = digits
    with pytest.raises(TrainingDivergedError) as err:  # lambda * R overflows float32
        qgt_train(model, split, 2, 8, FinetuneConfig(epochs=1), lam=1e39, schedule="constant")
    assert "\n" not in str(err.value)


BAD = {
    "lam<0": ({"lam": -1.0}, "lam"),
    "lam nan": ({"lam": float("nan")}, "lam"),
    "lam inf": ({"lam": float("inf")}, "lam"),
    "lam bool": ({"lam": True}, "lam"),
    "schedule": ({"schedule": "cosine"}, "schedule"),
    "warmup>1": ({"warmup": 1.5}, "warmup"),
    "warmup<0": ({"warmup": -0.1}, "warmup"),
    "final": ({"final": "adaround"}, "final"),
    "grid": ({"grid": "percentile"}, "grid"),
    "w_bits": ({"w_bits": 9}, "w_bits"),
    "a_bits": ({"a_bits": 1}, "a_bits"),
    "pair bits": ({"pairs": [(2, 8), (9, 8)]}, "w_bits"),
    "pairs str": ({"pairs": "w2a8"}, "pairs"),
    "pair shape": ({"pairs": [(2, 8, 8)]}, "pair"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_are_one_line_errors(digits, case: str) -> None:
    model, split = digits
    kwargs, word = BAD[case]
    kwargs = {"w_bits": 2, "a_bits": 8, **kwargs}
    w_bits, a_bits = kwargs.pop("w_bits"), kwargs.pop("a_bits")
    with pytest.raises(QuantInputError) as err:
        qgt_train(model, split, w_bits, a_bits, FinetuneConfig(epochs=1), **kwargs)
    assert word in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------------------------
# the sensitivity table


def test_sensitivity_table_follows_the_contract(outcome) -> None:
    frame = outcome.tables["sensitivity"]
    names = list(outcome.summary["reg_initial"])
    assert list(frame.columns) == list(QGT_COLUMNS)
    assert list(frame.name) == [n for n in names for _ in PAIRS]
    assert list(frame.layer) == [i for i in range(len(names)) for _ in PAIRS]
    assert list(zip(frame.w_bits, frame.a_bits)) == PAIRS * len(names)
    assert set(frame.method) == {"qgt"} and set(frame.quantizer) == {"rtn-mse"}
    assert list(frame.group.drop_duplicates()) == list(range(len(names)))  # a chain: every layer its own group
    np.testing.assert_allclose(frame.sensitivity, frame.w_nsr + frame.a_nsr, rtol=1e-15)
    assert (frame.sensitivity >= 0).all()
    at = {(r.name, r.w_bits, r.a_bits): r for r in frame.itertuples(index=False)}
    for n in names:
        w_nsr = [at[(n, w, 8)].w_nsr for w in (2, 3, 4, 8)]
        assert w_nsr == sorted(w_nsr, reverse=True)  # never worse with more weight bits
        assert at[(n, 2, 8)].w_nsr == pytest.approx(outcome.summary["reg_final"][n], rel=1e-12)
        assert at[(n, 2, 2)].a_nsr > at[(n, 2, 8)].a_nsr


def test_sensitivity_table_is_accepted_by_search(outcome, tmp_path: Path) -> None:
    from lowbit_core.tables import read_table
    from search import build_problem

    frame = outcome.tables["sensitivity"]
    path = write_sensitivity(frame, tmp_path / "qgt.csv")
    costs = pd.DataFrame(
        [
            {
                "layer": r.layer,
                "name": r.name,
                "w_bits": r.w_bits,
                "a_bits": r.a_bits,
                "bops": float(r.w_bits * r.a_bits),
            }
            for r in frame.itertuples(index=False)
        ]
    )
    problem = build_problem(costs, read_table(path, "sensitivity table"), ["bops"], method="qgt")
    assert problem.n_layers == frame.layer.nunique() and problem.n_pairs == len(PAIRS)


def test_sensitivity_of_a_float_model_and_bad_input(digits) -> None:
    model, split = digits
    frame = qgt_sensitivity(model, split.calib_x[:32], [(2, 8)], grid="max")
    assert set(frame.quantizer) == {"rtn"}
    assert list(frame.w_nsr) == pytest.approx(list(layer_residuals(model, 2, "max").values()), rel=1e-12)
    for bad, word in (([(2, 8)], "calib_x"), ([(1, 8)], "w_bits"), ([], "pairs")):
        x = torch.empty(0, 1, 8, 8) if word == "calib_x" else split.calib_x
        with pytest.raises(QuantInputError, match=word):
            qgt_sensitivity(model, x, bad)


# ------------------------------------------------------------------------------------------------------------------
# rank correlation


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30), rng.integers(0, 5, 30)  # many ties
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)
    with pytest.raises(QuantInputError):
        spearman([1, 2], [1, 2, 3])


def test_bottleneck_rank_correlation_runs() -> None:
    result = bottleneck_rank_correlation("digits-cnn", 2, 8, FinetuneConfig(epochs=1), final="rtn")
    names = ["0", "3", "7", "12"]
    assert sorted(result["qgt_ranking"]) == sorted(result["sqnr_ranking"]) == sorted(names)
    assert -1.0 <= result["rho"] <= 1.0 and -1.0 <= result["rho_initial"] <= 1.0
