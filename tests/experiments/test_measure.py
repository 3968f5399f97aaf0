"""Measuring mixed-precision assignments: uniform ones reproduce quantize_builtin, per-layer bits land on the
right layers, memoization, determinism and input validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from accuracy_stats import unpaired_margin

from experiments.measure import ModelBench, measure_assignment, measure_many, normalize_assignment
from experiments.quantize import quantize_builtin
from quant.data import evaluate_accuracy
from quant.errors import QuantInputError
from quant.fakequant import quant_layers

MODEL = "digits-cnn"
NAMES = ("0", "3", "7", "12")
MIXED = {"0": (8, 8), "3": (2, 4), "7": (4, 2), "12": (8, 8)}


@pytest.fixture(scope="module")
def bench() -> ModelBench:
    return ModelBench(MODEL)


def _layers(model: torch.nn.Module) -> dict:
    return dict(quant_layers(model))


def test_layer_names_are_the_quant_layers_in_execution_order(bench: ModelBench) -> None:
    assert bench.layer_names == NAMES


@pytest.mark.parametrize(("method", "bits"), [("rtn", 8), ("rtn", 4), ("ptq-sl", 4), ("gpfq", 4)])
def test_uniform_assignment_reproduces_quantize_builtin(bench: ModelBench, method: str, bits: int) -> None:
    ref_model, ref = quantize_builtin(MODEL, method, bits, bits)
    point = measure_assignment(MODEL, bench.uniform(bits, bits), method, integer=method == "rtn")
    assert point.accuracy == evaluate_accuracy(ref_model, bench.test_x, bench.test_y)
    assert round(point.accuracy, 2) == ref.fakequant_accuracy
    assert round(point.float_accuracy, 2) == ref.float_accuracy
    assert point.weight_size_bits == ref.weight_size_bits
    assert point.pairs == ",".join([f"w{bits}a{bits}"] * len(NAMES))
    if method == "rtn":
        assert round(point.integer_accuracy, 2) == ref.integer_accuracy
    else:
        assert point.integer_accuracy is None
    # the very same model: codes, scales and activation quantizers
    ours, theirs = _layers(bench.quantize(bench.uniform(bits, bits), method)), _layers(ref_model)
    for name in NAMES:
        np.testing.assert_array_equal(ours[name].w_codes, theirs[name].w_codes)
        np.testing.assert_array_equal(ours[name].w_scales, theirs[name].w_scales)
        assert ours[name].act == theirs[name].act


def test_mixed_assignment_puts_each_layers_bits_on_that_layer(bench: ModelBench) -> None:
    mixed = _layers(bench.quantize(MIXED))
    uniform = {b: _layers(bench.quantize(bench.uniform(b, b))) for b in (2, 4, 8)}
    for name, (w, a) in MIXED.items():
        layer = mixed[name]
        assert (layer.w_spec.bits, layer.act.spec.bits) == (w, a)
        # RTN weights and max-calibrated (float-network) activation ranges depend only on the layer's own bits
        np.testing.assert_array_equal(layer.w_codes, uniform[w][name].w_codes)
        assert layer.act == uniform[a][name].act


def test_mixed_accuracy_lies_between_the_extreme_uniforms(bench: ModelBench) -> None:
    # above uniform w2a2 and not above uniform w8a8, each by more than the 397 test images resolve
    low, mixed, high = measure_many(MODEL, [bench.uniform(2, 2), MIXED, bench.uniform(8, 8)])
    n = len(bench.test_y)
    assert mixed.accuracy - low.accuracy > unpaired_margin(mixed.accuracy, low.accuracy, n)
    assert mixed.accuracy - high.accuracy <= unpaired_margin(mixed.accuracy, high.accuracy, n)
    assert low.weight_size_bits < mixed.weight_size_bits < high.weight_size_bits


def test_memoized_deterministic_and_accepts_tables(bench: ModelBench, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = ModelBench.measure_pairs

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelBench, "measure_pairs", counting)
    # a search assignment table, as read back from CSV (integer names), listed in another order
    table = pd.DataFrame({"layer": [3, 0, 1, 2], "name": [12, 0, 3, 7], "w_bits": [8, 8, 2, 4], "a_bits": [8, 8, 4, 2]})

    class FakeSolution:
        def assignment(self) -> pd.DataFrame:
            return table

    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    points = measure_many(MODEL, [MIXED, table, bench.uniform(4, 4), FakeSolution(), MIXED], progress=True)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is left alone
    assert len(calls) == 2
    assert points[0] is points[1] is points[3] is points[4]
    assert points[0].pairs == "w8a8,w2a4,w4a2,w8a8"
    again = measure_assignment(MODEL, MIXED)
    assert (again.accuracy, again.weight_size_bits, again.pairs) == (
        points[0].accuracy,
        points[0].weight_size_bits,
        points[0].pairs,
    )


BAD_ASSIGNMENTS = {
    "missing layer": ({"0": (8, 8), "3": (8, 8), "7": (8, 8)}, "missing layer(s) 12"),
    "extra layer": ({**MIXED, "fc": (8, 8)}, "unknown layer(s) fc"),
    "w_bits too low": ({**MIXED, "3": (1, 8)}, "layer '3': w_bits must be an integer in 2..8, got 1"),
    "a_bits too high": ({**MIXED, "7": (8, 9)}, "layer '7': a_bits must be an integer in 2..8, got 9"),
    "fractional bits": ({**MIXED, "7": (4.5, 8)}, "w_bits must be an integer in 2..8, got 4.5"),
    "bool bits": ({**MIXED, "7": (True, 8)}, "w_bits must be an integer"),
    "not a pair": ({**MIXED, "0": (8, 8, 8)}, "layer '0' needs a (w_bits, a_bits) pair"),
    "string pair": ({**MIXED, "0": "w8a8"}, "layer '0' needs a (w_bits, a_bits) pair"),
    "missing column": (pd.DataFrame({"name": list(NAMES), "w_bits": [8] * 4}), "missing column(s) a_bits"),
    "duplicate name": (
        pd.DataFrame({"name": ["0", "0", "3", "7", "12"], "w_bits": [8] * 5, "a_bits": [8] * 5}),
        "listed more than once: 0",
    ),
    "not an assignment": ([(8, 8)] * 4, "assignment must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_ASSIGNMENTS))
def test_bad_assignments_are_refused_with_a_clear_message(case: str) -> None:
    assignment, needle = BAD_ASSIGNMENTS[case]
    with pytest.raises(QuantInputError) as info:
        normalize_assignment(assignment, NAMES)
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "awq"}, "unknown method 'awq' (allowed: rtn, gpfq, gpfq-paper, ptq-sl, gptq)"),
        ({"granularity": "row"}, "bad granularity 'row'"),
        ({"model_name": "resnet9000"}, "unknown model 'resnet9000'"),
        ({"assignment": {"0": (8, 8)}}, "missing layer(s) 3, 7, 12"),
    ],
)
def test_measure_assignment_validates_its_arguments(kwargs: dict, needle: str) -> None:
    args = {"model_name": MODEL, "assignment": MIXED, **kwargs}
    with pytest.raises(QuantInputError) as info:
        measure_assignment(**args)
    assert needle in str(info.value), str(info.value)


def test_measure_many_needs_a_sequence() -> None:
    with pytest.raises(QuantInputError, match="sequence"):
        measure_many(MODEL, MIXED)


@pytest.mark.slow
def test_points_measured_on_dask_workers_match_this_process() -> None:
    """The Pareto measurement on two local Dask workers gives the same points as in this process."""
    bench = ModelBench("digits-cnn")
    names = bench.layer_names
    points = [
        bench.uniform(8, 8),
        bench.uniform(4, 8),
        {n: (2 if i % 2 else 4, 8) for i, n in enumerate(names)},
        bench.uniform(4, 8),
    ]
    here = measure_many("digits-cnn", points, method="gptq")
    there = measure_many("digits-cnn", points, method="gptq", scheduler="local:2")
    assert [p.accuracy for p in here] == [p.accuracy for p in there]
    assert [p.pairs for p in here] == [p.pairs for p in there]
    assert there[1] is there[3]  # identical assignments are measured once
