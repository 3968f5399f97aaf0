"""Workload importers: SCALE-Sim topology CSV, ONNX, torch and lowbit's YAML format."""

from __future__ import annotations

import dataclasses
import inspect
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lowbit_core.errors import InputError
from sim.workload import (
    Layer,
    Workload,
    conv,
    gemm,
    load_workload,
    matmul,
    read_onnx,
    read_topology_csv,
    write_topology_csv,
)
from sim.workload.scalesim_csv import scalesim_out_size
from sim.workload.zoo import bert_base, mobilenet_v2, resnet18

_REPO = Path(__file__).resolve().parents[2]
_REF_CSV = _REPO / "tests/sim/data/scalesim_resnet18_ws32/Resnet18.csv"
_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


def test_import_pulls_in_neither_torch_nor_onnx_nor_pydantic():
    """The importers load torch and onnx inside the call, and reading a YAML file loads the pydantic schema."""
    code = (
        "import sys, sim.workload; "
        "loaded = {'torch', 'onnx', 'pydantic'} & set(sys.modules); assert not loaded, loaded; "
        "sim.workload.read_yaml_workload; assert 'pydantic' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_REPO)


# SCALE-Sim topology CSV ----------------------------------------------------------------------
def test_reference_topology_parses():
    wl = read_topology_csv(_REF_CSV)
    assert wl.name == "Resnet18" and len(wl) == 21
    assert all(layer.kind == "conv" and layer.pad == 0 for layer in wl.layers)
    conv1 = wl.layers[0]
    assert (conv1.name, conv1.in_h, conv1.k_h, conv1.in_c, conv1.out_c) == ("Conv1", 224, 7, 3, 64)
    assert conv1.stride == 2
    assert conv1.out_h == conv1.out_w == 110  # ceil((224 - 7) / 2) + 1, not PyTorch's 112 or floor's 109
    shortcut = next(layer for layer in wl.layers if layer.name == "Conv3_s")
    assert shortcut.out_h == 29  # ceil((56 - 1) / 2) + 1
    fc = wl.layers[-1]
    assert (fc.name, fc.M, fc.K, fc.N) == ("FC", 1, 512, 1000)


def test_reference_topology_round_trips(tmp_path):
    wl = read_topology_csv(_REF_CSV)
    out = tmp_path / "Resnet18.csv"
    write_topology_csv(wl, out)
    assert read_topology_csv(out) == wl
    assert out.read_text().split() == _REF_CSV.read_text().split()  # same text up to whitespace


@given(size=st.integers(1, 40), k=st.integers(1, 7), stride=st.integers(1, 4))
def test_scalesim_out_size_is_ceil_rule(size, k, stride):
    if k <= size:
        assert scalesim_out_size(size, k, stride) == math.ceil((size - k) / stride) + 1


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 30),
    k=st.integers(1, 7),
    stride=st.integers(1, 4),
    pad=st.integers(0, 3),
    cin=st.integers(1, 9),
    cout=st.integers(1, 9),
    tokens=st.integers(1, 9),
    batch=st.integers(1, 3),
)
def test_written_csv_keeps_the_gemm_view(size, k, stride, pad, cin, cout, tokens, batch):
    import tempfile

    if size + 2 * pad < k:
        return
    wl = Workload(
        "w", (conv("c", size, cin, cout, k, stride=stride, pad=pad), gemm("g", tokens, cin, cout, batch=batch))
    )
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.csv"
        write_topology_csv(wl, path)
        back = read_topology_csv(path)
    for a, b in zip(wl.layers, back.layers, strict=True):
        assert (a.name, a.M, a.K, a.N, a.macs) == (b.name, b.M, b.K, b.N, b.macs)


def test_zoo_csv_round_trip_keeps_gemm_view(tmp_path):
    wl = resnet18()
    write_topology_csv(wl, tmp_path / "r18.csv")
    back = read_topology_csv(tmp_path / "r18.csv")
    assert [(a.M, a.K, a.N) for a in wl.layers] == [(b.M, b.K, b.N) for b in back.layers]
    assert back.macs == wl.macs


@pytest.mark.parametrize(("wl", "bad"), [(mobilenet_v2(), "dwconv"), (bert_base(seq_len=8), "matmul")])
def test_write_rejects_kinds_scalesim_cannot_express(tmp_path, wl, bad):
    with pytest.raises(InputError, match=bad):
        write_topology_csv(wl, tmp_path / "x.csv")


