"""The comparison report of one dataset: every model and the PCA baseline side by side.

:func:`build_report` reads the stored score tables, training histories and most-anomalous
examples (no model is loaded, so a report can be regenerated from stored results), and writes

- ``metrics.json``: ROC AUC and PR AUC of every score on the test split (null without labels), the
  primary score's with bootstrap standard deviations; which detector ranks best and which tie with it
  (:mod:`.findings`), each detector's best score column, and with a kind column the flagged fraction
  per anomaly kind (:mod:`.kinds`);
- the PNG figures of :data:`FIGURE_NAMES`: ROC and precision-recall curves with bootstrap bands,
  score distributions, agreement between models, flags per run, the most anomalous spectra with
  their reconstructions and pulls, the latent space and the training curves;
- one self-contained HTML page with the figures embedded, a summary of the findings, the comparison
  table, the efficiency per rate and per anomaly kind, the per-run table,
  a ranked table of the most anomalous spectra and the run configuration.

Nothing loops over spectra in Python and every scatter plot is subsampled, so a report of a
million spectra builds in seconds.

Every score is oriented so that higher means more anomalous.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..exceptions import ConfigError
from ..store.atomic import atomic_path, write_json, write_text
from .comparison import group_column, run_summary
from .figures import render_png
from .findings import best_scores, comparison_findings, paired_auc_samples
from .html import render_report
from .kinds import kind_efficiencies
from .metrics import (
    compute_metrics,
    is_labelled,
    model_curves,
    read_histories,
    read_score_tables,
    top_spectra_table,
)
from .registry import FIGURE_NAMES, FIGURES, FigureInputs

__all__ = ["FIGURE_NAMES", "FIGURES", "build_report", "compute_metrics"]

#: rows of the ranked table of most anomalous spectra
N_RANKED_SPECTRA = 20

PathLike = str | os.PathLike[str]


def _write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _check_figure_paths(figure_paths: Mapping[str, PathLike]) -> None:
    unknown = sorted(set(figure_paths) - set(FIGURE_NAMES))
    missing = [name for name in FIGURE_NAMES if name not in figure_paths]
    if unknown or missing:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ConfigError(f"report figure_paths: {'; '.join(problems)}; expected exactly {', '.join(FIGURE_NAMES)}")


def add_findings(metrics: dict, tables: Mapping, *, kind_column: str | None = None,
                 kind_names: Mapping[int, str] | None = None) -> dict:
    """Add to ``metrics`` what the page summarises: ``comparison`` (best detector and ties, null without
    labels), each model's ``best_score`` and ``kinds`` (efficiency per anomaly kind, null without a kind column)."""
    samples = paired_auc_samples(tables) if metrics["labelled"] else None
    metrics["comparison"] = comparison_findings(metrics["models"], samples) if metrics["labelled"] else None
    for name, best in best_scores(metrics["models"]).items():
        metrics["models"][name]["best_score"] = best
    metrics["kinds"] = kind_efficiencies(tables, column=kind_column, names=kind_names)
    return metrics


def build_report(
    *,
    dataset: str,
    run_name: str,
    scores: Mapping[str, PathLike],
    histories: Mapping[str, PathLike],
    examples: Mapping[str, PathLike],
    run_config: Mapping,
    html_path: PathLike,
    metrics_path: PathLike,
    figure_paths: Mapping[str, PathLike],
    n_top: int = 10,
    data_summary: Mapping | None = None,
    bin_unit: str | None = None,
    kind_column: str | None = None,
    kind_names: Mapping[int, str] | None = None,
) -> dict:
    """Write the report of one dataset and return its metrics (the ``metrics.json`` payload).

    ``scores`` maps model name -> score table (parquet; the PCA baseline under ``"pca"``),
    ``histories`` deep model name -> training history CSV, ``examples`` model name -> stored most
    anomalous examples (.npz), ``figure_paths`` each of :data:`FIGURE_NAMES` -> PNG path to write.
    ``n_top`` spectra per model are drawn in the top-anomalies figure. ``data_summary`` (spectra,
    bins, source files, spectra dropped at ingestion, device each model trained on) is shown on the
    page and stored in the metrics under ``data``. ``bin_unit`` (e.g. ``"keV"``) labels the spectra's
    x axis where the unit of the bin edges is known. ``kind_column`` names the metadata column of
    anomaly kinds whose flagged fractions the page shows per kind (:mod:`.kinds`), named by
    ``kind_names`` (code -> name) where given. Every input is read and every
    figure rendered before anything is written, and each file is written atomically.
    """
    from ..score import read_examples

    _check_figure_paths(figure_paths)
    if n_top < 1:
        raise ConfigError(f"report n_top must be a positive number of spectra, got {n_top}")
    tables = read_score_tables(scores)
    history_tables = read_histories(histories)
    example_arrays = {str(name): read_examples(path) for name, path in examples.items()}
    labelled = is_labelled(tables)

    curves = model_curves(tables, labelled=labelled)
    metrics = compute_metrics(tables, dataset=dataset, run_name=run_name, curves=curves)
    add_findings(metrics, tables, kind_column=kind_column, kind_names=kind_names)
    metrics["data"] = dict(data_summary or {})
    run_column = group_column(tables)
    runs = run_summary(tables, column=run_column) if run_column else None
    metrics["runs"] = {"column": run_column, "n_runs": len(runs)} if runs is not None else None
    inputs = FigureInputs(tables=tables, histories=history_tables, examples=example_arrays, labelled=labelled,
                          curves=curves, runs=runs, run_column=run_column, n_top=n_top, bin_unit=bin_unit)
    pngs = {name: render_png(figure.build(inputs)) for name, figure in FIGURES.items()}  # one at a time, then freed
    edges = next((arrays["bin_edges"] for arrays in example_arrays.values() if "bin_edges" in arrays), None)
    reference, top_table = top_spectra_table(tables, n=N_RANKED_SPECTRA, bin_edges=edges, bin_unit=bin_unit)
    page = render_report(dataset=dataset, run_name=run_name, metrics=metrics, figures=pngs, top_table=top_table,
                         reference_model=reference, run_config=run_config, runs=runs, run_column=run_column)
    for name in FIGURE_NAMES:
        _write_bytes(figure_paths[name], pngs[name])
    write_json(metrics_path, metrics)
    write_text(html_path, page)
    return metrics
