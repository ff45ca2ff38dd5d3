"""The report's figures, each built as a :class:`matplotlib.figure.Figure` and saved as PNG.

Figures are created with :class:`~matplotlib.figure.Figure` directly, not through ``pyplot``:
they render with the Agg backend, need no display, change no process-wide backend and are freed
when the last reference goes, so nothing has to be closed. Every figure builder takes the data it
draws and returns the figure, so tests can inspect it; :func:`render_png` turns it into PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, NullLocator

from ..text import plot_text
from .metrics import evaluated_rows

DPI = 90
NORMAL_COLOUR, ANOMALOUS_COLOUR = "#1f77b4", "#d62728"
SPLIT_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}
MAX_SCATTER_POINTS = 20_000
HISTOGRAM_BINS = 60
#: counts below this are drawn at it on log axes (zero-count bins stay visible)
COUNT_FLOOR = 0.5


def render_png(figure: Figure, *, dpi: int = DPI) -> bytes:
    """The PNG bytes of ``figure``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _panel_grid(n_panels: int, *, panel_size: tuple[float, float] = (5.0, 3.8), max_columns: int = 3):
    """A constrained-layout figure with ``n_panels`` axes in rows of up to ``max_columns``."""
    n_columns = max(1, min(n_panels, max_columns))
    n_rows = max(1, -(-n_panels // n_columns))
    figure = Figure(figsize=(panel_size[0] * n_columns, panel_size[1] * n_rows), layout="constrained")
    axes = list(np.atleast_1d(figure.subplots(n_rows, n_columns, squeeze=False)).ravel())
    for unused in axes[max(n_panels, 1):]:
        figure.delaxes(unused)
    return figure, axes[: max(n_panels, 1)]


def _message(ax, text: str, *, labels: tuple[str, str, str] | None = None) -> None:
    """Write a centred notice on an axes that has nothing to draw; ``labels``: title, x and y label."""
    if labels:
        ax.set(title=labels[0], xlabel=labels[1], ylabel=labels[2])
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12,
            wrap=True, bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#999999"})
    ax.set_xticks([])
    ax.set_yticks([])


def _model_title(name: str, table: pd.DataFrame) -> str:
    kind = table.attrs.get("model_kind")
    return f"{name} ({kind})" if kind and kind != name else name


def _score_label(table: pd.DataFrame) -> str:
    primary = table.attrs.get("primary_score")
    return f"anomaly_score = {primary}" if primary and primary != "anomaly_score" else "anomaly_score"


def _histogram_edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Shared bin edges for ``values`` and whether they are log-spaced (positive, wide range)."""
    low, high = float(np.min(values)), float(np.max(values))
    if low > 0 and high / low > 20:
        return np.geomspace(low, high, HISTOGRAM_BINS + 1), True
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, HISTOGRAM_BINS + 1), False


def score_distribution_figure(tables: Mapping[str, pd.DataFrame], *, labelled: bool) -> Figure:
    """Histograms of each model's anomaly score: test split by label, or every split without labels."""
    figure, axes = _panel_grid(len(tables))
    for ax, (name, table) in zip(axes, tables.items()):
        if labelled:
            rows = evaluated_rows(table)
            groups = [("normal", NORMAL_COLOUR, rows["label"].to_numpy() == 0),
                      ("anomalous", ANOMALOUS_COLOUR, rows["label"].to_numpy() == 1)]
        else:
            rows = table
            splits = rows["split"].astype(str).to_numpy()
            order = {split: index for index, split in enumerate(SPLIT_COLOURS)}
            present = sorted(pd.unique(splits), key=lambda split: (order.get(split, len(order)), split))
            groups = [(split, SPLIT_COLOURS.get(split, "grey"), splits == split) for split in present]
        scores = rows["anomaly_score"].to_numpy(dtype=np.float64)
        finite = ~np.isnan(scores)  # +-inf are kept and drawn in the outermost bins
        ax.set_title(_model_title(name, table))
        ax.set_xlabel(_score_label(table))
        ax.set_ylabel("spectra per bin" if labelled else "fraction of the split's spectra per bin")
        if not finite.any():
            _message(ax, "no spectra with a finite score" + (" in the test split" if labelled else ""))
            continue
        if not np.isfinite(scores).any():
            _message(ax, "every score is infinite")
            continue
        edges, log_x = _histogram_edges(scores[np.isfinite(scores)])
        scores = np.clip(scores, edges[0], edges[-1])
        heights = []
        for index, (group, colour, mask) in enumerate(groups):
            values = scores[mask & finite]
            if not values.size:
                continue
            weights = np.full(values.size, 1.0 if labelled else 1.0 / values.size)
            if labelled or index == 0:  # without labels only the first split is filled, so the others stay visible
                ax.hist(values, bins=edges, weights=weights, histtype="stepfilled", alpha=0.3, color=colour)
            counts, _, _ = ax.hist(values, bins=edges, weights=weights, histtype="step", lw=1.6, color=colour,
                                   label=f"{group} (n = {values.size})")
            heights.append(counts[counts > 0])
        ax.set_yscale("log")
        if heights:  # room above the tallest bin for the legend, at least two decades so the axis has labels
            positive = np.concatenate(heights)
            low = 0.6 if labelled else 0.6 * positive.min()
            ax.set_ylim(low, max(positive.max() * 25, low * 100))
        ax.yaxis.set_minor_formatter(NullFormatter())
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    figure.suptitle("Anomaly score distributions, " + ("test split by label" if labelled else "every spectrum by split (no labels)"))
    return figure


def _best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch whose weights were kept: the last one flagged ``best``, else the lowest validation loss."""
    if "best" in history.columns:
        flagged = history["best"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
        if flagged.any():
            return int(history["epoch"].to_numpy()[flagged][-1])
    losses = history["validation_loss"].to_numpy(dtype=np.float64)
    if np.isfinite(losses).any():
        return int(history["epoch"].to_numpy()[np.nanargmin(np.where(np.isfinite(losses), losses, np.nan))])
    return None


def training_curves_figure(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Train and validation loss against epoch, one panel per detector trained over epochs, best epoch marked.

    Detectors fitted in one pass (PCA) have an empty history and no panel.
    """
    histories = {name: history for name, history in histories.items() if len(history)}
    figure, axes = _panel_grid(len(histories))
    if not histories:
        _message(axes[0], "no training histories\n(only detectors trained over epochs have one;\n"
                          "PCA is fitted in one pass)", labels=("Training curves", "epoch", "loss"))
        return figure
    for ax, (name, history) in zip(axes, histories.items()):
        epochs = history["epoch"].to_numpy()
        train, validation = (history[c].to_numpy(dtype=np.float64) for c in ("train_loss", "validation_loss"))
        ax.plot(epochs, train, lw=1.8, label="train loss")
        ax.plot(epochs, validation, lw=1.8, ls="--", label="validation loss")
        best = _best_epoch(history)
        if best is not None:
            at = validation[epochs == best][0]
            ax.axvline(best, color="grey", ls=":", lw=1)
            ax.plot([best], [at], marker="*", ms=13, color="black", ls="none", label=f"best epoch {best} ({at:.4g})")
        values = np.concatenate([train, validation])
        if np.all(values[np.isfinite(values)] > 0) and np.isfinite(values).any():
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per spectrum")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    figure.suptitle("Training curves (weights kept from the best validation epoch)")
    return figure


def _axis_label(unit: str | None) -> str:
    return f"bin centre [{plot_text(unit)}]" if unit else "bin centre"


#: the pull axis spans at most +-this; larger pulls run off the axis and their maximum is written on it
MAX_PULL_AXIS = 10.0


def _pull_limit(pulls: np.ndarray) -> float:
    """Symmetric pull-axis limit: at least +-4 so the +-3 lines show, at most :data:`MAX_PULL_AXIS`."""
    finite = np.abs(pulls[np.isfinite(pulls)])
    return min(max(4.0, 1.1 * float(finite.max())), MAX_PULL_AXIS) if finite.size else 4.0


def _step_outline(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The x and y of a histogram's step outline: each bin's value held from its low to its high edge.

    Drawn as one line (or filled polygon) rather than with ``Axes.stairs``, whose patch has its data
    limits computed one Bezier segment at a time in Python: a minute for a figure of 16,384-bin spectra.
    """
    return np.repeat(np.asarray(edges, dtype=np.float64), 2)[1:-1], np.repeat(np.asarray(values, dtype=np.float64), 2)


def _draw_spectrum(ax, pull_ax, example, row: int, edges: np.ndarray, centres: np.ndarray) -> bool:
    """Input (steps) and reconstruction (line) on ``ax``, pulls on ``pull_ax``; whether counts are on a log axis."""
    counts = np.asarray(example["input"][row], dtype=np.float64)
    reconstruction = np.asarray(example["reconstruction"][row], dtype=np.float64)
    log_y = np.nanmin(counts) >= 0 and np.nanmax(counts) > 10 * COUNT_FLOOR  # reconstructions are clipped
    floor = COUNT_FLOOR if log_y else -np.inf
    ax.plot(*_step_outline(np.maximum(counts, floor), edges), color="black", lw=1.0, label="input")
    ax.plot(centres, np.maximum(reconstruction, floor), color=ANOMALOUS_COLOUR, lw=1.2, label="reconstruction")
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=5))
        ax.yaxis.set_minor_locator(NullLocator())  # dozens of minor ticks per panel make this figure slow
    ax.xaxis.set_major_locator(MaxNLocator(6))
    if "pulls" in example:
        pulls = np.asarray(example["pulls"][row], dtype=np.float64)
        x, y = _step_outline(np.nan_to_num(pulls, nan=0.0), edges)
        pull_ax.fill_between(x, 0.0, y, color="#555555", alpha=0.8, lw=0.6, label="pull")  # edge: narrow bins show
        for level in (-3, 3):
            pull_ax.axhline(level, color=ANOMALOUS_COLOUR, ls=":", lw=0.9)
        pull_ax.axhline(0, color="black", lw=0.6)
        limit = _pull_limit(pulls)
        pull_ax.set_ylim(-limit, limit)
        largest = float(np.nanmax(np.abs(pulls))) if np.isfinite(pulls).any() else 0.0
        if largest > limit:
            pull_ax.text(0.01, 0.93, f"max |pull| {largest:.3g}", transform=pull_ax.transAxes, va="top", fontsize=7.5,
                         bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    else:
        pull_ax.text(0.5, 0.5, "no pulls stored", ha="center", va="center", transform=pull_ax.transAxes, fontsize=8)
    return log_y


def _latent_coordinates(table: pd.DataFrame) -> tuple[np.ndarray | None, tuple[str, str]]:
    """2-D coordinates of the latent columns: as they are when 2-D, else their first two PCs."""
    columns = sorted((c for c in table.columns if c.startswith("latent_") and c[7:].isdigit()), key=lambda c: int(c[7:]))
    if not columns:
        return None, ("", "")
    latent = table[columns].to_numpy(dtype=np.float64)
    if latent.shape[1] == 1:  # nothing to project: latent against the score (non-finite points are not drawn)
        return np.column_stack([latent[:, 0], table["anomaly_score"].to_numpy(dtype=np.float64)]), ("latent_0", _score_label(table))
    if latent.shape[1] == 2:
        return latent, ("latent_0", "latent_1")
    from sklearn.decomposition import PCA

    finite = np.isfinite(latent).all(axis=1)
    projected = np.full((len(latent), 2), np.nan)
    if finite.sum() >= 2:
        projected[finite] = PCA(n_components=2).fit_transform(latent[finite])
    dim = latent.shape[1]
    return projected, (f"latent PC 1 (PCA of {dim}-D latent)", f"latent PC 2 (PCA of {dim}-D latent)")


def _subsample(n: int, *, priority: np.ndarray | None, limit: int = MAX_SCATTER_POINTS) -> np.ndarray:
    """At most ``limit`` row indices, keeping every ``priority`` row first; seeded, so reproducible."""
    if n <= limit:
        return np.arange(n)
    keys = np.random.default_rng(0).random(n)  # the ``limit`` smallest keys are kept: a uniform random subset
    if priority is not None:
        keys[np.asarray(priority, dtype=bool)] -= 1.0  # priority rows first (a random share of them if too many)
    return np.sort(np.argpartition(keys, limit - 1)[:limit])


def latent_space_figure(tables: Mapping[str, pd.DataFrame], *, labelled: bool) -> Figure:
    """Latent coordinates per model: coloured by label (test split) or by anomaly score (every spectrum)."""
    figure, axes = _panel_grid(len(tables), panel_size=(5.2, 4.6))
    for ax, (name, table) in zip(axes, tables.items()):
        rows = evaluated_rows(table) if labelled else table
        rows = rows.iloc[_subsample(len(rows), priority=rows["label"].to_numpy() == 1 if labelled else None)]
        coordinates, (x_label, y_label) = _latent_coordinates(rows)  # projected from the drawn spectra only
        ax.set_title(_model_title(name, table))
        ax.set_xlabel(x_label or "latent coordinate 1")
        ax.set_ylabel(y_label or "latent coordinate 2")
        if coordinates is None or len(rows) == 0:
            _message(ax, "no latent coordinates in the score table" if coordinates is None else "no spectra to show")
            continue
        if labelled:
            labels = rows["label"].to_numpy()
            chosen = _subsample(len(rows), priority=labels == 1)
            shown = []
            for value, group, colour, size, z in ((0, "normal", NORMAL_COLOUR, 6, 1), (1, "anomalous", ANOMALOUS_COLOUR, 14, 2)):
                mask = chosen[labels[chosen] == value]
                ax.scatter(coordinates[mask, 0], coordinates[mask, 1], s=size, alpha=0.5 if value == 0 else 0.85,
                           color=colour, zorder=z, lw=0, label=group, rasterized=True)
                shown.append(f"{len(mask)} {group}")
            ax.set_title(f"{_model_title(name, table)}: {', '.join(shown)}")
        else:
            scores = rows["anomaly_score"].to_numpy(dtype=np.float64)
            chosen = _subsample(len(rows), priority=None)
            chosen = chosen[np.argsort(np.nan_to_num(scores[chosen], nan=-np.inf), kind="stable")]  # most anomalous on top
            finite = scores[np.isfinite(scores)]
            low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
            wide = low > 0 and high / low > 30  # positive scores over decades: a log colour scale
            norm = LogNorm(vmin=low, vmax=high) if wide else Normalize(vmin=low, vmax=high if high > low else low + 1)
            points = ax.scatter(coordinates[chosen, 0], coordinates[chosen, 1], c=scores[chosen], s=7, lw=0, cmap="viridis",
                                norm=norm, rasterized=True)
            figure.colorbar(points, ax=ax, extend="both", label=_score_label(table) + " (1st-99th pct.)")
            ax.set_title(f"{_model_title(name, table)}: {len(chosen)} spectra")
        ax.grid(alpha=0.3)
    if labelled:
        handles = [Line2D([], [], ls="none", marker="o", ms=7, color=NORMAL_COLOUR, alpha=0.6, label="normal (test split)"),
                   Line2D([], [], ls="none", marker="o", ms=8, color=ANOMALOUS_COLOUR, label="anomalous (test split), drawn on top")]
    else:
        handles = [Line2D([], [], ls="none", marker="o", ms=7, color="grey",
                          label="one point per spectrum (every split), coloured by anomaly score; most anomalous on top")]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    figure.suptitle("Latent space " + ("of the test split, by label" if labelled else "of every spectrum, coloured by anomaly score"))
    return figure
