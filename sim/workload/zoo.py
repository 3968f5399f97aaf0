"""Published network shapes, built layer by layer (batch 1, ImageNet 224x224 by default).

Every network is generated from its published architecture rather than pasted from a table,
so shapes follow the same PyTorch padding rule (``floor((H + 2p - k) / s) + 1``) as
``torchvision``. Layer names are the ``torchvision`` / Hugging Face module paths where such a
path exists, so a workload built here lines up with one imported by ``from_torch``.

Only layers with multiply-accumulates are listed: convolutions, fully connected layers and,
for transformers, the two activation x activation products of attention. Pooling, norms,
activations, residual adds, softmax and embedding lookups carry no MACs worth modelling.

Activation x activation products with ``batch > 1`` are stored with the batch folded into
``groups`` (one independent product per (sample, head)): ``Layer.batch`` would multiply the
rows of one *shared* second operand, which is right for weights but not for attention.
"""

from __future__ import annotations

from collections.abc import Callable

from lowbit_core.errors import InputError
from sim.workload.layer import Layer, Workload, conv, gemm, matmul

__all__ = ["ZOO", "zoo_names", "resnet18", "resnet50", "mobilenet_v2", "vgg16", "bert_base", "minilm_l6"]

_IMAGE = 224


def _check_positive(network: str, **values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"workload {network!r}: {key} must be a positive integer, got {value!r}")


def _out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


# ResNet ------------------------------------------------------------------------------------
def _resnet(name: str, block: str, depths: tuple[int, ...], batch: int) -> Workload:
    """Shared builder for torchvision's ResNet (He et al., CVPR 2016, arXiv:1512.03385).

    ``block='basic'``: two 3x3 convs per block (ResNet-18/34).
    ``block='bottleneck'``: 1x1 -> 3x3 -> 1x1 with expansion 4 and the stride on the 3x3
    ("ResNet v1.5", torchvision.models.resnet.Bottleneck).
    A 1x1 strided ``downsample.0`` conv runs after the block's last conv (torchvision order)
    whenever the block changes resolution or width.
    """
    layers: list[Layer] = [conv("conv1", _IMAGE, 3, 64, 7, stride=2, pad=3, batch=batch)]
    hw = _out(_out(_IMAGE, 7, 2, 3), 3, 2, 1)  # conv1 then maxpool 3x3/2 pad 1: 224 -> 112 -> 56
    expansion = 4 if block == "bottleneck" else 1
    in_c = 64
    for stage, depth in enumerate(depths):
        width = 64 * 2**stage
        for b in range(depth):
            stride = 2 if (b == 0 and stage > 0) else 1
            out_c = width * expansion
            p = f"layer{stage + 1}.{b}"
            if block == "basic":
                layers.append(conv(f"{p}.conv1", hw, in_c, width, 3, stride=stride, pad=1, batch=batch))
                mid = _out(hw, 3, stride, 1)
                layers.append(conv(f"{p}.conv2", mid, width, width, 3, stride=1, pad=1, batch=batch))
            else:
                layers.append(conv(f"{p}.conv1", hw, in_c, width, 1, batch=batch))
                layers.append(conv(f"{p}.conv2", hw, width, width, 3, stride=stride, pad=1, batch=batch))
                mid = _out(hw, 3, stride, 1)
                layers.append(conv(f"{p}.conv3", mid, width, out_c, 1, batch=batch))
            if stride != 1 or in_c != out_c:
                layers.append(conv(f"{p}.downsample.0", hw, in_c, out_c, 1, stride=stride, batch=batch))
            hw = mid
            in_c = out_c
    layers.append(gemm("fc", 1, in_c, 1000, batch=batch))  # after global average pooling
    return Workload(name, tuple(layers))


def resnet18(batch: int = 1) -> Workload:
    """ResNet-18 as in torchvision (He et al. 2016): conv1 7x7/2, maxpool, 4 stages of 2 basic
    blocks (64-128-256-512), 3 downsample convs, fc 512->1000. 21 layers, ~1.81 GMACs."""
    _check_positive("resnet18", batch=batch)
    return _resnet("resnet18", "basic", (2, 2, 2, 2), batch)


def resnet50(batch: int = 1) -> Workload:
    """ResNet-50 v1.5 as in torchvision (He et al. 2016; stride on the 3x3 of the bottleneck):
    conv1, 16 bottlenecks (3-4-6-3) of 3 convs, 4 downsample convs, fc 2048->1000.
    54 layers, ~4.09 GMACs."""
    _check_positive("resnet50", batch=batch)
    return _resnet("resnet50", "bottleneck", (3, 4, 6, 3), batch)


