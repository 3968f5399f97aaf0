"""``lowbit quantize`` on a user's own model (a factory in a file written here) and the user's own data (.npz): the
integer export runs, the golden model agrees with fake-quant, and each kind of bad model or data is refused with
one line naming it (exit 2, nothing written)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import assert_bad_input, run_cli

from quant.integer import load_export

MODEL_PY = textwrap.dedent("""
    import torch
    from torch import nn

    def small_cnn():
        torch.manual_seed(7)
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

    def not_a_module():
        return 42

    def broken():
        raise RuntimeError("no weights here")
""")


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The user's model file, its weights, and data files with and without labels (the digits split's images)."""
    from quant.data import load_digits_split

    root = tmp_path_factory.mktemp("user-model")
    (root / "my_model.py").write_text(MODEL_PY)
    ns: dict = {}
    exec(compile(MODEL_PY, "my_model.py", "exec"), ns)  # noqa: S102 - the test's own model code
    model = ns["small_cnn"]()
    # a few steps of training so that the predictions mean something
    split = load_digits_split(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(split.train_x), split.train_y).backward()
        opt.step()
    torch.save(model.state_dict(), root / "weights.pt")
    np.savez(
        root / "labelled.npz", calib_x=split.calib_x.numpy(), test_x=split.test_x.numpy(), test_y=split.test_y.numpy()
    )
    np.savez(root / "unlabelled.npz", calib_x=split.calib_x.numpy())
    np.savez(root / "wrong_shape.npz", calib_x=np.zeros((4, 1, 6, 6), dtype=np.float32))
    np.savez(root / "no_calib.npz", test_x=split.test_x.numpy())
    torch.save({"0.weight": torch.zeros(3)}, root / "bad_weights.pt")
    return {"root": root, "py": root / "my_model.py", "weights": root / "weights.pt"}


def _quantize(user: dict[str, Path], model: str, data: str | None, out: Path, *extra: str) -> list[str]:
    argv = ["quantize", "--model", model, "--method", "gpfq", "--bits", "w4a8", "--out", str(out)]
    if data is not None:
        argv += ["--data", str(user["root"] / data)]
    return argv + list(extra)