def test_write_rejects_batched_conv(tmp_path):
    with pytest.raises(InputError, match="batch"):
        write_topology_csv(resnet18(batch=2), tmp_path / "x.csv")


def test_csv_optional_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,"
        "Stride Height,Stride Width,Batch Size,\nc,8,8,3,3,4,4,2,2,3,\n"
    )
    layer = read_topology_csv(path).layers[0]
    assert (layer.stride, layer.batch, layer.out_h) == (2, 3, 4)


_ROW = "c1,8,8,3,3,4,4,1,"


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("", ["empty"]),
        ("\n  \n", ["empty"]),
        (_HEADER + "\n", ["header only"]),
        ("hello world\nthis is not a topology\n", ["unknown column", "'hello world'"]),
        (_HEADER + "\nc1,8,-8,3,3,4,4,1,\n", [":2:", "IFMAP Width", "positive"]),
        (_HEADER + "\nc1,8,8,3,3,0,4,1,\n", [":2:", "Channels", "positive"]),
        (_HEADER + "\nc1,8,8,3,3,four,4,1,\n", [":2:", "Channels", "integer", "'four'"]),
        (_HEADER + "\nc1,8,8,3.5,3,4,4,1,\n", [":2:", "Filter Height", "integer"]),
        (_HEADER.replace(" Strides,", "") + "\nc1,8,8,3,3,4,4,\n", ["missing column", "Strides"]),
        (
            "Layer name, IFMAP Height, IFMAP Width, Filter Height, Channels, Num Filter, Strides,\n",
            ["missing column", "Filter Width"],
        ),
        (_HEADER + "\n" + _ROW + "\nc2,4,4,5,3,4,4,1,\n", [":3:", "Filter Height", "larger", "IFMAP Height"]),
        (_HEADER + "\n" + _ROW + "\nc2,8,8,3,3,4,\n", [":3:", "expected 8 fields", "got 6"]),
        (_HEADER + "\n" + _ROW + "\n" + _ROW + "\n", [":3:", "duplicate", "c1"]),
        (_HEADER + "\n,8,8,3,3,4,4,1,\n", [":2:", "empty"]),
        (_HEADER.replace("Strides", "Sparsity") + "\n", ["unknown column", "Sparsity"]),
        (
            _HEADER + "\nc1,8,8,3,3,4,100000000000000000000000000000,1,\n",
            [":2:", "Num Filter", "positive and at most 16777216"],
        ),
        (_HEADER + "\nc1,16777216,16777216,1,1,16777216,16777216,1,\n", [":2:", "layer 'c1' is too large", "2^48"]),
    ],
    ids=[
        "empty",
        "blank",
        "header-only",
        "garbage",
        "negative",
        "zero",
        "word",
        "float",
        "no-strides",
        "no-filter-width",
        "filter>ifmap",
        "short-row",
        "duplicate",
        "no-name",
        "unknown-column",
        "huge-side",
        "huge-product",
    ],
)
def test_bad_csv_corpus(tmp_path, content, needles):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        read_topology_csv(path)
    msg = str(err.value)
    assert "bad.csv" in msg and "\n" not in msg
    for needle in needles:
        assert needle in msg


