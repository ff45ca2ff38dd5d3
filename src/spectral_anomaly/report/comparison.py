"""How the models agree with each other, and how flags spread over runs.

- :func:`score_agreement_figure`: for pairs of models, each spectrum's rank under one model against
  its rank under the other (log axes, rank 1 = most anomalous, so the tail that matters is spread
  out), anomalies in a distinct colour, the Spearman rank correlation over every spectrum in each
  panel. At most :data:`MAX_AGREEMENT_MODELS` models are paired (one of each kind first).
- :func:`run_summary` / :func:`run_summary_figure`: where the metadata have a run column, the
  fraction of each run's spectra flagged at every calibrated false-positive rate (``flag_fpr_*``)
  by each model and, with labels, the fraction labelled anomalous.

Every computation is vectorised over spectra and every scatter is subsampled, so a million
spectra take seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from ..text import plot_text
from ..thresholds import rate_label, threshold_entries
from .figures import ANOMALOUS_COLOUR, NORMAL_COLOUR, _message, _panel_grid, _subsample

#: models paired in the agreement figure at most (6 panels)
MAX_AGREEMENT_MODELS = 4
#: metadata columns taken as the run / group of a spectrum, first present wins
GROUP_COLUMNS: tuple[str, ...] = ("run", "run_number", "runnumber", "run_id")
#: runs drawn by name on the x axis at most; beyond, runs are drawn by position
MAX_RUN_TICKS = 25
#: rows of the per-run table on the page
MAX_TABLE_RUNS = 30
RATE_STYLES = ("-", "--", "-.", ":")


def agreement_models(tables: Mapping[str, pd.DataFrame], *, limit: int = MAX_AGREEMENT_MODELS) -> list[str]:
    """Up to ``limit`` model names: the first of each kind, then the rest in order."""
    first_of_kind: dict[str, str] = {}
    for name, table in tables.items():
        first_of_kind.setdefault(str(table.attrs.get("model_kind", name)), name)
    chosen = list(first_of_kind.values())[:limit]
    chosen += [name for name in tables if name not in chosen][: limit - len(chosen)]
    return [name for name in tables if name in chosen]


def descending_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each score, 1 = highest (ties get their average rank); NaN scores rank last."""
    from scipy.stats import rankdata

    values = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    return rankdata(-values, method="average")


def spearman(ranks_a: np.ndarray, ranks_b: np.ndarray) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks."""
    a, b = ranks_a - ranks_a.mean(), ranks_b - ranks_b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def aligned_column(table: pd.DataFrame, reference: pd.DataFrame, column: str) -> np.ndarray:
    """``table[column]`` in the row order of ``reference`` (joined on spectrum_id where the orders differ)."""
    ids = reference["spectrum_id"].to_numpy()
    if len(table) == len(reference) and np.array_equal(table["spectrum_id"].to_numpy(), ids):
        return table[column].to_numpy()
    by_id = table.drop_duplicates("spectrum_id").set_index("spectrum_id")[column]
    return pd.Series(ids).map(by_id).to_numpy()


def _strictest_flags(table: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray | None:
    """The flags at the lowest calibrated rate, in ``reference``'s row order, or None without flags."""
    entries = [e for e in threshold_entries(table) if e["column"] in table.columns]
    if not entries:
        return None
    column = min(entries, key=lambda e: e["false_positive_rate"])["column"]
    return pd.Series(aligned_column(table, reference, column)).eq(True).to_numpy()


def score_agreement_figure(tables: Mapping[str, pd.DataFrame], *, labelled: bool) -> Figure:
    """Rank-rank scatter of every pair of (up to four) models, with the Spearman correlation."""
    names = agreement_models(tables)
    pairs = list(combinations(names, 2))
    figure, axes = _panel_grid(len(pairs), panel_size=(4.6, 4.4))
    if not pairs:
        _message(axes[0], "one model only: nothing to compare",
                 labels=("Score agreement between models", "rank by model A", "rank by model B"))
        return figure
    reference = tables[names[0]]
    ranks = {name: descending_ranks(aligned_column(tables[name], reference, "anomaly_score").astype(np.float64))
             for name in names}
    if labelled and "label" in reference.columns:
        highlight, highlight_text = reference["label"].to_numpy() == 1, "labelled anomalous"
    else:
        flags = [f for f in (_strictest_flags(tables[name], reference) for name in names) if f is not None]
        highlight = np.logical_or.reduce(flags) if flags else None
        highlight_text = "flagged at the strictest calibrated rate by any of these models"
    n = len(reference)
    chosen = _subsample(n, priority=highlight)
    normal = chosen if highlight is None else chosen[~highlight[chosen]]
    special = np.array([], dtype=np.int64) if highlight is None else chosen[highlight[chosen]]
    for ax, (a, b) in zip(axes, pairs):
        ax.scatter(ranks[a][normal], ranks[b][normal], s=4, lw=0, alpha=0.35, color=NORMAL_COLOUR, rasterized=True)
        ax.scatter(ranks[a][special], ranks[b][special], s=9, lw=0, alpha=0.8, color=ANOMALOUS_COLOUR, rasterized=True)
        ax.plot([1, n], [1, n], color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_locator(NullLocator())  # minor ticks over six decades make the layout slow
        ax.set_xlim(n * 1.5, 0.7)  # most anomalous at the right / top
        ax.set_ylim(n * 1.5, 0.7)
        ax.set_xlabel(f"rank by {a} (1 = most anomalous)")
        ax.set_ylabel(f"rank by {b}")
        ax.set_title(f"{a} vs {b}")
        ax.text(0.04, 0.96, f"Spearman \u03c1 = {spearman(ranks[a], ranks[b]):.3f}", transform=ax.transAxes, va="top",
                fontsize=11, bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#999999", "alpha": 0.9})
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="none", marker="o", ms=6, color=NORMAL_COLOUR, alpha=0.6,
                      label="spectrum (every split)" if highlight is None else "other spectra"),
               Line2D([], [], ls="--", color="grey", label="same rank under both")]
    if highlight is not None:
        handles.insert(1, Line2D([], [], ls="none", marker="o", ms=6, color=ANOMALOUS_COLOUR, label=highlight_text))
    for ax in axes:
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    shown = (f"all {n:,} spectra" if len(chosen) == n else
             f"{len(chosen):,} of {n:,} spectra drawn" + (", every red one kept" if highlight is not None else ""))
    extra = f"; first {len(names)} of {len(tables)} models" if len(names) < len(tables) else ""
    figure.suptitle(f"Score agreement between models: anomaly-score ranks ({shown}{extra}); \u03c1 over every spectrum")
    return figure


