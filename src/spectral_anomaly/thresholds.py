"""Anomaly-score cuts calibrated to a false-positive rate, and the boolean flags they give.

A cut is calibrated on *held-out normal* spectra: the ``validation`` split rows labelled normal
(``label == 0``), or, for a dataset without labels, every validation row, which is then assumed
to be mostly normal (any anomalies among them raise the cut and make the flags more conservative).
Training spectra are never used, since a model scores the spectra it was fitted on too low, and
test spectra are kept for measuring the efficiency of the flags (:mod:`.report.metrics`).

For a false-positive rate ``r`` the cut ``c`` is the empirical ``1 - r`` quantile of the
calibration scores with the conservative ``"higher"`` interpolation (the next larger stored
score, never a value between two scores). Every spectrum of the table, in every split, gets a flag
``anomaly_score > c``; a NaN score is never flagged.

Flag columns are named by :func:`flag_column`: ``flag_fpr_<percent>pct`` with the rate written as
a percentage, its decimal point as ``p`` (``0.01 -> flag_fpr_1pct``, ``0.001 -> flag_fpr_0p1pct``,
``0.0005 -> flag_fpr_0p05pct``), so every name is a valid identifier (pandas ``query``, ROOT
branches, SQL). The calibration (rate, column, cut, number of calibration spectra and the rate
achieved on them) is stored with the score table (:func:`.score.write_scores`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .exceptions import ConfigError, InvalidSpectraError

log = logging.getLogger(__name__)

#: the split whose normal spectra calibrate the cuts
CALIBRATION_SPLIT = "validation"
#: significant digits of the percentage in flag names and labels
_PERCENT_DIGITS = 6


def _check_rates(false_positive_rates: Sequence[float]) -> list[float]:
    rates = [float(rate) for rate in false_positive_rates]
    bad = [rate for rate in rates if not (math.isfinite(rate) and 0.0 < rate < 1.0)]
    if bad:
        raise ConfigError(
            f"scoring.false_positive_rates: {bad} not a rate; each must be a number between 0 and 1 "
            "(exclusive), e.g. 0.01 for 1%"
        )
    columns = [flag_column(rate) for rate in rates]
    duplicated = sorted({column for column in columns if columns.count(column) > 1})
    if duplicated:
        raise ConfigError(
            f"scoring.false_positive_rates: {rates} name the same flag column(s) {', '.join(duplicated)} "
            "more than once; give each rate once"
        )
    return rates


def _percent_text(rate: float) -> str:
    """``rate`` as a percentage in plain positional notation: 0.01 -> '1', 0.001 -> '0.1'."""
    percent = float(f"{100.0 * float(rate):.{_PERCENT_DIGITS}g}")  # 0.07 * 100 = 7.000000000000001 -> 7
    return np.format_float_positional(percent, trim="-")


def flag_column(rate: float) -> str:
    """Name of the flag column of false-positive rate ``rate``: ``flag_fpr_1pct``, ``flag_fpr_0p1pct``.

    The rate is written as a percentage (to 6 significant digits), with ``p`` for the decimal point.
    """
    return f"flag_fpr_{_percent_text(rate).replace('.', 'p')}pct"


def rate_label(rate: float) -> str:
    """A false-positive rate as readable text: 0.01 -> '1%', 0.001 -> '0.1%'."""
    return f"{_percent_text(rate)}%"


def calibrate_thresholds(scores_normal: np.ndarray, false_positive_rates: Sequence[float]) -> dict[float, float]:
    """For each rate ``r`` the cut ``c`` with at most a fraction ``r`` of ``scores_normal`` above it.

    ``scores_normal`` are anomaly scores (higher = more anomalous) of held-out normal spectra; NaN
    scores are left out, +inf is kept. The cut is ``np.quantile(scores, 1 - r, method="higher")``:
    the stored score at sorted position ``ceil((n - 1)(1 - r))`` (from 0), so at most
    ``floor((n - 1) r)`` of the ``n`` calibration scores lie strictly above it, a fraction that is
    never more than ``r`` (ties at the cut only lower it). "At most ``r``" is therefore a statement
    about these ``n`` spectra, in steps of ``1/n``: with fewer than ``ceil(1/r)`` spectra no score
    may lie above the cut, the cut is their maximum and the achieved rate on them is 0, coarser
    than asked. On new normal spectra from the same distribution the expected rate is
    ``(n - k) / (n + 1)`` for the cut at sorted position ``k``, which exceeds ``r`` by less than
    ``1 / (n + 1)`` and approaches ``r`` as ``n`` grows.

    Raises :class:`~.exceptions.InvalidSpectraError` when every score is NaN (or none is given) and
    :class:`~.exceptions.ConfigError` for a rate outside (0, 1).
    """
    rates = _check_rates(false_positive_rates)
    values = np.asarray(scores_normal, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise InvalidSpectraError(
            "calibrating anomaly-score cuts: no held-out normal spectrum with a score; at least one is "
            "needed (a larger split.validation_fraction gives more)"
        )
    return {rate: float(np.quantile(values, 1.0 - rate, method="higher")) for rate in rates}


def calibration_mask(table: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Rows that calibrate the cuts, and a description of them.

    The ``validation`` rows labelled normal (``label == 0``); without a ``label`` column every
    ``validation`` row, assumed to be mostly normal.
    """
    mask = table["split"].astype(str).to_numpy() == CALIBRATION_SPLIT
    if "label" in table.columns:
        mask &= table["label"].to_numpy() == 0
        return mask, f"{CALIBRATION_SPLIT} split, spectra labelled normal (label == 0)"
    return mask, f"{CALIBRATION_SPLIT} split, every spectrum (no labels: assumed mostly normal)"


