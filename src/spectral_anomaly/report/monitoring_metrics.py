"""What the monitoring report measures on new spectra scored with stored detectors and cuts.

- :func:`flag_summary`: per stored cut, how many new spectra it flags, against the false-positive
  rate it was calibrated for, with a binomial interval (and, where the new spectra have labels,
  the fraction of labelled anomalies and of labelled normal spectra flagged);
- :func:`per_run_summary`: the same per run, with each run's deviation from the rate in standard
  deviations of a binomial count;
- :func:`drift_test`: a two-sample Kolmogorov-Smirnov test of the new anomaly scores against the
  reference's calibration scores (the spectra its cuts were calibrated on), both at or below the
  loosest stored cut, so that the anomalies the flags count do not read as drift;
- :func:`driving_bins`: the bins of largest absolute pull of a stored example, with their ranges.

Every computation is vectorised over spectra; results are plain JSON-ready values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..thresholds import threshold_entries

#: the KS test calls a distribution drifted below this p-value
KS_ALPHA = 0.01
#: probability content of the binomial intervals (one standard deviation of a normal distribution)
INTERVAL_LEVEL = 0.6827
#: bins named as driving a spectrum's score
N_DRIVING_BINS = 3


def plain(value: object) -> object:
    """``value`` as a JSON-ready Python value: numpy scalars unwrapped, times and others as text."""
    value = value.item() if isinstance(value, np.generic) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def binomial_interval(k: np.ndarray, n: np.ndarray, *, level: float = INTERVAL_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval of a fraction ``k / n`` with probability content ``level``."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    tail = 0.5 * (1.0 - level)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, beta.ppf(tail, np.maximum(k, 1e-300), n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1.0 - tail, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    return low, high


def binomial_z(k: np.ndarray, n: np.ndarray, rate: float) -> np.ndarray:
    """How far ``k`` flags of ``n`` lie from the expected ``n * rate``, in binomial standard deviations."""
    n = np.asarray(n, dtype=np.float64)
    return (np.asarray(k, dtype=np.float64) - n * rate) / np.sqrt(n * rate * (1.0 - rate))


def stored_flags(table: pd.DataFrame, entry: dict) -> np.ndarray:
    """The flags of one stored cut: its flag column, or ``anomaly_score > cut`` where the column is absent."""
    if entry["column"] in table.columns:
        return table[entry["column"]].eq(True).to_numpy()
    return table["anomaly_score"].to_numpy(dtype=np.float64) > float(entry["cut"])


def _labelled_fraction(flags: np.ndarray, table: pd.DataFrame, value: int) -> float | None:
    if "label" not in table.columns:
        return None
    rows = table["label"].to_numpy() == value
    return float(flags[rows].mean()) if rows.any() else None


def flag_summary(table: pd.DataFrame) -> dict[str, dict]:
    """Flag column -> rate, cut, flagged count and fraction with its interval, for every stored cut.

    ``efficiency`` (fraction of ``label == 1`` flagged) and ``false_positive_fraction`` (of
    ``label == 0``) are null without labels.
    """
    n = len(table)
    summary = {}
    for entry in threshold_entries(table):
        flags = stored_flags(table, entry)
        k = int(flags.sum())
        rate = float(entry["false_positive_rate"])
        low, high = binomial_interval(k, n)
        summary[entry["column"]] = {
            "rate": rate, "cut": float(entry["cut"]), "n_spectra": n, "n_flagged": k,
            "fraction": k / n if n else None, "interval": [float(low), float(high)] if n else None,
            "expected_std": math.sqrt(rate * (1.0 - rate) / n) if n else None,
            "z": float(binomial_z(k, n, rate)) if n else None,
            "efficiency": _labelled_fraction(flags, table, 1),
            "false_positive_fraction": _labelled_fraction(flags, table, 0),
        }
    return summary


def run_groups(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's run index and the runs in order (numbers numerically; missing values as one run)."""
    try:
        codes, keys = pd.factorize(values, sort=True, use_na_sentinel=False)
    except TypeError:  # values of mixed types: ordered as text
        codes, keys = pd.factorize(values.astype(str), sort=True, use_na_sentinel=False)
    return np.asarray(codes), np.asarray(keys, dtype=object)


def per_run_summary(table: pd.DataFrame, *, run_column: str) -> dict:
    """Per run: spectra, and per stored cut the flagged count, fraction, interval and binomial z.

    ``{"column": run_column, "runs": [{"run": value, "n_spectra": n, "flagged": {column: {...}}}]}``,
    runs in order.
    """
    codes, keys = run_groups(table[run_column])
    counts = np.bincount(codes, minlength=len(keys))
    per_cut = {}
    for entry in threshold_entries(table):
        k = np.bincount(codes, weights=stored_flags(table, entry), minlength=len(keys)).astype(np.int64)
        low, high = binomial_interval(k, counts)
        per_cut[entry["column"]] = (k, k / counts, low, high, binomial_z(k, counts, float(entry["false_positive_rate"])))
    runs = []
    for index, key in enumerate(keys):
        flagged = {column: {"n_flagged": int(k[index]), "fraction": float(f[index]),
                            "interval": [float(lo[index]), float(hi[index])], "z": float(z[index])}
                   for column, (k, f, lo, hi, z) in per_cut.items()}
        runs.append({"run": plain(key), "n_spectra": int(counts[index]), "flagged": flagged})
    return {"column": run_column, "runs": runs}


