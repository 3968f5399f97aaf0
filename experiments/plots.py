"""Paper-ready figures: vector PDF + 300 dpi PNG, colourblind-safe palette, units on the axes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from lowbit_core.pairs import format_pair

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from lowbit_core.errors import InputError  # noqa: E402
from lowbit_core.files import atomic_path  # noqa: E402

__all__ = [
    "OKABE_ITO",
    "save_figure",
    "plot_layer_costs",
    "plot_accuracy_fronts",
    "plot_bit_allocation",
    "plot_sensitivity_heatmap",
]

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
        for col, (metric, scale, label) in enumerate(
            (("latency_us", 1.0, "latency (µs)"), ("energy_pj", 1e-6, "energy (µJ)"))
        ):
            ax = axes[row, col]
            for i, (w, a) in enumerate(pairs):
                part = frame[(frame.w_bits == w) & (frame.a_bits == a)]
                ax.plot(
                    part.layer,
                    part[metric] * scale,
                    marker="o",
                    ms=3,
                    lw=1.2,
                    color=OKABE_ITO[i % len(OKABE_ITO)],
                    label=format_pair((w, a)),
                )
            ax.set_yscale("log")
            ax.set_xlabel("layer (execution order)")
            ax.set_ylabel(label)
            ax.set_title(f"{chip}: {label.split(' (')[0]} per layer", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
        axes[row, 1].legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    return save_figure(fig, stem)


# --- search figures -------------------------------------------------------------------------------------------------

_FRONT_KINDS = ("ilp", "greedy", "uniform")


def _need(frame: object, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """``frame`` as a non-empty DataFrame with ``columns``, else a one-line :class:`InputError`."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise InputError(f"{what}: the table has no rows")
    return frame


def _numeric(frame: pd.DataFrame, col: str, what: str, minimum: float | None = None) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | ((values < minimum) if minimum is not None else False)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        limit = f" >= {minimum:g}" if minimum is not None else ""
        raise InputError(f"{what}: column {col!r} must be finite{limit}; row {row} has {frame[col].iloc[row]!r}")
    return values


def _unit_scale(values_max: float, units: tuple[tuple[float, float, str], ...]) -> tuple[float, str]:
    """(factor, unit) of the first ``(threshold, factor, unit)`` whose threshold ``values_max`` reaches."""
    for threshold, factor, unit in units:
        if values_max >= threshold:
            return factor, unit
    return units[-1][1], units[-1][2]


