"""The workload zoo: published MAC totals, layer counts, names, and equality with torch traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowbit_core.errors import InputError
from sim.workload import ZOO, load_workload, read_topology_csv, zoo_names
from sim.workload.zoo import bert_base, minilm_l6, mobilenet_v2, resnet18, resnet50, vgg16

_REPO = Path(__file__).resolve().parents[2]
_SCALESIM_RESNET18 = _REPO / "tests/sim/data/scalesim_resnet18_ws32/Resnet18.csv"


# published totals ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("builder", "gmacs", "rel", "n_layers"),
    [
        (resnet18, 1.814, 0.01, 21),
        (resnet50, 4.09, 0.02, 54),  # torchvision: 4.09 GFLOPS (MACs), fc included
        (vgg16, 15.47, 0.01, 16),
        (mobilenet_v2, 0.30, 0.03, 53),
    ],
)
def test_cnn_macs_and_layer_counts(builder, gmacs, rel, n_layers):
    wl = builder()
    assert wl.macs / 1e9 == pytest.approx(gmacs, rel=rel)
    assert len(wl) == n_layers


def test_cnn_weight_counts_match_published_parameters():
    # torchvision parameter counts include biases and BN; conv/fc weights alone are a bit lower
    def weights(wl):
        return sum(layer.weight_elems for layer in wl.layers)

    assert weights(resnet18()) == pytest.approx(11.69e6, rel=0.01)
    assert weights(resnet50()) == pytest.approx(25.56e6, rel=0.01)
    assert weights(vgg16()) == pytest.approx(138.36e6, rel=0.01)
    assert weights(mobilenet_v2()) == pytest.approx(3.50e6, rel=0.02)


def test_bert_base_gemm_weights_and_structure():
    wl = bert_base()
    gemms = [layer for layer in wl.layers if layer.kind == "gemm"]
    assert sum(layer.weight_elems for layer in gemms) == 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert len(wl) == 12 * 8
    mm = [layer for layer in wl.layers if layer.kind == "matmul"]
    assert len(mm) == 24 and all(layer.groups == 12 and not layer.has_weights for layer in mm)
    scores = next(layer for layer in wl.layers if layer.name == "enc0.attn.scores")
    assert (scores.M, scores.K, scores.N) == (128, 64, 128)
    context = next(layer for layer in wl.layers if layer.name == "enc0.attn.context")
    assert (context.M, context.K, context.N) == (128, 128, 64)
    assert [layer.name for layer in wl.layers[:8]] == [
        "enc0.attn.q",
        "enc0.attn.k",
        "enc0.attn.v",
        "enc0.attn.scores",
        "enc0.attn.context",
        "enc0.attn.out",
        "enc0.ffn.up",
        "enc0.ffn.down",
    ]


def test_minilm_structure():
    wl = minilm_l6()
    assert len(wl) == 6 * 8
    gemms = [layer for layer in wl.layers if layer.kind == "gemm"]
    assert sum(layer.weight_elems for layer in gemms) == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    scores = next(layer for layer in wl.layers if layer.name == "enc5.attn.scores")
    assert (scores.groups, scores.M, scores.K, scores.N) == (12, 128, 32, 128)


@pytest.mark.parametrize("builder", [bert_base, minilm_l6])
def test_sequence_length_scales_gemms_linearly_and_attention_quadratically(builder):
    short, long = builder(seq_len=64), builder(seq_len=256)
    for a, b in zip(short.layers, long.layers, strict=True):
        assert a.name == b.name
        assert b.macs == (16 if a.kind == "matmul" else 4) * a.macs


@pytest.mark.parametrize("name", list(ZOO))
def test_batch_scales_macs_linearly(name):
    assert ZOO[name](batch=3).macs == 3 * ZOO[name]().macs


@pytest.mark.parametrize("name", list(ZOO))
def test_names_unique_and_kinds_valid(name):
    wl = ZOO[name]()
    names = [layer.name for layer in wl.layers]
    assert len(set(names)) == len(names)
    assert {layer.kind for layer in wl.layers} <= {"conv", "dwconv", "gemm", "matmul"}


def test_resnet_names_and_shapes():
    wl = resnet18()
    by_name = {layer.name: layer for layer in wl.layers}
    assert by_name["conv1"].out_h == 112
    assert by_name["layer1.0.conv1"].in_h == 56  # maxpool between conv1 and layer1
    assert [n for n in by_name if "downsample" in n] == [
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
        "layer4.0.downsample.0",
    ]
    assert by_name["layer4.1.conv2"].out_h == 7
    assert by_name["fc"].kind == "gemm" and (by_name["fc"].K, by_name["fc"].N) == (512, 1000)
    r50 = {layer.name: layer for layer in resnet50().layers}
    assert r50["layer2.0.conv2"].stride == 2 and r50["layer2.0.conv1"].stride == 1  # v1.5
    assert sum("downsample" in n for n in r50) == 4


def test_mobilenet_depthwise_layers():
    wl = mobilenet_v2()
    dw = [layer for layer in wl.layers if layer.kind == "dwconv"]
    assert len(dw) == 17
    for layer in dw:
        assert layer.groups == layer.in_c == layer.out_c and layer.K == 9 and layer.N == 1
    assert all(layer.groups == 1 for layer in wl.layers if layer.kind != "dwconv")
    first, last = wl.layers[0], wl.layers[-2]
    assert (first.k_h, first.stride, first.out_c, first.out_h) == (3, 2, 32, 112)
    assert (last.in_c, last.out_c, last.k_h) == (320, 1280, 1)
    assert (wl.layers[-1].K, wl.layers[-1].N) == (1280, 1000)


def test_vgg16_shapes():
    wl = vgg16()
    convs = [layer for layer in wl.layers if layer.kind == "conv"]
    assert len(convs) == 13 and all(layer.k_h == 3 and layer.out_h == layer.in_h for layer in convs)
    assert [(layer.K, layer.N) for layer in wl.layers[-3:]] == [(25088, 4096), (4096, 4096), (4096, 1000)]


def test_resnet18_matches_scalesim_reference_topology_in_k_and_n():
    # the reference CSV drops padding (so M differs) but lists the same convs in the same order
    ref = read_topology_csv(_SCALESIM_RESNET18)
    zoo = resnet18()
    assert [(r.K, r.N, r.stride) for r in ref.layers] == [(z.K, z.N, z.stride) for z in zoo.layers]


def test_bad_builder_arguments():
    with pytest.raises(InputError, match="seq_len"):
        bert_base(seq_len=0)
    with pytest.raises(InputError, match="batch"):
        resnet18(batch=-1)


# registry and lookup -------------------------------------------------------------------------
def test_zoo_names():
    assert zoo_names() == ["resnet18", "resnet50", "mobilenet_v2", "vgg16", "bert_base", "minilm_l6"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resnet18", "resnet18"),
        ("ResNet-18", "resnet18"),
        ("resnet_18", "resnet18"),
        ("RESNET50", "resnet50"),
        ("MobileNet-V2", "mobilenet_v2"),
        ("mobilenet-v2", "mobilenet_v2"),
        ("VGG-16", "vgg16"),
        ("bert-base", "bert_base"),
        ("BERT_base", "bert_base"),
        ("all-MiniLM-L6-v2", "minilm_l6"),
        ("minilm-l6", "minilm_l6"),
    ],
)
def test_load_workload_by_name(text, expected):
    assert load_workload(text).name == expected


def test_load_workload_passes_options():
    assert len(load_workload("bert-base", seq_len=32).layers[0].name) > 0
    assert load_workload("bert-base", seq_len=32).layers[0].M == 32


def test_load_workload_unknown_name_lists_zoo():
    with pytest.raises(InputError) as err:
        load_workload("resnet19")
    msg = str(err.value)
    assert "resnet19" in msg and all(n in msg for n in zoo_names())
    assert "\n" not in msg


def test_load_workload_unknown_option():
    with pytest.raises(InputError, match="seq_len"):
        load_workload("resnet18", seq_len=12)


# cross-check against torch implementations of the same architectures -------------------------
def _torch_resnet18():
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, width in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                setattr(
                    self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1))
                )
                cin = width
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def _torch_mobilenet_v2():
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    def cna(cin, cout, k, stride, groups=1):
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
        )

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [cna(cin, hidden, 1, 1)] if t != 1 else []
            layers += [
                cna(hidden, hidden, 3, stride, hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            feats = [cna(3, 32, 3, 2)]
            cin = 32
            for t, c, n, s in (
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ):
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cna(cin, 1280, 1, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x):
            return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    return MobileNetV2()


@pytest.mark.parametrize(("factory", "builder"), [(_torch_resnet18, resnet18), (_torch_mobilenet_v2, mobilenet_v2)])
def test_zoo_equals_trace_of_torch_implementation(factory, builder):
    torch = pytest.importorskip("torch")
    from sim.workload import from_torch

    traced = from_torch(factory(), torch.zeros(1, 3, 224, 224))
    # same names (torchvision module paths), same shapes, same padding
    assert traced.layers == builder().layers


def test_minilm_equals_trace_of_torch_encoder():
    torch = pytest.importorskip("torch")
    from torch import nn

    from sim.workload import from_torch

    hidden, heads, ffn, n_layers, t = 384, 12, 1536, 6, 128

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
            self.out = nn.Linear(hidden, hidden)
            self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.up, self.down = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
            self.act = nn.GELU()

        def forward(self, x):
            b = x.shape[0]

            def split(y):
                return y.view(b, t, heads, hidden // heads).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            probs = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1)
            ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, hidden)
            x = self.norm1(x + self.out(ctx))
            return self.norm2(x + self.down(self.act(self.up(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Embedding(1000, hidden)
            self.layer = nn.ModuleList(Layer() for _ in range(n_layers))

        def forward(self, ids):
            x = self.embeddings(ids)
            for block in self.layer:
                x = block(x)
            return x

    traced = from_torch(Encoder(), torch.zeros(1, t, dtype=torch.long))
    zoo = minilm_l6(seq_len=t)

    def view(wl):
        return [(layer.kind, layer.groups, layer.M, layer.K, layer.N, layer.batch) for layer in wl.layers]

    assert view(traced) == view(zoo)
    assert traced.macs == zoo.macs
    assert traced.layers[3].name == "layer.0.matmul" and traced.layers[4].name == "layer.0.matmul#2"
