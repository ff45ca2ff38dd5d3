"""Tests of calibrated anomaly-score cuts, the flag columns and their place in tables and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from spectral_anomaly.exceptions import ConfigError, InvalidSpectraError
from spectral_anomaly.report.metrics import compute_metrics, top_spectra_table
from spectral_anomaly.score import read_scores, write_scores
from spectral_anomaly.thresholds import (
    add_threshold_flags,
    calibrate_thresholds,
    flag_column,
    rate_label,
)


def score_table(scores, splits, labels=None):
    """A minimal score table: ids, split, optional label and the anomaly score."""
    table = pd.DataFrame({"spectrum_id": np.arange(len(scores), dtype=np.int64), "split": splits})
    if labels is not None:
        table["label"] = np.asarray(labels, dtype=np.int8)
    table["negative_elbo"] = np.asarray(scores, dtype=np.float64)
    table["anomaly_score"] = table["negative_elbo"]
    return table


def fraction_above(scores, cut):
    return float(np.mean(np.asarray(scores) > cut))


# --- naming -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rate", "column", "label"), [
    (0.01, "flag_fpr_1pct", "1%"),
    (0.001, "flag_fpr_0p1pct", "0.1%"),
    (0.0005, "flag_fpr_0p05pct", "0.05%"),
    (0.07, "flag_fpr_7pct", "7%"),  # 0.07 * 100 = 7.000000000000001 in floating point
    (0.5, "flag_fpr_50pct", "50%"),
    (0.025, "flag_fpr_2p5pct", "2.5%"),
    (1e-6, "flag_fpr_0p0001pct", "0.0001%"),
])
def test_flag_column_names_are_readable_identifiers(rate, column, label):
    assert flag_column(rate) == column and column.isidentifier()
    assert rate_label(rate) == label


# --- calibration --------------------------------------------------------------------------------

def test_calibration_matches_hand_computation():
    scores = np.array([7.0, 3.0, 10.0, 1.0, 9.0, 4.0, 2.0, 8.0, 6.0, 5.0])  # 1..10, shuffled
    cuts = calibrate_thresholds(scores, [0.5, 0.25, 0.2, 0.1])
    # sorted position ceil((n - 1)(1 - r)) of 1..10, i.e. the value position + 1:
    # r=0.5: ceil(4.5)=5 -> 6 (4 of 10 above); r=0.25: ceil(6.75)=7 -> 8 (2 above);
    # r=0.2: ceil(7.2)=8 -> 9 (1 above); r=0.1: ceil(8.1)=9 -> 10 (none above: 10 spectra resolve no 10%)
    assert cuts == {0.5: 6.0, 0.25: 8.0, 0.2: 9.0, 0.1: 10.0}
    for rate, cut in cuts.items():
        assert fraction_above(scores, cut) <= rate
    # ties at the cut are not above it
    assert calibrate_thresholds(np.array([1.0, 1.0, 1.0, 1.0, 5.0]), [0.5]) == {0.5: 1.0}
    # NaN scores are left out: the same as calibrating on 1..10 alone
    assert calibrate_thresholds(np.append(scores, [np.nan, np.nan]), [0.25]) == {0.25: 8.0}
    # fewer than ceil(1/r) = 100 spectra: the cut is their maximum
    few = np.random.default_rng(3).normal(size=99)
    assert calibrate_thresholds(few, [0.01]) == {0.01: few.max()}
    # exactly 101 spectra: ceil(100 * 0.99) = 99 -> the second largest, one spectrum (< 1%) above
    many = np.random.default_rng(4).normal(size=101)
    assert calibrate_thresholds(many, [0.01]) == {0.01: np.sort(many)[-2]}


def test_calibration_refuses_bad_input():
    with pytest.raises(InvalidSpectraError, match="no held-out normal spectrum"):
        calibrate_thresholds(np.array([np.nan, np.nan]), [0.01])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        calibrate_thresholds(np.arange(10.0), [0.0])
    with pytest.raises(ConfigError, match="more than once"):
        calibrate_thresholds(np.arange(10.0), [0.01, 0.01])


@pytest.mark.parametrize("rate", [0.01, 0.001])
def test_achieved_rate_on_a_large_normal_sample_is_at_most_and_close_to_the_target(rate):
    n = 100_000
    rng = np.random.default_rng(2024)
    calibration, fresh = rng.normal(size=n), rng.normal(size=n)
    cut = calibrate_thresholds(calibration, [rate])[rate]
    achieved = fraction_above(calibration, cut)
    assert achieved <= rate
    assert achieved >= rate - 2.0 / n  # floor((n - 1) r) / n: about one spectrum short of the target
    # on new normal spectra: binomial spread sqrt(r (1 - r) / n) around the target
    sigma = math.sqrt(rate * (1 - rate) / n)
    assert abs(fraction_above(fresh, cut) - rate) < 4 * sigma
    # and the cut sits near the true (1 - r) quantile of the unit normal
    assert cut == pytest.approx(norm.ppf(1 - rate), abs=0.05 if rate == 0.01 else 0.15)


# --- flags on a score table ---------------------------------------------------------------------

def test_flags_are_score_above_cut_for_every_row():
    rng = np.random.default_rng(7)
    n = 3000
    splits = rng.choice(["train", "validation", "test"], size=n, p=[0.6, 0.2, 0.2])
    labels = (rng.random(n) < 0.1).astype(np.int8)
    scores = rng.normal(size=n) + 3.0 * labels
    scores[[5, 17, 900]] = np.nan
    scores[42] = np.inf
    table = score_table(scores, splits, labels)
    before = table.copy()
    flagged, info = add_threshold_flags(table, false_positive_rates=[0.01, 0.001])
    pd.testing.assert_frame_equal(table, before)  # the input is left as it was
    assert [entry["column"] for entry in info["rates"]] == ["flag_fpr_1pct", "flag_fpr_0p1pct"]
    assert list(flagged.columns) == [*before.columns, "flag_fpr_1pct", "flag_fpr_0p1pct"]
    assert flagged.attrs["thresholds"] == info
    for entry in info["rates"]:
        column = flagged[entry["column"]]
        assert column.dtype == bool
        expected = np.zeros(n, dtype=bool)
        for i, score in enumerate(scores):  # one row at a time: NaN is never flagged, +inf always
            expected[i] = (not math.isnan(score)) and score > entry["cut"]
        assert np.array_equal(column.to_numpy(), expected)
        assert set(flagged.loc[column, "split"]) == {"train", "validation", "test"}  # every split is flagged
    assert flagged.loc[42, "flag_fpr_0p1pct"] and not flagged.loc[[5, 17, 900], "flag_fpr_1pct"].any()
    # a stricter rate flags a subset
    assert not (flagged["flag_fpr_0p1pct"] & ~flagged["flag_fpr_1pct"]).any()


def test_no_rates_add_no_flags():
    table = score_table(np.arange(10.0), ["validation"] * 10)
    flagged, info = add_threshold_flags(table, false_positive_rates=[])
    assert list(flagged.columns) == list(table.columns) and info["rates"] == []


def test_calibration_uses_only_the_validation_split_normal_spectra():
    rng = np.random.default_rng(11)
    validation_normal = rng.permutation(np.arange(100.0))  # scores 0..99
    parts = [
        ("validation", 0, validation_normal),
        ("validation", 1, np.full(30, 1e6)),  # anomalies in validation
        ("train", 0, np.full(50, 1e9)),       # normal, but not held out
        ("test", 0, np.full(50, 1e9)),        # normal, but kept for measuring
        ("test", 1, np.full(10, 1e12)),
    ]
    splits = np.concatenate([[split] * len(scores) for split, _, scores in parts])
    labels = np.concatenate([[label] * len(scores) for _, label, scores in parts])
    scores = np.concatenate([scores for _, _, scores in parts])
    order = rng.permutation(len(scores))
    flagged, info = add_threshold_flags(score_table(scores[order], splits[order], labels[order]),
                                        false_positive_rates=[0.05, 0.01])
    entries = {entry["false_positive_rate"]: entry for entry in info["rates"]}
    # by hand on 0..99: r=0.05 -> position ceil(99 * 0.95) = 95 -> 95.0; r=0.01 -> ceil(98.01) = 99 -> 99.0
    assert entries[0.05]["cut"] == 95.0 and entries[0.01]["cut"] == 99.0
    assert info["n_calibration"] == 100 and entries[0.05]["n_calibration"] == 100
    assert entries[0.05]["calibration_fpr"] == pytest.approx(0.04) and entries[0.01]["calibration_fpr"] == 0.0
    assert "label == 0" in info["calibration"]
    # with the extreme rows included the 5% cut would have been far higher
    assert np.quantile(scores[splits == "validation"], 0.95, method="higher") == 1e6
    assert np.quantile(scores[labels == 0], 0.95, method="higher") == 1e9
    # and the extreme train / test normals are flagged by the calibrated cut
    assert flagged.loc[flagged["split"] != "validation", "flag_fpr_1pct"].all()


def test_unlabelled_dataset_calibrates_on_every_validation_spectrum():
    validation = np.arange(20.0)  # 0..19, some of which a labelled dataset might call anomalous
    scores = np.concatenate([validation, np.full(10, 1e9), np.full(10, -5.0)])
    splits = ["validation"] * 20 + ["train"] * 10 + ["test"] * 10
    flagged, info = add_threshold_flags(score_table(scores, splits), false_positive_rates=[0.1])
    (entry,) = info["rates"]
    assert entry["cut"] == 18.0  # ceil(19 * 0.9) = 18 -> 18.0 of 0..19
    assert info["n_calibration"] == entry["n_calibration"] == 20 and entry["calibration_fpr"] == pytest.approx(0.05)
    assert "assumed mostly normal" in info["calibration"]
    assert flagged["flag_fpr_10pct"].sum() == 1 + 10  # 19.0 and the ten train spectra


def test_empty_calibration_set_adds_no_flags_and_says_why(caplog):
    # a tiny labelled dataset whose only validation spectrum is an anomaly: scores are still written
    table = score_table([1.0, 2.0, 3.0], ["train", "validation", "test"], labels=[0, 1, 0])
    flagged, info = add_threshold_flags(table, false_positive_rates=[0.01])
    assert list(flagged.columns) == list(table.columns) and info["rates"] == [] and info["n_calibration"] == 0
    assert "validation split, spectra labelled normal (label == 0): there are none" in info["not_calibrated"]
    assert "no spectrum to calibrate" in caplog.text


def test_thresholds_survive_the_parquet_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    n = 500
    table = score_table(rng.normal(size=n), rng.choice(["train", "validation", "test"], size=n),
                        (rng.random(n) < 0.1).astype(np.int8))
    flagged, info = add_threshold_flags(table, false_positive_rates=[0.01, 0.001])
    path = tmp_path / "vae.parquet"
    write_scores(flagged, path, kind="vae", primary="negative_elbo", thresholds=info)
    stored = read_scores(path)
    assert stored.attrs["thresholds"] == json.loads(json.dumps(info)) == info
    assert stored.attrs["thresholds"]["rates"][0]["cut"] == info["rates"][0]["cut"]  # exact float round trip
    for entry in info["rates"]:
        assert stored[entry["column"]].dtype == bool
        assert np.array_equal(stored[entry["column"]].to_numpy(), flagged[entry["column"]].to_numpy())
    write_scores(table, tmp_path / "plain.parquet", kind="vae", primary="negative_elbo")
    assert "thresholds" not in read_scores(tmp_path / "plain.parquet").attrs


# --- metrics and report -------------------------------------------------------------------------

def hand_table(*, labelled):
    """20 validation normals 0..19, a few test normals and anomalies, two far-out training spectra."""
    rows = ([("validation", 0, float(s)) for s in range(20)]
            + [("test", 0, s) for s in (1.0, 17.0, 18.0, 18.5, 30.0)]
            + [("test", 1, s) for s in (10.0, 18.2, 19.0, 50.0)]
            + [("train", 0, s) for s in (100.0, 200.0)])
    splits, labels, scores = zip(*rows)
    return score_table(scores, list(splits), list(labels) if labelled else None)


def test_metrics_tpr_and_fpr_are_the_hand_computed_fractions(tmp_path):
    table, info = add_threshold_flags(hand_table(labelled=True), false_positive_rates=[0.1, 0.05])
    write_scores(table, tmp_path / "vae.parquet", kind="vae", primary="negative_elbo", thresholds=info)
    metrics = compute_metrics({"vae": read_scores(tmp_path / "vae.parquet")}, dataset="d", run_name="r")
    thresholds = json.loads(json.dumps(metrics))["models"]["vae"]["thresholds"]
    assert list(thresholds) == ["flag_fpr_10pct", "flag_fpr_5pct"]
    # cuts by hand on 0..19: r=0.1 -> ceil(17.1)=18 -> 18.0; r=0.05 -> ceil(18.05)=19 -> 19.0
    assert thresholds["flag_fpr_10pct"] == {
        "false_positive_rate": 0.1, "cut": 18.0, "n_calibration": 20, "calibration_fpr": 1 / 20,
        "test_fpr": 2 / 5,          # 18.5, 30 of 1, 17, 18, 18.5, 30
        "test_tpr": 3 / 4,          # 18.2, 19, 50 of 10, 18.2, 19, 50
        "test_flag_rate": 5 / 9,
        "n_flagged_all": 1 + 5 + 2,  # validation 19; five in test; both training spectra
    }
    assert thresholds["flag_fpr_5pct"] == {
        "false_positive_rate": 0.05, "cut": 19.0, "n_calibration": 20, "calibration_fpr": 0.0,
        "test_fpr": 1 / 5, "test_tpr": 1 / 4, "test_flag_rate": 2 / 9, "n_flagged_all": 0 + 2 + 2,
    }
    unlabelled, info = add_threshold_flags(hand_table(labelled=False), false_positive_rates=[0.1])
    metrics = compute_metrics({"vae": unlabelled}, dataset="d", run_name="r")
    entry = metrics["models"]["vae"]["thresholds"]["flag_fpr_10pct"]
    assert entry["test_fpr"] is None and entry["test_tpr"] is None
    assert entry["test_flag_rate"] == 5 / 9 and entry["cut"] == 18.0


def test_ranked_table_marks_each_models_flags():
    vae, _ = add_threshold_flags(hand_table(labelled=True), false_positive_rates=[0.1, 0.05])
    pca = hand_table(labelled=True).assign(anomaly_score=lambda t: -t["anomaly_score"])
    pca, _ = add_threshold_flags(pca, false_positive_rates=[0.1])
    vae.attrs["model_kind"], pca.attrs["model_kind"] = "vae", "pca"
    reference, top = top_spectra_table({"vae": vae, "pca": pca}, n=4)
    assert reference == "vae"
    assert list(top.columns[-4:]) == ["anomaly_score (vae)", "flags (vae)", "anomaly_score (pca)", "flags (pca)"]
    # top four by the VAE: 200, 100, 50, 30 -> all above both VAE cuts (18, 19); none above the PCA cut
    assert top["anomaly_score (vae)"].tolist() == [200.0, 100.0, 50.0, 30.0]
    assert top["flags (vae)"].tolist() == ["\u271310% \u27135%"] * 4
    assert top["flags (pca)"].tolist() == [""] * 4


def test_report_has_the_efficiency_table_and_flags(tmp_path):
    from test_report import make_inputs, run_report

    inputs, tables = make_inputs(tmp_path / "in")
    for model, path in inputs["scores"].items():
        table = read_scores(path)
        table, info = add_threshold_flags(table, false_positive_rates=[0.01, 0.1])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    _, arguments = run_report(tmp_path, inputs)
    stored = json.loads(arguments["metrics_path"].read_text())
    for model, table in tables.items():
        entry = stored["models"][model]["thresholds"]["flag_fpr_10pct"]
        flagged, _ = add_threshold_flags(table, false_positive_rates=[0.1])
        test = flagged[flagged["split"] == "test"]
        assert entry["test_tpr"] == pytest.approx(test.loc[test["label"] == 1, "flag_fpr_10pct"].mean())
        assert entry["test_fpr"] == pytest.approx(test.loc[test["label"] == 0, "flag_fpr_10pct"].mean())
    page = arguments["html_path"].read_text(encoding="ascii")  # the page is pure ASCII
    assert '<h2 id="thresholds">Efficiency at calibrated false-positive rates</h2>' in page
    section = page.split('<h2 id="thresholds">')[1].split("<h2")[0]
    assert "target FPR 1%" in section and "target FPR 10%" in section
    assert section.count("<th>TPR</th>") == 2 and section.count("<th>FPR</th>") == 2
    vae = stored["models"]["vae"]["thresholds"]["flag_fpr_10pct"]
    assert f"{100 * vae['test_tpr']:.2f}%" in section and f"{100 * vae['test_fpr']:.2f}%" in section
    assert "<code>flag_fpr_1pct</code>" in section and "<code>flag_fpr_10pct</code>" in section
    assert "<th>flags (vae)</th>" in page and "&#10003;10%" in page


def test_unlabelled_report_gives_the_flagged_fraction(tmp_path):
    from test_report import make_inputs, run_report

    inputs, tables = make_inputs(tmp_path / "in", labelled=False)
    for path in inputs["scores"].values():
        table = read_scores(path)
        table, info = add_threshold_flags(table, false_positive_rates=[0.05])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    metrics, arguments = run_report(tmp_path, inputs, histories={})
    section = arguments["html_path"].read_text().split('<h2 id="thresholds">')[1].split("<h2")[0]
    assert "assumed mostly normal" in section and "<th>flagged (test)</th>" in section and "<th>TPR</th>" not in section
    for model, table in tables.items():
        entry = metrics["models"][model]["thresholds"]["flag_fpr_5pct"]
        flagged, _ = add_threshold_flags(table, false_positive_rates=[0.05])
        assert entry["test_flag_rate"] == pytest.approx(flagged.loc[flagged["split"] == "test", "flag_fpr_5pct"].mean())
        assert f"{100 * entry['test_flag_rate']:.2f}%" in section
