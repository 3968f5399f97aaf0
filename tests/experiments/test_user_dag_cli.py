"""Your own ResNet and MobileNetV2-style net, defined in a file (tests/user_nets.py, written by the tests, not
imported from lowbit), through the whole loop from the CLI with no hand edits between steps: sensitivity and sim
costs from the same model spec, solve joins them, quantize applies the solved assignment (GPFQ) and PTQ-SL with
n_H > 1, and rtl verify runs a residual-block conv, the downsample branch, a depthwise conv and the classifier
bit-exact with sim's cycles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import user_nets
from cli_run import assert_bad_input, run_cli

from quant.integer import load_export

PAIRS = "w8a8,w4a8,w4a4"


def _run(argv: list[str]) -> tuple[int, str]:
    """``lowbit argv`` in-process outside a test function (no capsys): (exit status, stderr)."""
    import contextlib
    import io

    from experiments.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Runs the CLI steps for both nets once; returns their output directories."""
    from quant.data import load_digits_split

    root = tmp_path_factory.mktemp("user-dag")
    (root / "nets.py").write_text(Path(user_nets.__file__).read_text())
    split = load_digits_split(0)
    np.savez(
        root / "digits.npz",
        calib_x=split.calib_x.numpy()[:64],
        test_x=split.test_x.numpy()[:64],
        test_y=split.test_y.numpy()[:64],
    )
    out: dict[str, Path] = {"root": root}
    # latency budgets between each net's all-w4a4 and all-w8a8 totals (the depthwise layers of the MobileNet gain
    # little from fewer bits on bitfusion_edge, so its feasible range is narrow)
    for net, budget in (("resnet", "70%"), ("mobilenet", "98%")):
        spec, d = f"{root / 'nets.py'}:{net}", root / net
        data = ["--data", str(root / "digits.npz")]
        steps = [
            [
                "sensitivity",
                "--model",
                spec,
                "--method",
                "sqnr",
                "--pairs",
                PAIRS,
                "--samples",
                "32",
                "--out",
                str(d / "sens.csv"),
                *data,
            ],
            [
                "sim",
                "--chip",
                "bitfusion_edge",
                "--workload",
                spec,
                "--pairs",
                PAIRS,
                "--out",
                str(d / "costs.csv"),
                *data,
            ],
            [
                "solve",
                "--costs",
                str(d / "costs.csv"),
                "--sensitivity",
                str(d / "sens.csv"),
                "--budget",
                f"latency_us={budget}",
                "--out",
                str(d / "assign"),
            ],
            [
                "quantize",
                "--model",
                spec,
                "--method",
                "gpfq",
                "--assignment",
                str(d / "assign"),
                "--out",
                str(d / "gpfq"),
                *data,
            ],
            [
                "quantize",
                "--model",
                spec,
                "--method",
                "ptq-sl",
                "--bits",
                "w4a8",
                "--granularity",
                "4x2",
                "--out",
                str(d / "ptqsl"),
                *data,
            ],
        ]
        d.mkdir()
        for argv in steps:
            code, err = _run(argv)
            assert code == 0, (net, argv[0], err)
        out[net] = d
    return out


@pytest.mark.parametrize("net", ["resnet", "mobilenet"])
def test_the_loop_joins_without_edits(loop: dict[str, Path], net: str) -> None:
    d = loop[net]
    costs, sens = pd.read_csv(d / "costs.csv", dtype={"name": str}), pd.read_csv(d / "sens.csv", dtype={"name": str})
    assert set(costs["name"]) == set(sens["name"])  # one name per layer across sim and quant
    assignment = pd.read_csv(d / "assign" / "assignment.csv", dtype={"name": str})
    gpfq = load_export(d / "gpfq")
    # the solved pairs are the export's bits, layer by layer
    assert {r.name: (r.w_bits, r.a_bits) for r in assignment.itertuples()} == {
        lay.name: (lay.w_bits, lay.in_bits) for lay in gpfq.layers
    }
    metrics = json.loads((d / "gpfq" / "metrics.json").read_text())
    assert metrics["integer_agreement"] >= 95.0  # 64 samples: at most 3 disagreements
    ptqsl = load_export(d / "ptqsl")
    assert max(lay.n_h for lay in ptqsl.layers) == 2 and ptqsl.graph is not None
    if net == "resnet":  # the downsample branch and the block outputs read the right producers
        consumers = dict(zip(costs["name"], costs["consumer"]))
        assert consumers["layer2.downsample.0"] == consumers["layer2.conv2"]


