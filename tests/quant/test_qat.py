"""QAT (the training-time baseline) and the shared fine-tuning loop: STE fake-quant, determinism, divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accuracy_stats import assert_beats, correct

from quant.data import evaluate_accuracy
from quant.errors import QuantInputError
from quant.fakequant import ActQuant, calibrate_activations, prepare, quant_layers
from quant.finetune import FinetuneConfig, TrainingDivergedError, check_bits, finetune, training_mode
from quant.models import get_model, model_split
from quant.qat import STEWeightQuant, qat_train
from quant.quantizer import Blocks, QuantSpec
from quant.rtn import rtn_codes


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_ste_weight_quant_equals_rtn_and_passes_gradients(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)
    w[2] = 0.0  # an all-zero channel: scale 1, codes 0
    w.requires_grad_(True)
    wq = STEWeightQuant(bits)(w)
    codes, scales = rtn_codes(w.detach().reshape(5, -1).numpy(), QuantSpec(bits), Blocks(5, 1))
    expected = codes * scales.reshape(5, 1)
    np.testing.assert_allclose(wq.detach().reshape(5, -1).numpy(), expected, rtol=0, atol=1e-12)
    g = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    (wq * g).sum().backward()
    torch.testing.assert_close(w.grad, g)  # straight through: d wq / d w = 1


def test_activation_ste_is_clipped_straight_through() -> None:
    act = ActQuant(QuantSpec(4, symmetric=True, signed=False), 0.1, 0)  # range [0, 1.5]
    x = torch.tensor([-0.3, 0.04, 0.77, 1.5, 2.0], requires_grad=True)
    y = act.ste(x)
    torch.testing.assert_close(y.detach(), act(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_check_bits_and_config_errors() -> None:
    assert check_bits(2, 8) == (2, 8)
    for w, a in [(1, 8), (9, 8), (4, 0), (2.0, 8), (True, 8)]:
        with pytest.raises(QuantInputError, match="2..8"):
            check_bits(w, a)
    for kwargs, needle in [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": float("nan")}, "lr"),
        ({"seed": -2}, "seed"),
    ]:
        with pytest.raises(QuantInputError, match=needle):
            FinetuneConfig(**kwargs)


def test_qat_is_deterministic_and_beats_rtn_at_2_bits() -> None:
    model, split = get_model("digits-cnn"), model_split("digits-cnn")
    cfg = FinetuneConfig(epochs=2, seed=3)
    first = qat_train(model, split, 2, 8, cfg)
    second = qat_train(model, split, 2, 8, cfg)
    for (_, a), (_, b) in zip(quant_layers(first.model), quant_layers(second.model)):
        assert np.array_equal(a.w_codes, b.w_codes) and np.array_equal(a.w_scales, b.w_scales)
    pd_equal = first.history.equals(second.history)
    assert pd_equal and list(first.history.columns) == ["epoch", "task_loss", "train_accuracy"]
    # the pretrained float model is untouched, and every layer ends with 2-bit codes
    assert all(layer.w_codes is not None and layer.w_spec.bits == 2 for _, layer in quant_layers(first.model))
    assert all(layer.weight_fn is None and not layer.ste for _, layer in quant_layers(first.model))
    from quant.rtn import rtn_quantize

    rtn = prepare(model)
    calibrate_activations(rtn, split.calib_x, 8)
    rtn_quantize(rtn, 2)
    # RTN at 2 bits loses a third of the images or more; two epochs of QAT recover them (paired, Z standard errors)
    assert_beats(correct(first.model, split.test_x, split.test_y), correct(rtn, split.test_x, split.test_y), "QAT w2")
    # and a floor far below what QAT reaches (97-98 %): 90 % is over Z binomial standard errors (0.75 points) under it
    acc_qat = evaluate_accuracy(first.model, split.test_x, split.test_y)
    assert acc_qat >= 90.0, acc_qat


def test_a_non_finite_loss_stops_training_with_one_line() -> None:
    model, split = get_model("digits-cnn"), model_split("digits-cnn")
    q = prepare(model)
    calibrate_activations(q, split.calib_x, 8)

    def nan_after_start(progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.tensor(float("nan") if progress > 0.1 else 0.0), {}

    with training_mode(q), pytest.raises(TrainingDivergedError) as err:
        finetune(q, split, FinetuneConfig(epochs=1), extra_loss=nan_after_start)
    assert "diverged" in str(err.value) and "\n" not in str(err.value)


# ---- divergence (quant.divergence): the three causes, in the guard and in both training loops -------------------
def test_guard_stops_a_loss_risen_by_orders_of_magnitude() -> None:
    from quant.divergence import LOSS_RISE_FACTOR, DivergenceGuard

    guard = DivergenceGuard("run", "try a lower --lr than 1")
    guard.check_loss(0.01, 0.01, 10, 1, 1)  # a pretrained model starts near zero loss ...
    guard.check_loss(50.0, 50.0, 10, 1, 2)  # ... and may rise far above it, up to 100x the chance-level loss
    with pytest.raises(TrainingDivergedError, match=r"over 100x its starting value") as err:
        guard.check_loss(LOSS_RISE_FACTOR * 2.31, LOSS_RISE_FACTOR * 2.31, 10, 2, 3)
    message = str(err.value)
    assert message.startswith("run: training diverged at epoch 2, step 3") and "try a lower --lr" in message
    with pytest.raises(TrainingDivergedError, match="non-finite loss"):
        guard.check_loss(float("inf"), 1.0, 10, 1, 4)


def test_guard_stops_training_accuracy_at_chance() -> None:
    from quant.divergence import DivergenceGuard, chance_accuracy

    labels = torch.arange(1000) % 10
    labels[:100] = 3  # majority class: 19 %
    assert chance_accuracy(labels) == pytest.approx(0.19)
    guard = DivergenceGuard("run", "hint")
    with pytest.raises(
        TrainingDivergedError,
        match=r"training accuracy 20\.0 % is at chance \(the majority class is "
        r"19\.0 %",
    ):
        guard.check_accuracy(200, 1000, labels, 3)
    guard.check_accuracy(400, 1000, labels, 3)  # poor but learning: not divergence


def test_pretraining_with_an_absurd_learning_rate_stops(monkeypatch) -> None:
    import dataclasses
    import types

    import quant.models.train as train_mod

    spec = train_mod.MODELS["digits-cnn"]
    bad = spec._replace(hparams=dataclasses.replace(spec.hparams, lr=1e3))
    monkeypatch.setattr(train_mod, "MODELS", types.MappingProxyType({"digits-cnn": bad}))
    with pytest.raises(TrainingDivergedError, match="lower the learning rate of digits-cnn") as err:
        train_mod.train_model("digits-cnn", seed=0, epochs=1)
    assert "\n" not in str(err.value) and isinstance(err.value, QuantInputError)


@pytest.mark.parametrize("lr", [1e3, 1.0])
def test_fine_tuning_with_an_absurd_learning_rate_stops(lr: float) -> None:
    model, split = get_model("digits-cnn"), model_split("digits-cnn")
    with pytest.raises(TrainingDivergedError, match=f"try a lower --lr than {lr:g}") as err:
        qat_train(model, split, 4, 8, FinetuneConfig(epochs=1, lr=lr))
    assert "QAT w4a8: training diverged" in str(err.value) and "\n" not in str(err.value)
