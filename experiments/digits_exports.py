"""The three digits-cnn w4a8 integer exports the RTL layer checks run on (docs/rtl.md, "Real layers").

``gpfq`` is GPFQ with per-channel scales; ``ptq-sl`` PTQ-SL with 4 x 2 block scales (n_H = 2 for every layer with
more than one input channel); ``ptq-sl-sort`` the same with ``reorder="sort"`` (permuted output channels).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXPORTS", "make_digits_export"]

#: export name -> how it is made
EXPORTS: dict[str, dict[str, str]] = {
    "gpfq": {"method": "gpfq", "granularity": "channel"},
    "ptq-sl": {"method": "ptq-sl", "granularity": "4x2"},
    "ptq-sl-sort": {"method": "ptq-sl", "granularity": "4x2", "reorder": "sort"},
}


def make_digits_export(kind: str, out: Path) -> None:
    """Write the export ``kind`` of :data:`EXPORTS` to ``out`` (deterministic: seed 0)."""
    spec = EXPORTS[kind]
    if "reorder" not in spec:
        from experiments.quantize import quantize_builtin

        quantize_builtin("digits-cnn", spec["method"], 4, 8, granularity=spec["granularity"], export_dir=out)
        return
    import torch

    from quant.export import export_model
    from quant.fakequant import calibrate_activations, prepare
    from quant.models import get_model, model_split
    from quant.ptq_sl import ptq_sl_quantize

    torch.manual_seed(0)
    split = model_split("digits-cnn")
    q = prepare(get_model("digits-cnn", seed=0))
    calibrate_activations(q, split.calib_x, 8)
    ptq_sl_quantize(q, split.calib_x, 4, blocks=(4, 2), reorder=spec["reorder"])
    export_model(q, split.calib_x[:1], out, name="digits-cnn")
