"""Networks written the way users write them (not imported from lowbit): a ResNet with BasicBlocks and a 1x1
downsample branch, a MobileNetV2-style net with inverted residuals, depthwise convs and ReLU6, and a small
post-norm transformer whose attention multiplies activations with ``@``.  All take 1 x 8 x 8 images (sklearn
digits); the CNNs have non-trivial BatchNorm statistics, so BN folding matters.  Tests use
them through the Python API and, as ``tests/user_nets.py:resnet``, through the CLI."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 2), InvertedResidual(16, 16, 1, 2)
        )
        self.classifier = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(x.mean([2, 3]))


def with_bn_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights and BatchNorm statistics far from identity, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def resnet(seed: int = 0) -> nn.Module:
    return with_bn_statistics(TinyResNet(), seed)


def mobilenet(seed: int = 0) -> nn.Module:
    return with_bn_statistics(TinyMobileNet(), seed)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out with ``@`` / ``torch.matmul`` (scores and context are products of
    two activations), as transformer code usually does it."""

    def __init__(self, dim: int, heads: int, sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, dim // heads, sdpa
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        if self.sdpa:  # the fused call (timm, recent torch code): two products sim and lowbit split out
            context = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) / self.head_dim**0.5
            if mask is not None:  # additive: 0 for tokens, -1e4 for padding (BERT's convention)
                scores = scores + mask
            context = scores.softmax(dim=-1) @ v
        return self.out(context.transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Post-norm transformer block (BERT's layout): attention, add & LayerNorm, GELU MLP, add & LayerNorm."""

    def __init__(self, dim: int, heads: int, hidden: int, sdpa: bool = False) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads, sdpa)
        self.norm1 = nn.LayerNorm(dim)
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.attention(x, mask))
        return self.norm2(x + self.down(F.gelu(self.up(x))))


class TinyTransformer(nn.Module):
    """Two encoder blocks over the 8 rows of an 8 x 8 digit (8 tokens of 8 pixels), mean-pooled, 10 classes."""

    def __init__(self, dim: int = 16, heads: int = 2, hidden: int = 32, sdpa: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.blocks = nn.Sequential(EncoderBlock(dim, heads, hidden, sdpa), EncoderBlock(dim, heads, hidden, sdpa))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.embed(x.reshape(x.shape[0], 8, 8)))
        return self.head(tokens.mean(dim=1))


def transformer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyTransformer().eval()


def transformer_sdpa(seed: int = 0) -> nn.Module:
    """The same weights as :func:`transformer`, attention through ``F.scaled_dot_product_attention``."""
    torch.manual_seed(seed)
    return TinyTransformer(sdpa=True).eval()


class MaskedEncoder(nn.Module):
    """Two encoder blocks over padded token sequences: ``forward(tokens [N, T, 8], mask [N, 1, 1, T])`` with an
    additive attention mask, returning the token states ``[N, T, 16]`` (pooled outside, over the real tokens, as
    sentence encoders do)."""

    def __init__(self, dim: int = 16, heads: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.block1, self.block2 = EncoderBlock(dim, heads, hidden), EncoderBlock(dim, heads, hidden)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.embed(tokens), mask), mask)


def masked_encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MaskedEncoder().eval()