def group_column(tables: Mapping[str, pd.DataFrame]) -> str | None:
    """The run column of the score tables (see :data:`GROUP_COLUMNS`), or None."""
    first = next(iter(tables.values()))
    return next((c for c in GROUP_COLUMNS if c in first.columns and first[c].nunique() > 1), None)


def run_summary(tables: Mapping[str, pd.DataFrame], *, column: str) -> pd.DataFrame:
    """Per run (every split): spectra, fraction labelled anomalous and each model's flagged fraction per rate.

    Columns: ``column``, ``spectra``, ``labelled anomalous`` (with labels), then
    ``flagged <rate> (<model>)`` for every model and calibrated rate, sorted by run.
    """
    first = next(iter(tables.values()))
    groups = first[column].to_numpy()
    keys, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    summary = pd.DataFrame({column: keys, "spectra": counts})
    if "label" in first.columns:
        summary["labelled anomalous"] = np.bincount(inverse, weights=first["label"].to_numpy() == 1) / counts
    for name, table in tables.items():
        for entry in sorted(threshold_entries(table), key=lambda e: -e["false_positive_rate"]):
            if entry["column"] in table.columns:
                flags = pd.Series(aligned_column(table, first, entry["column"])).eq(True).to_numpy()
                summary[f"flagged {rate_label(entry['false_positive_rate'])} ({name})"] = np.bincount(inverse, weights=flags) / counts
    return summary


def run_summary_figure(tables: Mapping[str, pd.DataFrame], summary: pd.DataFrame | None, *, column: str | None) -> Figure:
    """Per model, the fraction of each run's spectra flagged at each rate (steps); labelled fraction in black."""
    names = list(tables)
    if summary is None or column is None:
        figure, axes = _panel_grid(1, panel_size=(7.0, 3.6))
        _message(axes[0], "no run column in the metadata:\nno per-run summary", labels=("Flags per run", "run", "fraction of spectra"))
        return figure
    flagged = {name: [c for c in summary.columns if c.startswith("flagged ") and c.endswith(f"({name})")] for name in names}
    figure, axes = _panel_grid(len(names), panel_size=(12.0, 3.3), max_columns=1)
    positions = np.arange(len(summary))
    for ax, name in zip(axes, names):
        ax.set_title(f"{name}: fraction of each {column}'s spectra flagged")
        ax.set_ylabel("fraction of spectra")
        ax.set_xlabel(column + ("" if len(summary) <= MAX_RUN_TICKS else f" (position of {len(summary)} {column}s, in order)"))
        if "labelled anomalous" in summary.columns:
            ax.step(positions, summary["labelled anomalous"], where="mid", color="black", lw=1.6, label="labelled anomalous")
        for index, flag in enumerate(flagged[name]):
            rate = flag[len("flagged "):].split(" ")[0]
            ax.step(positions, summary[flag], where="mid", lw=1.4, ls=RATE_STYLES[index % len(RATE_STYLES)],
                    color=ANOMALOUS_COLOUR if index == 0 else "#ff7f0e", label=f"flagged at target FPR {rate}")
        if not ax.lines:
            _message(ax, "no calibrated flags and no labels to summarise")
            continue
        if len(summary) <= MAX_RUN_TICKS:
            ax.set_xticks(positions, [plot_text(v) for v in summary[column]], rotation=45 if len(summary) > 8 else 0,
                          fontsize=8.5)
        ax.set_ylim(0, max(0.05, 1.35 * float(np.nanmax([line.get_ydata().max() for line in ax.lines]))))  # room for the legend
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8.5, ncols=3)
    figure.suptitle(f"Flags per {column} (every split): a {column} far above the target rate is worth a look")
    return figure
