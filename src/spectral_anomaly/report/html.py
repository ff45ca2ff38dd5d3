"""The report page: one self-contained HTML file per dataset, figures embedded as base64 PNG.

Every text that comes from data or configuration is escaped; the page needs no network access
and no other file to display. The page is pure ASCII (other characters as numeric references), so
it is written the same whatever the locale's encoding.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pandas as pd

from .. import __version__
from ..text import html_text as escape
from .cells import _auc_cell, _cell, _percent_cell, format_number
from .efficiency_html import kinds_section, thresholds_section
from .findings import tied_with_best
from .registry import FIGURES
from .summary_html import summary_paragraph

__all__ = ["STYLE", "format_number", "render_report"]

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { background: #d9f2d9; font-weight: bold; }
span.note { color: #a33; font-size: .9em; }
p.summary { background: #f6f8fb; border-left: 4px solid #4a78b0; padding: .7em 1em; max-width: 66em; }
tr.anomalous td { background: #fdecec; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, p.caption { color: #444; font-size: .95em; max-width: 60em; }
.meta { color: #555; }
details pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .88em; }
"""

def _best_score_cell(best: dict | None) -> str:
    """The detector's score column with the highest ROC AUC, noted where it beats the primary score."""
    if best is None:
        return '<td class="num">&mdash;</td>'
    if best["primary"]:
        return f'<td><code>{escape(best["column"])}</code> (the primary)</td>'
    return (f'<td><code>{escape(best["column"])}</code> {format_number(best["roc_auc"])} '
            f'<span class="note">beats the primary by {best["above_primary"]:.3f}</span></td>')


def comparison_table(metrics: dict) -> str:
    """Model, kind, primary score, ROC AUC and PR AUC, and the model's best score column.

    In each AUC column the best model and every model tied with it (:func:`.findings.tied_with_best`,
    the summary's rule) are highlighted.
    """
    tied = tied_with_best(metrics)
    rows = []
    for name, entry in metrics["models"].items():
        rows.append(
            "<tr>" + f"<td>{escape(name)}</td><td>{escape(str(entry['kind']))}</td>"
            f"<td>{escape(str(entry['primary_score']))}</td>"
            + _auc_cell(entry["roc_auc"], entry.get("roc_auc_std"), best=name in tied["roc_auc"])
            + _auc_cell(entry["pr_auc"], entry.get("pr_auc_std"), best=name in tied["pr_auc"])
            + _cell(entry["n_test"]) + _cell(entry["n_anomalous_test"])
            + _best_score_cell(entry.get("best_score")) + "</tr>"
        )
    header = ("<tr><th>model</th><th>kind</th><th>primary score</th><th>ROC AUC &plusmn; bootstrap std</th>"
              "<th>PR AUC &plusmn; bootstrap std</th>"
              "<th>test spectra</th><th>test anomalies</th><th>best score column: ROC AUC (chosen on test labels)</th></tr>")
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
                      "of the test spectra. Highlighted in each AUC column: the best detector and every detector tied "
                      "with it under the summary's rule. The last column gives each detector's score column with the "
                      "highest ROC AUC; it is picked on the test labels, so it is for reading, not a fair ranking.")
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
        summary_paragraph(metrics),
        data_paragraph(metrics.get("data") or {}),
        "<p>Every score is oriented so that a higher anomaly score means a more anomalous spectrum.</p>",
        '<h2 id="metrics">Model comparison</h2>', f'<p class="caption">{escape(label_note)}</p>',
        comparison_table(metrics),
        "<details><summary>AUC of every score column</summary>", score_table(metrics), "</details>",
        *ranking_section(metrics),
        *thresholds_section(metrics),
        *kinds_section(metrics),
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
