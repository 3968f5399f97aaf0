"""A DGMS-trained digits CNN (snapped to per-channel uniform 4-bit grids, w4a8) through ``lowbit_layer_top``: output
codes bit-exact against the golden model, busy cycles equal to sim's prediction, on the fixed-PE 8x8 array and the
Bit-Fusion 4x4 array (the same builds as tests/rtl/test_layers.py)."""

from __future__ import annotations

import fcntl
from pathlib import Path

import numpy as np
import pytest

from quant.integer import load_export


@pytest.fixture(scope="session")
def dgms_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a DGMS w4a8 digits-cnn export (3 epochs), made once per test session and shared by the
    pytest-xdist workers (file lock)."""
    root = tmp_path_factory.getbasetemp().parent / "lowbit-layer-exports"
    root.mkdir(parents=True, exist_ok=True)
    out = root / "dgms-w4a8"
    with open(root / "dgms-w4a8.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if not (out / "meta.json").is_file():
                from quant.dgms import dgms_train
                from quant.export import export_model
                from quant.finetune import FinetuneConfig
                from quant.models import get_model, model_split

                split = model_split("digits-cnn")
                outcome = dgms_train(get_model("digits-cnn"), split, 4, 8, FinetuneConfig(epochs=3))
                export_model(outcome.model, split.calib_x[:1], out, name="digits-cnn")
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return out


@pytest.mark.slow
def test_dgms_export_is_sparse_4_bit_per_channel(dgms_export: Path) -> None:
    model = load_export(dgms_export)
    assert [lay.name for lay in model.layers] == ["0", "3", "7", "12"]
    for lay in model.layers:
        assert lay.w_bits == 4 and lay.n_v == lay.out_features and lay.n_h == 1
        assert lay.w_codes.min() >= -8 and lay.w_codes.max() <= 7
    zeros = np.mean(np.concatenate([lay.w_codes.ravel() for lay in model.layers]) == 0)
    assert zeros > 0.05  # the zero component survives the snap


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("layer", "rows", "cols", "pe_kind"),
    [("3", 8, 8, "fixed"), ("12", 8, 8, "fixed"), ("7", 4, 4, "bitfusion"), ("12", 4, 4, "bitfusion")],
)
def test_dgms_layer_through_the_rtl(
    verilator: str, dgms_export: Path, layer: str, rows: int, cols: int, pe_kind: str
) -> None:
    from rtl.layer import verify_layer

    check = verify_layer(
        dgms_export, layer, rows=rows, cols=cols, pe_kind=pe_kind, images=2, gap_prob=0.2, stall_prob=0.2, seed=3
    )
    assert check.mismatches == 0, "\n".join(check.messages)
    assert check.measured_cycles == check.predicted_cycles, (check.measured_cycles, check.predicted_cycles)
    assert check.n_h == 1 and check.w_bits == 4 and check.a_bits == 8
    assert check.M == (128 if layer == "3" else 32 if layer == "7" else 2)
