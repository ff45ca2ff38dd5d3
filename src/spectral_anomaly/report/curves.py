"""ROC and precision-recall figures with 68 % bootstrap bands (:mod:`.bootstrap`).

Each model's primary score on the test split is drawn as a line with a shaded band: the 16th to
84th percentile of 200 seeded bootstrap resamples of the test rows, of TPR at each false-positive
rate (ROC) and of precision at each recall (PR). The legends give each AUC with its bootstrap
standard deviation, the same numbers as ``roc_auc`` / ``roc_auc_std`` and ``pr_auc`` /
``pr_auc_std`` in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .bootstrap import FPR_GRID, RECALL_GRID, DetectionCurves
from .figures import _message, _model_title
from .metrics import model_curves


def model_colours(names) -> dict[str, str]:
    """A fixed colour per model, the same in every figure (tab10, in model order)."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728"]
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


def _skipped_note(ax, skipped: list[str], *, x: float, y: float) -> None:
    if skipped:
        ax.text(x, y, "no curve for " + ", ".join(skipped) + ":\nthe test split holds only one class",
                ha="center", va="center", transform=ax.transAxes, fontsize=10,
                bbox={"boxstyle": "round", "facecolor": "#fff4e5", "edgecolor": "#d9a441"})


def roc_figure(tables: Mapping[str, pd.DataFrame], *, labelled: bool,
               curves: Mapping[str, DetectionCurves | None] | None = None) -> Figure:
    """ROC curves with 68 % bootstrap bands: linear axes (left) and a log false-positive-rate axis (right)."""
    figure = Figure(figsize=(12.5, 5.6), layout="constrained")
    linear, logarithmic = figure.subplots(1, 2)
    for ax, scale in ((linear, "linear"), (logarithmic, "log")):
        ax.set_xlabel("false positive rate (normal spectra flagged)" + (", log scale" if scale == "log" else ""))
        ax.set_ylabel("true positive rate (anomalies found)")
    linear.set_title("ROC curves, test split (primary score of each model)")
    logarithmic.set_title("the same, low false-positive rates stretched")
    if not labelled:
        for ax in (linear, logarithmic):
            _message(ax, "no labels configured for this dataset:\nROC curves need labelled anomalies")
        return figure
    curves = model_curves(tables, labelled=True) if curves is None else curves
    colours = model_colours(tables)
    skipped, smallest_fpr = [], 1.0
    for name, table in tables.items():
        curve = curves.get(name)
        if curve is None:
            skipped.append(name)
            continue
        label = f"{_model_title(name, table)}: AUC = {curve.roc_auc:.3f} \u00b1 {curve.roc_auc_std:.3f}"
        smallest_fpr = min(smallest_fpr, 1.0 / max(curve.n_test - curve.n_anomalous, 1))
        for ax in (linear, logarithmic):
            ax.fill_between(FPR_GRID, curve.tpr_band[0], curve.tpr_band[1], color=colours[name], alpha=0.25, lw=0)
            ax.plot(FPR_GRID, curve.tpr, lw=2, color=colours[name], label=label if ax is linear else _model_title(name, table))
    chance = np.geomspace(1e-6, 1.0, 200)
    linear.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance (AUC = 0.5)")
    logarithmic.plot(chance, chance, ls="--", lw=1, color="grey", label="chance")
    _skipped_note(linear, skipped, x=0.62, y=0.45)
    linear.set_xlim(-0.01, 1.01)
    linear.set_aspect("equal")
    logarithmic.set_xscale("log")
    logarithmic.set_xlim(max(smallest_fpr, FPR_GRID[FPR_GRID > 0][0]), 1.0)
    for ax in (linear, logarithmic):
        ax.set_ylim(-0.01, 1.02)
        ax.grid(alpha=0.3)
    linear.legend(loc="lower right", title="shaded: 68 % bootstrap band", fontsize=9.5, title_fontsize=9.5)
    logarithmic.legend(loc="lower right", fontsize=9.5)
    return figure


def precision_recall_figure(tables: Mapping[str, pd.DataFrame], *, labelled: bool,
                            curves: Mapping[str, DetectionCurves | None] | None = None) -> Figure:
    """Precision against recall with 68 % bootstrap bands; the dashed line is a random ranking."""
    figure = Figure(figsize=(7.5, 5.6), layout="constrained")
    ax = figure.add_subplot()
    ax.set_xlabel("recall (fraction of anomalies found)")
    ax.set_ylabel("precision (fraction of flagged spectra that are anomalous)")
    ax.set_title("Precision-recall curves, test split (primary score)")
    if not labelled:
        _message(ax, "no labels configured for this dataset:\nPR curves need labelled anomalies")
        return figure
    curves = model_curves(tables, labelled=True) if curves is None else curves
    colours = model_colours(tables)
    skipped, prevalence = [], None
    for name, table in tables.items():
        curve = curves.get(name)
        if curve is None:
            skipped.append(name)
            continue
        prevalence = curve.prevalence
        ax.fill_between(RECALL_GRID, curve.precision_band[0], curve.precision_band[1], color=colours[name], alpha=0.25,
                        lw=0, step="post")
        ax.plot(RECALL_GRID, curve.precision, lw=2, color=colours[name], drawstyle="steps-post",
                label=f"{_model_title(name, table)}: AP = {curve.pr_auc:.3f} \u00b1 {curve.pr_auc_std:.3f}")
    if prevalence is not None:
        ax.axhline(prevalence, ls="--", lw=1, color="grey", label=f"random ranking (anomaly fraction {prevalence:.3f})")
    _skipped_note(ax, skipped, x=0.5, y=0.5)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.05)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", title="shaded: 68 % bootstrap band", fontsize=9.5, title_fontsize=9.5)
    return figure