def test_an_assignment_for_another_model_is_refused(loop: dict[str, Path], capsys) -> None:
    root = loop["root"]
    assert_bad_input(
        [
            "quantize",
            "--model",
            f"{root / 'nets.py'}:mobilenet",
            "--method",
            "rtn",
            "--assignment",
            str(loop["resnet"] / "assign"),
            "--out",
            str(root / "wrong"),
            "--data",
            str(root / "digits.npz"),
        ],
        capsys,
        root,
        "assignment",
    )
    assert_bad_input(
        [
            "quantize",
            "--model",
            "digits-cnn",
            "--method",
            "rtn",
            "--bits",
            "w4a8",
            "--assignment",
            str(loop["resnet"] / "assign"),
            "--out",
            str(root / "wrong"),
        ],
        capsys,
        root,
        "exactly one",
    )


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("net", "layer"),
    [
        ("resnet", "layer1.conv2"),
        ("resnet", "layer2.downsample.0"),
        ("resnet", "fc"),
        ("mobilenet", "blocks.1.conv.3"),
        ("mobilenet", "classifier"),
    ],
)
def test_rtl_verify_graph_layers(verilator: str, loop: dict[str, Path], net: str, layer: str, capsys) -> None:
    code, stdout, err = run_cli(
        [
            "rtl",
            "verify",
            "--export",
            str(loop[net] / "gpfq"),
            "--layer",
            layer,
            "--images",
            "2",
            "--gaps",
            "0.2",
            "--data",
            str(loop["root"] / "digits.npz"),
        ],
        capsys,
    )
    assert code == 0, err
    line = json.loads(stdout.strip().splitlines()[-1])
    assert line["mismatches"] == 0 and line["measured_cycles"] == line["predicted_cycles"]


def test_a_users_transformer_end_to_end(verilator: str, tmp_path: Path, capsys) -> None:
    """A user's transformer: attention products get sensitivity rows under sim's names, so solve takes the two
    tables as written; quantize applies the assignment and exports the integer graph (products, LayerNorm,
    softmax, GELU); rtl verify runs an attention product and a projection bit-exact with sim's cycles."""
    from quant.data import load_digits_split

    (tmp_path / "nets.py").write_text(Path(user_nets.__file__).read_text())
    split = load_digits_split(0)
    np.savez(
        tmp_path / "digits.npz",
        calib_x=split.calib_x.numpy()[:64],
        test_x=split.test_x.numpy()[:64],
        test_y=split.test_y.numpy()[:64],
    )
    spec, data = f"{tmp_path / 'nets.py'}:transformer", ["--data", str(tmp_path / "digits.npz")]
    steps = [
        [
            "sensitivity",
            "--model",
            spec,
            "--method",
            "sqnr",
            "--pairs",
            PAIRS,
            "--samples",
            "32",
            "--out",
            str(tmp_path / "sens.csv"),
            *data,
        ],
        [
            "sim",
            "--chip",
            "bitfusion_edge",
            "--workload",
            spec,
            "--pairs",
            PAIRS,
            "--out",
            str(tmp_path / "costs.csv"),
            *data,
        ],
        [
            "solve",
            "--costs",
            str(tmp_path / "costs.csv"),
            "--sensitivity",
            str(tmp_path / "sens.csv"),
            "--budget",
            "latency_us=90%",
            "--out",
            str(tmp_path / "assign"),
        ],
        [
            "quantize",
            "--model",
            spec,
            "--method",
            "gpfq",
            "--assignment",
            str(tmp_path / "assign"),
            "--out",
            str(tmp_path / "q"),
            *data,
        ],
    ]
    for argv in steps:
        code, err = _run(argv)
        assert code == 0, (argv[0], err)
    assignment = pd.read_csv(tmp_path / "assign" / "assignment.csv", dtype={"name": str})
    assert {"blocks.0.attention.matmul", "blocks.0.attention.matmul#2"} <= set(assignment["name"])
    metrics = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert metrics["integer_agreement"] >= 95
    for layer in ("blocks.0.attention.matmul#2", "blocks.1.attention.query"):
        code, stdout, err = run_cli(
            [
                "rtl",
                "verify",
                "--export",
                str(tmp_path / "q"),
                "--layer",
                layer,
                "--images",
                "1",
                "--array",
                "4x4",
                "--pe",
                "bitfusion",
                *data,
            ],
            capsys,
        )
        assert code == 0, err
        check = json.loads(stdout.strip().splitlines()[-1])
        assert check["mismatches"] == 0 and check["measured_cycles"] == check["predicted_cycles"] > 0, check