def add_threshold_flags(
    table: pd.DataFrame, *, false_positive_rates: Sequence[float], score_column: str = "anomaly_score"
) -> tuple[pd.DataFrame, dict]:
    """Calibrate a cut per false-positive rate and add one boolean flag column per rate.

    The cuts are calibrated (:func:`calibrate_thresholds`) on the held-out normal spectra of
    ``table`` (:func:`calibration_mask`), and every row, in every split, gets
    ``flag_column(rate) = score > cut`` (False for a NaN score). Returns a new table (the input
    is not changed; its ``attrs["thresholds"]`` is set too) and the calibration, a JSON-ready dict::

        {"score": "anomaly_score", "calibration": "<which spectra>", "n_calibration": n,
         "rates": [{"false_positive_rate": r, "column": "flag_fpr_1pct", "cut": c,
                    "n_calibration": n, "calibration_fpr": <fraction of them above c>}, ...]}

    With no rates nothing is calibrated and no column is added. Where the calibration set is
    empty (a tiny or nearly all-anomalous dataset) no column is added either: a warning is logged
    and the reason stored in the calibration under ``not_calibrated``, and ``rates`` is empty.
    """
    rates = _check_rates(false_positive_rates)
    mask, description = calibration_mask(table)
    scores = table[score_column].to_numpy(dtype=np.float64)
    calibration_scores = scores[mask & ~np.isnan(scores)]
    info: dict = {"score": score_column, "calibration": description,
                  "n_calibration": int(calibration_scores.size), "rates": []}
    result = table.copy(deep=False)
    if rates and calibration_scores.size == 0:
        found = "there are none" if not mask.any() else f"all {int(mask.sum())} have a NaN {score_column}"
        info["not_calibrated"] = (
            f"no flags: no spectrum to calibrate the cuts on ({description}: {found}); a larger "
            "split.validation_fraction, or split.train_on: normal for a labelled dataset, gives some"
        )
        log.warning("%s", info["not_calibrated"])
    elif rates:
        cuts = calibrate_thresholds(calibration_scores, rates)
        for rate in rates:
            cut = cuts[rate]
            column = flag_column(rate)
            if column in result.columns:
                raise ConfigError(f"flag column {column!r} already in the score table; it is added only once")
            result[column] = scores > cut
            n = calibration_scores.size
            if n < math.ceil(1.0 / rate):
                log.warning("false-positive rate %s needs at least %d calibration spectra, %d given: the cut is "
                            "their maximum score and flags are coarser than asked", rate_label(rate),
                            math.ceil(1.0 / rate), n)
            info["rates"].append({
                "false_positive_rate": rate, "column": column, "cut": cut, "n_calibration": int(n),
                "calibration_fpr": float(np.mean(calibration_scores > cut)),
            })
    result.attrs["thresholds"] = info
    return result, info


def threshold_entries(table: pd.DataFrame) -> list[dict]:
    """The calibrated rates of a score table read by :func:`.score.read_scores` (empty if none)."""
    return list((table.attrs.get("thresholds") or {}).get("rates") or [])


def stored_cut_entries(cuts: dict, *, what: str) -> list[dict]:
    """The calibrated rates of cuts stored with a detector (:attr:`.models.base.Detector.cuts_`).

    Refuses a detector without them, naming ``what`` and the remedy: one fitted before cuts were
    stored, or fitted without a calibration (no held-out normal spectrum), cannot flag new data.
    """
    entries = list((cuts or {}).get("rates") or [])
    if not entries:
        reason = (cuts or {}).get("not_calibrated") or "it was fitted without scoring its validation spectra"
        raise InvalidSpectraError(
            f"{what} holds no stored flag cuts ({reason}); retrain it with the workflow, which calibrates the cuts "
            "on the reference's validation spectra and stores them in the model file"
        )
    return entries


def flag_with_stored_cuts(
    table: pd.DataFrame, cuts: dict, *, what: str, score_column: str = "anomaly_score"
) -> tuple[pd.DataFrame, dict]:
    """Add one flag column per cut stored with a detector, ``score > cut`` (False for a NaN score).

    Unlike :func:`add_threshold_flags`, nothing is calibrated on ``table``: a cut that moved with the
    new spectra could not show that they shifted. Returns the new table and the stored calibration,
    marked ``"stored": True``, as the score table records it.
    """
    entries = stored_cut_entries(cuts, what=what)
    scores = table[score_column].to_numpy(dtype=np.float64)
    result = table.copy(deep=False)
    for entry in entries:
        result[entry["column"]] = scores > float(entry["cut"])
    info = {**cuts, "stored": True, "calibration": f"stored at training time: {cuts.get('calibration', '')}".rstrip(": ")}
    result.attrs["thresholds"] = info
    return result, info
