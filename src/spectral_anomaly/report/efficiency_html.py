"""The efficiency sections of the report page: flags at calibrated false-positive rates, overall and per
anomaly kind, as escaped HTML tables."""

from __future__ import annotations

import math

from ..text import html_text as escape
from ..thresholds import rate_label
from .cells import _cell, _percent_cell


def _threshold_rates(metrics: dict) -> dict[str, float]:
    """Flag column -> target false-positive rate, over every model, in order of first appearance."""
    rates: dict[str, float] = {}
    for entry in metrics["models"].values():
        for column, values in (entry.get("thresholds") or {}).items():
            rates.setdefault(column, values["false_positive_rate"])
    return rates


def efficiency_table(metrics: dict) -> str:
    """Model x target false-positive rate: TPR and FPR on the test split (without labels: flagged fraction).

    The highest TPR at each rate is highlighted. A rate marked &dagger; had fewer calibration spectra
    than ``ceil(1 / rate)``, so its cut is their maximum and the flag is coarser than asked.
    """
    rates = _threshold_rates(metrics)
    labelled = metrics["labelled"]
    per_rate = ["TPR", "FPR"] if labelled else ["flagged (test)"]
    header_rates = "".join(f'<th colspan="{len(per_rate)}">target FPR {escape(rate_label(rate))}</th>'
                           for rate in rates.values())
    header = (f'<tr><th rowspan="2">model</th>{header_rates}</tr>\n<tr>'
              + "".join(f"<th>{name}</th>" for _ in rates for name in per_rate) + "</tr>")
    best_tpr = {}
    for column in rates:
        values = [entry["thresholds"][column]["test_tpr"] for entry in metrics["models"].values()
                  if column in (entry.get("thresholds") or {}) and entry["thresholds"][column]["test_tpr"] is not None]
        best_tpr[column] = max(values, default=None)
    rows = []
    for name, entry in metrics["models"].items():
        cells = [f"<td>{escape(name)}</td>"]
        for column in rates:
            values = (entry.get("thresholds") or {}).get(column)
            if values is None:
                cells += ['<td class="num">&mdash;</td>'] * len(per_rate)
                continue
            coarse = values["n_calibration"] < math.ceil(1.0 / values["false_positive_rate"])
            if labelled:
                tpr = values["test_tpr"]
                best = tpr is not None and best_tpr[column] is not None and math.isclose(tpr, best_tpr[column])
                cells += [_percent_cell(tpr, best=best), _percent_cell(values["test_fpr"])]
            else:
                cells.append(_percent_cell(values["test_flag_rate"]))
            if coarse:
                cells[-1] = cells[-1].replace("</td>", " &dagger;</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def calibration_table(metrics: dict) -> str:
    """Per model and rate: flag column, cut, calibration spectra and rates on calibration and test."""
    header = ("<tr><th>model</th><th>target FPR</th><th>flag column</th><th>cut on anomaly_score</th>"
              "<th>calibration spectra</th><th>FPR (calibration)</th><th>FPR (test)</th><th>TPR (test)</th>"
              "<th>flagged (test)</th><th>flagged (all splits)</th></tr>")
    rows = []
    for name, entry in metrics["models"].items():
        for column, values in (entry.get("thresholds") or {}).items():
            cut = "&mdash;" if values["cut"] is None else escape(f"{values['cut']:.6g}")
            rows.append(
                f"<tr><td>{escape(name)}</td><td>{escape(rate_label(values['false_positive_rate']))}</td>"
                f"<td><code>{escape(column)}</code></td><td class=\"num\">{cut}</td>" + _cell(values["n_calibration"])
                + _percent_cell(values["calibration_fpr"]) + _percent_cell(values["test_fpr"])
                + _percent_cell(values["test_tpr"]) + _percent_cell(values["test_flag_rate"])
                + _cell(values["n_flagged_all"]) + "</tr>"
            )
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def thresholds_section(metrics: dict) -> list[str]:
    """The section on flags at calibrated false-positive rates."""
    parts = ['<h2 id="thresholds">Efficiency at calibrated false-positive rates</h2>']
    if not _threshold_rates(metrics):
        parts.append('<p class="caption">No spectrum is flagged: either no false-positive rates are configured '
                     "(<code>scoring.false_positive_rates</code>), or the validation split held no normal spectrum "
                     "to calibrate the cuts on (the score step's log says which).</p>")
        return parts
    if metrics["labelled"]:
        text = ("Each model's anomaly score is cut where at most the target fraction of the validation split's "
                "normal spectra lie above it; spectra above the cut are flagged. On the test split, TPR is the "
                "fraction of labelled anomalies flagged and FPR the fraction of normal spectra flagged, which "
                "should come out close to the target. The highest TPR at each rate is highlighted.")
    else:
        text = ("Each model's anomaly score is cut where at most the target fraction of the validation split's "
                "spectra (no labels: assumed mostly normal) lie above it; spectra above the cut are flagged. "
                "Without labels no TPR or FPR can be computed; the table gives the fraction of test spectra "
                "flagged, which exceeds the target where the test split holds anomalies or differs from validation.")
    parts += [
        (f'<p class="caption">{escape(text)} &dagger; fewer calibration spectra than 1/rate: the cut is their '
         "maximum score and the flag is coarser than the target.</p>"),
        efficiency_table(metrics),
        "<details><summary>cuts and calibration of every flag</summary>", calibration_table(metrics), "</details>",
    ]
    return parts


def _kind_cell(flagged: dict | None, *, anomalous: bool) -> str:
    """``95.0% (38/40)``; for a kind of labelled anomalies tinted by the fraction missed (white: none)."""
    if flagged is None:
        return '<td class="num">&mdash;</td>'
    text = f"{100.0 * flagged['fraction']:.1f}% ({flagged['n_flagged']}/{flagged['n_total']})"
    if not anomalous:
        return f'<td class="num">{text}</td>'
    missed = 1.0 - flagged["fraction"]
    return f'<td class="num" style="background: rgba(214, 39, 40, {0.6 * missed:.2f})">{text}</td>'


def _kind_rates(kinds: dict) -> dict[str, float]:
    """Flag column -> target rate over every model and kind, loosest first."""
    rates: dict[str, float] = {}
    for counts in kinds["models"].values():
        for entry in counts.values():
            for column, flagged in entry["flags"].items():
                rates.setdefault(column, flagged["false_positive_rate"])
    return dict(sorted(rates.items(), key=lambda item: -item[1]))


def kind_table(kinds: dict) -> str:
    """Kind x (model, rate): the fraction and count of the kind's test spectra flagged."""
    rates = _kind_rates(kinds)
    models = list(kinds["models"])
    header = (f'<tr><th rowspan="2">{escape(kinds["column"])}</th><th rowspan="2">kind</th>'
              '<th rowspan="2">test spectra</th>'
              + "".join(f'<th colspan="{len(rates)}">{escape(model)}</th>' for model in models) + "</tr>\n<tr>"
              + "".join(f"<th>FPR {escape(rate_label(rate))}</th>" for _ in models for rate in rates.values()) + "</tr>")
    rows = []
    for key, name in kinds["names"].items():
        entries = [kinds["models"][model].get(key) for model in models]
        n_test = next((entry["n_test"] for entry in entries if entry), 0)
        anomalous = any(entry and entry["n_labelled_anomalous"] for entry in entries)
        cells = [f"<td>{escape(key)}</td><td>{escape(name)}</td>", _cell(n_test)]
        for entry in entries:
            for column in rates:
                flagged = (entry or {}).get("flags", {}).get(column)
                cells.append(_kind_cell(None if flagged is None else {**flagged, "n_total": entry["n_test"]},
                                        anomalous=anomalous))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def kinds_section(metrics: dict) -> list[str]:
    """Efficiency per anomaly kind, where ``report.kind_column`` names one and the models have flags."""
    kinds = metrics.get("kinds")
    if not kinds:
        return []
    parts = [f'<h3 id="kinds">Efficiency per anomaly kind ({escape(kinds["column"])})</h3>']
    if not _kind_rates(kinds):
        return parts + ['<p class="caption">No calibrated flags to count per kind.</p>']
    text = (f"For each value of the metadata column {kinds['column']} (report.kind_column), the fraction of its "
            "test spectra that each model flags at each calibrated false-positive rate, with the counts. For a kind "
            "of normal spectra this is the false-positive rate; for a kind of labelled anomalies it is the "
            "efficiency for that kind, and the cell is the redder the more of them are missed. With few "
            "spectra of a kind, read the counts: one spectrum more or less moves the percentage by 100/n.")
    return parts + [f'<p class="caption">{escape(text)}</p>', kind_table(kinds)]