def plot_accuracy_fronts(points: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Measured test accuracy (%) against latency and against energy: the ILP front (solid steps, circles), the
    greedy front (dashed steps, triangles) and the uniform assignments (labelled squares).

    ``points`` has columns ``kind`` (``ilp``, ``greedy`` or ``uniform``), ``accuracy`` (%), ``latency_us``,
    ``energy_pj`` and ``label`` (e.g. ``w4a4``).  Latency is shown in µs or ms and energy in µJ or mJ, whichever
    keeps the numbers readable; an axis whose values span more than 10x is logarithmic.  Writes
    ``stem.pdf`` and ``stem.png`` and returns their paths."""
    what = "accuracy fronts"
    frame = _need(points, ("kind", "accuracy", "latency_us", "energy_pj", "label"), what)
    kinds = frame["kind"].astype(str)
    unknown = sorted(set(kinds) - set(_FRONT_KINDS))
    if unknown:
        raise InputError(f"{what}: unknown kind(s) {', '.join(unknown)} (allowed: {', '.join(_FRONT_KINDS)})")
    acc = _numeric(frame, "accuracy", what)
    metrics = (
        ("latency_us", "latency", ((1e3, 1e-3, "ms"), (0.0, 1.0, "µs"))),
        ("energy_pj", "energy", ((1e9, 1e-9, "mJ"), (0.0, 1e-6, "µJ"))),
    )
    styles = {
        "ilp": {"color": OKABE_ITO[0], "marker": "o", "ls": "-", "label": "ILP (exact)"},
        "greedy": {"color": OKABE_ITO[1], "marker": "^", "ls": "--", "label": "greedy"},
        "uniform": {"color": OKABE_ITO[3], "marker": "s", "ls": "none", "label": "uniform"},
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (col, name, units) in zip(axes, metrics):
        raw = _numeric(frame, col, what, minimum=0.0)
        factor, unit = _unit_scale(float(raw.max()), units)
        x = raw * factor
        for kind in _FRONT_KINDS:
            mask = (kinds == kind).to_numpy()
            if not mask.any():
                continue
            style = styles[kind]
            order = np.lexsort((acc[mask], x[mask]))  # by cost, then accuracy: deterministic
            xs, ys = x[mask][order], acc[mask][order]
            if kind == "uniform":
                ax.plot(
                    xs,
                    ys,
                    ls="none",
                    marker=style["marker"],
                    ms=6,
                    color=style["color"],
                    label=style["label"],
                    zorder=3,
                )
                labels = frame["label"].astype(str).to_numpy()[mask][order]
                for xi, yi, text in zip(xs, ys, labels):
                    ax.annotate(
                        text, (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=7, color=style["color"]
                    )
            else:
                ax.step(xs, ys, where="post", ls=style["ls"], lw=1.4, color=style["color"], zorder=2)
                ax.plot(xs, ys, ls="none", marker=style["marker"], ms=5, color=style["color"], zorder=2.5)
                ax.plot([], [], ls=style["ls"], marker=style["marker"], color=style["color"], label=style["label"])
        positive = x[x > 0]
        if positive.size and x.min() > 0 and positive.max() / positive.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.06, y=0.08)
        ax.set_xlabel(f"{name} ({unit})")
        ax.set_title(f"accuracy vs {name}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=8, frameon=False, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, stem)


def _layer_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in execution order: by ``layer`` when present (stable), else as given."""
    if "layer" in frame.columns:
        return frame.iloc[np.argsort(pd.to_numeric(frame["layer"], errors="coerce").to_numpy(), kind="stable")]
    return frame


def plot_bit_allocation(assignment: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Grouped bars of each layer's weight and activation bits, layers in execution order (by ``layer`` if that
    column is present, else row order).  ``assignment`` needs ``name``, ``w_bits`` and ``a_bits``.  Writes
    ``stem.pdf`` and ``stem.png`` and returns their paths."""
    what = "bit allocation"
    frame = _layer_order(_need(assignment, ("name", "w_bits", "a_bits"), what))
    w = _numeric(frame, "w_bits", what, minimum=1.0)
    a = _numeric(frame, "a_bits", what, minimum=1.0)
    names = frame["name"].astype(str).tolist()
    pos = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 1.5), 3.2))
    width = 0.38
    ax.bar(pos - width / 2, w, width, color=OKABE_ITO[0], label="weights (w_bits)")
    ax.bar(
        pos + width / 2,
        a,
        width,
        color=OKABE_ITO[1],
        label="activations (a_bits)",
        hatch="//",
        edgecolor="white",
        linewidth=0,
    )
    ticks = sorted({2, 4, 8} | {int(v) for v in np.concatenate([w, a])})
    ax.set_yticks(ticks)
    ax.set_ylim(0, 1.3 * max(8.0, float(max(w.max(), a.max()))))  # headroom for the legend
    ax.set_xticks(pos)
    ax.set_xticklabels(
        names, rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center", fontsize=8
    )
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("bit width (bits)")
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8, frameon=False, ncol=2, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


#: Colourbar units of quant.sensitivity's methods (``sqnr`` stores the noise-to-signal ratio).
_SENSITIVITY_UNITS = {
    "sqnr": "noise-to-signal ratio",
    "hessian": "est. loss increase, nats",
    "loss": "loss increase, nats",
}


def plot_sensitivity_heatmap(sensitivity: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Sensitivity per layer (rows, execution order, labelled by ``name`` if present, else ``layer``) and pair
    (columns, from most to fewest bits: by w + a, then w), on a log colour scale (viridis).

    ``sensitivity`` is the sensitivity table (``layer``, ``w_bits``, ``a_bits``, ``sensitivity`` >= 0, optional
    ``name`` and ``method``).  Zeros cannot sit on a log scale: they are drawn at a floor of a tenth of the smallest
    positive value (1e-12 if none), which the colourbar label states.  Missing (layer, pair) cells are grey.
    Grids up to 12 x 12 carry their values.  Writes ``stem.pdf`` and ``stem.png`` and returns their paths."""
    what = "sensitivity heatmap"
    frame = _need(sensitivity, ("layer", "w_bits", "a_bits", "sensitivity"), what)
    layer = _numeric(frame, "layer", what).astype(np.int64)
    w = _numeric(frame, "w_bits", what, minimum=1.0).astype(np.int64)
    a = _numeric(frame, "a_bits", what, minimum=1.0).astype(np.int64)
    values = _numeric(frame, "sensitivity", what, minimum=0.0)
    keys = pd.DataFrame({"layer": layer, "w": w, "a": a})
    dupes = keys.duplicated()
    if dupes.any():
        r = keys[dupes].iloc[0]
        raise InputError(f"{what}: more than one row for layer {r['layer']} pair w{r['w']}a{r['a']}")
    layers = sorted(set(layer.tolist()))
    names = {int(lay): str(lay) for lay in layers}
    if "name" in frame.columns:
        names.update({int(lay): str(n) for lay, n in zip(layer, frame["name"])})
    pairs = sorted(set(zip(w.tolist(), a.tolist())), key=lambda p: (-(p[0] + p[1]), -p[0], -p[1]))
    row_of = {lay: i for i, lay in enumerate(layers)}
    col_of = {p: j for j, p in enumerate(pairs)}
    grid = np.full((len(layers), len(pairs)), np.nan)
    for lay, wb, ab, v in zip(layer, w, a, values):
        grid[row_of[int(lay)], col_of[(int(wb), int(ab))]] = v
    positive = values[values > 0]
    floor = float(positive.min()) / 10 if positive.size else 1e-12
    vmax = max(float(values.max()), floor * 10)
    shown = np.ma.masked_invalid(np.where(grid > 0, grid, np.where(np.isnan(grid), np.nan, floor)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#DDDDDD")
    norm = LogNorm(vmin=floor, vmax=vmax)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(pairs) + 2.5), max(2.5, 0.4 * len(layers) + 1.2)))
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(len(pairs)))
    ax.set_xticklabels(
        [format_pair(p) for p in pairs],
        rotation=45 if len(pairs) > 6 else 0,
        fontsize=8,
        ha="right" if len(pairs) > 6 else "center",
    )
    ax.set_yticks(np.arange(len(layers)))
    ax.set_yticklabels([names[lay] for lay in layers], fontsize=8)
    ax.set_xlabel("bit pair (weight bits, activation bits)")
    ax.set_ylabel("layer (execution order)")
    if len(layers) <= 12 and len(pairs) <= 12:
        for i in range(len(layers)):
            for j in range(len(pairs)):
                v = grid[i, j]
                if np.isnan(v):
                    continue
                dark = norm(max(v, floor)) < 0.6  # viridis is dark at the low end
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    methods = frame["method"].astype(str).unique().tolist() if "method" in frame.columns else []
    unit = _SENSITIVITY_UNITS.get(methods[0], methods[0]) if len(methods) == 1 else "arbitrary units"
    label = f"sensitivity ({unit}, log scale)"
    if (values == 0).any():
        label += f"\n0 drawn at floor {floor:.2g}"
    fig.colorbar(image, ax=ax, label=label)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)
