"""The monitoring report's figures, one set per model, built like the training report's (:mod:`.figures`).

- :func:`score_trend_figure`: anomaly score against an ordering column, coloured by run, with the
  stored cuts as horizontal lines;
- :func:`run_flags_figure`: the fraction flagged per run at each stored cut, against its rate;
- :func:`drift_figure`: new against reference score distributions, as histograms and as CDFs;
- :func:`monitoring_examples_figure`: the most anomalous new spectra with their pulls, the bins that
  drive each score shaded.

Every text from data or configuration goes through :func:`.text.plot_text`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from ..text import plot_text
from ..thresholds import rate_label
from .figures import (
    ANOMALOUS_COLOUR,
    MAX_SCATTER_POINTS,
    NORMAL_COLOUR,
    _axis_label,
    _draw_spectrum,
    _histogram_edges,
    _message,
    _panel_grid,
    _subsample,
)
from .monitoring_metrics import run_groups, stored_flags

CUT_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b")
#: runs named in a legend at most; beyond, colours cycle over runs
MAX_RUN_LEGEND = 10
#: points of an empirical CDF drawn at most
MAX_CDF_POINTS = 4000
RUN_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#98df8a")


def _wide(values: np.ndarray) -> bool:
    """Whether positive values span more than a factor 20: drawn on a log axis."""
    finite = values[np.isfinite(values)]
    return bool(finite.size) and finite.min() > 0 and finite.max() / finite.min() > 20


def order_values(table: pd.DataFrame, order_column: str | None) -> tuple[np.ndarray, str]:
    """The x values of the score trend and their label: numbers and times as they are, other values by rank."""
    if order_column is None:
        return table["spectrum_id"].to_numpy(), "spectrum_id"
    values = table[order_column]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy(), plot_text(order_column)
    codes, _ = run_groups(values)
    return codes, f"position in {plot_text(order_column)} order"


def _draw_cuts(ax, entries: list[dict]) -> None:
    transform = blended_transform_factory(ax.transAxes, ax.transData)
    for index, entry in enumerate(sorted(entries, key=lambda e: -e["false_positive_rate"])):
        colour = CUT_COLOURS[index % len(CUT_COLOURS)]
        ax.axhline(entry["cut"], color=colour, lw=1.4, ls="--")
        ax.text(0.995, entry["cut"], f"cut for FPR {rate_label(entry['false_positive_rate'])} ({entry['cut']:.4g})",
                transform=transform, ha="right", va="bottom", fontsize=8.5, color=colour,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})


def _kept_flags(table: pd.DataFrame, entries: list[dict]) -> np.ndarray | None:
    """The flags at the strictest stored cut, drawn whatever the subsampling; None where they would fill
    more than half the points drawn, which would hide the unflagged spectra."""
    if not entries:
        return None
    flags = stored_flags(table, min(entries, key=lambda e: e["false_positive_rate"]))
    return flags if flags.sum() <= MAX_SCATTER_POINTS // 2 else None


def score_trend_figure(table: pd.DataFrame, entries: list[dict], *, title: str, order_column: str | None,
                       run_column: str | None) -> Figure:
    """Anomaly score of each new spectrum against ``order_column`` (or spectrum_id), coloured by run.

    Spectra flagged at the strictest stored cut are always drawn, the others subsampled; log y axis where the
    scores span more than a factor 20.
    """
    figure, (ax,) = _panel_grid(1, panel_size=(11.5, 4.2))
    x, x_label = order_values(table, order_column)
    scores = table["anomaly_score"].to_numpy(dtype=np.float64)
    kept = _kept_flags(table, entries)
    chosen = _subsample(len(table), priority=kept)
    if run_column is None:
        ax.scatter(x[chosen], scores[chosen], s=6, lw=0, alpha=0.6, color=NORMAL_COLOUR, rasterized=True)
    else:
        codes, keys = run_groups(table[run_column])
        colours = np.array(RUN_COLOURS, dtype=object)[codes[chosen] % len(RUN_COLOURS)]
        ax.scatter(x[chosen], scores[chosen], s=6, lw=0, alpha=0.7, c=list(colours), rasterized=True)
        if len(keys) <= MAX_RUN_LEGEND:
            for index, key in enumerate(keys):
                ax.scatter([], [], s=20, color=RUN_COLOURS[index % len(RUN_COLOURS)], label=f"{plot_text(run_column)} {plot_text(key)}")
            ax.legend(loc="upper left", fontsize=8, ncols=min(len(keys), 5), markerscale=1.2)
        else:
            ax.text(0.005, 0.98, f"{len(keys)} {plot_text(run_column)}s; colours cycle over them", transform=ax.transAxes,
                    va="top", fontsize=8.5)
    _draw_cuts(ax, entries)
    if _wide(np.concatenate([scores, [e["cut"] for e in entries]])):
        ax.set_yscale("log")
    ax.set(xlabel=x_label, ylabel="anomaly_score (higher = more anomalous)", title=title)
    ax.grid(alpha=0.3)
    if len(chosen) < len(table):
        note = "" if kept is None else f", every one flagged at {rate_label(min(e['false_positive_rate'] for e in entries))} kept"
        ax.set_title(f"{len(chosen):,} of {len(table):,} spectra drawn{note}", loc="right", fontsize=8.5)
    return figure


def run_flags_figure(per_run: dict, entries: list[dict], *, title: str) -> Figure:
    """One panel per stored cut: each run's flagged fraction with its 68% interval, and the rate with its
    binomial one-standard-deviation band for that run's size."""
    runs, column = per_run["runs"], per_run["column"]
    ordered = sorted(entries, key=lambda e: -e["false_positive_rate"])
    figure, axes = _panel_grid(max(len(ordered), 1), panel_size=(11.5, 2.9), max_columns=1)
    if not ordered:
        _message(axes[0], "no stored cuts", labels=(title, plot_text(column), "fraction flagged"))
        return figure
    positions = np.arange(len(runs))
    counts = np.array([run["n_spectra"] for run in runs], dtype=np.float64)
    for index, (ax, entry) in enumerate(zip(axes, ordered)):
        rate = float(entry["false_positive_rate"])
        values = [run["flagged"][entry["column"]] for run in runs]
        fraction = np.array([v["fraction"] for v in values])
        low, high = (np.array([v["interval"][i] for v in values]) for i in (0, 1))
        spread = np.sqrt(rate * (1.0 - rate) / counts)
        x = np.repeat(np.append(positions - 0.5, positions[-1] + 0.5), 2)[1:-1]
        ax.fill_between(x, np.repeat(np.maximum(rate - spread, 0), 2), np.repeat(rate + spread, 2), color="grey", alpha=0.25,
                        lw=0, label="expected \u00b11\u03c3 (binomial, run size)")
        ax.axhline(rate, color="black", lw=1.0, ls="--", label=f"expected: rate {rate_label(rate)}")
        colour = CUT_COLOURS[index % len(CUT_COLOURS)]
        ax.errorbar(positions, fraction, yerr=[fraction - low, high - fraction], fmt="o", ms=4, color=colour, lw=1.2,
                    label="flagged fraction, 68% interval")
        ax.set_ylim(0, max(1.6 * float(np.max(high)), 2.5 * rate))
        ax.set(ylabel="fraction flagged", title=f"cut for FPR {rate_label(rate)} ({entry['cut']:.4g})")
        ax.legend(loc="upper right", fontsize=8, ncols=3)
        ax.grid(alpha=0.3)
        if len(runs) <= 30:
            ax.set_xticks(positions, [plot_text(run["run"]) for run in runs], rotation=45 if len(runs) > 8 else 0, fontsize=8)
        ax.set_xlabel(plot_text(column) + ("" if len(runs) <= 30 else f" (position of {len(runs)}, in order)"))
    figure.suptitle(title)
    return figure


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An empirical CDF's steps, thinned to at most :data:`MAX_CDF_POINTS` points."""
    ordered = np.sort(values)
    at = np.unique(np.linspace(0, ordered.size - 1, min(ordered.size, MAX_CDF_POINTS)).astype(np.int64))
    return ordered[at], (at + 1) / ordered.size