def test_binary_csv(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(InputError, match="bin.csv"):
        read_topology_csv(path)


def test_missing_csv(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_topology_csv(tmp_path / "nope.csv")


# ONNX ----------------------------------------------------------------------------------------
def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m"):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def vi(n, shape):
        return helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        nodes,
        "g",
        [vi(n, s) for n, s in inputs],
        [vi(n, s) for n, s in outputs],
        [numpy_helper.from_array(np.zeros(s, dtype=np.float32), n) for n, s in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_conv_gemm_matmul(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1),
        helper.make_node("MatMul", ["t", "wt"], ["tq"], name="proj"),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
    ]
    path = _save(
        tmp_path,
        nodes,
        inputs=[("x", [2, 3, 16, 16]), ("t", [2, 7, 10]), ("q", [2, 4, 7, 5]), ("kt", [2, 4, 5, 7])],
        outputs=[("y", None), ("tq", None), ("s", None)],
        inits=[("w1", [8, 3, 3, 3]), ("w2", [8, 1, 3, 3]), ("wfc", [10, 512]), ("bfc", [10]), ("wt", [10, 6])],
    )
    wl = read_onnx(path)
    assert wl.name == "m"
    # Relu and Flatten are skipped
    assert [layer.name for layer in wl.layers] == ["conv1", "dw", "fc", "proj", "scores"]
    c1, dw, fc, proj, scores = wl.layers
    assert c1 == Layer("conv1", "conv", 16, 16, 3, 8, 3, 3, 2, 1, 8, 8, 2, 1)
    assert (dw.kind, dw.groups, dw.K, dw.N, dw.out_h, dw.batch) == ("dwconv", 8, 9, 1, 8, 2)
    assert fc == gemm("fc", 1, 512, 10, batch=2)
    assert proj == gemm("proj", 7, 10, 6, batch=2)
    assert scores == matmul("scores", 7, 5, 7, heads=8)
    assert not scores.has_weights


def test_onnx_one_d_conv_and_weight_through_transpose(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="c1d", strides=[2], pads=[1, 1]),
        helper.make_node("Transpose", ["wt"], ["wtt"], name="tr", perm=[1, 0]),
        helper.make_node("MatMul", ["a", "wtt"], ["b"], name="lin"),
    ]
    path = _save(
        tmp_path,
        nodes,
        inputs=[("x", [1, 4, 40]), ("a", [3, 5])],
        outputs=[("y", None), ("b", None)],
        inits=[("w", [6, 4, 5]), ("wt", [9, 5])],
    )
    c1d, lin = read_onnx(path).layers
    assert (c1d.in_h, c1d.in_w, c1d.k_h, c1d.k_w, c1d.out_h, c1d.out_w, c1d.stride) == (1, 40, 1, 5, 1, 19, 2)
    assert c1d.macs == 19 * 4 * 5 * 6
    assert lin == gemm("lin", 1, 5, 9, batch=3)  # transposed initializer is still a weight


def test_onnx_unknown_ops_are_listed(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="ok"),
        helper.make_node("FooOp", ["r"], ["f"], name="foo_1", domain="com.example"),
        helper.make_node("LSTM", ["f", "w", "r2"], ["y"], name="lstm_a", hidden_size=4),
        helper.make_node("Einsum", ["x", "x"], ["z"], name="ein", equation="ij,jk->ik"),
    ]
    path = _save(
        tmp_path,
        nodes,
        inputs=[("x", [4, 4])],
        outputs=[("y", None), ("z", None)],
        inits=[("w", [1, 16, 4]), ("r2", [1, 16, 4])],
    )
    with pytest.raises(InputError) as err:
        read_onnx(path)
    msg = str(err.value)
    for needle in ("com.example::FooOp", "foo_1", "LSTM", "lstm_a", "Einsum", "ein"):
        assert needle in msg
    assert "Relu" not in msg and "\n" not in msg


def test_onnx_symbolic_dims(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("MatMul", ["t", "w"], ["y"], name="proj")]
    path = _save(tmp_path, nodes, inputs=[("t", ["batch", "seq", 8])], outputs=[("y", None)], inits=[("w", [8, 4])])
    with pytest.raises(InputError) as err:
        read_onnx(path)
    assert "proj" in str(err.value) and "unknown" in str(err.value) and "seq" in str(err.value)
    wl = read_onnx(path, batch=3, dim_values={"seq": 11})
    assert wl.layers[0] == gemm("proj", 11, 8, 4, batch=3)


def test_onnx_bad_files(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(InputError, match="no such"):
        read_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf \x00\xff" * 10)
    with pytest.raises(InputError, match="junk.onnx"):
        read_onnx(junk)


def test_onnx_export_of_torch_model_matches_from_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from torch import nn

    from sim.workload import from_torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8 * 4 * 4, 10)
            self.q = nn.Linear(10, 12)

        def forward(self, x, t):
            y = self.fc(self.dw(torch.relu(self.conv(x))).flatten(1))
            q = self.q(t).view(2, 5, 3, 4).transpose(1, 2)
            return y, torch.softmax(q @ q.transpose(-1, -2), -1) @ q

    model = Net()
    args = (torch.randn(2, 3, 8, 8), torch.randn(2, 5, 10))
    path = tmp_path / "net.onnx"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(path), dynamo=False)
    except Exception as exc:  # the exporter may need packages that are not installed
        pytest.skip(f"torch.onnx.export unavailable: {exc}")
    from_onnx, traced = read_onnx(path), from_torch(model, args)

    def view(wl):
        return [
            (layer.kind, layer.groups, layer.batch, layer.M, layer.K, layer.N, layer.out_h, layer.pad)
            for layer in wl.layers
        ]

    assert view(from_onnx) == view(traced)
    assert len(from_onnx) == 6
    # the names too: the torch module paths the exporter encoded, so cost tables of either import join quant's
    assert [layer.name for layer in from_onnx.layers] == [layer.name for layer in traced.layers]


