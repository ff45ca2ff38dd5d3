"""The report page: one self-contained HTML file per dataset, figures embedded as base64 PNG.

Every text that comes from data or configuration is escaped; the page needs no network access
and no other file to display. The page is pure ASCII (other characters as numeric references), so
it is written the same whatever the locale's encoding.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping

import pandas as pd

from .. import __version__
from ..text import html_text as escape
from ..thresholds import rate_label
from .metrics import best_models
from .registry import FIGURES

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #d9f2d9; font-weight: bold; }
tr.anomalous td { background: #fdecec; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, p.caption { color: #444; font-size: .95em; max-width: 60em; }
.meta { color: #555; }
details pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .88em; }
"""

def format_number(value: object, *, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``None``/NaN as an em dash; other values escaped as text."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return escape(str(value))
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return escape(str(value))
    if math.isnan(number):
        return "&mdash;"
    if math.isinf(number):
        return "&infin;" if number > 0 else "&minus;&infin;"
    if number.is_integer() and abs(number) < 1e15 and not isinstance(value, float):
        return str(int(number))
    return f"{number:.{digits}f}"


def _cell(value: object, *, best: bool = False) -> str:
    numeric = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    classes = " ".join(c for c in ("num" if numeric else "", "best" if best else "") if c)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{format_number(value)}</td>"


def _auc_cell(value: float | None, std: float | None, *, best: bool) -> str:
    """An AUC with its bootstrap standard deviation, e.g. ``0.953 &plusmn; 0.004``."""
    cell = _cell(value, best=best)
    if value is None or std is None:
        return cell
    return cell.replace("</td>", f" &plusmn; {format_number(std)}</td>")


def comparison_table(metrics: dict) -> str:
    """Model, kind, primary score, ROC AUC and PR AUC, the best value in each AUC column highlighted."""
    best = best_models(metrics)
    rows = []
    for name, entry in metrics["models"].items():
        rows.append(
            "<tr>" + f"<td>{escape(name)}</td><td>{escape(str(entry['kind']))}</td>"
            f"<td>{escape(str(entry['primary_score']))}</td>"
            + _auc_cell(entry["roc_auc"], entry.get("roc_auc_std"), best=name in best["roc_auc"])
            + _auc_cell(entry["pr_auc"], entry.get("pr_auc_std"), best=name in best["pr_auc"])
            + _cell(entry["n_test"]) + _cell(entry["n_anomalous_test"]) + "</tr>"
        )
    header = ("<tr><th>model</th><th>kind</th><th>primary score</th><th>ROC AUC &plusmn; bootstrap std</th>"
              "<th>PR AUC &plusmn; bootstrap std</th>"
              "<th>test spectra</th><th>test anomalies</th></tr>")
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>" + choices_list(metrics)


def choices_list(metrics: dict) -> str:
    """What the detectors' fits chose from the training and validation spectra alone, with the reason;
    a choice shared by several models is listed once, with their names."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for name, entry in metrics["models"].items():
        for key, choice in (entry.get("choices") or {}).items():
            value = choice["value"]
            shown = " \u2192 ".join(map(str, value)) if isinstance(value, list) else str(value)
            groups.setdefault((key, shown, str(choice["reason"])), []).append(name)
    if not groups:
        return ""
    items = [f"<li><b>{escape(key)}</b> = {escape(shown)} ({escape(', '.join(names))}): {escape(reason)}</li>"
             for (key, shown, reason), names in groups.items()]
    return ("\n<p>Chosen without anomaly labels, from the training and validation spectra only:</p>\n<ul>\n"
            + "\n".join(items) + "\n</ul>")


def ranking_table(metrics: dict) -> str:
    """Model variants and the PCA baseline ranked by mean ROC AUC over training seeds, with the spread."""
    header = ("<tr><th>rank</th><th>variant</th><th>kind</th><th>seeds</th><th>ROC AUC mean</th>"
              "<th>&plusmn; std between seeds</th><th>min&ndash;max</th><th>PR AUC mean</th></tr>")
    rows = []
    for rank, (variant, entry) in enumerate(metrics.get("variants", {}).items(), start=1):
        spread = (f"{format_number(entry['roc_auc_min'])}&ndash;{format_number(entry['roc_auc_max'])}"
                  if entry["n_seeds"] > 1 else "&mdash;")
        rows.append(
            f"<tr><td>{rank}</td><td>{escape(variant)}</td><td>{escape(entry['kind'])}</td><td>{entry['n_seeds']}</td>"
            + _cell(entry["roc_auc_mean"], best=rank == 1) + _cell(entry["roc_auc_std"])
            + f"<td>{spread}</td>" + _cell(entry["pr_auc_mean"]) + "</tr>"
        )
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def ranking_section(metrics: dict) -> list[str]:
    """The ranking of variants, shown where labels exist and some variant was trained on several seeds."""
    variants = metrics.get("variants") or {}
    if not metrics["labelled"] or all(entry["n_seeds"] == 1 for entry in variants.values()):
        return []
    return ['<h2 id="ranking">Ranking over training seeds</h2>',
            '<p class="caption">Each model variant trained once per seed; ranked by its mean ROC AUC on the test split. '
            "The spread between seeds shows how much of a difference between variants is luck of the initialization.</p>",
            ranking_table(metrics)]


def score_table(metrics: dict) -> str:
    """ROC AUC and PR AUC of every score column of every model."""
    rows = []
    for name, entry in metrics["models"].items():
        for column, aucs in entry["scores"].items():
            primary = " (primary)" if column == entry["primary_score"] else ""
            rows.append(f"<tr><td>{escape(name)}</td><td>{escape(column)}{primary}</td>"
                        + _cell(aucs["roc_auc"]) + _cell(aucs["pr_auc"]) + "</tr>")
    header = "<tr><th>model</th><th>score</th><th>ROC AUC</th><th>PR AUC</th></tr>"
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def _percent_cell(value: float | None, *, best: bool = False) -> str:
    text = "&mdash;" if value is None or math.isnan(value) else f"{100.0 * value:.2f}%"
    return f'<td class="num best">{text}</td>' if best else f'<td class="num">{text}</td>'


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


def dataframe_table(frame: pd.DataFrame) -> str:
    """An escaped HTML table of ``frame``; rows with ``label`` 1 are tinted."""
    header = "<tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns) + "</tr>"
    rows = []
    for record in frame.to_dict(orient="records"):
        tint = ' class="anomalous"' if record.get("label") == 1 else ""
        cells = []
        for column, value in record.items():
            value = value.item() if hasattr(value, "item") else value
            cells.append(_cell(value) if column != "spectrum_id" else f'<td class="num">{escape(str(value))}</td>')
        rows.append(f"<tr{tint}>" + "".join(cells) + "</tr>")
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def run_table(summary: pd.DataFrame, *, column: str, max_rows: int) -> str:
    """The per-run summary as a table of percentages; beyond ``max_rows`` runs, those most often flagged."""
    shown = summary
    note = f"All {len(summary)} {escape(column)}s, in order."
    flagged = [c for c in summary.columns if c.startswith("flagged ")]
    if len(summary) > max_rows:
        ranking = summary[flagged].max(axis=1) if flagged else summary.get("labelled anomalous", summary["spectra"])
        shown = summary.loc[ranking.sort_values(ascending=False, kind="stable").index[:max_rows]]
        note = (f"The {max_rows} of {len(summary)} {escape(column)}s with the highest flagged fraction"
                " (any model, any rate), most flagged first.")
    header = "<tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in shown.columns) + "</tr>"
    rows = []
    for record in shown.to_dict(orient="records"):
        cells = [f'<td class="num">{escape(str(record[column]))}</td>', _cell(int(record["spectra"]))]
        cells += [_percent_cell(float(record[c])) for c in shown.columns[2:]]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<p class="caption">{note}</p>\n<table>\n{header}\n' + "\n".join(rows) + "\n</table>"


def config_yaml(run_config: Mapping) -> str:
    """The run configuration as YAML (values YAML cannot represent are written as strings)."""
    import yaml

    plain = json.loads(json.dumps(dict(run_config), default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False)


def _figure_block(name: str, png: bytes) -> str:
    title, caption = FIGURES[name].title, FIGURES[name].caption
    encoded = base64.b64encode(png).decode("ascii")
    return (f'<h2 id="{name}">{escape(title)}</h2>\n<figure>\n'
            f'<img src="data:image/png;base64,{encoded}" alt="{escape(title)}">\n'
            f"<figcaption>{escape(caption)}</figcaption>\n</figure>")


def data_paragraph(data: Mapping) -> str:
    """One paragraph on the data: size, sources, spectra dropped at ingestion, training devices."""
    if not data:
        return ""
    parts = [f"<b>{data['n_spectra']}</b> spectra &times; <b>{data['n_bins']}</b> bins"]
    if data.get("sources"):
        parts.append("from " + ", ".join(f"<code>{escape(str(s))}</code>" for s in data["sources"]))
    dropped = int(data.get("n_dropped_nonfinite") or 0)
    parts.append(f"<b>{dropped}</b> spectra dropped at ingestion for NaN or infinite values" if dropped
                 else "no spectrum dropped at ingestion")
    text = "Data: " + "; ".join(parts) + "."
    if data.get("devices"):
        text += " Trained on: " + ", ".join(f"{escape(str(m))} &rarr; {escape(str(d))}" for m, d in data["devices"].items()) + "."
    return f"<p>{text}</p>"


def render_report(*, dataset: str, run_name: str, metrics: dict, figures: Mapping[str, bytes],
                  top_table: pd.DataFrame, reference_model: str, run_config: Mapping,
                  runs: pd.DataFrame | None = None, run_column: str | None = None, max_run_rows: int = 30) -> str:
    """The complete HTML page of one dataset's report; ``runs``: the per-run summary, if any."""
    labelled = metrics["labelled"]
    meta = [f"run <b>{escape(str(run_name))}</b>", f"dataset <b>{escape(str(dataset))}</b>",
            f"{len(metrics['models'])} models", f"spectral_anomaly {escape(__version__)}"]
    if labelled:
        label_note = ("AUCs are computed on the test split only. PR AUC is average precision; a random ranking "
                      "scores the test split's anomaly fraction. The +- is the standard deviation over 200 bootstrap resamples "
                      "of the test spectra. The best value of each column is highlighted.")
    else:
        label_note = ("This dataset has no labels configured, so no detection metric can be computed; the figures "
                      "below still show how the models rank spectra.")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Anomaly report: {escape(str(dataset))} ({escape(str(run_name))})</title>",
        f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>Anomaly report: {escape(str(dataset))}</h1>",
        f'<p class="meta">{" &middot; ".join(meta)}</p>',
        '<p class="meta">Sections: <a href="#metrics">model comparison</a> &middot; <a href="#thresholds">efficiency</a>'
        + "".join(f' &middot; <a href="#{name}">{escape(title.lower())}</a>' for name, title in ((n, f.title) for n, f in FIGURES.items()))
        + ' &middot; <a href="#top-spectra">ranked spectra</a> &middot; <a href="#config">configuration</a></p>',
        data_paragraph(metrics.get("data") or {}),
        "<p>Every score is oriented so that a higher anomaly score means a more anomalous spectrum.</p>",
        '<h2 id="metrics">Model comparison</h2>', f'<p class="caption">{escape(label_note)}</p>',
        comparison_table(metrics),
        "<details><summary>AUC of every score column</summary>", score_table(metrics), "</details>",
        *ranking_section(metrics),
        *thresholds_section(metrics),
    ]
    for name in FIGURES:
        parts.append(_figure_block(name, figures[name]))
        if name == "run_summary" and runs is not None and run_column is not None:
            parts.append(f"<details open><summary>fraction flagged per {escape(run_column)}</summary>")
            parts += [run_table(runs, column=run_column, max_rows=max_run_rows), "</details>"]
    parts += [
        '<h2 id="top-spectra">Most anomalous spectra, ranked</h2>',
        f'<p class="caption">The {len(top_table)} spectra with the highest anomaly score of model '
        f"<b>{escape(reference_model)}</b>, over every split, with their metadata and every model's anomaly score "
        "for the same spectrum (scores of different models are on different scales: compare ranks, not values)."
        + (" The largest pull column gives the bin (from 0) where the spectrum lies furthest from that model's "
           "reconstruction, in units of its uncertainty, with the bin's range where the bin edges are known."
           if any(str(column).startswith("largest pull (") for column in top_table.columns) else "")
        + (" A model's flags column lists the calibrated false-positive rates at which it flags the spectrum."
           if any(str(column).startswith("flags (") for column in top_table.columns) else "")
        + (" Rows of labelled anomalies are tinted." if labelled else "") + "</p>",
        dataframe_table(top_table),
        '<h2 id="config">Run configuration</h2>',
        f"<details><summary>effective configuration of run {escape(str(run_name))}</summary>",
        f"<pre>{escape(config_yaml(run_config))}</pre>", "</details>",
        "</body>", "</html>",
    ]
    page = "\n".join(parts) + "\n"
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")
