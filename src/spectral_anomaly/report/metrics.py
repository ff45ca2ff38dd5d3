"""Detection metrics of every model's scores on the test split, and the inputs the report reads.

ROC AUC and PR AUC (average precision) are computed on the ``test`` split only, for the primary
score (``anomaly_score``) and every other anomaly-sign score column of each model. Signed copies
(``elbo``, ``log_likelihood``: higher = more normal) are left out; their partners
(``negative_elbo``, ``pca_nll``) are evaluated instead, so that for every reported AUC a higher
score means more anomalous. Without labels every AUC is ``None`` (null in ``metrics.json``).
The primary score's AUCs come with ``roc_auc_std`` / ``pr_auc_std``: their standard deviations over
200 seeded bootstrap resamples of the test rows (:mod:`.bootstrap`).

Where a score table carries flags at calibrated false-positive rates (:mod:`..thresholds`), each
model's ``thresholds`` give, per flag column, the calibrated cut, the calibration spectra and the
rate achieved on them, and on the test split the fraction of normal spectra flagged (``test_fpr``),
of anomalies flagged (``test_tpr``) and of all test spectra flagged (``test_flag_rate``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..columns import SCORE_COLUMNS, SIGNED_COPIES  # the score columns evaluated when present
from ..exceptions import InputFileError, ObjectNotFoundError, closest_first
from ..store.formats import FORMAT_VERSIONS, read_versioned_csv
from ..thresholds import rate_label, threshold_entries
from .bootstrap import N_RESAMPLES, DetectionCurves, detection_curves, exact_aucs

#: columns every score table must have
REQUIRED_COLUMNS: tuple[str, ...] = ("spectrum_id", "split", "anomaly_score")
#: columns every training history must have
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "validation_loss")
EVALUATED_SPLIT = "test"


def read_score_tables(scores: Mapping[str, str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """Read every model's score table, checking the columns the report relies on."""
    from ..score import read_scores

    if not scores:
        raise ObjectNotFoundError("report: no score tables given; pass at least one model's scores")
    tables: dict[str, pd.DataFrame] = {}
    for name, path in scores.items():
        table = read_scores(path)
        missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
        if missing:
            raise InputFileError(
                f"{path}: score table of model {name!r} lacks column(s) {', '.join(missing)}; "
                f"it has {closest_first(missing[0], table.columns)}. Rerun the workflow's score step"
            )
        tables[str(name)] = table
    return tables


