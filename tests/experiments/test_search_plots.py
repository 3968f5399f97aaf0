"""Search figures: PDF + 300 dpi PNG, byte-identical reruns, one-line errors naming the missing column."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.plots import plot_accuracy_fronts, plot_bit_allocation, plot_sensitivity_heatmap
from lowbit_core.errors import InputError

NAMES = ("0", "3", "7", "12")


def _fronts(n: int = 6) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append(
            {
                "kind": "ilp",
                "accuracy": 90.0 + i,
                "latency_us": 100.0 * (i + 1) ** 1.5,
                "energy_pj": 2e7 * (i + 1),
                "label": f"p{i}",
            }
        )
        rows.append(
            {
                "kind": "greedy",
                "accuracy": 88.0 + i,
                "latency_us": 120.0 * (i + 1) ** 1.5,
                "energy_pj": 2.2e7 * (i + 1),
                "label": f"g{i}",
            }
        )
    for w, a, acc in ((8, 8, 99.2), (4, 8, 98.7), (4, 4, 96.0), (2, 2, 31.5)):
        rows.append(
            {
                "kind": "uniform",
                "accuracy": acc,
                "latency_us": w * a * 30.0,
                "energy_pj": w * a * 3e6,
                "label": f"w{w}a{a}",
            }
        )
    return pd.DataFrame(rows)


def _assignment() -> pd.DataFrame:
    return pd.DataFrame({"layer": [0, 1, 2, 3], "name": list(NAMES), "w_bits": [8, 4, 2, 8], "a_bits": [8, 4, 4, 8]})


def _sensitivity(n_layers: int = 4, widths: tuple[int, ...] = (8, 4, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "layer": layer,
            "name": f"L{layer}",
            "w_bits": w,
            "a_bits": a,
            "method": "sqnr",
            "sensitivity": 0.0 if (w, a) == (8, 8) else float(rng.random() * 10.0 ** (-w / 2 - a / 3)),
        }
        for layer in range(n_layers)
        for w in widths
        for a in widths
    ]
    return pd.DataFrame(rows)


FIGURES: dict[str, tuple[Callable[..., list[Path]], Callable[[], pd.DataFrame]]] = {
    "fronts": (plot_accuracy_fronts, _fronts),
    "fronts (linear, one kind)": (
        plot_accuracy_fronts,
        lambda: _fronts().query("kind == 'uniform'").iloc[:3].reset_index(drop=True),
    ),
    "bits": (plot_bit_allocation, _assignment),
    "bits (no layer column, 20 layers)": (
        plot_bit_allocation,
        lambda: pd.DataFrame(
            {"name": [f"block{i}.conv" for i in range(20)], "w_bits": [2, 3, 4, 8] * 5, "a_bits": [8, 4] * 10}
        ),
    ),
    "heatmap": (plot_sensitivity_heatmap, _sensitivity),
    "heatmap (large, no zero)": (
        plot_sensitivity_heatmap,
        lambda: _sensitivity(13, (8, 4, 3, 2)).query("sensitivity > 0"),
    ),
    "heatmap (all zero)": (plot_sensitivity_heatmap, lambda: _sensitivity().assign(sensitivity=0.0)),
}


def _png_dpi(data: bytes) -> float:
    """Horizontal dpi from the PNG pHYs chunk (pixels per metre, unit 1)."""
    i = data.index(b"pHYs")
    x_ppm, _, unit = struct.unpack(">IIB", data[i + 4 : i + 13])
    assert unit == 1
    return x_ppm * 0.0254


@pytest.mark.parametrize("case", sorted(FIGURES))
def test_figure_files_are_pdf_and_300_dpi_png_with_stable_bytes(tmp_path: Path, case: str) -> None:
    plot, make = FIGURES[case]
    first = plot(make(), tmp_path / "a" / "fig", title="a title")
    assert [p.suffix for p in first] == [".pdf", ".png"]
    pdf, png = (p.read_bytes() for p in first)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert png.startswith(b"\x89PNG") and round(_png_dpi(png)) == 300
    second = plot(make(), tmp_path / "b" / "fig", title="a title")
    assert [p.read_bytes() for p in second] == [pdf, png]


@pytest.mark.parametrize(
    ("plot", "frame", "needle"),
    [
        (plot_accuracy_fronts, _fronts().drop(columns="energy_pj"), "missing column(s) energy_pj"),
        (plot_accuracy_fronts, _fronts().drop(columns=["kind", "label"]), "missing column(s) kind, label"),
        (plot_bit_allocation, _assignment().drop(columns="a_bits"), "missing column(s) a_bits"),
        (plot_sensitivity_heatmap, _sensitivity().drop(columns="sensitivity"), "missing column(s) sensitivity"),
        (plot_accuracy_fronts, _fronts().assign(kind="hawq"), "unknown kind(s) hawq"),
        (plot_accuracy_fronts, _fronts().iloc[:0], "no rows"),
        (plot_accuracy_fronts, _fronts().assign(latency_us=-1.0), "'latency_us' must be finite >= 0"),
        (plot_sensitivity_heatmap, _sensitivity().assign(sensitivity=np.nan), "'sensitivity' must be finite >= 0"),
        (
            plot_sensitivity_heatmap,
            pd.concat([_sensitivity(), _sensitivity().iloc[:1]]),
            "more than one row for layer 0 pair w8a8",
        ),
        (plot_bit_allocation, [("0", 8, 8)], "expected a pandas DataFrame"),
    ],
)
def test_bad_input_is_a_one_line_input_error(tmp_path: Path, plot, frame, needle: str) -> None:
    with pytest.raises(InputError) as info:
        plot(frame, tmp_path / "fig")
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert not list(tmp_path.iterdir())
