"""Tests of the monitoring report: flags at stored cuts, per-run fractions, the drift test, escaping, the page."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from test_report_browser import CHROMIUM, chromium  # the same headless Chromium call

from spectral_anomaly.exceptions import ConfigError, FormatVersionError
from spectral_anomaly.report.monitoring import build_monitoring_report, read_monitoring_metrics
from spectral_anomaly.report.monitoring_metrics import binomial_interval, driving_bins
from spectral_anomaly.score import write_scores
from spectral_anomaly.store.atomic import write_json
from spectral_anomaly.store.formats import FORMAT_VERSIONS
from spectral_anomaly.thresholds import add_threshold_flags

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RATES = [0.1, 0.01]
HOSTILE = "<script>alert(1)</script>{{7*7}}"
N_BINS = 40


def reference_table(rng, *, model, n=2000):
    """A training run's score table: splits, labels, gamma-distributed anomaly scores and calibrated flags."""
    labels = (rng.random(n) < 0.05).astype(np.int8)
    table = pd.DataFrame({
        "spectrum_id": np.arange(n, dtype=np.int64), "model": model,
        "split": rng.choice(["train", "validation", "test"], size=n, p=[0.6, 0.2, 0.2]), "label": labels,
        "run": 1000 + np.arange(n) // 500, "lumi": np.arange(n) % 500,
    })
    table["pca_nll"] = rng.gamma(4.0, 10.0, n) + 80.0 * labels
    table["anomaly_score"] = table["pca_nll"]
    return add_threshold_flags(table, false_positive_rates=RATES)