# MobileNetV2 -------------------------------------------------------------------------------
# (expansion t, output channels c, repeats n, first stride s), Sandler et al., CVPR 2018, Table 2.
_MOBILENET_V2_CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2(batch: int = 1) -> Workload:
    """MobileNetV2 1.0 as in torchvision (Sandler et al., CVPR 2018, arXiv:1801.04381).

    Stem 3x3/2 conv to 32 channels, 17 inverted residual blocks (1x1 expansion unless t=1,
    3x3 depthwise as kind ``dwconv`` with groups=channels, linear 1x1 projection), a final 1x1
    320->1280 conv and the 1280->1000 classifier. 53 layers, ~0.30 GMACs. Names follow
    torchvision's module paths (``features.2.conv.1.0`` is block 2's depthwise conv).
    """
    _check_positive("mobilenet_v2", batch=batch)
    layers: list[Layer] = [conv("features.0.0", _IMAGE, 3, 32, 3, stride=2, pad=1, batch=batch)]
    hw = _out(_IMAGE, 3, 2, 1)
    in_c = 32
    idx = 1
    for t, c, n, s in _MOBILENET_V2_CFG:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = in_c * t
            p = f"features.{idx}.conv"
            j = 0
            if t != 1:
                layers.append(conv(f"{p}.0.0", hw, in_c, hidden, 1, batch=batch))
                j = 1
            layers.append(conv(f"{p}.{j}.0", hw, hidden, hidden, 3, stride=stride, pad=1, groups=hidden, batch=batch))
            hw = _out(hw, 3, stride, 1)
            layers.append(conv(f"{p}.{j + 1}", hw, hidden, c, 1, batch=batch))
            in_c = c
            idx += 1
    layers.append(conv(f"features.{idx}.0", hw, in_c, 1280, 1, batch=batch))
    layers.append(gemm("classifier.1", 1, 1280, 1000, batch=batch))
    return Workload("mobilenet_v2", tuple(layers))


# VGG ---------------------------------------------------------------------------------------
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(batch: int = 1) -> Workload:
    """VGG-16 (configuration D of Simonyan & Zisserman, ICLR 2015, arXiv:1409.1556) as in
    torchvision: 13 3x3/1 pad 1 convs, 5 max-pools, then fc 25088->4096, 4096->4096, 4096->1000.
    16 layers, ~15.47 GMACs. Names are torchvision's ``features.<i>`` / ``classifier.<i>``."""
    _check_positive("vgg16", batch=batch)
    layers: list[Layer] = []
    hw, in_c = _IMAGE, 3
    for i, item in enumerate(_VGG16_CFG):
        if item == "M":
            hw //= 2
            continue
        assert isinstance(item, int)
        layers.append(conv(f"features.{2 * i - _VGG16_CFG[:i].count('M')}", hw, in_c, item, 3, pad=1, batch=batch))
        in_c = item
    flat = in_c * hw * hw  # 512 x 7 x 7 = 25088 (the adaptive average pool is the identity at 224)
    for idx, (k, n) in zip((0, 3, 6), ((flat, 4096), (4096, 4096), (4096, 1000)), strict=True):
        layers.append(gemm(f"classifier.{idx}", 1, k, n, batch=batch))
    return Workload("vgg16", tuple(layers))


# Transformer encoders ----------------------------------------------------------------------
def _encoder(name: str, n_layers: int, hidden: int, heads: int, ffn: int, seq_len: int, batch: int) -> Workload:
    """A post-norm BERT encoder stack: per layer Q, K, V projections, the attention scores
    ``Q K^T`` and ``softmax x V`` per head, the attention output projection, FFN up and down.
    Embeddings (lookups), layer norms, softmax and GELU carry no MACs and are left out; so is
    any task head (pooler, classifier)."""
    _check_positive(name, seq_len=seq_len, batch=batch)
    if hidden % heads:
        raise InputError(f"workload {name!r}: hidden={hidden} is not divisible by heads={heads}")
    d = hidden // heads
    t = seq_len
    layers: list[Layer] = []
    for i in range(n_layers):
        p = f"enc{i}"
        layers += [
            gemm(f"{p}.attn.q", t, hidden, hidden, batch=batch),
            gemm(f"{p}.attn.k", t, hidden, hidden, batch=batch),
            gemm(f"{p}.attn.v", t, hidden, hidden, batch=batch),
            matmul(f"{p}.attn.scores", t, d, t, heads=heads * batch),  # [T, d] x [d, T] per head
            matmul(f"{p}.attn.context", t, t, d, heads=heads * batch),  # [T, T] x [T, d] per head
            gemm(f"{p}.attn.out", t, hidden, hidden, batch=batch),
            gemm(f"{p}.ffn.up", t, hidden, ffn, batch=batch),
            gemm(f"{p}.ffn.down", t, ffn, hidden, batch=batch),
        ]
    return Workload(name, tuple(layers))


def bert_base(seq_len: int = 128, batch: int = 1) -> Workload:
    """BERT-base encoder (Devlin et al., NAACL 2019, arXiv:1810.04805): 12 layers, hidden 768,
    12 heads, FFN 3072; ``seq_len`` tokens (default 128). 96 layers, ~11.2 GMACs at T=128."""
    return _encoder("bert_base", 12, 768, 12, 3072, seq_len, batch)


def minilm_l6(seq_len: int = 128, batch: int = 1) -> Workload:
    """all-MiniLM-L6-v2 (sentence-transformers; MiniLM, Wang et al., NeurIPS 2020,
    arXiv:2002.10957): a 6-layer BERT with hidden 384, 12 heads of 32, FFN 1536; ``seq_len``
    tokens (default 128). 48 layers."""
    return _encoder("minilm_l6", 6, 384, 12, 1536, seq_len, batch)


ZOO: dict[str, Callable[..., Workload]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "vgg16": vgg16,
    "bert_base": bert_base,
    "minilm_l6": minilm_l6,
}


def zoo_names() -> list[str]:
    """The names of the built-in workloads, in registry order."""
    return list(ZOO)