@pytest.mark.parametrize(
    ("node", "op", "path"),
    [
        ("/0/conv1/Conv", "Conv", "0.conv1"),
        ("/layer1/layer1.0/conv1/Conv", "Conv", "layer1.0.conv1"),
        ("/features/features.0/features.0.0/Conv", "Conv", "features.0.0"),
        ("/fc/Gemm", "Gemm", "fc"),
        ("/layer1.0/MatMul_1", "MatMul", "layer1.0"),
        ("/MatMul", "MatMul", ""),
        ("conv_7", "Conv", None),
        ("/0/conv1/Relu", "Conv", None),
        ("/a//Conv", "Conv", None),
    ],
)
def test_torch_module_path_of_an_onnx_node(node: str, op: str, path: str | None) -> None:
    from sim.workload.onnx_import import torch_module_path

    assert torch_module_path(node, op) == path


# torch ---------------------------------------------------------------------------------------
def test_torch_small_cnn_by_hand():
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(32, 10),
    )
    model.train()
    wl = from_torch(model, torch.randn(4, 3, 32, 32), name="tiny")
    assert model.training  # mode restored
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert wl.name == "tiny" and [layer.name for layer in wl.layers] == ["0", "4", "9"]
    c0, c4, fc = wl.layers
    assert c0 == Layer("0", "conv", 32, 32, 3, 16, 3, 3, 1, 1, 32, 32, 4, 1)
    assert c0.macs == 4 * 32 * 32 * 16 * 3 * 3 * 3
    assert (c4.in_h, c4.out_h, c4.stride, c4.pad) == (16, 7, 2, 0)
    assert c4.macs == 4 * 7 * 7 * 32 * 16 * 9
    assert fc == gemm("9", 1, 32, 10, batch=4)
    assert wl.macs == 4 * (32 * 32 * 16 * 27 + 49 * 32 * 144 + 320)


def test_torch_conv1d_and_linear_on_tokens():
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(4, 6, 5, stride=2, padding=2)
            self.dw = nn.Conv1d(6, 6, 3, groups=6)
            self.lin = nn.Linear(6, 3)

        def forward(self, x):
            y = self.dw(self.c(x))  # [2, 6, 8]
            return self.lin(y.transpose(1, 2))  # [2, 8, 6] -> tokens 8, batch 2

    c, dw, lin = from_torch(M(), torch.randn(2, 4, 20)).layers
    assert (c.in_h, c.in_w, c.k_h, c.k_w, c.out_h, c.out_w, c.stride, c.batch) == (1, 20, 1, 5, 1, 10, 2, 2)
    assert c.macs == 2 * 10 * 4 * 5 * 6
    assert (dw.kind, dw.groups, dw.out_w, dw.macs) == ("dwconv", 6, 8, 2 * 8 * 3 * 6)
    assert lin == gemm("lin", 8, 6, 3, batch=2)


def test_torch_sdpa_equals_explicit_attention():
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    from sim.workload import from_torch

    class Attn(nn.Module):
        def __init__(self, fused):
            super().__init__()
            self.fused = fused

        def forward(self, q, k, v):
            if self.fused:
                return F.scaled_dot_product_attention(q, k, v)
            return torch.softmax(q @ k.transpose(-1, -2), -1) @ v

    args = (torch.randn(2, 3, 5, 4), torch.randn(2, 3, 6, 4), torch.randn(2, 3, 6, 7))
    fused, explicit = from_torch(Attn(True), args), from_torch(Attn(False), args)
    assert [layer.name for layer in fused.layers] == ["sdpa.scores", "sdpa.context"]

    def view(wl):
        return [(a.M, a.K, a.N, a.groups) for a in wl.layers]

    assert view(fused) == view(explicit)
    assert fused.layers[0] == matmul("sdpa.scores", 5, 4, 6, heads=6)