def test_user_model_with_labels(user: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A file-defined model with its weights: accuracy measured on test_x/test_y, the golden integer model agrees
    with fake-quant, and the export loads."""
    out = tmp_path / "q"
    code, stdout, err = run_cli(
        _quantize(user, f"{user['py']}:small_cnn", "labelled.npz", out, "--weights", str(user["weights"])), capsys
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labelled"] and metrics["samples"] == 397
    # 397 test images resolve about 0.25 %: the trained model is far above chance, the integer model follows fake-quant
    assert metrics["float_accuracy"] > 60 and metrics["integer_agreement"] >= 99.0
    assert abs(metrics["fakequant_accuracy"] - metrics["float_accuracy"]) < 10
    assert len(load_export(out).layers) == 3
    assert "output SQNR" in stdout


def test_user_model_without_labels(user: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Without test_x/test_y the quality is agreement with the float model on calib_x (no accuracies)."""
    out = tmp_path / "q"
    code, _, err = run_cli(
        _quantize(user, f"{user['py']}:small_cnn", "unlabelled.npz", out, "--weights", str(user["weights"])), capsys
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["labelled"] and metrics["float_accuracy"] is None and metrics["samples"] == 200
    assert metrics["output_cosine"] > 0.9 and metrics["integer_agreement"] >= 99.0


BAD = {
    "no-data": (lambda u: f"{u['py']}:small_cnn", None, (), "needs --data"),
    "file-missing": (lambda u: f"{u['root']}/nope.py:small_cnn", "labelled.npz", (), "no such file"),
    "factory-missing": (lambda u: f"{u['py']}:resnet", "labelled.npz", (), "has no factory 'resnet'"),
    "not-a-module": (lambda u: f"{u['py']}:not_a_module", "labelled.npz", (), "returned int, not a torch.nn.Module"),
    "factory-raises": (lambda u: f"{u['py']}:broken", "labelled.npz", (), "broken() raised RuntimeError"),
    "module-missing": (lambda u: "no_such_package.models:net", "labelled.npz", (), "no module named"),
    "bad-spec": (lambda u: "digits-cnn:", "labelled.npz", (), "give a built-in name"),
    "data-missing": (lambda u: f"{u['py']}:small_cnn", "nope.npz", (), "no such file"),
    "data-no-calib": (lambda u: f"{u['py']}:small_cnn", "no_calib.npz", (), "no calib_x"),
    "data-wrong-shape": (lambda u: f"{u['py']}:small_cnn", "wrong_shape.npz", (), "does not fit model"),
    "weights-mismatch": (
        lambda u: f"{u['py']}:small_cnn",
        "labelled.npz",
        ("--weights", "bad_weights.pt"),
        "does not fit model",
    ),
    "weights-builtin": (lambda u: "digits-cnn", "labelled.npz", ("--weights", "weights.pt"), "applies to a user"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_user_model_bad_input(user: dict[str, Path], case: str, capsys) -> None:
    spec, data, extra, cause = BAD[case]
    extra = tuple(str(user["root"] / e) if e.endswith(".pt") else e for e in extra)
    assert_bad_input(_quantize(user, spec(user), data, user["root"] / "out", *extra), capsys, user["root"], cause)


def test_sensitivity_of_a_user_model(user: dict[str, Path], tmp_path: Path, capsys) -> None:
    """``sensitivity`` on the same model and data: one row per quantizable layer and pair; the loss method needs
    labels for calib_x."""
    import pandas as pd

    spec = f"{user['py']}:small_cnn"
    out = tmp_path / "sens.csv"
    code, _, err = run_cli(
        [
            "sensitivity",
            "--model",
            spec,
            "--method",
            "sqnr",
            "--pairs",
            "w8a8,w4a8",
            "--out",
            str(out),
            "--data",
            str(user["root"] / "unlabelled.npz"),
            "--weights",
            str(user["weights"]),
            "--samples",
            "32",
        ],
        capsys,
    )
    assert code == 0, err
    frame = pd.read_csv(out, dtype={"name": str})
    assert sorted(frame.name.unique()) == ["0", "4", "7"] and len(frame) == 6  # the module names of the 3 layers
    # fewer bits, more noise: every layer's w4a8 score is above its w8a8 score
    wide = frame.pivot(index="name", columns="w_bits", values="sensitivity")
    assert (wide[4] > wide[8]).all()
    assert_bad_input(
        [
            "sensitivity",
            "--model",
            spec,
            "--method",
            "loss",
            "--pairs",
            "w4a8",
            "--out",
            str(tmp_path / "s2.csv"),
            "--data",
            str(user["root"] / "unlabelled.npz"),
        ],
        capsys,
        tmp_path,
        "needs labels",
    )


def test_a_residual_user_model_exports_as_a_graph_and_unsupported_nodes_are_named(
    user: dict[str, Path], capsys
) -> None:
    """A residual block inside an nn.Sequential exports as a graph; a node the integer export cannot represent
    (a Softplus after the add: not one of the float glue ops) is named at once, before quantizing."""
    (user["root"] / "res.py").write_text(
        textwrap.dedent("""
        from torch import nn

        class Block(nn.Module):
            def __init__(self, norm=False):
                super().__init__()
                self.conv = nn.Conv2d(1, 1, 3, padding=1)
                self.norm = nn.Softplus() if norm else nn.Identity()

            def forward(self, x):
                return self.norm(x + self.conv(x))

        def net():
            return nn.Sequential(Block(), nn.Flatten(), nn.Linear(64, 10))

        def normed():
            return nn.Sequential(Block(norm=True), nn.Flatten(), nn.Linear(64, 10))
    """)
    )
    out = user["root"] / "out"
    code, _, err = run_cli(_quantize(user, f"{user['root']}/res.py:net", "unlabelled.npz", out), capsys)
    assert code == 0, err
    golden = load_export(out)
    # (a requant before the classifier appears only if its input quantizer differs from the sum's)
    assert [n["op"] for n in golden.graph if n["op"] != "requant"] == [
        "input",
        "gemm",
        "add",
        "flatten",
        "gemm",
        "output",
    ]
    assert_bad_input(
        _quantize(user, f"{user['root']}/res.py:normed", "unlabelled.npz", user["root"] / "out2"),
        capsys,
        user["root"],
        "cannot represent 1 node(s): 0.norm (Softplus)",
    )


def test_sim_and_solve_join_on_a_user_model(user: dict[str, Path], tmp_path: Path, capsys) -> None:
    """``sim`` traces the same model spec (on the data's shape or --input-shape); its layer names are the ones
    ``sensitivity`` writes, so ``solve`` joins the two tables without edits."""
    spec = f"{user['py']}:small_cnn"
    costs, costs2, sens = tmp_path / "costs.csv", tmp_path / "costs2.csv", tmp_path / "sens.csv"
    for argv in (
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            spec,
            "--pairs",
            "w8a8,w4a8",
            "--out",
            str(costs),
            "--data",
            str(user["root"] / "unlabelled.npz"),
        ],
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            spec,
            "--pairs",
            "w8a8,w4a8",
            "--out",
            str(costs2),
            "--input-shape",
            "1,8,8",
        ],
        [
            "sensitivity",
            "--model",
            spec,
            "--method",
            "sqnr",
            "--pairs",
            "w8a8,w4a8",
            "--out",
            str(sens),
            "--data",
            str(user["root"] / "unlabelled.npz"),
            "--samples",
            "16",
        ],
        [
            "solve",
            "--costs",
            str(costs),
            "--sensitivity",
            str(sens),
            "--budget",
            "latency_us=80%",
            "--out",
            str(tmp_path / "assign"),
        ],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 0, (argv[0], err)
    assert costs.read_text() == costs2.read_text()
    assert (tmp_path / "assign" / "assignment.csv").is_file()
    assert_bad_input(
        ["sim", "--chip", "bitfusion_edge", "--workload", spec, "--out", str(tmp_path / "c3.csv")],
        capsys,
        tmp_path,
        "--input-shape",
    )
    assert_bad_input(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            spec,
            "--out",
            str(tmp_path / "c3.csv"),
            "--input-shape",
            "1,5,5",
        ],
        capsys,
        tmp_path,
        "does not fit model",
    )
    assert_bad_input(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            "resnet18",
            "--out",
            str(tmp_path / "c3.csv"),
            "--input-shape",
            "1,5,5",
        ],
        capsys,
        tmp_path,
        "apply to a model",
    )


@pytest.mark.rtl
def test_rtl_verify_a_layer_of_a_user_export(verilator: str, user: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A user's export (no built-in test images) verifies layer by layer in RTL on the user's inputs (--data):
    bit-exact, cycles equal to sim's; without --data the error says to pass it."""
    out = tmp_path / "q"
    code, _, err = run_cli(
        _quantize(user, f"{user['py']}:small_cnn", "labelled.npz", out, "--weights", str(user["weights"])), capsys
    )
    assert code == 0, err
    for layer in ("4", "7"):  # the second conv (after BN folding and pooling) and the classifier
        code, stdout, err = run_cli(
            [
                "rtl",
                "verify",
                "--export",
                str(out),
                "--layer",
                layer,
                "--array",
                "4x4",
                "--pe",
                "bitfusion",
                "--images",
                "2",
                "--gaps",
                "0.2",
                "--data",
                str(user["root"] / "labelled.npz"),
            ],
            capsys,
        )
        assert code == 0, err
        line = json.loads(stdout.strip().splitlines()[-1])
        assert line["mismatches"] == 0 and line["measured_cycles"] == line["predicted_cycles"]
    assert_bad_input(["rtl", "verify", "--export", str(out), "--layer", "4"], capsys, tmp_path, "--data")


def test_sim_fixes_symbolic_onnx_dimensions(tmp_path: Path, capsys) -> None:
    """An ONNX model with a symbolic batch and sequence length imports with --batch and --dim; an unfixed
    dimension is named with the option that fixes it."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 8], np.zeros(128, dtype=np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")], "g", [x], [y], [w])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph), str(path))
    out = tmp_path / "costs.csv"
    code, _, err = run_cli(
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            str(path),
            "--pairs",
            "w8a8",
            "--out",
            str(out),
            "--batch",
            "4",
            "--dim",
            "seq=32",
        ],
        capsys,
    )
    assert code == 0, err
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    assert row["name"] == "fc" and row["macs"] == 4 * 32 * 16 * 8
    assert_bad_input(
        ["sim", "--chip", "bitfusion_edge", "--workload", str(path), "--out", str(tmp_path / "c2.csv"), "--batch", "4"],
        capsys,
        tmp_path,
        "--dim NAME=SIZE",
    )
    assert_bad_input(
        ["sim", "--chip", "bitfusion_edge", "--workload", str(path), "--out", str(tmp_path / "c2.csv"), "--dim", "seq"],
        capsys,
        tmp_path,
        "bad --dim",
    )
