"""Products of two activations (attention scores and context): QuantMatmul in fake-quant, named and ordered as
sim names them, with sensitivity rows that join sim's cost table in the ILP."""

from __future__ import annotations

import pytest
import torch

from quant.errors import QuantInputError
from quant.fakequant import calibrate_activations, gemm_nodes, prepare, quant_layers, quant_matmuls, tensor_quants
from quant.models import model_split
from quant.sensitivity import sensitivity_table
from tests.user_nets import transformer

PAIRS = [(8, 8), (4, 8), (2, 4)]


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return model_split("digits-cnn").calib_x[:64]


def test_products_become_quantmatmuls_named_and_ordered_as_sim(calib: torch.Tensor) -> None:
    from sim.workload.torch_import import from_torch

    model = transformer()
    q = prepare(model)
    products = [n for n, _ in quant_matmuls(q)]
    assert len(products) == 4  # scores and context in each of the two blocks
    workload = from_torch(model, calib[:2])
    assert [n for n, _ in gemm_nodes(q, calib[:1])] == [layer.name for layer in workload.layers]
    with torch.no_grad():  # uncalibrated quantizers are identities: prepare changes nothing
        assert torch.allclose(q(calib), model(calib), atol=1e-6)


def test_operand_quantizers_follow_their_bits(calib: torch.Tensor) -> None:
    model = transformer()
    with torch.no_grad():
        ref = model(calib)
    errors = {}
    for a_bits, b_bits in ((8, 8), (8, 2), (2, 8)):
        q = prepare(model)
        calibrate_activations(q, calib, a_bits, b_bits=b_bits)
        for _, m in quant_layers(q) + tensor_quants(q):  # only the products' operands stay quantized
            m.act = None
        for name, m in quant_matmuls(q):
            assert (m.act.spec.bits, m.act_b.spec.bits) == (a_bits, b_bits), name
        with torch.no_grad():
            errors[(a_bits, b_bits)] = float(((q(calib) - ref) ** 2).sum() / (ref**2).sum())
    assert errors[(8, 8)] < 1e-3
    assert errors[(8, 2)] > 10 * errors[(8, 8)] and errors[(2, 8)] > 10 * errors[(8, 8)]


@pytest.mark.parametrize("method", ["sqnr", "loss"])
def test_sensitivity_rows_cover_products_and_replay_equals_full_forwards(calib: torch.Tensor, method: str) -> None:
    y = model_split("digits-cnn").calib_y[:64]
    kw = {"calib_y": y} if method == "loss" else {}
    fast = sensitivity_table(transformer(), calib, PAIRS, method, n_samples=64, threads=1, **kw)
    slow = sensitivity_table(transformer(), calib, PAIRS, method, n_samples=64, threads=1, replay=False, **kw)
    names = [n for n, _ in gemm_nodes(prepare(transformer()), calib[:1])]
    assert list(dict.fromkeys(fast.name)) == names and len(fast) == len(names) * len(PAIRS)
    products = [n for n in names if ".matmul" in n]
    groups = fast.drop_duplicates("name").set_index("name").group
    assert groups[products].is_unique and not set(groups[products]) & set(groups.drop(products))
    assert list(groups) == sorted(groups) or groups.iloc[0] == 0  # numbered by first appearance
    assert torch.allclose(
        torch.tensor(fast.sensitivity.values), torch.tensor(slow.sensitivity.values), rtol=1e-4, atol=1e-9
    )
    if method == "sqnr":  # coarser operands of a product cost more
        s = fast.set_index(["name", "w_bits", "a_bits"]).sensitivity
        assert all(s[(p, 2, 4)] > s[(p, 8, 8)] for p in products)


def test_hessian_names_the_products(calib: torch.Tensor) -> None:
    y = model_split("digits-cnn").calib_y[:64]
    with pytest.raises(QuantInputError, match="blocks.0.attention.matmul"):
        sensitivity_table(transformer(), calib, PAIRS, "hessian", calib_y=y, n_samples=16)


def test_solve_joins_sim_costs_and_sensitivity_of_a_transformer(calib: torch.Tensor) -> None:
    from experiments.quantize import assignment_bits, quantize_model
    from search import AssignmentModel, build_problem
    from search.budgets import parse_budgets, resolve_budgets
    from sim import load_chip, simulate
    from sim.workload.torch_import import from_torch

    model = transformer()
    chip = load_chip("bitfusion_edge")
    pairs = [p for p in chip.supported_pairs if p in PAIRS]
    costs = simulate(chip, from_torch(model, calib[:1], name="transformer"), pairs, coupled=True)
    sens = sensitivity_table(model, calib, pairs, "sqnr", n_samples=64)
    asked = parse_budgets(["latency_us=85%"])
    problem = build_problem(costs, sens, list(asked))
    limits = resolve_budgets(problem, asked)
    solution = AssignmentModel(problem, list(limits)).solve(limits)
    assert solution.status == "optimal"
    w_bits, a_bits = assignment_bits(solution.assignment(), model)
    q = quantize_model(model, calib, w_bits, a_bits, "rtn")
    for name, m in quant_matmuls(q):
        assert m.act_b.spec.bits == m.act.spec.bits == a_bits[name]  # both operands at a_bits, as sim costs it
    from quant.export import build_integer_model

    golden = build_integer_model(q, calib[:1], name="transformer")  # the mixed model runs in integers too
    _, pred = golden.run(calib.numpy())
    with torch.no_grad():
        assert (pred == q(calib).argmax(1).numpy()).mean() >= 0.95


def test_the_export_names_ops_it_cannot_represent(calib: torch.Tensor, tmp_path) -> None:
    from experiments.quantize import quantize_model
    from quant.export import export_model

    class Exp(torch.nn.Module):  # exp() is not one of the glue ops: named, nothing written
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x).exp()

    q = quantize_model(Exp(), calib, 8, 8)
    with pytest.raises(QuantInputError, match=r"exp \(call_method exp\)"):
        export_model(q, calib[:1], tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_scaled_dot_product_attention_splits_into_two_products(calib: torch.Tensor, tmp_path) -> None:
    """F.scaled_dot_product_attention becomes scores and context QuantMatmuls named as sim names them, computing
    the same function; the golden integer model of it tracks fake-quant."""
    from experiments.quantize import quantize_model
    from quant.export import build_integer_model
    from sim.workload.torch_import import from_torch
    from tests.user_nets import transformer_sdpa

    model = transformer_sdpa()
    q = prepare(model)
    names = [n for n, _ in gemm_nodes(q, calib[:1])]
    assert names == [layer.name for layer in from_torch(model, calib[:2]).layers]
    assert "blocks.0.attention.sdpa.scores" in names and "blocks.1.attention.sdpa.context" in names
    with torch.no_grad():
        assert torch.allclose(q(calib), model(calib), atol=1e-5)
        assert torch.allclose(model(calib), transformer()(calib), atol=1e-5)  # same weights, same function
    sens = sensitivity_table(model, calib, PAIRS, "sqnr", n_samples=32)
    assert list(dict.fromkeys(sens.name)) == names
    fq = quantize_model(model, calib, 8, 8)
    golden = build_integer_model(fq, calib[:1], name="sdpa")
    _, pred = golden.run(calib.numpy())
    with torch.no_grad():
        assert (pred == fq(calib).argmax(1).numpy()).mean() >= 0.95
