"""DGMS on CPU (quant.dgms): the mixture, its k-means / grid initialisation, numerical safety, determinism, the
snap to the uniform grid and the integer export of the snapped model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quant.data import evaluate_accuracy
from quant.dgms import (
    TAU_MIN,
    DGMSWeight,
    MixtureInit,
    best_scale,
    check_components,
    dgms_train,
    grid_codes,
    grid_init,
    kmeans_init,
    snap_channel,
    snap_layer,
)
from quant.errors import QuantInputError
from quant.export import build_integer_model
from quant.fakequant import quant_layers
from quant.finetune import FinetuneConfig, TrainingDivergedError
from quant.models import get_model, model_split
from quant.quantizer import QuantSpec

CFG = FinetuneConfig(epochs=2, seed=3)


def clustered_weight(seed: int = 0) -> torch.Tensor:
    """A [8, 3, 3, 3] weight drawn around -0.6, 0.02, 0.3 and 0.9 (the cluster at 0.02 is nearest 0)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([-0.6, 0.02, 0.3, 0.9])
    pick = torch.randint(0, 4, (8 * 27,), generator=g)
    return (centers[pick] + 0.01 * torch.randn(8 * 27, generator=g)).reshape(8, 3, 3, 3)


def set_tau(mix: DGMSWeight, tau: float) -> None:
    with torch.no_grad():
        mix.log_tau.fill_(math.log(tau - TAU_MIN) / mix.lr_scale)


@pytest.fixture(scope="module")
def digits():
    return get_model("digits-cnn"), model_split("digits-cnn")


@pytest.fixture(scope="module")
def trained(digits):
    """Two identical DGMS runs (grid codebook, w2a8, 2 epochs) on digits-cnn."""
    model, split = digits
    return dgms_train(model, split, 2, 8, CFG), dgms_train(model, split, 2, 8, CFG)


# ---- the mixture -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codebook", ["free", "grid"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_k_is_2_to_the_b_with_the_zero_component_first(bits: int, codebook: str) -> None:
    mix = DGMSWeight(clustered_weight(), bits, codebook=codebook)
    means = mix.means().detach()
    assert mix.k == 2**bits and means.shape == (2**bits,) and means[0].item() == 0.0
    assert torch.all(means[1:] != 0) and torch.all(torch.diff(means[1:]) > 0)
    assert {n for n, _ in mix.named_parameters()} == {
        "mu" if codebook == "free" else "log_scale",
        "pi",
        "log_sigma",
        "log_tau",
        "log_alpha",
    }
    if codebook == "grid":  # means on the grid: s * c for the non-zero codes
        c = torch.as_tensor(grid_codes(bits), dtype=torch.float32)
        torch.testing.assert_close(means[1:], means[-1] / c[-1] * c)