@pytest.mark.parametrize(
    ("make", "shape", "needle"),
    [
        (lambda nn: nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU()), (1, 1, 5, 5, 5), "Conv3d"),
        (lambda nn: nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.ReLU()), (1, 2, 5, 5), "ConvTranspose2d"),
        (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 4)), (2, 3), "LSTM"),
    ],
)
def test_torch_unsupported_modules_raise(make, shape, needle):
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    with pytest.raises(InputError) as err:
        from_torch(make(nn), torch.randn(*shape))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_torch_functional_macs_raise_and_ignore_option():
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    class Scale(nn.Module):  # MAC-free but owns a parameter
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.gain

    class Mix(nn.Module):
        def forward(self, x):
            return torch.einsum("bi,bj->bij", x, x).sum(-1)

    with pytest.raises(InputError, match="Scale"):
        from_torch(nn.Sequential(nn.Linear(4, 4), Scale()), torch.randn(2, 4))
    assert len(from_torch(nn.Sequential(nn.Linear(4, 4), Scale()), torch.randn(2, 4), ignore=[Scale])) == 1
    with pytest.raises(InputError, match="einsum"):
        from_torch(nn.Sequential(nn.Linear(4, 4), Mix()), torch.randn(2, 4))


def test_torch_bad_arguments():
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    with pytest.raises(InputError, match="nn.Module"):
        from_torch(lambda x: x, torch.randn(1))
    with pytest.raises(InputError, match="forward failed"):
        from_torch(nn.Linear(3, 3), torch.randn(2, 5))
    with pytest.raises(InputError, match="no .*layers"):
        from_torch(nn.ReLU(), torch.randn(2, 5))


# lowbit YAML workloads and load_workload -----------------------------------------------------
_GOOD_YAML = """\
name: tiny
description: a small test network
layers:
  - {type: conv, name: c1, in_hw: 32, in_c: 3, out_c: 16, k: 3, stride: 2, pad: 1}
  - {type: conv, name: dw, in_hw: [16, 16], in_c: 16, out_c: 16, k: 3, pad: 1, groups: 16}
  - {type: gemm, name: fc, tokens: 1, in_features: 4096, out_features: 10}
  - {type: matmul, name: att, rows: 8, inner: 4, cols: 8, heads: 2}
  - {name: raw, kind: conv, in_h: 58, in_w: 58, in_c: 4, out_c: 8, k_h: 3, k_w: 3, out_h: 56, out_w: 56}
"""


