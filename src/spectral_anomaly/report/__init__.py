"""The comparison report of one dataset: every model and the PCA baseline side by side.

:func:`build_report` reads the stored score tables, training histories and most-anomalous
examples (no model is loaded, so a report can be regenerated from stored results), and writes

- ``metrics.json``: ROC AUC and PR AUC of every score on the test split (null without labels);
- five PNG figures: ROC curves, score distributions, training curves, the most anomalous spectra
  with their reconstructions, and the latent space;
- one self-contained HTML page with the figures embedded, the comparison table, a ranked table
  of the most anomalous spectra and the run configuration.

Every score is oriented so that higher means more anomalous.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..atomic import atomic_path, write_json, write_text
from ..exceptions import ConfigError
from .figures import (
    FIGURE_NAMES,
    latent_space_figure,
    render_png,
    roc_figure,
    score_distribution_figure,
    top_anomalies_figure,
    training_curves_figure,
)
from .html import render_report
from .metrics import (
    compute_metrics,
    is_labelled,
    read_histories,
    read_score_tables,
    top_spectra_table,
)

__all__ = ["FIGURE_NAMES", "build_report", "compute_metrics"]

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
) -> dict:
    """Write the report of one dataset and return its metrics (the ``metrics.json`` payload).

    ``scores`` maps model name -> score table (parquet; the PCA baseline under ``"pca"``),
    ``histories`` deep model name -> training history CSV, ``examples`` model name -> stored most
    anomalous examples (.npz), ``figure_paths`` each of :data:`FIGURE_NAMES` -> PNG path to write.
    ``n_top`` spectra per model are drawn in the top-anomalies figure. ``data_summary`` (spectra,
    bins, source files, spectra dropped at ingestion, device each model trained on) is shown on the
    page and stored in the metrics under ``data``. Every input is read and every
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

    metrics = compute_metrics(tables, dataset=dataset, run_name=run_name)
    metrics["data"] = dict(data_summary or {})
    builders = {
        "roc": lambda: roc_figure(tables, labelled=labelled),
        "score_distributions": lambda: score_distribution_figure(tables, labelled=labelled),
        "training_curves": lambda: training_curves_figure(history_tables),
        "top_anomalies": lambda: top_anomalies_figure(example_arrays, n_top=n_top),
        "latent_space": lambda: latent_space_figure(tables, labelled=labelled),
    }
    pngs = {name: render_png(builders[name]()) for name in FIGURE_NAMES}
    reference, top_table = top_spectra_table(tables, n=N_RANKED_SPECTRA)
    page = render_report(dataset=dataset, run_name=run_name, metrics=metrics, figures=pngs, top_table=top_table,
                         reference_model=reference, run_config=run_config)
    for name in FIGURE_NAMES:
        _write_bytes(figure_paths[name], pngs[name])
    write_json(metrics_path, metrics)
    write_text(html_path, page)
    return metrics