def drift_figure(new: np.ndarray, reference: np.ndarray, drift: dict, *, title: str, verdict: str) -> Figure:
    """Histograms normalised to unit sum (left) and empirical CDFs (right) of new and reference anomaly scores."""
    figure, (hist_ax, cdf_ax) = _panel_grid(2, panel_size=(5.75, 3.9), max_columns=2)
    new, reference = new[np.isfinite(new)], reference[np.isfinite(reference)]
    if not (new.size and reference.size):
        for ax in (hist_ax, cdf_ax):
            _message(ax, "no scores to compare", labels=(title, "anomaly_score", ""))
        return figure
    edges, log_x = _histogram_edges(np.concatenate([new, reference]))
    n_bins = int(np.clip(2.0 * min(new.size, reference.size) ** (1 / 3), 10, len(edges) - 1))  # Rice's rule, smaller sample
    edges = np.geomspace(edges[0], edges[-1], n_bins + 1) if log_x else np.linspace(edges[0], edges[-1], n_bins + 1)
    groups = ((reference, "reference (calibration spectra)", NORMAL_COLOUR), (new, "new spectra", ANOMALOUS_COLOUR))
    for values, label, colour in groups:
        hist_ax.hist(values, bins=edges, weights=np.full(values.size, 1.0 / values.size), histtype="step", lw=1.6, color=colour,
                     label=f"{label}, n = {values.size:,}")
        cdf_ax.step(*_ecdf(values), where="post", lw=1.6, color=colour, label=label)
    if drift["location"] is not None:
        cdf_ax.axvline(drift["location"], color="black", lw=0.9, ls=":", label=f"largest distance D = {drift['statistic']:.3f}")
    if drift.get("below") is not None:  # the test compares the spectra at or below the loosest cut
        for ax in (hist_ax, cdf_ax):
            ax.axvline(drift["below"], color="#444444", lw=0.9, ls="--", label="loosest stored cut" if ax is cdf_ax else None)
    for ax in (hist_ax, cdf_ax):
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("anomaly_score (higher = more anomalous)")
        ax.grid(alpha=0.3)
    hist_ax.set(ylabel="fraction of spectra per bin", title="score distributions", ylim=(0, 1.3 * hist_ax.get_ylim()[1]))
    hist_ax.legend(loc="upper right", fontsize=8)
    cdf_ax.set(ylabel="fraction of spectra below", title="empirical CDFs", ylim=(0, 1.02))
    cdf_ax.legend(loc="lower right", fontsize=8)
    tested = (f"KS D = {drift['statistic']:.3f}, p = {drift['p_value']:.3g}" if drift["statistic"] is not None
              else f"all {drift['n_new_above']:,} new spectra above the loosest cut")
    figure.suptitle(f"{title}: {tested}: {verdict}")
    return figure