@pytest.mark.parametrize("labelled", [True, False])
def test_pareto_measures_every_point_on_the_users_model(loop: dict[str, Path], tmp_path: Path, labelled: bool) -> None:
    root, d = loop["root"], loop["resnet"]
    data = root / "digits.npz"
    if not labelled:  # inputs only: a point's quality is its top-1 agreement with the float model
        data = tmp_path / "unlabelled.npz"
        with np.load(root / "digits.npz") as z:
            np.savez(data, calib_x=z["calib_x"])
    out = tmp_path / "pareto"
    code, err = _run(
        [
            "pareto",
            "--costs",
            str(d / "costs.csv"),
            "--sensitivity",
            str(d / "sens.csv"),
            "--points",
            "4",
            "--model",
            f"{root / 'nets.py'}:resnet",
            "--data",
            str(data),
            "--out",
            str(out),
        ]
    )
    assert code == 0, err
    points = pd.read_csv(out / "points.csv")
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["metric"] == ("accuracy" if labelled else "agreement")
    assert points.accuracy.between(0, 100).all() and set(points.kind) == {"ilp", "greedy", "uniform"}
    if not labelled:
        assert (points.float_accuracy == 100).all()
        w8a8 = points[(points.kind == "uniform")].sort_values("latency_us").iloc[-1]
        assert w8a8.accuracy >= 90  # 8-bit everywhere tracks the float model's top-1


def test_pareto_refuses_data_without_a_model(loop: dict[str, Path], tmp_path: Path, capsys) -> None:
    d = loop["resnet"]
    assert_bad_input(
        [
            "pareto",
            "--costs",
            str(d / "costs.csv"),
            "--sensitivity",
            str(d / "sens.csv"),
            "--data",
            str(loop["root"] / "digits.npz"),
            "--out",
            str(tmp_path / "p"),
        ],
        capsys,
        tmp_path,
        "--data and --weights need --model",
    )


def test_train_fine_tunes_a_users_model(tmp_path: Path, capsys) -> None:
    """lowbit train on your own model and data: QAT from the user's (random) weights learns far above chance, and
    the integer export agrees with fake-quant; data without training labels is refused before any work."""
    from quant.data import load_digits_split

    (tmp_path / "nets.py").write_text(Path(user_nets.__file__).read_text())
    split = load_digits_split(0)
    full = {
        "calib_x": split.calib_x.numpy()[:64],
        "train_x": split.train_x.numpy(),
        "train_y": split.train_y.numpy(),
        "test_x": split.test_x.numpy(),
        "test_y": split.test_y.numpy(),
    }
    np.savez(tmp_path / "train.npz", **full)
    spec, out = f"{tmp_path / 'nets.py'}:resnet", tmp_path / "trained"
    code, _, err = run_cli(
        [
            "train",
            "--model",
            spec,
            "--method",
            "qat",
            "--bits",
            "w8a8",
            "--epochs",
            "6",
            "--lr",
            "0.003",
            "--data",
            str(tmp_path / "train.npz"),
            "--out",
            str(out),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    # chance is ~10 % on 397 test digits; 30 % is far outside what an untrained net reaches
    assert metrics["fakequant_accuracy"] >= 30 and metrics["integer_agreement"] >= 99
    np.savez(tmp_path / "no_train.npz", **{k: v for k, v in full.items() if not k.startswith("train")})
    assert_bad_input(
        [
            "train",
            "--model",
            spec,
            "--method",
            "qat",
            "--bits",
            "w8a8",
            "--data",
            str(tmp_path / "no_train.npz"),
            "--out",
            str(tmp_path / "t2"),
        ],
        capsys,
        tmp_path,
        "training needs train_x and train_y",
    )
    np.savez(tmp_path / "bad_labels.npz", **{**full, "train_y": full["train_y"] + 10})
    assert_bad_input(
        [
            "train",
            "--model",
            spec,
            "--method",
            "qat",
            "--bits",
            "w8a8",
            "--data",
            str(tmp_path / "bad_labels.npz"),
            "--out",
            str(tmp_path / "t3"),
        ],
        capsys,
        tmp_path,
        "train_y has label",
    )