def test_kmeans_init_is_deterministic_and_the_zero_cluster_is_component_0() -> None:
    w = clustered_weight().numpy()
    a, b = kmeans_init(w, 4), kmeans_init(w.copy(), 4)
    for field in ("means", "sigmas", "pis", "counts"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.means[0] == 0.0
    np.testing.assert_allclose(a.means[1:], [-0.6, 0.3, 0.9], atol=0.01)
    assert a.counts.sum() == w.size and np.all(a.sigmas > 0) and math.isclose(a.pis.sum(), 1.0)
    # component 0 holds exactly the weights of the cluster around 0.02, its sigma measured around 0
    near = np.abs(w.ravel() - 0.02) < 0.1
    assert a.counts[0] == near.sum()
    assert a.sigmas[0] == pytest.approx(np.sqrt(np.sum(w.ravel()[near] ** 2) / (near.sum() - 1)))


def test_grid_init_uses_the_mse_scale_and_rounds_each_weight() -> None:
    w = clustered_weight().numpy()
    init = grid_init(w, 3)
    assert isinstance(init, MixtureInit) and init.scale == best_scale(w.ravel(), np.ones(w.size), QuantSpec(3))
    codes = np.clip(np.rint(w.ravel() / init.scale), -4, 3)
    assert init.counts[0] == np.sum(codes == 0) and init.counts.sum() == w.size


def test_assignments_sum_to_one_and_soft_weight_tends_to_hard_as_tau_shrinks() -> None:
    w = clustered_weight(1)
    mix = DGMSWeight(w, 2, codebook="free")
    with torch.no_grad():
        for probs in (mix.responsibilities(w), mix.assignment(w)):
            torch.testing.assert_close(probs.sum(dim=1), torch.ones(w.numel()))
            assert torch.all(probs >= 0)
        idx, hard = mix.hard(w)
        assert torch.equal(idx.reshape(-1), mix.assignment(w).argmax(dim=1))
        gaps = []
        for tau in (0.3, 0.03, 0.003, 2 * TAU_MIN):
            set_tau(mix, tau)
            gaps.append(float((mix(w) - hard).abs().mean()))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3 * float(w.abs().max())


def test_far_away_weights_stay_finite_in_log_space() -> None:
    """A weight 1e4 standard deviations from every mean: linear-space pdfs all underflow, the log joint does not."""
    mix = DGMSWeight(clustered_weight(), 2, codebook="free")
    w = clustered_weight() * 1e3
    with torch.no_grad():
        soft = mix(w)
        idx, hard = mix.hard(w)
    assert torch.isfinite(soft).all() and torch.isfinite(hard).all() and idx.min() >= 0


@pytest.mark.parametrize("param", ["pi", "log_sigma", "log_tau", "log_alpha", "mu"])
def test_a_nan_parameter_is_a_collapse_with_one_line(param: str) -> None:
    mix = DGMSWeight(clustered_weight(), 2, name="conv7", codebook="free")
    with torch.no_grad():
        getattr(mix, param).view(-1)[0] = float("nan")
    with pytest.raises(
        TrainingDivergedError,
        match=r"^DGMS mixture of layer conv7 collapsed \(NaN or inf in its "
        rf"parameter {param}\); stopped, nothing written$",
    ):
        mix(clustered_weight())


def test_collapse_inside_training_stops_and_returns_nothing(digits, monkeypatch) -> None:
    model, split = digits
    import quant.dgms as dgms

    def nan_init(weight, bits):  # noqa: ANN001, ANN202
        init = grid_init(weight, bits)
        return MixtureInit(init.means, init.sigmas, init.pis, init.counts, float("nan"))

    monkeypatch.setattr(dgms, "grid_init", nan_init)
    with pytest.raises(TrainingDivergedError, match=r"DGMS mixture of layer 0 collapsed .*log_scale"):
        dgms_train(model, split, 2, 8, CFG)


def test_a_huge_learning_rate_diverges_with_training_diverged_error(digits) -> None:
    model, split = digits
    with pytest.raises(TrainingDivergedError, match="stopped, nothing written"):
        dgms_train(model, split, 2, 8, FinetuneConfig(epochs=1, lr=1e12))


# ---- argument checks -----------------------------------------------------------------------------------------------
def test_components_must_be_2_to_the_b(digits) -> None:
    model, split = digits
    assert check_components(None, 3) == 8 and check_components(16, 4) == 16
    msg = r"^K=5 is inconsistent with w_bits=2: DGMS uses K = 2\^b components including the zero component"
    with pytest.raises(QuantInputError, match=msg):
        dgms_train(model, split, 2, 8, CFG, components=5)
    with pytest.raises(QuantInputError, match="K=4.0 is inconsistent"):
        check_components(4.0, 2)


@pytest.mark.parametrize(("w", "a"), [(1, 8), (9, 8), (4, 1), (4, 16)])
def test_bits_out_of_range(digits, w: int, a: int) -> None:
    model, split = digits
    with pytest.raises(QuantInputError, match="2..8"):
        dgms_train(model, split, w, a, CFG)


def test_straight_through_forwards_the_hard_weight_and_backpropagates_the_soft_one() -> None:
    w = clustered_weight(1).requires_grad_(True)
    mix = DGMSWeight(w.detach(), 2, tau0=0.1, codebook="free")
    soft = mix(w)
    (g_soft,) = torch.autograd.grad((soft * soft.detach()).sum(), w)
    mix.straight_through = True
    out = mix(w)
    assert torch.equal(out.detach(), mix.hard(w)[1])
    assert not torch.equal(out.detach(), soft.detach())  # tau = 0.1 keeps the soft weight off the codebook
    (g_st,) = torch.autograd.grad((out * soft.detach()).sum(), w)
    torch.testing.assert_close(g_st, g_soft)


def test_hard_phase_switches_the_forward_for_the_last_epochs(digits) -> None:
    model, split = digits
    cfg = FinetuneConfig(epochs=2, seed=0)
    soft = dgms_train(model, split, 2, 8, cfg)
    again = dgms_train(model, split, 2, 8, cfg, hard_phase=0.0)
    half = dgms_train(model, split, 2, 8, cfg, hard_phase=0.5)
    assert soft.history.equals(again.history)
    # epoch 1 is identical (soft forward in both); epoch 2 forwards the hard weights
    assert soft.history.iloc[0].equals(half.history.iloc[0])
    assert soft.history.task_loss.iloc[1] != half.history.task_loss.iloc[1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"tau0": 0.0}, "tau0"),
        ({"tau0": float("nan")}, "tau0"),
        ({"snap": "nearest"}, "snap"),
        ({"codebook": "lattice"}, "codebook"),
        ({"mixture_lr_scale": -1.0}, "mixture_lr_scale"),
        ({"hard_phase": 1.5}, "hard_phase"),
        ({"hard_phase": float("nan")}, "hard_phase"),
    ],
)
def test_bad_options_are_one_line(digits, kwargs: dict, needle: str) -> None:
    model, split = digits
    with pytest.raises(QuantInputError, match=needle):
        dgms_train(model, split, 2, 8, CFG, **kwargs)