def test_yaml_workload(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(_GOOD_YAML)
    wl = load_workload(path)
    assert wl.name == "tiny"
    assert wl.layers == (
        conv("c1", 32, 3, 16, 3, stride=2, pad=1),
        conv("dw", (16, 16), 16, 16, 3, pad=1, groups=16),
        gemm("fc", 1, 4096, 10),
        matmul("att", 8, 4, 8, heads=2),
        Layer("raw", "conv", 58, 58, 4, 8, 3, 3, out_h=56, out_w=56),
    )
    assert wl.layers[1].kind == "dwconv"
    blocked = tmp_path / "blocked.yaml"
    blocked.write_text(
        "layers:\n  - {type: conv, name: c, in_hw: 8, in_c: 5, out_c: 4, k: 3, pad: 1, in_blocks: 2}\n"
        "  - {name: g, kind: gemm, in_h: 1, in_w: 2, in_c: 7, out_c: 3, out_w: 2, in_blocks: 3}\n"
    )
    c, g = load_workload(blocked).layers
    assert (c.in_blocks, c.block_k, g.in_blocks, g.block_k) == (2, (27, 18), 3, (3, 2, 2))
    nameless = tmp_path / "nameless.yml"
    nameless.write_text("layers:\n  - {type: gemm, name: g, tokens: 2, in_features: 3, out_features: 4}\n")
    assert load_workload(str(nameless)).name == "nameless"


_L = "layers:\n  - "


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("- just\n- a list\n", ["mapping"]),
        ("name: x\n", ["bad.yaml: layers: missing field"]),
        ("name: x\nlayers: []\n", ["bad.yaml: layers: must be a non-empty list of layers, got []"]),
        ("name: x\nlayerz: []\n", ["bad.yaml: layerz: unknown field", "(allowed: name, layers, description)"]),
        (
            _L + "{type: conv2d, name: a}\n",
            ["layers[0] (a): type: must be one of 'conv', 'gemm' or 'matmul', got 'conv2d'"],
        ),
        (_L + "{type: gemm, name: a, tokens: 1, in_features: 3}\n", ["layers[0]", "out_features"]),
        (
            _L + "{type: gemm, name: a, tokens: 1, in_features: 3, out_features: 2, bias: 1}\n",
            ["unknown field", "bias", "allowed"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: 1.5, in_features: 3, out_features: 2}\n",
            ["layers[0] (a): tokens: must be an integer in [1, 16777216], got 1.5"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: -1, in_features: 3, out_features: 2}\n",
            ["layers[0] (a): tokens: must be an integer in [1, 16777216], got -1"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: true, in_features: 3, out_features: 2}\n",
            ["layers[0] (a): tokens: must be an integer in [1, 16777216], got True"],
        ),
        (
            _L + "{type: conv, name: a, in_hw: [1, 2, 3], in_c: 3, out_c: 2, k: 1}\n",
            ["in_hw: must be an integer in [1, 16777216] or a list of two such integers, got [1, 2, 3]"],
        ),
        (_L + "{type: conv, name: a, in_hw: 4, in_c: 3, out_c: 2, k: 9}\n", ["larger"]),
        (_L + "{type: gemm, tokens: 1, in_features: 3, out_features: 2}\n", ["layers[0]: name: missing field"]),
        (
            _L + "{name: a, kind: fc, in_h: 1, in_w: 1, in_c: 1, out_c: 1}\n",
            ["layers[0] (a): kind: must be one of 'conv', 'dwconv', 'gemm' or 'matmul', got 'fc'"],
        ),
        (_L + "{name: a, kind: conv, in_h: 1, in_w: 1, in_c: 1}\n", ["missing", "out_c"]),
        (_L + "{name: a, kind: conv, in_h: 0, in_w: 1, in_c: 1, out_c: 1}\n", ["in_h"]),
        (_L + "{name: a, kind: conv, type: conv, in_h: 1}\n", ["'type'", "'kind'"]),
        (
            _L + "{type: gemm, name: a, tokens: 1, in_features: 3, out_features: 2}\n"
            "  - {type: gemm, name: a, tokens: 1, in_features: 3, out_features: 2}\n",
            ["layers[1]", "duplicate"],
        ),
        ("layers:\n  - {type: gemm\n", ["malformed YAML", "line"]),
        (_L + "7\n", ["layers[0]", "mapping"]),
        (
            _L + "{type: conv, name: a, in_hw: 4, in_c: 3, out_c: 2, k: 1, in_blocks: 4}\n",
            ["in_blocks=4", "3 input channels"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: 1, in_features: 3, out_features: 2, in_blocks: 0}\n",
            ["in_blocks: must be an integer in [1, 16777216], got 0"],
        ),
        (
            _L + "{name: a, kind: gemm, in_h: 1, in_w: 1, in_c: 4, out_c: 1, in_blocks: 2.5}\n",
            ["in_blocks: must be an integer in [1, 16777216], got 2.5"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: 1, in_features: 1000000000000000000000000000000, out_features: 2}\n",
            ["layers[0] (a): in_features: must be an integer in [1, 16777216], got 1000000000000000000000000000000"],
        ),
        (
            _L + "{type: conv, name: a, in_hw: [4, 16777217], in_c: 3, out_c: 2, k: 1}\n",
            ["in_hw: must be an integer in [1, 16777216] or a list of two such integers, got [4, 16777217]"],
        ),
        (
            _L + "{type: conv, name: a, in_hw: 4, in_c: 3, out_c: 2, k: 1, pad: 16777217}\n",
            ["pad: must be an integer in [0, 16777216] or a list of two such integers, got 16777217"],
        ),
        (
            _L + "{name: a, kind: gemm, in_h: 1, in_w: 1, in_c: 16777217, out_c: 1}\n",
            ["layers[0] (a): in_c: must be an integer in [1, 16777216], got 16777217"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: 16777216, in_features: 16777216, out_features: 2}\n",
            ["layers[0]", "too large", "MACs exceed the limit of 2^48"],
        ),
        (
            _L + "{type: matmul, name: a, rows: 4, inner: 16777216, cols: 4, heads: 2}\n",
            ["in_c must be an integer in 1..16777216"],
        ),
        (
            _L + "{type: gemm, name: a, tokens: 1, in_features: 3, out_features: 2, tokens: 4}\n",
            ["line 2: duplicate key 'tokens'"],
        ),
    ],
)
def test_yaml_workload_errors(tmp_path, content, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        load_workload(path)
    msg = str(err.value)
    assert "bad.yaml" in msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_yaml_schema_follows_the_builders_and_layer():
    """Each shorthand form takes its builder's arguments, with the builder's defaults (an ``int | tuple[int, int]``
    argument also as ``[h, w]``); the explicit form takes Layer's fields, with Layer's defaults."""
    from sim.workload import layer as builders
    from sim.workload.yaml_format import SHORTHAND, ExplicitLayer

    for kind, model in SHORTHAND.items():
        params = inspect.signature(getattr(builders, kind)).parameters
        assert list(model.model_fields) == ["type", *params]
        required = {p: ("x" if p == "name" else 1) for p, v in params.items() if v.default is inspect.Parameter.empty}
        for name, param in params.items():
            info = model.model_fields[name]
            assert info.is_required() == (name in required), (kind, name)
            assert info.is_required() or info.default == param.default, (kind, name)
            if name != "name":
                try:
                    model.model_validate({"type": kind, **required, name: [1, 1]})
                    takes_pair = True
                except ValidationError:
                    takes_pair = False
                assert takes_pair == ("tuple" in str(param.annotation)), (kind, name)
    fields = dataclasses.fields(Layer)
    assert list(ExplicitLayer.model_fields) == [f.name for f in fields]
    for f in fields:
        info = ExplicitLayer.model_fields[f.name]
        assert info.is_required() == (f.default is dataclasses.MISSING), f.name
        assert info.is_required() or info.default == f.default, f.name


def test_load_workload_paths(tmp_path):
    assert len(load_workload(_REF_CSV)) == 21
    assert len(load_workload(str(_REF_CSV))) == 21
    with pytest.raises(InputError, match="no such"):
        load_workload(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="no such"):
        load_workload(str(tmp_path / "missing.onnx"))
    other = tmp_path / "net.txt"
    other.write_text("x")
    with pytest.raises(InputError, match=r"\.csv"):
        load_workload(other)
    with pytest.raises(InputError, match="batch"):
        load_workload(_REF_CSV, batch=2)


def test_load_workload_onnx(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("MatMul", ["t", "w"], ["y"], name="proj")]
    path = _save(tmp_path, nodes, inputs=[("t", ["n", 8])], outputs=[("y", None)], inits=[("w", [8, 4])])
    assert load_workload(path, batch=5).layers[0] == gemm("proj", 1, 8, 4, batch=5)
    with pytest.raises(InputError, match="seq_len"):
        load_workload(path, seq_len=3)


def test_yaml_example_in_docs_is_valid(tmp_path):
    import sim.workload as pkg

    doc = pkg.__doc__ or ""
    items = [line.strip()[2:] for line in doc.splitlines() if line.strip().startswith("- {")]
    path = tmp_path / "doc.yaml"
    path.write_text("layers:\n" + textwrap.indent("\n".join(f"- {item}" for item in items), "  ") + "\n")
    assert len(load_workload(path)) == len(items) == 4


def test_torch_consumers_follow_the_dataflow():
    """A residual block with a downsample branch: each layer's consumer is the first layer that reads its output
    (through ReLU, BN, the add and pooling), not the next one in execution order; the cost table carries it."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim import simulate
    from sim.workload import from_torch

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.down = nn.Conv2d(4, 8, 1, stride=2)
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            return torch.relu(self.bn(self.conv2(torch.relu(self.conv1(x)))) + self.down(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.block = Block()
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            y = self.block(torch.relu(self.stem(x)))
            return self.head(y.mean((2, 3)))

    wl = from_torch(Net(), torch.randn(1, 1, 8, 8))
    names = [layer.name for layer in wl.layers]
    assert names == ["stem", "block.conv1", "block.conv2", "block.down", "head"]
    # stem -> conv1 (and down); conv1 -> conv2; conv2 -> head (via the add), not down; down -> head; head: none
    assert wl.consumers == (1, 2, 4, 4, -1)
    frame = simulate("bitfusion_edge", wl, "w8a8,w4a4", coupled=True)
    per_layer = frame.groupby("layer").consumer.first().tolist()
    assert per_layer == [1, 2, 4, 4, -1]
