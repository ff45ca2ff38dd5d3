"""The figure of the most anomalous stored spectra: input, reconstruction and pulls, one column per model.

Which stored examples it draws is decided by :func:`.variety.distinct_examples`: the most anomalous
of distinct regions of the largest pull, so that the panels do not all show one kind of defect.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .figures import ANOMALOUS_COLOUR, _axis_label, _draw_spectrum, _message
from .variety import distinct_examples, largest_pull_bins


def top_anomalies_figure(examples: Mapping[str, Mapping[str, np.ndarray]], *, n_top: int = 10,
                         bin_unit: str | None = None) -> Figure:
    """``n_top`` of the most anomalous stored spectra of each model (one column per model), the most
    anomalous of distinct regions of the largest pull first (:func:`.variety.distinct_examples`).

    Each spectrum: input (steps) and reconstruction (line) above, per-bin pulls below on a shared
    x axis (bin centre, in ``bin_unit`` where known), with the +-3 pull lines dotted.
    """
    n_rows = max(1, min(n_top, max((len(e["spectrum_id"]) for e in examples.values()), default=1)))
    n_columns = max(1, len(examples))
    x_label = _axis_label(bin_unit)
    if not examples:
        figure = Figure(figsize=(6.0, 3.5), layout="constrained")
        _message(figure.add_subplot(), "no stored examples", labels=("Most anomalous spectra", x_label, "counts"))
        return figure
    # a fixed layout: constrained layout takes seconds for this many axes
    cell, header = 2.75, 0.75  # inches per spectrum (with its pulls, title and x label), above the first row
    width, height = 4.7 * n_columns, cell * n_rows + header
    figure = Figure(figsize=(width, height))
    outer = figure.add_gridspec(n_rows, n_columns, left=0.75 / width, right=1 - 0.15 / width, top=1 - header / height,
                                bottom=0.5 / height, wspace=0.75 / 4.7 * n_columns / max(n_columns - 0.25, 1), hspace=0.36)
    for column, (name, example) in enumerate(examples.items()):
        edges = np.asarray(example["bin_edges"], dtype=np.float64)
        centres = 0.5 * (edges[:-1] + edges[1:])
        shown, _ = distinct_examples(example, n_rows)
        pull_bins = largest_pull_bins(example)
        scores = np.nan_to_num(np.asarray(example["anomaly_score"], dtype=np.float64), nan=-np.inf)
        for row in range(n_rows):
            pair = outer[row, column].subgridspec(2, 1, height_ratios=[3, 1.15], hspace=0.06)
            ax = figure.add_subplot(pair[0])
            pull_ax = figure.add_subplot(pair[1], sharex=ax)
            ax.set_label(f"spectrum {name} {row}")
            pull_ax.set_label(f"pulls {name} {row}")
            for a in (ax, pull_ax):
                a.tick_params(labelsize=8)
            ax.tick_params(labelbottom=False)
            if row >= len(shown):
                _message(ax, "no further stored example")
                pull_ax.set_axis_off()
                ax.set_title(f"{name} #{row + 1}", fontsize=9)
                continue
            stored = int(shown[row])
            log_y = _draw_spectrum(ax, pull_ax, example, stored, edges, centres)
            rank = 1 + int((scores > scores[stored]).sum())
            where = f", max |pull| bin {int(pull_bins[stored])}" if pull_bins is not None else ""
            ax.set_title(f"{name} rank {rank}: spectrum {int(example['spectrum_id'][stored])}, "
                         f"score {float(example['anomaly_score'][stored]):.4g}{where}", fontsize=9)
            ax.set_ylabel("counts" + (" (log)" if log_y else ""), fontsize=8.5)
            pull_ax.set_ylabel("pull", fontsize=8.5)
            pull_ax.set_xlabel(x_label, fontsize=8.5)
            if row == 0:
                ax.legend(fontsize=8, loc="best")
                pull_ax.legend(handles=[Line2D([], [], color=ANOMALOUS_COLOUR, ls=":", label="\u00b13")],
                               fontsize=7, loc="upper right", handlelength=1.5)
    figure.suptitle(f"{n_rows} of the most anomalous spectra per model, one per region of the largest pull: input "
                    "(steps), reconstruction (line) and per-bin pulls (residual / uncertainty, below)",
                    y=1 - 0.2 / height, va="top")
    return figure
