"""The monitoring report's page: one self-contained HTML file, figures embedded as base64 PNG.

Built like the training report's page (:mod:`.html`): every text from data or configuration is
escaped through :func:`.text.html_text`, and the page is pure ASCII.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from .. import __version__
from ..text import html_text as escape
from ..thresholds import rate_label
from .html import STYLE, format_number
from .monitoring_metrics import drift_verdict

#: runs listed in a model's per-run table at most (those furthest above their rate first)
MAX_TABLE_RUNS = 50
EXTRA_STYLE = "h3 { margin-top: 1.5em; }\n.drift { color: #b00; font-weight: bold; }\n.ok { color: #070; }\n"


def percent(value: float | None) -> str:
    return "&mdash;" if value is None else f"{100.0 * value:.2f}%"


def _interval(values: Mapping) -> str:
    low, high = values["interval"]
    return f"{percent(values['fraction'])} [{percent(low)}, {percent(high)}]"


def _verdict_html(drift: dict) -> str:
    verdict = drift_verdict(drift)
    css = "drift" if drift["drifted"] else "ok"
    return f'<span class="{css}">{escape(verdict)}</span>'


def figure_block(png: bytes, *, alt: str, caption: str) -> str:
    """One embedded figure; ``alt`` and ``caption`` are plain text, escaped here."""
    encoded = base64.b64encode(png).decode("ascii")
    return (f'<figure>\n<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">\n'
            f"<figcaption>{escape(caption)}</figcaption>\n</figure>")


def summary_items(metrics: dict) -> list[str]:
    """One list item per model: the fraction flagged at each cut against its rate, and the drift verdict."""
    items = []
    for index, (name, entry) in enumerate(metrics["models"].items()):
        cuts = [f"{percent(v['fraction'])} flagged at the cut for {escape(rate_label(v['rate']))}"
                f" ({v['n_flagged']} spectra)" for v in entry["flagged"].values()]
        drift = entry["drift"]
        tested = f" (KS p = {drift['p_value']:.3g})" if drift["p_value"] is not None else ""
        items.append(f'<li><a href="#model-{index + 1}"><b>{escape(name)}</b></a>: '
                     + ("; ".join(cuts) or "no stored cuts") + f"; {_verdict_html(drift)}{tested}</li>")
    return items


def flag_table(flagged: Mapping[str, dict]) -> str:
    """The stored cuts of one model: rate, cut, flagged count and fraction, expected spread, z (and label fractions)."""
    labelled = any(v["efficiency"] is not None or v["false_positive_fraction"] is not None for v in flagged.values())
    header = ("<tr><th>flag</th><th>rate (expected fraction)</th><th>stored cut</th><th>flagged</th>"
              "<th>fraction [68% interval]</th><th>expected &plusmn; 1&sigma;</th><th>z</th>"
              + ("<th>flagged among label 1 (efficiency)</th><th>flagged among label 0 (FP fraction)</th>" if labelled else "")
              + "</tr>")
    rows = []
    for column, v in flagged.items():
        cells = [escape(column), escape(rate_label(v["rate"])), format_number(v["cut"], digits=4), str(v["n_flagged"]),
                 _interval(v), f"{percent(v['rate'])} &plusmn; {percent(v['expected_std'])}", format_number(v["z"], digits=2)]
        if labelled:
            cells += [percent(v["efficiency"]), percent(v["false_positive_fraction"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return "<p>No stored cuts in this score table: nothing is flagged.</p>"
    return f"<table>\n{header}\n" + "\n".join(rows) + "\n</table>"


def run_table(per_run: dict, flagged: Mapping[str, dict]) -> str:
    """Per run: spectra and, per stored cut, flagged count, fraction with interval and z."""
    column, runs = per_run["column"], per_run["runs"]
    note = f"All {len(runs)} values of {escape(column)}, in order."
    if len(runs) > MAX_TABLE_RUNS:
        runs = sorted(runs, key=lambda r: -max((v["z"] for v in r["flagged"].values()), default=0.0))[:MAX_TABLE_RUNS]
        note = (f"The {MAX_TABLE_RUNS} of {len(per_run['runs'])} values of {escape(column)} furthest above their "
                "expected fraction (largest z at any cut) first.")
    header = (f"<tr><th>{escape(column)}</th><th>spectra</th>"
              + "".join(f"<th>flagged at {escape(rate_label(v['rate']))}: n, fraction [68%], z</th>" for v in flagged.values())
              + "</tr>")
    rows = []
    for run in runs:
        cells = [escape(str(run["run"])), str(run["n_spectra"])]
        cells += [f"{v['n_flagged']}, {_interval(v)}, {format_number(v['z'], digits=2)}"
                  for v in (run["flagged"][c] for c in flagged)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<p class="caption">{note}</p>\n<table>\n{header}\n' + "\n".join(rows) + "\n</table>"


def drift_paragraph(drift: dict, *, description: str, reference_version: str) -> str:
    bulk = (f" at or below the loosest stored cut ({format_number(drift['below'])}; {drift['n_new_above']} new "
            "spectra above it are what the flags count)") if drift.get("below") is not None else ""
    if drift["statistic"] is None:
        if drift["drifted"]:
            return (f"<p>Every one of the {drift['n_new_above']} new spectra lies above the loosest stored cut, while "
                    f"the reference's calibration spectra lie below it: the distribution has moved. Verdict: "
                    f"{_verdict_html(drift)}.</p>")
        return (f"<p>Not tested: {drift['n_new']} new and {drift['n_reference']} reference scores{bulk} "
                "(both must be at least one).</p>")
    return (f"<p>Two-sample Kolmogorov&ndash;Smirnov test of the {drift['n_new']} new anomaly scores against the "
            f"{drift['n_reference']} of reference version <b>{escape(reference_version)}</b> ({escape(description)})"
            f"{bulk}: D = {drift['statistic']:.4f}, p = {drift['p_value']:.3g}. Verdict: {_verdict_html(drift)} "
            f"(drift is called when p &lt; {drift['alpha']:g}).</p>")


def examples_list(records: list[dict], *, bin_unit: str | None) -> str:
    """Per stored example: its metadata and the bins that drive its score, with their pulls and ranges."""
    unit = f" {escape(bin_unit)}" if bin_unit else ""
    items = []
    for record in records:
        meta = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in record["metadata"].items())
        bins = "; ".join(
            f"bin {b['bin']} ({b['low']:.5g}&ndash;{b['high']:.5g}{unit}"
            + (f", pull {b['pull']:+.2f})" if b["pull"] is not None else ", largest |pull|)")
            for b in record["driving_bins"]) or "no pulls stored"
        items.append(f"<li>spectrum {escape(str(record['spectrum_id']))}"
                     + (f" ({meta})" if meta else "") + f", score {record['anomaly_score']:.4g}: {bins}</li>")
    return "<ol>\n" + "\n".join(items) + "\n</ol>" if items else "<p>No stored examples.</p>"


def model_section(index: int, name: str, entry: dict, pngs: Mapping[str, bytes], *, records: list[dict],
                  texts: Mapping[str, str], reference_version: str, bin_unit: str | None) -> list[str]:
    """The section of one model: its cuts, score trend, flags per run, drift and most anomalous spectra."""
    parts = [f'<h2 id="model-{index + 1}">{escape(name)} <span class="meta">({escape(entry["kind"])}; primary score '
             f"{escape(entry['primary_score'])})</span></h2>", flag_table(entry["flagged"])]
    parts += [f"<h3>Anomaly score against {escape(texts['order'])}</h3>",
              figure_block(pngs["score_trend"], alt=f"{name}: anomaly score against {texts['order']}", caption=texts["trend"])]
    if entry["per_run"] is not None:
        parts.append(f"<h3>Fraction flagged per {escape(entry['per_run']['column'])}</h3>")
        if "run_flags" in pngs:
            parts.append(figure_block(pngs["run_flags"], alt=f"{name}: fraction flagged per run", caption=texts["runs"]))
        parts.append(run_table(entry["per_run"], entry["flagged"]))
    parts += ["<h3>Drift against the reference</h3>",
              drift_paragraph(entry["drift"], description=texts["calibration"], reference_version=reference_version),
              figure_block(pngs["drift"], alt=f"{name}: score distributions, new and reference", caption=texts["drift"]),
              "<h3>Most anomalous new spectra</h3>",
              figure_block(pngs["examples"], alt=f"{name}: most anomalous new spectra", caption=texts["examples"]),
              examples_list(records, bin_unit=bin_unit)]
    return parts


def render_monitoring_page(*, metrics: dict, sections: list[list[str]]) -> str:
    """The complete page: title, summary of every model, then each model's section."""
    dataset, version, reference = (escape(str(metrics[k])) for k in ("dataset", "version", "reference_version"))
    alpha = format_number(metrics["alpha"], digits=2)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Monitoring report: {dataset} ({version})</title>", f"<style>{STYLE}{EXTRA_STYLE}</style>", "</head>", "<body>",
        f"<h1>Monitoring report: {dataset}</h1>",
        f'<p class="meta">version <b>{version}</b> &middot; reference version <b>{reference}</b> &middot; '
        f"spectral_anomaly {escape(__version__)}</p>",
        '<h2 id="summary">Summary</h2>',
        f"<p>Version <b>{version}</b> scores <b>{metrics['n_spectra']}</b> new spectra with the detectors and cuts of "
        f"reference version <b>{reference}</b>; no detector was retrained and no cut recalibrated. Each cut was "
        "calibrated for a false-positive rate, so on new spectra like the reference's normal ones it flags about "
        "that fraction. The new scores at or below the loosest cut are compared with the reference's calibration "
        "scores below it by a two-sample Kolmogorov&ndash;Smirnov test (the spectra above the cut are what the flags "
        f"count); <b>drift</b> is called when its p-value is below {alpha}. Every score is "
        "oriented so that higher means more anomalous.</p>",
        "<ul>", *summary_items(metrics), "</ul>",
    ]
    for section in sections:
        parts += section
    parts += ["</body>", "</html>"]
    page = "\n".join(parts) + "\n"
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")
