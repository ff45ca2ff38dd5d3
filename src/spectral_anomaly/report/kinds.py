"""Efficiency per anomaly kind: the fraction of each kind's test spectra flagged at each calibrated rate.

Where the metadata carry a column that says which kind of anomaly a spectrum holds
(``report.kind_column``, e.g. the demo's ``anomaly_kind``), :func:`kind_efficiencies` counts, per
model, per value of that column and per flag column (``flag_fpr_<rate>pct``), the test spectra
of that kind and how many of them are flagged. A detector that misses one kind shows up as a low
fraction in one row, which an overall TPR averages away. The values are named by a given mapping
(the demo's :data:`spectral_anomaly.demo.ANOMALY_KINDS`) or by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..exceptions import InputFileError, closest_first
from ..thresholds import threshold_entries
from .metrics import EVALUATED_SPLIT, evaluated_rows


def kind_key(value: object) -> str:
    """A kind value as the key ``metrics.json`` stores it: integers (also as floats) without a decimal point."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return str(int(value))
    return str(value)


def kind_name(key: str, names: Mapping[int, str] | None) -> str:
    """The name of kind ``key``: from ``names`` (keyed by integer code) where it has it, else the key."""
    if names:
        try:
            return str(names.get(int(key), key))
        except ValueError:
            return key
    return key


def _check_column(tables: Mapping[str, pd.DataFrame], column: str) -> None:
    for name, table in tables.items():
        if column not in table.columns:
            raise InputFileError(
                f"report.kind_column is {column!r}, but the score table of model {name!r} has no such column; "
                f"it has {closest_first(column, table.columns)}. Set report.kind_column to a metadata column or "
                "leave it unset"
            )


def _model_counts(table: pd.DataFrame, column: str) -> dict[str, dict]:
    """Per kind of the test split: its spectra and, per flag column, how many are flagged."""
    rows = evaluated_rows(table)
    values = rows[column]
    present = values.notna().to_numpy()
    keys = np.array([kind_key(v) for v in values.to_numpy()[present]], dtype=object)
    entries = [entry for entry in threshold_entries(table) if entry["column"] in rows.columns]
    flags = {entry["column"]: rows[entry["column"]].to_numpy(dtype=bool)[present] for entry in entries}
    anomalous = rows["label"].to_numpy()[present] == 1 if "label" in rows.columns else None
    counts: dict[str, dict] = {}
    for key in sorted(set(keys), key=_sort_key):
        mask = keys == key
        counts[key] = {"n_test": int(mask.sum()),
                       "n_labelled_anomalous": int(anomalous[mask].sum()) if anomalous is not None else None,
                       "flags": {
            entry["column"]: {"false_positive_rate": float(entry["false_positive_rate"]),
                              "n_flagged": int(flags[entry["column"]][mask].sum()),
                              "fraction": float(flags[entry["column"]][mask].mean())}
            for entry in entries}}
    return counts


def _sort_key(key: str) -> tuple:
    """Numeric kinds in numeric order before any others, which sort as text."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def kind_efficiencies(tables: Mapping[str, pd.DataFrame], *, column: str | None,
                      names: Mapping[int, str] | None = None) -> dict | None:
    """The ``kinds`` entry of ``metrics.json``, or ``None`` when no kind column is configured.

    Holds ``column``, ``split`` (``"test"``), ``names`` (kind key -> name shown) and ``models``: per model,
    per kind key, ``n_test``, ``n_labelled_anomalous`` (null without labels) and per flag column its ``false_positive_rate``, ``n_flagged`` and
    ``fraction``. Spectra whose kind is missing are not counted.
    """
    if column is None:
        return None
    _check_column(tables, column)
    models = {name: _model_counts(table, column) for name, table in tables.items()}
    keys = sorted({key for counts in models.values() for key in counts}, key=_sort_key)
    return {"column": column, "split": EVALUATED_SPLIT, "names": {key: kind_name(key, names) for key in keys},
            "models": models}


def weakest_kind(kinds: Mapping | None) -> dict | None:
    """The (model, kind, flag column) with the lowest flagged fraction at the loosest rate, among kinds
    holding labelled anomalies; ``None`` without kinds, labels or flags. Ties go to the first model and kind."""
    if not kinds:
        return None
    lowest = None
    for model, counts in kinds["models"].items():
        for key, entry in counts.items():
            if not entry["flags"] or not entry["n_labelled_anomalous"]:
                continue
            column = max(entry["flags"], key=lambda c: entry["flags"][c]["false_positive_rate"])
            flagged = entry["flags"][column]
            if lowest is None or flagged["fraction"] < lowest["fraction"]:
                lowest = {"model": model, "kind": key, "column": column, "n_test": entry["n_test"], **flagged}
    return lowest
