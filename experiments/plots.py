"""Paper-ready figures: vector PDF + 300 dpi PNG, colourblind-safe palette, units on the axes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sim.io import atomic_path  # noqa: E402

__all__ = ["OKABE_ITO", "save_figure", "plot_layer_costs"]

#: Okabe & Ito's colourblind-safe palette.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` (300 dpi) atomically; returns both paths."""
    paths = []
    for suffix, kwargs in ((".pdf", {}), (".png", {"dpi": 300})):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], bbox_inches="tight", metadata=_stable_metadata(suffix), **kwargs)
        paths.append(path)
    plt.close(fig)
    return paths


def _stable_metadata(suffix: str) -> dict:
    # no creation dates: the same inputs give the same bytes
    return {"CreationDate": None} if suffix == ".pdf" else {"Software": None}


def plot_layer_costs(tables: dict[str, pd.DataFrame], stem: Path) -> list[Path]:
    """Latency (us) and energy (uJ) per layer per pair, one row of panels per chip."""
    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 3.2 * len(tables)), squeeze=False)
    for row, (chip, frame) in enumerate(tables.items()):
        pairs = list(dict.fromkeys(zip(frame.w_bits, frame.a_bits)))
        for col, (metric, scale, label) in enumerate((("latency_us", 1.0, "latency (µs)"),
                                                       ("energy_pj", 1e-6, "energy (µJ)"))):
            ax = axes[row, col]
            for i, (w, a) in enumerate(pairs):
                part = frame[(frame.w_bits == w) & (frame.a_bits == a)]
                ax.plot(part.layer, part[metric] * scale, marker="o", ms=3, lw=1.2,
                        color=OKABE_ITO[i % len(OKABE_ITO)], label=f"w{w}a{a}")
            ax.set_yscale("log")
            ax.set_xlabel("layer (execution order)")
            ax.set_ylabel(label)
            ax.set_title(f"{chip}: {label.split(' (')[0]} per layer", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
        axes[row, 1].legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    return save_figure(fig, stem)