# ---- snapping to the uniform grid ------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_snap_channel_beats_a_brute_force_scale_search(bits: int) -> None:
    spec = QuantSpec(bits)
    rng = np.random.default_rng(bits)
    for _ in range(20):
        means = np.concatenate([[0.0], np.sort(rng.normal(size=2**bits - 1))])
        counts = rng.integers(0, 50, size=means.size)
        s, codes = snap_channel(means, counts, spec)
        assert s > 0 and codes[0] == 0 and codes.min() >= spec.qmin and codes.max() <= spec.qmax
        err = float((counts[1:] * (means[1:] - s * codes[1:]) ** 2).sum())
        fine = np.geomspace(1e-3, 10, 20001)
        brute = (
            (
                counts[1:]
                * (means[1:] - fine[:, None] * np.clip(np.rint(means[1:] / fine[:, None]), spec.qmin, spec.qmax)) ** 2
            ).sum(1)
        ).min()
        assert err <= brute * (1 + 1e-9) + 1e-12


def test_snap_is_exact_on_grid_means_and_zero_stays_zero() -> None:
    spec = QuantSpec(3)
    means = np.array([[0.0, -0.4, -0.1, 0.2, 0.3], [0.0, -0.8, -0.2, 0.4, 0.6]])  # s = 0.1 and 0.2
    idx = np.array([[0, 1, 2, 3, 4, 0], [4, 3, 0, 0, 2, 1]])
    res = snap_layer(means, idx, spec)
    np.testing.assert_allclose(res.scales.ravel(), [0.1, 0.2])
    np.testing.assert_array_equal(res.comp_codes, [[0, -4, -1, 2, 3], [0, -4, -1, 2, 3]])
    np.testing.assert_array_equal(res.codes == 0, idx == 0)
    np.testing.assert_allclose(res.codes * res.scales, np.take_along_axis(means, idx, axis=1), atol=1e-15)
    # a channel that only prunes gets scale 1 and all codes 0
    empty = snap_layer(means[:1], np.zeros((1, 4), dtype=np.int64), spec)
    assert empty.scales[0, 0] == 1.0 and not empty.codes.any()