def read_histories(histories: Mapping[str, str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """Read each deep model's per-epoch training history (CSV)."""
    result: dict[str, pd.DataFrame] = {}
    for name, path in histories.items():
        history = read_versioned_csv(path, kind="history", step="train")
        missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
        if missing:
            raise InputFileError(
                f"{path}: training history lacks column(s) {', '.join(missing)}; expected "
                f"{', '.join(HISTORY_COLUMNS)} (and seconds, best), found {', '.join(map(str, history.columns))}"
            )
        result[str(name)] = history
    return result


def is_labelled(tables: Mapping[str, pd.DataFrame]) -> bool:
    """Whether every score table carries a ``label`` column (1 = anomalous, 0 = normal)."""
    return bool(tables) and all("label" in table.columns for table in tables.values())


def score_columns(table: pd.DataFrame) -> list[str]:
    """The anomaly-sign score columns of a table, primary score first, then in table order."""
    primary = table.attrs.get("primary_score", "anomaly_score")
    columns = [primary] if primary in table.columns else []
    columns += [column for column in table.columns
                if column in SCORE_COLUMNS and column not in SIGNED_COPIES and column not in columns]
    return columns


def evaluated_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the evaluated (``test``) split."""
    return table[np.asarray(table["split"]).astype(str, copy=False) == EVALUATED_SPLIT]


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as float64 with +-inf replaced by the largest finite values (order is kept)."""
    values = np.asarray(scores, dtype=np.float64)
    limit = np.finfo(np.float64).max
    return np.nan_to_num(values, nan=np.nan, posinf=limit, neginf=-limit)


def detection_aucs(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and average precision of ``scores`` (higher = anomalous) against 0/1 ``labels``.

    Rows with a NaN score are left out. Returns ``(None, None)`` when the remaining rows do not
    hold both classes, since neither AUC is defined then.
    """
    labels = np.asarray(labels).astype(np.int64)
    values = finite_scores(scores)
    keep = ~np.isnan(values)
    labels, values = labels[keep], values[keep]
    if labels.size == 0 or np.unique(labels).size < 2:
        return None, None
    return exact_aucs(labels, values)  # scikit-learn's roc_auc_score / average_precision_score, one sort


def _fraction(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


def threshold_metrics(table: pd.DataFrame, *, labelled: bool) -> dict[str, dict]:
    """Per flag column (``flag_fpr_1pct``, ...): calibration and efficiency on the test split.

    Each entry holds ``false_positive_rate`` (the target), ``cut`` (null if not finite),
    ``n_calibration`` and ``calibration_fpr`` (as stored at scoring), ``test_fpr`` (fraction of the
    test split's normal spectra flagged; null without labels), ``test_tpr`` (fraction of its
    anomalies flagged; null without labels or anomalies), ``test_flag_rate`` (fraction of all test
    spectra flagged) and ``n_flagged_all`` (flagged spectra over every split).
    """
    rows = evaluated_rows(table)
    labels = rows["label"].to_numpy() if labelled else None
    result: dict[str, dict] = {}
    for entry in threshold_entries(table):
        column = entry["column"]
        if column not in table.columns:
            raise InputFileError(
                f"score table of model {table.attrs.get('model_kind')!r} records a cut for {column} but lacks that "
                f"column; it has {closest_first(column, table.columns)}. Rerun the workflow's score step"
            )
        test_flags = rows[column].to_numpy(dtype=bool)
        cut = float(entry["cut"]) if entry["cut"] is not None else math.nan
        result[column] = {
            "false_positive_rate": float(entry["false_positive_rate"]),
            "cut": cut if math.isfinite(cut) else None,
            "n_calibration": int(entry["n_calibration"]),
            "calibration_fpr": float(entry["calibration_fpr"]),
            "test_fpr": _fraction(test_flags[labels == 0]) if labelled else None,
            "test_tpr": _fraction(test_flags[labels == 1]) if labelled else None,
            "test_flag_rate": _fraction(test_flags),
            "n_flagged_all": int(table[column].to_numpy(dtype=bool).sum()),
        }
    return result


def model_curves(tables: Mapping[str, pd.DataFrame], *, labelled: bool) -> dict[str, DetectionCurves | None]:
    """Each model's primary-score ROC / PR curves with bootstrap bands on the test split.

    ``None`` for a model without labels or whose test split holds only one class.
    """
    curves: dict[str, DetectionCurves | None] = {}
    for name, table in tables.items():
        rows = evaluated_rows(table)
        curves[name] = (detection_curves(rows["label"].to_numpy(), finite_scores(rows["anomaly_score"].to_numpy()))
                        if labelled else None)
    return curves


def model_metrics(table: pd.DataFrame, *, labelled: bool, curve: DetectionCurves | None = None) -> dict:
    """Metrics of one model: kind, primary score, test counts and AUCs of every score column.

    ``roc_auc_std`` and ``pr_auc_std`` are the standard deviations of the primary score's AUCs over
    bootstrap resamples of the test rows (``curve``, from :func:`model_curves`; null without it).
    """
    rows = evaluated_rows(table)
    labels = rows["label"].to_numpy() if labelled else None
    per_score: dict[str, dict[str, float | None]] = {}
    for column in score_columns(table):
        roc, pr = detection_aucs(labels, rows[column].to_numpy()) if labelled else (None, None)
        per_score[column] = {"roc_auc": roc, "pr_auc": pr}
    roc, pr = detection_aucs(labels, rows["anomaly_score"].to_numpy()) if labelled else (None, None)
    return {
        "kind": table.attrs.get("model_kind"),
        "primary_score": table.attrs.get("primary_score"),
        "n_test": int(len(rows)),
        "n_anomalous_test": int((labels == 1).sum()) if labelled else None,
        "roc_auc": roc,
        "roc_auc_std": curve.roc_auc_std if curve is not None else None,
        "pr_auc": pr,
        "pr_auc_std": curve.pr_auc_std if curve is not None else None,
        "scores": per_score,
        "thresholds": threshold_metrics(table, labelled=labelled),
        "choices": dict(table.attrs.get("choices") or {}),
    }


def compute_metrics(tables: Mapping[str, pd.DataFrame], *, dataset: str, run_name: str,
                    curves: Mapping[str, DetectionCurves | None] | None = None) -> dict:
    """The ``metrics.json`` payload: every model's AUCs on the test split (null without labels).

    ``curves`` (:func:`model_curves`) are computed here when not given.
    """
    labelled = is_labelled(tables)
    curves = model_curves(tables, labelled=labelled) if curves is None else curves
    return {
        "format_version": FORMAT_VERSIONS["metrics"],
        "dataset": dataset,
        "run_name": run_name,
        "evaluated_on": f"{EVALUATED_SPLIT} split",
        "labelled": labelled,
        "auc_uncertainty": f"standard deviation over {N_RESAMPLES} seeded bootstrap resamples of the test rows",
        "models": (models := {name: model_metrics(table, labelled=labelled, curve=curves.get(name))
                              for name, table in tables.items()}),
        "variants": variant_metrics(models),
    }


def variant_metrics(models: Mapping[str, dict]) -> dict[str, dict]:
    """Each model variant's AUCs over its training seeds (instances ``<variant>-seed<n>``), best mean first.

    ``roc_auc_std`` is the sample standard deviation between seeds (null with one seed).
    """
    from ..config import SEED_SEPARATOR

    groups: dict[str, list[str]] = {}
    for name in models:
        variant, separator, seed = name.rpartition(SEED_SEPARATOR)
        groups.setdefault(variant if separator and seed.isdigit() else name, []).append(name)
    variants = {}
    for variant, names in groups.items():
        entry = {"kind": models[names[0]]["kind"], "primary_score": models[names[0]]["primary_score"],
                 "instances": names, "n_seeds": len(names)}
        for key in ("roc_auc", "pr_auc"):
            values = np.array([models[n][key] for n in names if models[n][key] is not None], dtype=float)
            entry[f"{key}_mean"] = float(values.mean()) if len(values) else None
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            entry[f"{key}_min"] = float(values.min()) if len(values) else None
            entry[f"{key}_max"] = float(values.max()) if len(values) else None
        variants[variant] = entry
    ranked = sorted(variants, key=lambda v: -(variants[v]["roc_auc_mean"] if variants[v]["roc_auc_mean"] is not None else -1))
    return {variant: variants[variant] for variant in ranked}


def reference_model(tables: Mapping[str, pd.DataFrame]) -> str:
    """The model that ranks the top-spectra table: the first of the highest ``report_rank`` of its kind
    (:data:`spectral_anomaly.models.DETECTORS`: a VAE, else an autoencoder, else the first model)."""
    from ..models import DETECTORS

    def rank(name: str) -> int:
        entry = DETECTORS.get(tables[name].attrs.get("model_kind", ""))
        return entry.report_rank if entry else -1

    return max(tables, key=rank)


def bin_label(index: int, *, edges: np.ndarray | None = None, unit: str | None = None) -> str:
    """A bin as the report names it: ``"bin 57 (1140–1160 keV)"``, or ``"bin 57"`` where the edges are
    only the bin index (none given, or 0, 1, ..., n_bins)."""
    label = f"bin {index}"
    if edges is None or np.array_equal(edges, np.arange(len(edges))):
        return label
    low, high = float(edges[index]), float(edges[index + 1])
    suffix = f" {unit}" if unit else ""
    return f"{label} ({low:.6g}\u2013{high:.6g}{suffix})"


def top_spectra_table(tables: Mapping[str, pd.DataFrame], *, n: int = 20, bin_edges: np.ndarray | None = None,
                      bin_unit: str | None = None) -> tuple[str, pd.DataFrame]:
    """The ``n`` most anomalous spectra by the reference model, with metadata and every model's score.

    Returns the reference model's name and a table with ``rank``, ``spectrum_id``, ``split``, the
    metadata columns present among ``run``, ``lumisection``, ``source_object``, ``label``, where the
    reference model's table has ``max_pull_bin`` ``largest pull (<model>)`` (the bin of its largest
    pull, with its range in ``bin_unit`` from ``bin_edges``: :func:`bin_label`), and one
    ``anomaly_score (<model>)`` column per model (joined on ``spectrum_id``; NaN where a model lacks it),
    each followed, for a model with flags at calibrated rates, by ``flags (<model>)``: the rates at
    which the spectrum is flagged, e.g. ``"✓1% ✓0.1%"`` (empty when flagged at none).
    """
    reference = reference_model(tables)
    table = tables[reference]
    order = np.argsort(-finite_scores(table["anomaly_score"].to_numpy()), kind="stable")
    order = order[~np.isnan(table["anomaly_score"].to_numpy(dtype=np.float64)[order])][:n]
    keep = [c for c in ("spectrum_id", "split", "run", "lumisection", "source_object", "label") if c in table.columns]
    top = table.iloc[order][keep].reset_index(drop=True)
    top.insert(0, "rank", np.arange(1, len(top) + 1))
    if "max_pull_bin" in table.columns:
        edges = None if bin_edges is None else np.asarray(bin_edges, dtype=np.float64)
        top[f"largest pull ({reference})"] = [bin_label(int(index), edges=edges, unit=bin_unit)
                                              for index in table["max_pull_bin"].to_numpy()[order]]
    for name, other in tables.items():
        by_id = other.drop_duplicates("spectrum_id").set_index("spectrum_id")
        top[f"anomaly_score ({name})"] = top["spectrum_id"].map(by_id["anomaly_score"])
        entries = [entry for entry in threshold_entries(other) if entry["column"] in other.columns]
        if entries:
            flagged = [top["spectrum_id"].map(by_id[entry["column"]]).eq(True).to_numpy() for entry in entries]
            labels = [rate_label(entry["false_positive_rate"]) for entry in entries]
            top[f"flags ({name})"] = [" ".join(f"\u2713{label}" for label, hit in zip(labels, hits) if hit)
                                      for hits in zip(*flagged)]
    return reference, top
