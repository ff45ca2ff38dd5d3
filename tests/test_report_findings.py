"""Tests of what the report says it found: the summary's winner / tie rule and the highlights that follow
it, each detector's best score, efficiency per anomaly kind and the variety of the top-anomalies figure."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from test_report import make_inputs, run_report

from spectral_anomaly.exceptions import InputFileError
from spectral_anomaly.report.findings import TIE_SIGMAS, best_scores, comparison_findings, paired_auc_samples
from spectral_anomaly.report.html import comparison_table
from spectral_anomaly.report.kinds import kind_efficiencies
from spectral_anomaly.report.summary_html import summary_paragraph
from spectral_anomaly.report.variety import REGION_FRACTION, distinct_examples
from spectral_anomaly.score import read_scores, write_scores
from spectral_anomaly.thresholds import add_threshold_flags


def synthetic_metrics(aucs: dict[str, float], *, std: float = 0.004, scores: dict | None = None) -> dict:
    """Metrics of models with the given ROC (and PR) AUCs, each with ``std``."""
    models = {}
    for name, auc in aucs.items():
        columns = {"primary": {"roc_auc": auc, "pr_auc": auc}, **((scores or {}).get(name, {}))}
        models[name] = {"kind": "vae", "primary_score": "primary", "n_test": 1000, "n_anomalous_test": 100,
                        "roc_auc": auc, "roc_auc_std": std, "pr_auc": auc, "pr_auc_std": std, "scores": columns,
                        "thresholds": {}, "choices": {}}
    return {"labelled": True, "models": models, "variants": {}}


def shared_samples(aucs: dict[str, float], *, paired_std: float, seed: int = 0) -> dict:
    """Bootstrap samples with a common part of spread 0.004 and a per-model part of ``paired_std`` / sqrt(2)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.004, 200)
    per_model = {name: auc + common + rng.normal(0.0, paired_std / np.sqrt(2), 200) for name, auc in aucs.items()}
    return {"roc_auc": per_model, "pr_auc": per_model}


def with_findings(metrics: dict, samples: dict) -> dict:
    metrics["comparison"] = comparison_findings(metrics["models"], samples)
    for name, best in best_scores(metrics["models"]).items():
        metrics["models"][name]["best_score"] = best
    return metrics


def highlighted(table: str) -> dict[str, list[int]]:
    """Model -> the column positions of its highlighted cells in the comparison table."""
    result = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table):
        cells = re.findall(r"<td[^>]*>.*?</td>", row)
        if cells:
            name = re.sub(r"<[^>]+>", "", cells[0])
            result[name] = [i for i, cell in enumerate(cells) if 'class="num best"' in cell]
    return result


def test_a_clear_winner_is_named_and_alone_highlighted():
    aucs = {"vae": 0.990, "ae": 0.970, "pca": 0.960}
    metrics = with_findings(synthetic_metrics(aucs), shared_samples(aucs, paired_std=0.002))
    ranking = metrics["comparison"]["roc_auc"]
    assert ranking["best"] == "vae" and ranking["tied"] == ["vae"] and ranking["ranked"] == ["vae", "ae", "pca"]
    assert ranking["differences"]["ae"]["difference"] == pytest.approx(0.020)
    assert not ranking["differences"]["ae"]["tied"] and not ranking["differences"]["pca"]["tied"]
    summary = summary_paragraph(metrics)
    assert "By ROC AUC, <b>vae</b> ranks best" in summary and "tie" not in summary.split("Rule:")[0]
    assert "outside the uncertainty" in summary and "inside the uncertainty" not in summary
    assert f"at most {TIE_SIGMAS:g} standard deviations" in summary  # the rule is stated
    assert highlighted(comparison_table(metrics)) == {"vae": [3, 4], "ae": [], "pca": []}


def test_a_difference_inside_the_paired_spread_is_a_tie_and_every_tied_model_is_highlighted():
    aucs = {"vae": 0.98886, "ae": 0.98870, "pca": 0.9885}  # +-0.004 each, differences of a few 1e-4
    metrics = with_findings(synthetic_metrics(aucs), shared_samples(aucs, paired_std=0.002))
    ranking = metrics["comparison"]["roc_auc"]
    assert ranking["best"] == "vae" and set(ranking["tied"]) == {"vae", "ae", "pca"}
    for name in ("ae", "pca"):
        entry = ranking["differences"][name]
        assert entry["tied"] and entry["difference"] <= TIE_SIGMAS * entry["std"]
    summary = summary_paragraph(metrics)
    assert "By ROC AUC, all detectors tie" in summary and "ranks best" not in summary
    assert highlighted(comparison_table(metrics)) == {"vae": [3, 4], "ae": [3, 4], "pca": [3, 4]}