def apply_table(rng, info, *, model, n, shift=0.0, runs=("A", "B", "C"), labelled=False):
    """New spectra scored with the reference's stored cuts: same score distribution, shifted by ``shift``."""
    table = pd.DataFrame({
        "spectrum_id": np.arange(n, dtype=np.int64), "model": model, "split": "apply",
        "run": np.repeat(np.array(runs, dtype=object), -(-n // len(runs)))[:n], "lumi": np.arange(n),
        "source_file": "new.h5",
    })
    if labelled:
        table.insert(3, "label", (rng.random(n) < 0.1).astype(np.int8))
    table["pca_nll"] = rng.gamma(4.0, 10.0, n) + shift + (80.0 * table["label"] if labelled else 0.0)
    table["anomaly_score"] = table["pca_nll"]
    table["max_pull_bin"] = rng.integers(0, N_BINS, n)
    for entry in info["rates"]:
        table[entry["column"]] = table["anomaly_score"] > entry["cut"]
    return table


def write_examples(rng, path, table, *, k=6):
    order = np.argsort(-table["anomaly_score"].to_numpy(), kind="stable")[:k]
    edges = np.linspace(0.0, 2000.0, N_BINS + 1)
    expected = np.tile(500.0 * np.exp(-0.5 * (edges[:-1] + edges[1:]) / 600.0), (k, 1))
    counts = rng.poisson(expected).astype(np.float64)
    counts[:, 25:27] *= 3.0  # a peak the reconstruction does not follow
    np.savez(path, format_version=FORMAT_VERSIONS["examples"], spectrum_id=table["spectrum_id"].to_numpy()[order],
             anomaly_score=table["anomaly_score"].to_numpy()[order], input=counts, reconstruction=expected,
             pulls=(counts - expected) / np.sqrt(expected), bin_edges=edges)


def make_run(root, *, shift=0.0, model="pca", n=1500, seed=3, runs=("A", "B", "C"), labelled=False):
    """Write one model's reference and apply tables and examples under ``root``; return the report's inputs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    reference, info = reference_table(rng, model=model)
    new = apply_table(rng, info, model=model, n=n, shift=shift, runs=runs, labelled=labelled)
    paths = {"reference": root / "reference.parquet", "scores": root / "apply.parquet", "examples": root / "apply.npz"}
    write_scores(reference, paths["reference"], kind="pca", primary="pca_nll", thresholds=info)
    write_scores(new, paths["scores"], kind="pca", primary="pca_nll", thresholds=info)
    write_examples(rng, paths["examples"], new)
    inputs = {"scores": {model: paths["scores"]}, "reference_scores": {model: paths["reference"]},
              "examples": {model: paths["examples"]}}
    return inputs, reference, new, info


def report(root, inputs, **overrides):
    arguments = dict(dataset="demo", version_name="apply-1", reference_version="train-1", order_column="lumi",
                     run_column="run", html_path=root / "out" / "monitoring.html", metrics_path=root / "out" / "metrics.json",
                     figure_dir=root / "out" / "figures", bin_unit="keV", **inputs)
    arguments.update(overrides)
    return build_monitoring_report(**arguments), arguments


def test_ks_verdict_is_drift_for_shifted_scores_and_not_for_the_reference_distribution(tmp_path):
    same, _ = report(tmp_path / "same", make_run(tmp_path / "same", shift=0.0)[0])
    shifted, _ = report(tmp_path / "shifted", make_run(tmp_path / "shifted", shift=15.0)[0])
    assert same["models"]["pca"]["drift"]["drifted"] is False
    assert same["models"]["pca"]["drift"]["p_value"] >= 0.01
    assert shifted["models"]["pca"]["drift"]["drifted"] is True
    assert shifted["models"]["pca"]["drift"]["p_value"] < 1e-6
    assert shifted["models"]["pca"]["drift"]["alpha"] == 0.01


def test_drift_compares_the_bulk_below_the_loosest_cut_with_the_reference_calibration_spectra(tmp_path):
    inputs, reference, new, info = make_run(tmp_path)
    metrics, _ = report(tmp_path, inputs)
    from scipy.stats import ks_2samp

    cut = max(info["rates"], key=lambda r: r["false_positive_rate"])["cut"]
    calibration = reference[(reference["split"] == "validation") & (reference["label"] == 0)]["anomaly_score"]
    bulk_new, bulk_reference = new["anomaly_score"][new["anomaly_score"] <= cut], calibration[calibration <= cut]
    expected = ks_2samp(bulk_new, bulk_reference)
    drift = metrics["models"]["pca"]["drift"]
    assert drift["n_reference"] == len(bulk_reference) and drift["n_new"] == len(bulk_new)
    assert drift["n_new_above"] == len(new) - len(bulk_new) and drift["below"] == cut
    assert drift["statistic"] == pytest.approx(expected.statistic) and drift["p_value"] == pytest.approx(expected.pvalue)


def test_new_spectra_all_above_the_loosest_cut_are_drift(tmp_path):
    from spectral_anomaly.report.monitoring_metrics import drift_test

    reference = np.random.default_rng(0).normal(size=500)
    drift = drift_test(reference + 50.0, reference, below=float(np.quantile(reference, 0.99)))
    assert drift["drifted"] is True and drift["p_value"] is None and drift["n_new_above"] == 500
    undrifted = drift_test(np.random.default_rng(1).normal(size=500), reference, below=float(np.quantile(reference, 0.99)))
    assert undrifted["drifted"] is False


def test_flagged_fractions_equal_a_direct_count_and_runs_add_up(tmp_path):
    inputs, _, new, info = make_run(tmp_path, shift=5.0)
    metrics, arguments = report(tmp_path, inputs)
    entry = metrics["models"]["pca"]
    assert metrics["n_spectra"] == len(new)
    for stored in info["rates"]:
        column = stored["column"]
        flagged = entry["flagged"][column]
        direct = int((new["anomaly_score"] > stored["cut"]).sum())
        assert flagged["n_flagged"] == direct and flagged["fraction"] == pytest.approx(direct / len(new))
        assert flagged["rate"] == stored["false_positive_rate"] and flagged["cut"] == stored["cut"]
        low, high = flagged["interval"]
        assert low <= flagged["fraction"] <= high
        runs = entry["per_run"]["runs"]
        assert sum(run["flagged"][column]["n_flagged"] for run in runs) == direct
        for run in runs:
            rows = new[new["run"] == run["run"]]
            assert run["n_spectra"] == len(rows)
            assert run["flagged"][column]["fraction"] == pytest.approx(rows[column].mean())
    assert [run["run"] for run in entry["per_run"]["runs"]] == ["A", "B", "C"]
    assert sum(run["n_spectra"] for run in entry["per_run"]["runs"]) == len(new)
    assert json.loads(arguments["metrics_path"].read_text()) == json.loads(json.dumps(metrics))
    assert entry["flagged"]["flag_fpr_1pct"]["efficiency"] is None


def test_labelled_new_spectra_give_efficiency_and_false_positive_fraction(tmp_path):
    inputs, _, new, _ = make_run(tmp_path, labelled=True)
    metrics, arguments = report(tmp_path, inputs)
    flagged = metrics["models"]["pca"]["flagged"]["flag_fpr_10pct"]
    assert flagged["efficiency"] == pytest.approx(new.loc[new["label"] == 1, "flag_fpr_10pct"].mean())
    assert flagged["false_positive_fraction"] == pytest.approx(new.loc[new["label"] == 0, "flag_fpr_10pct"].mean())
    assert "efficiency" in arguments["html_path"].read_text()


def test_figures_are_png_and_the_metrics_file_is_versioned(tmp_path):
    inputs = make_run(tmp_path)[0]
    metrics, arguments = report(tmp_path, inputs)
    names = metrics["models"]["pca"]["figures"]
    assert set(names) == {"score_trend", "run_flags", "drift", "examples"}
    for name in names.values():
        assert (arguments["figure_dir"] / name).read_bytes().startswith(PNG_SIGNATURE)
    stored = read_monitoring_metrics(arguments["metrics_path"])
    assert stored["format_version"] == FORMAT_VERSIONS["monitoring_metrics"]
    assert stored["version"] == "apply-1" and stored["reference_version"] == "train-1"
    newer = tmp_path / "newer.json"
    write_json(newer, {**stored, "format_version": FORMAT_VERSIONS["monitoring_metrics"] + 1})
    with pytest.raises(FormatVersionError, match="Upgrade spectral_anomaly"):
        read_monitoring_metrics(newer)


def test_one_run_and_no_run_column(tmp_path):
    inputs = make_run(tmp_path, runs=("only",))[0]
    metrics, arguments = report(tmp_path, inputs)
    assert "run_flags" not in metrics["models"]["pca"]["figures"]
    assert len(metrics["models"]["pca"]["per_run"]["runs"]) == 1
    metrics, _ = report(tmp_path, inputs, run_column=None, order_column=None)
    assert metrics["models"]["pca"]["per_run"] is None


def test_an_unknown_column_or_reference_model_stops_with_the_alternatives(tmp_path):
    inputs = make_run(tmp_path)[0]
    with pytest.raises(ConfigError, match="'lumi'"):
        report(tmp_path, inputs, order_column="timestamp")
    with pytest.raises(ConfigError, match="reference models: 'other'"):
        report(tmp_path, {**inputs, "reference_scores": {"other": inputs["reference_scores"]["pca"]}})


def test_hostile_strings_are_escaped_everywhere(tmp_path):
    inputs, *_ = make_run(tmp_path, model=HOSTILE, runs=(HOSTILE, "{{7*7}}", "$x$"))
    metrics, arguments = report(tmp_path, inputs, dataset=HOSTILE, version_name=HOSTILE, reference_version="{{7*7}}",
                                bin_unit="<b>keV</b>")
    page = arguments["html_path"].read_text(encoding="ascii")
    assert "<script>" not in page and "<b>keV</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "{{7*7}}" in page
    assert HOSTILE in metrics["models"]
    assert {run["run"] for run in metrics["models"][HOSTILE]["per_run"]["runs"]} == {HOSTILE, "{{7*7}}", "$x$"}
    for name in metrics["models"][HOSTILE]["figures"].values():
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", name)
        assert (arguments["figure_dir"] / name).is_file()


def test_driving_bins_are_the_largest_absolute_pulls_with_their_ranges():
    edges = np.arange(6, dtype=np.float64) * 10.0
    bins = driving_bins(np.array([0.5, -7.0, np.nan, 3.0, 1.0]), edges)
    assert [(b["bin"], b["pull"], b["low"], b["high"]) for b in bins] == [(1, -7.0, 10.0, 20.0), (3, 3.0, 30.0, 40.0),
                                                                          (4, 1.0, 40.0, 50.0)]


def test_binomial_interval_covers_the_fraction_and_the_edges():
    low, high = binomial_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert low[0] == 0.0 and high[2] == 1.0
    assert low[1] < 0.5 < high[1]



ERROR_SCRIPT = """<script>
var pageErrors = [];
window.addEventListener("error", function (event) {
  pageErrors.push(String(event.message || (event.target && event.target.tagName) || "error"));
}, true);
console.error = function () { pageErrors.push(Array.prototype.join.call(arguments, " ")); };
</script>"""
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var result = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({errors: pageErrors, images: result, headings: Array.prototype.map.call(
    document.querySelectorAll("h1, h2, h3"), function (h) { return h.textContent; })});
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (Debian/Ubuntu: apt-get install -y chromium)")
def test_the_page_loads_in_chromium_with_every_image_decoded(tmp_path):
    inputs = make_run(tmp_path / "in", shift=10.0, model=HOSTILE)[0]
    _, arguments = report(tmp_path, inputs)
    checked = tmp_path / "checked.html"
    page = arguments["html_path"].read_text(encoding="ascii")
    checked.write_text(page.replace("<head>", "<head>" + ERROR_SCRIPT, 1).replace("</body>", CHECK_SCRIPT + "</body>"),
                       encoding="ascii")
    run = chromium("--dump-dom", checked.as_uri(), user_data_dir=tmp_path / "profile")
    found = re.search(r'<pre id="image-check">(.*?)</pre>', run.stdout, re.DOTALL)
    assert found, "the check script did not run; DOM starts with: " + run.stdout[:300]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert result["errors"] == []
    assert len(result["images"]) == 4
    for image in result["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image
    headings = " | ".join(result["headings"])
    for heading in ("Monitoring report: demo", "Summary", HOSTILE, "Anomaly score against lumi", "Fraction flagged per run",
                    "Drift against the reference", "Most anomalous new spectra"):
        assert heading in headings, headings
    assert "<script>alert(1)" not in run.stdout  # shown as text, never a script element