def calibration_scores(reference: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The reference's calibration anomaly scores (finite ones) and which spectra they are."""
    from ..thresholds import calibration_mask

    mask, description = calibration_mask(reference)
    scores = reference["anomaly_score"].to_numpy(dtype=np.float64)[mask]
    return scores[np.isfinite(scores)], description


def drift_test(new: np.ndarray, reference: np.ndarray, *, below: float | None = None, alpha: float = KS_ALPHA) -> dict:
    """Two-sample KS test of the bulk of ``new`` against ``reference`` scores; ``drifted`` when its p-value is
    below ``alpha``.

    With ``below`` (the loosest stored cut) both samples are taken at or below it: the new data's anomalies,
    mostly above the cut, are what the flags count, and the test asks whether the normal bulk moved. Otherwise a
    new run holding a few percent of real anomalies would read as drifted although its normal spectra are like
    the reference's (``tests/test_apply.py`` checks both: a new demo run with its usual anomalies is not called
    drifted, one with a gain shift is). Where every new spectrum lies above the cut the bulk itself has moved:
    ``drifted`` is true with no p-value. Without spectra on either side statistic, p-value and ``drifted`` are null.
    """
    from scipy.stats import ks_2samp

    new = np.asarray(new, dtype=np.float64)
    new = new[np.isfinite(new)]
    reference = np.asarray(reference, dtype=np.float64)
    n_all = int(new.size)
    if below is not None:
        new, reference = new[new <= below], reference[reference <= below]
    result = {"statistic": None, "p_value": None, "location": None, "n_new": int(new.size),
              "n_reference": int(reference.size), "drifted": None, "alpha": alpha, "below": below,
              "n_new_above": n_all - int(new.size)}
    if new.size and reference.size:
        test = ks_2samp(new, reference)
        result.update(statistic=float(test.statistic), p_value=float(test.pvalue),
                      location=float(test.statistic_location), drifted=bool(test.pvalue < alpha))
    elif n_all and reference.size:
        result["drifted"] = True  # every new spectrum above the loosest cut
    return result


def loosest_cut(table: pd.DataFrame) -> float | None:
    """The stored cut of the largest false-positive rate (the lowest cut), or None without cuts."""
    entries = threshold_entries(table)
    return float(max(entries, key=lambda e: e["false_positive_rate"])["cut"]) if entries else None


def drift_verdict(drift: dict) -> str:
    """``"drift"``, ``"no significant drift"`` or, without spectra to compare, ``"not tested"``."""
    if drift["drifted"] is None:
        return "not tested"
    return "drift" if drift["drifted"] else "no significant drift"


def driving_bins(pulls: np.ndarray, edges: np.ndarray, *, n: int = N_DRIVING_BINS) -> list[dict]:
    """The ``n`` bins of largest absolute pull (NaN pulls skipped), largest first, with their edges."""
    pulls = np.asarray(pulls, dtype=np.float64)
    magnitude = np.where(np.isfinite(pulls), np.abs(pulls), -np.inf)
    order = np.argsort(-magnitude, kind="stable")[:n]
    return [{"bin": int(b), "pull": float(pulls[b]), "low": float(edges[b]), "high": float(edges[b + 1])}
            for b in order if np.isfinite(magnitude[b])]


def example_records(example: dict, table: pd.DataFrame, *, columns: list[str]) -> list[dict]:
    """One record per stored example: id, score, the ``columns`` of its table row and its driving bins.

    Without stored pulls the driving bin is the table's ``max_pull_bin``, where it has one.
    """
    edges = np.asarray(example["bin_edges"], dtype=np.float64)
    rows = table.drop_duplicates("spectrum_id").set_index("spectrum_id")
    keep = [c for c in (*columns, "max_pull_bin") if c in rows.columns]
    records = []
    for index, spectrum in enumerate(np.asarray(example["spectrum_id"]).tolist()):
        row = rows.loc[spectrum, keep] if spectrum in rows.index else pd.Series(dtype=object)
        if "pulls" in example:
            bins = driving_bins(example["pulls"][index], edges)
        elif "max_pull_bin" in row.index and 0 <= int(row["max_pull_bin"]) < len(edges) - 1:
            b = int(row["max_pull_bin"])
            bins = [{"bin": b, "pull": None, "low": float(edges[b]), "high": float(edges[b + 1])}]
        else:
            bins = []
        records.append({"spectrum_id": plain(spectrum), "anomaly_score": float(example["anomaly_score"][index]),
                        "metadata": {c: plain(row[c]) for c in columns if c in row.index}, "driving_bins": bins})
    return records