def test_a_partial_tie_highlights_the_best_and_its_tie_only():
    aucs = {"vae": 0.990, "ae": 0.9895, "pca": 0.950}
    metrics = with_findings(synthetic_metrics(aucs), shared_samples(aucs, paired_std=0.002))
    assert metrics["comparison"]["roc_auc"]["tied"] == ["vae", "ae"]
    assert "<b>vae</b> and <b>ae</b> tie for best" in summary_paragraph(metrics)
    assert highlighted(comparison_table(metrics)) == {"vae": [3, 4], "ae": [3, 4], "pca": []}


def test_the_paired_bootstrap_separates_a_perfect_detector_and_ties_identical_ones(tmp_path):
    inputs, _ = make_inputs(tmp_path)
    tables = {name: read_scores(path) for name, path in inputs["scores"].items()}
    samples = paired_auc_samples(tables)
    assert set(samples["roc_auc"]) == set(tables) and len(samples["roc_auc"]["vae"]) == 200
    np.testing.assert_allclose(samples["roc_auc"]["vae"], 1.0)  # separates perfectly on every resample
    assert paired_auc_samples(tables)["roc_auc"]["pca"].tolist() == samples["roc_auc"]["pca"].tolist()  # seeded
    twin = tables["pca"].copy()
    twin.attrs = dict(tables["pca"].attrs)
    samples = paired_auc_samples({"pca": tables["pca"], "twin": twin})
    np.testing.assert_array_equal(samples["roc_auc"]["pca"], samples["roc_auc"]["twin"])  # same resamples
    metrics, _ = run_report(tmp_path, inputs)
    assert metrics["comparison"]["roc_auc"]["best"] == "vae" and metrics["comparison"]["roc_auc"]["tied"] == ["vae"]


def test_a_score_column_above_the_primary_is_shown_with_a_note_and_the_caveat():
    aucs = {"vae": 0.95, "ae": 0.96}
    metrics = synthetic_metrics(aucs, scores={"vae": {"max_abs_pull": {"roc_auc": 0.998, "pr_auc": 0.99},
                                                      "kl": {"roc_auc": 0.90, "pr_auc": 0.8}},
                                              "ae": {"chi2": {"roc_auc": 0.80, "pr_auc": 0.7}}})
    metrics = with_findings(metrics, shared_samples(aucs, paired_std=0.002))
    assert metrics["models"]["vae"]["best_score"]["column"] == "max_abs_pull"
    assert metrics["models"]["vae"]["best_score"]["above_primary"] == pytest.approx(0.048)
    assert metrics["models"]["ae"]["best_score"] == {"column": "primary", "roc_auc": 0.96, "pr_auc": 0.96,
                                                     "primary": True, "above_primary": 0.0}
    rows = dict((re.sub(r"<[^>]+>", "", r.split("</td>")[0]), r) for r in re.findall(r"<tr>(.*?)</tr>", comparison_table(metrics)))
    assert "<code>max_abs_pull</code> 0.998" in rows["vae"] and "beats the primary by 0.048" in rows["vae"]
    assert "beats the primary" not in rows["ae"] and "(the primary)" in rows["ae"]
    summary = summary_paragraph(metrics)
    assert "max_abs_pull" in summary and "on the test" in summary and "not a fair ranking" in summary


