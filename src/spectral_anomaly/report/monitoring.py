"""The monitoring report of an apply run: new spectra scored by detectors trained on a reference version.

:func:`build_monitoring_report` reads the apply run's score tables and most anomalous examples and
the reference version's score tables (no model is loaded), and writes

- ``metrics.json``: per model the fraction flagged at each stored cut (overall and per run) against
  the rate it was calibrated for, and a Kolmogorov-Smirnov test of the new anomaly scores against
  the reference's calibration scores (:mod:`.monitoring_metrics`);
- four PNG figures per model in a figure folder (:mod:`.monitoring_figures`): the score against an
  ordering column with the cuts, the fraction flagged per run, the new and reference score
  distributions, and the most anomalous new spectra with their pulls;
- one self-contained HTML page (:mod:`.monitoring_page`).

The cuts are those stored with the score tables at training time; nothing is recalibrated. Every
score is oriented so that higher means more anomalous.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, InputFileError
from ..store.atomic import write_json, write_text
from ..store.formats import FORMAT_VERSIONS, read_versioned_json
from ..text import plot_text
from ..thresholds import rate_label, threshold_entries
from .figures import render_png
from .monitoring_figures import drift_figure, monitoring_examples_figure, run_flags_figure, score_trend_figure
from .monitoring_metrics import (
    KS_ALPHA,
    calibration_scores,
    drift_test,
    drift_verdict,
    example_records,
    flag_summary,
    loosest_cut,
    per_run_summary,
)
from .monitoring_page import model_section, render_monitoring_page

__all__ = ["MONITORING_FIGURES", "build_monitoring_report", "read_monitoring_metrics"]

#: the figures written per model, as ``<figure_dir>/<NN>-<model>.<name>.png``
MONITORING_FIGURES = ("score_trend", "run_flags", "drift", "examples")
#: stored examples drawn per model at most
N_EXAMPLES = 6

PathLike = str | os.PathLike[str]


def read_monitoring_metrics(path: PathLike) -> dict:
    """Read a monitoring ``metrics.json``, refusing a missing, corrupt or newer one."""
    return read_versioned_json(path, kind="monitoring_metrics", step="report")


def _check_columns(table: pd.DataFrame, columns: Mapping[str, str | None], *, path: PathLike) -> None:
    for option, column in columns.items():
        if column is not None and column not in table.columns:
            reserved = {"model", "split", "label", "anomaly_score"}
            available = [c for c in table.columns if not c.startswith(("latent_", "flag_fpr_")) and c not in reserved]
            raise ConfigError(f"{option} {column!r} is not a column of the score table {path}; "
                              f"available: {', '.join(map(repr, available))}")


def read_model_inputs(name: str, *, scores: Mapping, reference_scores: Mapping, examples: Mapping,
                      columns: Mapping[str, str | None]) -> tuple[pd.DataFrame, pd.DataFrame, dict | None]:
    """The apply table, the reference table and the examples (or None) of one model, checked to belong together."""
    from ..score import read_examples, read_scores

    if name not in reference_scores:
        raise ConfigError(f"model {name!r} has no reference score table; reference models: "
                          f"{', '.join(map(repr, reference_scores)) or 'none'}")
    table, reference = read_scores(scores[name]), read_scores(reference_scores[name])
    _check_columns(table, columns, path=scores[name])
    if table.attrs["primary_score"] != reference.attrs["primary_score"]:
        raise InputFileError(
            f"{scores[name]}: model {name!r} ranks by {table.attrs['primary_score']!r} but its reference table "
            f"{reference_scores[name]} by {reference.attrs['primary_score']!r}: they come from different detectors")
    example = read_examples(examples[name]) if name in examples else None
    return table, reference, example


def model_metrics(table: pd.DataFrame, reference: pd.DataFrame, *, run_column: str | None) -> dict:
    """The metrics of one model: primary score, flags per stored cut (and per run) and the drift test."""
    calibration, _ = calibration_scores(reference)
    return {
        "kind": table.attrs["model_kind"], "primary_score": table.attrs["primary_score"], "n_spectra": len(table),
        "flagged": flag_summary(table),
        "per_run": per_run_summary(table, run_column=run_column) if run_column is not None else None,
        "drift": drift_test(table["anomaly_score"].to_numpy(dtype=np.float64), calibration, below=loosest_cut(table)),
    }


def figure_stem(index: int, name: str) -> str:
    """A file-name stem for model ``name``: its position and its name with only safe characters kept."""
    return f"{index + 1:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '_', name)[:40].strip('_') or 'model'}"


def _captions(name: str, *, order: str, run_column: str | None, entry: dict) -> dict[str, str]:
    rates = ", ".join(rate_label(v["rate"]) for v in entry["flagged"].values()) or "none stored"
    return {
        "order": order,
        "trend": (f"Anomaly score of every new spectrum of {name} against {order}"
                  + (f", coloured by {run_column}" if run_column else "")
                  + f". Dashed lines: the cuts stored at training time (false-positive rates {rates}); a spectrum above a "
                  "line is flagged at that rate. Large samples are subsampled, keeping every spectrum flagged at the strictest cut "
                  "where they are a minority of the points drawn."),
        "runs": (f"For each {run_column}, the fraction of its new spectra above each stored cut with a 68% Clopper-Pearson "
                 "interval, against the rate the cut was calibrated for (dashed) and that rate's binomial 1-sigma band for the "
                 f"{run_column}'s number of spectra (grey). A {run_column} well above the band is worth a look."),
        "drift": ("Left: the new anomaly scores and those of the reference's calibration spectra, each normalised to unit "
                  "sum. Right: their empirical cumulative distributions; the Kolmogorov-Smirnov statistic D is their "
                  "largest vertical distance (dotted line). A new distribution shifted to the right means more "
                  "anomalous-looking spectra than at training time."),
        "examples": ("The most anomalous new spectra: input counts (steps) and the model's reconstruction (line), the "
                     "per-bin pulls (residual over uncertainty) below with dotted lines at +-3. Shaded: the bins of largest "
                     "|pull|, listed below with their ranges, which drive the score."),
    }


def render_model(index: int, name: str, table: pd.DataFrame, reference: pd.DataFrame, example: dict | None,
                 entry: dict, *, order_column: str | None, run_column: str | None, bin_unit: str | None,
                 reference_version: str) -> tuple[dict[str, bytes], list[str], list[dict]]:
    """The PNG figures, the page section and the example records of one model."""
    title = plot_text(f"{name} ({entry['kind']})")
    entries = threshold_entries(table)
    records = example_records(example, table, columns=[c for c in (run_column, order_column) if c]) if example else []
    pngs = {"score_trend": render_png(score_trend_figure(table, entries, title=title, order_column=order_column,
                                                         run_column=run_column))}
    if entry["per_run"] is not None and len(entry["per_run"]["runs"]) > 1:
        pngs["run_flags"] = render_png(run_flags_figure(entry["per_run"], entries, title=f"{title}: fraction flagged"))
    calibration, description = calibration_scores(reference)
    new = table["anomaly_score"].to_numpy(dtype=np.float64)
    pngs["drift"] = render_png(drift_figure(new, calibration, entry["drift"], title=title, verdict=drift_verdict(entry["drift"])))
    pngs["examples"] = render_png(monitoring_examples_figure(example, records[:N_EXAMPLES], title=title, n_top=N_EXAMPLES,
                                                             bin_unit=bin_unit))
    texts = _captions(name, order=order_column or "spectrum_id", run_column=run_column, entry=entry)
    texts["calibration"] = description
    section = model_section(index, name, entry, pngs, records=records, texts=texts,
                            reference_version=reference_version, bin_unit=bin_unit)
    return pngs, section, records


def build_monitoring_report(*, dataset: str, version_name: str, reference_version: str, scores: Mapping[str, Path],
                            reference_scores: Mapping[str, Path], examples: Mapping[str, Path], order_column: str | None,
                            run_column: str | None, html_path: Path, metrics_path: Path, figure_dir: Path,
                            bin_unit: str | None = None) -> dict:
    """Write the monitoring report of one dataset of an apply run and return its metrics (``metrics.json``).

    ``scores`` maps model name -> the apply run's score table, ``reference_scores`` model name ->
    the reference version's score table, ``examples`` model name -> the apply run's stored most
    anomalous examples (a model without is shown without them). ``order_column`` is the metadata
    column the scores are drawn against (None: spectrum_id), ``run_column`` the one grouping spectra
    into runs (None: no per-run breakdown). ``bin_unit`` labels the bin edges. Every input is read
    and every figure rendered before anything is written, and each file is written atomically.
    """
    if not scores:
        raise ConfigError("monitoring report: no score tables given; at least one model is needed")
    columns = {"order_column": order_column, "run_column": run_column}
    metrics: dict = {"format_version": FORMAT_VERSIONS["monitoring_metrics"], "dataset": dataset, "version": version_name,
                     "reference_version": reference_version, "n_spectra": None, "alpha": KS_ALPHA,
                     "order_column": order_column, "run_column": run_column, "models": {}}
    sections, figures = [], {}
    for index, name in enumerate(scores):
        table, reference, example = read_model_inputs(name, scores=scores, reference_scores=reference_scores,
                                                      examples=examples, columns=columns)
        metrics["n_spectra"] = len(table) if metrics["n_spectra"] is None else max(metrics["n_spectra"], len(table))
        entry = model_metrics(table, reference, run_column=run_column)
        pngs, section, records = render_model(index, str(name), table, reference, example, entry, order_column=order_column,
                                              run_column=run_column, bin_unit=bin_unit, reference_version=reference_version)
        entry["top_spectra"] = records
        entry["figures"] = {figure: f"{figure_stem(index, str(name))}.{figure}.png" for figure in pngs}
        metrics["models"][str(name)] = entry
        sections.append(section)
        figures.update({entry["figures"][figure]: png for figure, png in pngs.items()})
    page = render_monitoring_page(metrics=metrics, sections=sections)
    for file_name, png in figures.items():
        write_bytes(Path(figure_dir) / file_name, png)
    write_json(metrics_path, metrics)
    write_text(html_path, page)
    return metrics


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically."""
    from ..store.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