def _shade_bins(ax, pull_ax, bins: list[dict]) -> None:
    for rank, entry in enumerate(bins):
        for a in (ax, pull_ax):
            a.axvspan(entry["low"], entry["high"], color="#ffbf00", alpha=0.35 if rank == 0 else 0.2, lw=0, zorder=0)


def monitoring_examples_figure(example: dict | None, records: list[dict], *, title: str, n_top: int,
                               bin_unit: str | None) -> Figure:
    """Up to ``n_top`` stored examples, two per row: input and reconstruction above, pulls below, the
    driving bins shaded."""
    shown = min(n_top, len(records))
    if example is None or shown == 0:
        figure = Figure(figsize=(6.0, 3.0), layout="constrained")
        _message(figure.add_subplot(), "no stored examples", labels=(title, _axis_label(bin_unit), "counts"))
        return figure
    n_columns = min(shown, 2)
    n_rows = -(-shown // n_columns)
    figure = Figure(figsize=(5.75 * n_columns, 3.1 * n_rows + 0.5), layout="constrained")
    outer = figure.add_gridspec(n_rows, n_columns)
    edges = np.asarray(example["bin_edges"], dtype=np.float64)
    centres = 0.5 * (edges[:-1] + edges[1:])
    for row, record in enumerate(records[:shown]):
        pair = outer[row // n_columns, row % n_columns].subgridspec(2, 1, height_ratios=[3, 1.2], hspace=0.05)
        ax = figure.add_subplot(pair[0])
        pull_ax = figure.add_subplot(pair[1], sharex=ax)
        ax.tick_params(labelbottom=False, labelsize=8)
        pull_ax.tick_params(labelsize=8)
        log_y = _draw_spectrum(ax, pull_ax, example, row, edges, centres)
        _shade_bins(ax, pull_ax, record["driving_bins"])
        ax.set_title(f"#{row + 1}: spectrum {plot_text(record['spectrum_id'])}, score {record['anomaly_score']:.4g}", fontsize=9)
        ax.set_ylabel("counts" + (" (log)" if log_y else ""), fontsize=8.5)
        pull_ax.set_ylabel("pull", fontsize=8.5)
        pull_ax.set_xlabel(_axis_label(bin_unit), fontsize=8.5)
        if row == 0:
            ax.legend(fontsize=8, loc="best")
    figure.suptitle(f"{title}: input (steps), reconstruction (line), pulls below; "
                    "shaded: the bins of largest |pull|", fontsize=10.5)
    return figure