def test_an_unlabelled_report_says_no_detection_quality_can_be_measured(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in", labelled=False)
    metrics, arguments = run_report(tmp_path, inputs, histories={})
    assert metrics["comparison"] is None
    assert all(entry["best_score"] is None for entry in metrics["models"].values())
    page = arguments["html_path"].read_text()
    assert "no detection quality" in page and 'class="num best"' not in page


def flagged_inputs(root, kinds_of, **options):
    """Report inputs with flags at 10 % and 1 % and a ``kind`` column from ``kinds_of(table)``."""
    inputs, _ = make_inputs(root, **options)
    for path in inputs["scores"].values():
        table = read_scores(path)
        table["kind"] = kinds_of(table)
        table, info = add_threshold_flags(table, false_positive_rates=[0.1, 0.01])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    return inputs


def demo_kinds(table):
    """0 for normal spectra, else 1 to 3 by spectrum id."""
    return np.where(table["label"].to_numpy() == 1, 1 + table["spectrum_id"].to_numpy() % 3, 0)


def test_efficiency_per_kind_equals_a_direct_count(tmp_path):
    inputs = flagged_inputs(tmp_path / "in", demo_kinds)
    names = {0: "normal", 1: "extra_peak", 2: "dead_bins", 3: "tilt"}
    metrics, arguments = run_report(tmp_path, inputs, kind_column="kind", kind_names=names)
    stored = json.loads(arguments["metrics_path"].read_text())["kinds"]
    assert stored["column"] == "kind" and stored["split"] == "test"
    assert stored["names"] == {"0": "normal", "1": "extra_peak", "2": "dead_bins", "3": "tilt"}
    for model, path in inputs["scores"].items():
        table = read_scores(path)
        test = table[table["split"] == "test"]
        for kind in range(4):
            rows = test[test["kind"] == kind]
            entry = stored["models"][model][str(kind)]
            assert entry["n_test"] == len(rows) > 0
            assert entry["n_labelled_anomalous"] == int((rows["label"] == 1).sum())
            for column in ("flag_fpr_10pct", "flag_fpr_1pct"):
                assert entry["flags"][column]["n_flagged"] == int(rows[column].sum())
                assert entry["flags"][column]["fraction"] == pytest.approx(rows[column].mean())
    page = arguments["html_path"].read_text()
    assert '<h3 id="kinds">' in page and "<td>dead_bins</td>" in page
    first = stored["models"]["vae"]["1"]["flags"]["flag_fpr_10pct"]
    assert f"({first['n_flagged']}/{stored['models']['vae']['1']['n_test']})" in page


def test_hostile_kind_values_are_escaped_and_a_missing_kind_column_is_refused(tmp_path):
    hostile = np.array(["<script>alert(1)</script>", "a&b\u202e", "<b>x</b>"], dtype=object)
    inputs = flagged_inputs(tmp_path / "in", lambda table: hostile[table["spectrum_id"].to_numpy() % 3])
    _, arguments = run_report(tmp_path, inputs, kind_column="kind")
    page = arguments["html_path"].read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "a&amp;b\\u202e" in page
    with pytest.raises(InputFileError, match="report.kind_column.*'kinds'.*kind"):
        run_report(tmp_path / "again", inputs, kind_column="kinds")
    assert kind_efficiencies({"m": pd.DataFrame({"split": ["test"]})}, column=None) is None


def example_with_regions(bins: list[int], *, n_bins: int = 64) -> dict:
    """Stored examples in order of decreasing score whose largest |pull| is at the given bins."""
    pulls = np.random.default_rng(0).normal(0.0, 1.0, (len(bins), n_bins))
    pulls[np.arange(len(bins)), bins] = 50.0
    return {"spectrum_id": np.arange(len(bins)), "anomaly_score": np.linspace(100.0, 50.0, len(bins)), "pulls": pulls}


def test_the_top_anomalies_show_one_spectrum_per_region_deterministically():
    bins = [10, 11, 12, 40, 13, 41, 60, 9, 25]  # regions about 10, 40, 60 and 25 (width 64 / 16 = 4 bins)
    example = example_with_regions(bins)
    chosen, new = distinct_examples(example, 4)
    assert chosen.tolist() == [0, 3, 6, 8] and new.all()
    regions = [bins[row] for row in chosen]
    assert all(abs(a - b) > REGION_FRACTION * 64 for i, a in enumerate(regions) for b in regions[i + 1:])
    again, _ = distinct_examples(example_with_regions(bins), 4)
    assert again.tolist() == chosen.tolist()
    chosen, new = distinct_examples(example, 6)  # four regions only: the next by score fill up, in score order
    assert chosen.tolist() == [0, 1, 2, 3, 6, 8] and new.tolist() == [True, False, False, True, True, True]
    without_pulls = {key: value for key, value in example.items() if key != "pulls"}
    assert distinct_examples(without_pulls, 3)[0].tolist() == [0, 1, 2]
