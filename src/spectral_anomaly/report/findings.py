"""What the comparison found: which detector ranks best, whether that is inside the uncertainty,
and how far each detector's other scores reach.

**Rule for a tie.** Every detector's primary score is evaluated on the same bootstrap resamples of
the test spectra (:func:`paired_auc_samples`: each resample draws the test rows with replacement
once and scores it under every detector), so the spread of a difference of two AUCs over the
resamples is its uncertainty, with the correlation between detectors on the same spectra taken
into account. A detector ties with the best when the best's AUC exceeds its own by at most
:data:`TIE_SIGMAS` standard deviations of that paired difference (:func:`comparison_findings`).

**Best score of a detector.** Every detector writes several score columns; the one with the highest
ROC AUC on the test split is its best score (:func:`best_scores`). That choice is made on the test
labels, so it says how much the stored columns could separate, not how a detector would rank if its
score had been chosen blind.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .bootstrap import N_RESAMPLES, SEED, _curves
from .metrics import evaluated_rows, finite_scores

#: a difference up to this many standard deviations of its paired bootstrap spread is a tie
TIE_SIGMAS = 2.0
AUC_KEYS = ("roc_auc", "pr_auc")
TIE_RULE = (f"two detectors tie when the better one's AUC exceeds the other's by at most {TIE_SIGMAS:g} standard "
            f"deviations of the difference over {N_RESAMPLES} paired bootstrap resamples of the test spectra "
            "(each resample scored under every detector)")


def _aligned_test_scores(tables: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels of the first table's test rows and every model's primary score on the same spectra.

    Rows that a model lacks or scores NaN are left out for every model, so all are compared on one set.
    """
    first = evaluated_rows(next(iter(tables.values())))
    ids = first["spectrum_id"].to_numpy()
    scores = {}
    for name, table in tables.items():
        by_id = evaluated_rows(table).drop_duplicates("spectrum_id").set_index("spectrum_id")["anomaly_score"]
        scores[name] = finite_scores(pd.Series(ids).map(by_id).to_numpy(dtype=np.float64))
    keep = np.logical_and.reduce([~np.isnan(values) for values in scores.values()])
    return first["label"].to_numpy()[keep].astype(np.float64), {name: values[keep] for name, values in scores.items()}


def paired_auc_samples(tables: Mapping[str, pd.DataFrame], *, n_resamples: int = N_RESAMPLES,
                       seed: int = SEED) -> dict[str, dict[str, np.ndarray]] | None:
    """ROC AUC and average precision of every model's primary score on shared bootstrap resamples.

    Returns ``{"roc_auc": {model: samples}, "pr_auc": {...}}``, sample ``i`` of every model from the same
    resample of the test rows, or ``None`` when the shared test rows do not hold both classes.
    A resample that draws only one class is skipped for every model.
    """
    labels, scores = _aligned_test_scores(tables)
    n = labels.size
    if n == 0 or labels.min() == labels.max():
        return None
    orders = {name: np.argsort(-values, kind="stable") for name, values in scores.items()}
    ends = {}
    for name, order in orders.items():
        ordered = scores[name][order]
        ends[name] = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), n - 1)
    rng = np.random.default_rng(seed)
    samples: dict[str, dict[str, list[float]]] = {key: {name: [] for name in scores} for key in AUC_KEYS}
    for _ in range(n_resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        positive, negative = weights * labels, weights * (1.0 - labels)
        if positive.sum() == 0 or negative.sum() == 0:
            continue
        for name, order in orders.items():
            roc_auc, average_precision, *_ = _curves(positive[order], negative[order], ends[name])
            samples["roc_auc"][name].append(roc_auc)
            samples["pr_auc"][name].append(average_precision)
    return {key: {name: np.array(values) for name, values in per_model.items()} for key, per_model in samples.items()}


def _ranking(models: Mapping[str, dict], key: str, samples: Mapping[str, np.ndarray] | None) -> dict | None:
    """The best model by ``key``, and each other's difference to it, its paired spread and whether it ties."""
    values = {name: entry[key] for name, entry in models.items() if entry[key] is not None and not np.isnan(entry[key])}
    if not values:
        return None
    ranked = sorted(values, key=lambda name: -values[name])  # stable: on equal values the first model leads
    best = ranked[0]
    differences = {}
    for name in ranked[1:]:
        difference = values[best] - values[name]
        spread = (float(np.std(samples[best] - samples[name], ddof=1))
                  if samples is not None and len(samples[best]) >= 2 else None)
        tied = bool(difference <= TIE_SIGMAS * spread) if spread is not None else difference == 0.0
        differences[name] = {"difference": float(difference), "std": spread, "tied": tied}
    return {"best": best, "value": float(values[best]), "ranked": ranked,
            "tied": [best] + [name for name in ranked[1:] if differences[name]["tied"]],
            "differences": differences}


def comparison_findings(models: Mapping[str, dict], samples: Mapping[str, Mapping[str, np.ndarray]] | None) -> dict:
    """The ``comparison`` entry of ``metrics.json``: per AUC, the best primary score and who ties with it.

    Each of ``roc_auc`` and ``pr_auc`` holds ``best`` (model), ``value``, ``ranked`` (models, best first),
    ``tied`` (the best and every model tied with it under :data:`TIE_RULE`) and per other model its
    ``difference`` to the best, the ``std`` of that difference over the paired resamples and ``tied``;
    null without labels.
    """
    result: dict = {"rule": TIE_RULE, "tie_sigmas": TIE_SIGMAS,
                    "n_resamples": None if samples is None else len(next(iter(samples["roc_auc"].values())))}
    for key in AUC_KEYS:
        result[key] = _ranking(models, key, None if samples is None else samples[key])
    return result


def tied_with_best(metrics: Mapping) -> dict[str, set[str]]:
    """For ``roc_auc`` and ``pr_auc``: the models to highlight, the best and those tied with it (empty
    without labels); the same rule as the summary's."""
    comparison = metrics.get("comparison") or {}
    return {key: set((comparison.get(key) or {}).get("tied", [])) for key in AUC_KEYS}


def best_scores(models: Mapping[str, dict]) -> dict[str, dict | None]:
    """Per model, the score column with the highest ROC AUC on the test split (chosen on the test labels).

    Each entry: ``column``, ``roc_auc``, ``pr_auc``, ``primary`` (whether it is the primary score) and
    ``above_primary`` (how much its ROC AUC exceeds the primary score's; 0 for the primary itself).
    ``None`` without labels. On equal AUCs the primary score, then the first column, is kept.
    """
    result: dict[str, dict | None] = {}
    for name, entry in models.items():
        scored = {column: aucs for column, aucs in entry["scores"].items() if aucs["roc_auc"] is not None}
        if not scored or entry["roc_auc"] is None:
            result[name] = None
            continue
        column = max(scored, key=lambda c: (scored[c]["roc_auc"], c == entry["primary_score"]))
        if scored[column]["roc_auc"] <= entry["roc_auc"]:
            column = entry["primary_score"] if entry["primary_score"] in scored else column
        result[name] = {"column": column, "roc_auc": scored[column]["roc_auc"], "pr_auc": scored[column]["pr_auc"],
                        "primary": column == entry["primary_score"],
                        "above_primary": max(0.0, float(scored[column]["roc_auc"] - entry["roc_auc"]))}
    return result