# ---- real runs (digits-cnn, 2 epochs) ------------------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_codes_and_history(trained) -> None:
    first, second = trained
    for (_, a), (_, b) in zip(quant_layers(first.model), quant_layers(second.model)):
        assert a.w_codes.tobytes() == b.w_codes.tobytes() and a.w_scales.tobytes() == b.w_scales.tobytes()
    assert first.history.equals(second.history) and len(first.history) == 2
    assert {"tau_mean", "sparsity", "task_loss", "train_accuracy"} <= set(first.history.columns)
    assert first.tables["codebook"].equals(second.tables["codebook"])


@pytest.mark.slow
def test_trained_model_snapped_codes_and_summary(trained, digits) -> None:
    out, _ = trained
    _, split = digits
    s = out.summary
    assert s["method"] == "dgms" and s["components"] == 4 and s["codebook"] == "grid"
    for rec in s["layers"]:  # mu_0 pinned at 0 after training, K = 4 components
        assert rec["means"][0] == 0.0 and len(rec["means"]) == 4 and len(rec["counts"]) == 4
        assert 0.0 < rec["sparsity"] <= rec["zero_codes"] < 1.0
    for _, m in quant_layers(out.model):
        assert m.w_spec.bits == 2 and m.blocks.n_v == m.out_features and m.blocks.n_h == 1
        assert m.w_codes.min() >= -2 and m.w_codes.max() <= 1 and m.weight_fn is None and not m.ste
        snapped = (m.w_codes * m.w_scales).astype(np.float32).reshape(m.layer.weight.shape)
        np.testing.assert_array_equal(m.w_deq.numpy(), snapped)
    table = out.tables["codebook"]
    assert (table.loc[table.component == 0, "code"] == 0).all()
    used = table[(table["count"] > 0) & (table.component > 0)]  # grid codebook: the snap is exact
    np.testing.assert_allclose(used["snapped"], used["mean"], rtol=1e-5)
    assert s["snap_cost"] == 0.0
    # the floor is over 4 binomial standard errors (0.75 points each) below what two epochs reach (97-98 %)
    assert s["test_accuracy_snapped"] == evaluate_accuracy(out.model, split.test_x, split.test_y) > 90.0
    assert s["compression_dense"] == 16.0 and s["compression_sparse"] == pytest.approx(16 / (1 - s["zero_codes"]))
    assert 0.0 < s["sparsity"] <= s["zero_codes"] < 1.0 and 1.0 < s["model_compression_dense"] < 16.0


@pytest.mark.slow
def test_free_codebook_is_snapped_to_the_grid(digits) -> None:
    """The paper's free means: hard accuracy before the snap and after it are both reported; codes in range,
    component 0 -> code 0."""
    model, split = digits
    out = dgms_train(model, split, 3, 8, FinetuneConfig(epochs=1), codebook="free")
    table = out.tables["codebook"]
    assert (table.loc[table.component == 0, "code"] == 0).all()
    assert table["code"].between(-4, 3).all()
    assert not np.allclose(table.loc[table["count"] > 0, "snapped"], table.loc[table["count"] > 0, "mean"])
    s = out.summary
    assert s["snap_cost"] == pytest.approx(s["test_accuracy_hard"] - s["test_accuracy_snapped"])
    assert s["test_accuracy_hard"] > 90.0  # measured 97-99 %: over 4 binomial standard errors above the floor


@pytest.mark.slow
def test_integer_export_agrees_with_the_fake_quant_model(trained, digits) -> None:
    out, _ = trained
    _, split = digits
    golden = build_integer_model(out.model, split.calib_x[:1], name="digits-cnn")
    _, pred = golden.run(split.test_x)
    with torch.no_grad():
        ref = out.model(split.test_x).argmax(1).numpy()
    assert np.mean(pred == ref) >= 0.99
    for lay, (_, m) in zip(golden.layers, quant_layers(out.model)):
        np.testing.assert_array_equal(lay.w_codes, m.w_codes)
