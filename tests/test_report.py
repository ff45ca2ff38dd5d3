"""Tests of the report: metrics against scikit-learn, figure files and contents, the HTML page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from spectral_anomaly.exceptions import ConfigError, InputFileError
from spectral_anomaly.report import FIGURE_NAMES, build_report
from spectral_anomaly.report.curves import roc_figure
from spectral_anomaly.report.figures import (
    latent_space_figure,
    score_distribution_figure,
    training_curves_figure,
)
from spectral_anomaly.report.metrics import (
    bin_label,
    read_histories,
    read_score_tables,
    score_columns,
    top_spectra_table,
)
from spectral_anomaly.report.top_figure import top_anomalies_figure
from spectral_anomaly.score import write_scores
from spectral_anomaly.store.formats import FORMAT_VERSIONS, write_versioned_csv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_BINS = 48


def make_table(rng, *, model, kind, n, labels, splits, latent_dim, separation):
    """A score table shaped like the score step's: metadata, split, label, scores, latent, anomaly_score."""
    table = pd.DataFrame({
        "spectrum_id": np.arange(n, dtype=np.int64),
        "model": model,
        "split": splits,
        "source_file": "demo.h5",
        "source_object": [f"spectra/{i}" for i in range(n)],
        "entry": np.arange(n, dtype=np.int64),
        "run": 300000 + np.arange(n) // 50,
        "lumisection": 1 + np.arange(n) % 50,
    })
    if labels is not None:
        table.insert(3, "label", labels.astype(np.int8))
    signal = labels if labels is not None else np.zeros(n)
    if separation is None:  # scores that separate perfectly: every anomaly above every normal
        base = 100.0 + rng.uniform(0, 10, n) + 50.0 * signal
    else:
        base = 100.0 + rng.normal(0, 10, n) + separation * signal
    if kind == "vae":
        table["negative_elbo"] = base
        table["elbo"] = -base
        table["reconstruction_nll"] = 0.9 * base
        table["kl"] = 0.1 * base
        table["latent_radius"] = rng.uniform(0, 3, n) + signal
        table["reconstruction_error"] = base / 100 + rng.normal(0, 0.05, n)
    elif kind == "pca":
        table["pca_nll"] = base
        table["log_likelihood"] = -base
        table["reconstruction_error"] = base / 100
    else:
        table["reconstruction_error"] = base / 100
    for j in range(latent_dim):
        table[f"latent_{j}"] = rng.normal(0, 1, n) + 2.0 * signal * (j == 0)
    table["max_pull_bin"] = rng.integers(0, N_BINS, n)
    table["anomaly_score"] = table[PRIMARY_SCORES[kind]]
    return table


PRIMARY_SCORES = {"vae": "negative_elbo", "pca": "pca_nll", "autoencoder": "reconstruction_error"}


def make_examples(rng, path, table, *, k=12):
    order = np.argsort(-table["anomaly_score"].to_numpy(), kind="stable")[:k]
    edges = np.linspace(0.0, 3000.0, N_BINS + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    shape = np.exp(-centres / 800) + 0.6 * np.exp(-0.5 * ((centres - 1460) / 40) ** 2)
    expected = shape / shape.sum() * 20000
    counts = rng.poisson(np.tile(expected, (k, 1))).astype(np.float64)
    counts[:, 30:33] = 0.0  # a dead region the reconstruction does not follow
    reconstruction = np.tile(expected, (k, 1))
    np.savez(path, format_version=1, spectrum_id=table["spectrum_id"].to_numpy()[order],
             anomaly_score=table["anomaly_score"].to_numpy()[order], input=counts,
             reconstruction=reconstruction, pulls=(counts - reconstruction) / np.sqrt(reconstruction), bin_edges=edges)


def make_history(path, *, epochs=30, best=22):
    epoch = np.arange(1, epochs + 1)
    train = 200 * np.exp(-epoch / 6) + 50
    validation = np.where(epoch <= best, 200 * np.exp(-epoch / 6) + 55, 200 * np.exp(-best / 6) + 55 + 0.4 * (epoch - best))
    flags, running = [], np.inf
    for value in validation:
        flags.append(bool(value < running))
        running = min(running, value)
    write_versioned_csv(pd.DataFrame({"epoch": epoch, "train_loss": train, "validation_loss": validation,
                                      "seconds": 0.5, "best": flags}), path, kind="history")


def make_inputs(root, *, labelled=True, n=400, seed=1, latent_dims=None):
    """Score tables, examples and histories of a VAE, an autoencoder and the PCA baseline under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = (rng.random(n) < 0.15).astype(np.int8) if labelled else None
    splits = rng.choice(["train", "validation", "test"], size=n, p=[0.6, 0.2, 0.2])
    latent_dims = latent_dims or {"vae": 2, "autoencoder": 8, "pca": 4}
    models = {"vae": ("vae", None), "autoencoder": ("autoencoder", 15.0), "pca": ("pca", 8.0)}
    scores, examples, histories, tables = {}, {}, {}, {}
    for model, (kind, separation) in models.items():
        table = make_table(rng, model=model, kind=kind, n=n, labels=labels, splits=splits,
                           latent_dim=latent_dims[model], separation=separation)
        scores[model] = root / f"{model}.parquet"
        write_scores(table, scores[model], kind=kind, primary=PRIMARY_SCORES[kind])
        examples[model] = root / f"{model}.examples.npz"
        make_examples(rng, examples[model], table)
        if kind != "pca":
            histories[model] = root / f"{model}.history.csv"
            make_history(histories[model])
        tables[model] = table
    return {"scores": scores, "examples": examples, "histories": histories}, tables


def run_report(root, inputs, **overrides):
    arguments = dict(
        dataset="demo_<hdf5>", run_name="unit-test", run_config={"run_name": "unit-test", "device": "cpu"},
        html_path=root / "out" / "report.html", metrics_path=root / "out" / "metrics.json",
        figure_paths={name: root / "out" / f"{name}.png" for name in FIGURE_NAMES}, n_top=3, **inputs,
    )
    arguments.update(overrides)
    return build_report(**arguments), arguments


def test_metrics_match_sklearn_on_test_split(tmp_path):
    inputs, tables = make_inputs(tmp_path / "in")
    metrics, arguments = run_report(tmp_path, inputs)
    stored = json.loads(arguments["metrics_path"].read_text())
    assert stored == json.loads(json.dumps(metrics))
    assert stored["format_version"] == FORMAT_VERSIONS["metrics"]
    assert stored["labelled"] is True and stored["evaluated_on"] == "test split"
    assert stored["dataset"] == "demo_<hdf5>" and stored["run_name"] == "unit-test"
    assert set(stored["models"]) == {"vae", "autoencoder", "pca"}
    # the VAE's scores separate perfectly, so both AUCs are exactly 1
    assert stored["models"]["vae"]["roc_auc"] == 1.0 and stored["models"]["vae"]["pr_auc"] == 1.0
    for model, table in tables.items():
        test = table[table["split"] == "test"]
        entry = stored["models"][model]
        assert entry["n_test"] == len(test)
        assert entry["n_anomalous_test"] == int(test["label"].sum())
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(test["label"], test["anomaly_score"]))
        assert entry["pr_auc"] == pytest.approx(average_precision_score(test["label"], test["anomaly_score"]))
        # computed on the test split, not on every spectrum
        assert entry["roc_auc"] != pytest.approx(roc_auc_score(table["label"], table["anomaly_score"]), abs=1e-12) or model == "vae"
        for column, aucs in entry["scores"].items():
            assert aucs["roc_auc"] == pytest.approx(roc_auc_score(test["label"], test[column]))
            assert aucs["pr_auc"] == pytest.approx(average_precision_score(test["label"], test[column]))
    assert list(stored["models"]["vae"]["scores"]) == ["negative_elbo", "reconstruction_nll", "kl", "latent_radius", "reconstruction_error"]  # primary first
    assert list(stored["models"]["pca"]["scores"]) == ["pca_nll", "reconstruction_error"]
    assert stored["models"]["pca"]["kind"] == "pca" and stored["models"]["pca"]["primary_score"] == "pca_nll"
    for entry in stored["models"].values():
        assert not any(re.fullmatch(r"latent_\d+", c) or c in ("elbo", "log_likelihood", "anomaly_score") for c in entry["scores"])


def test_every_file_written_and_html_embeds_figures(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in")
    _, arguments = run_report(tmp_path, inputs)
    for name, path in arguments["figure_paths"].items():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 10_000, f"{name} is suspiciously small"
    page = arguments["html_path"].read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURE_NAMES)
    assert {base64.b64decode(image) for image in images} == {p.read_bytes() for p in arguments["figure_paths"].values()}
    for model in ("vae", "autoencoder", "pca"):
        assert f"<td>{model}</td>" in page
    assert "demo_&lt;hdf5&gt;" in page and "demo_<hdf5>" not in page  # escaped
    assert "<details>" in page and "run_name: unit-test" in page
    assert page.count("<figcaption>") == len(FIGURE_NAMES)
    assert re.search(r'<td class="num best">1\.000 &plusmn; 0\.000</td>', page)  # the VAE's perfect AUC, highlighted
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_unlabelled_report_has_null_aucs(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in", labelled=False)
    metrics, arguments = run_report(tmp_path, inputs, histories={})
    stored = json.loads(arguments["metrics_path"].read_text())
    assert stored["labelled"] is False
    for entry in stored["models"].values():
        assert entry["roc_auc"] is None and entry["pr_auc"] is None and entry["n_anomalous_test"] is None
        assert all(aucs == {"roc_auc": None, "pr_auc": None} for aucs in entry["scores"].values())
    for path in arguments["figure_paths"].values():
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    page = arguments["html_path"].read_text()
    assert page.count('<img src="data:image/png;base64,') == len(FIGURE_NAMES)
    assert "no labels configured" in page


def _check_axes(figure, *, n_axes):
    axes = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == n_axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.lines or ax.patches or ax.collections or ax.texts, "empty axes"
    return axes


def test_roc_figure_has_one_curve_and_band_per_model_and_diagonal(tmp_path):
    from matplotlib.collections import PolyCollection

    inputs, _ = make_inputs(tmp_path)
    tables = read_score_tables(inputs["scores"])
    linear, logarithmic = _check_axes(roc_figure(tables, labelled=True), n_axes=2)
    for ax in (linear, logarithmic):
        assert len(ax.lines) == len(tables) + 1
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(tables)  # one band per model
        assert ax.get_legend() is not None
    assert logarithmic.get_xscale() == "log"
    legend = [text.get_text() for text in linear.get_legend().get_texts()]
    assert any(t.startswith("vae") and "AUC = 1.000 \u00b1 0.000" in t for t in legend)
    assert any(t.startswith("pca") and re.search(r"AUC = 0\.\d{3} \u00b1 0\.0\d\d", t) for t in legend)
    diagonal = linear.lines[-1]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    for ax in _check_axes(roc_figure(tables, labelled=False), n_axes=2):
        assert not ax.lines and "no labels configured" in ax.texts[0].get_text()


def test_panel_figures_have_one_labelled_panel_per_model(tmp_path):
    inputs, _ = make_inputs(tmp_path)
    tables = read_score_tables(inputs["scores"])
    axes = _check_axes(score_distribution_figure(tables, labelled=True), n_axes=3)
    assert axes[0].get_yscale() == "log" and "negative_elbo" in axes[0].get_xlabel()
    assert [t.get_text().split(" ")[0] for t in axes[0].get_legend().get_texts()] == ["normal", "anomalous"]
    axes = _check_axes(latent_space_figure(tables, labelled=True), n_axes=3)
    assert axes[0].get_xlabel() == "latent_0"  # 2-D latent drawn directly
    assert "latent PC 1" in axes[1].get_xlabel()  # 8-D latent projected
    unlabelled = _check_axes(latent_space_figure(tables, labelled=False), n_axes=3)
    assert len(unlabelled[0].figure.axes) == 6  # one colour bar per panel
    axes = _check_axes(training_curves_figure(read_histories(inputs["histories"])), n_axes=2)
    assert [ax.get_title() for ax in axes] == ["vae", "autoencoder"]
    best = [line for line in axes[0].lines if line.get_marker() == "*"]
    assert len(best) == 1 and best[0].get_xdata()[0] == 22
    (ax,) = _check_axes(training_curves_figure({}), n_axes=1)
    assert "no training histories" in ax.texts[0].get_text()


def test_top_anomalies_grid(tmp_path):
    from spectral_anomaly.score import read_examples

    inputs, _ = make_inputs(tmp_path)
    examples = {name: read_examples(path) for name, path in inputs["examples"].items()}
    figure = top_anomalies_figure(examples, n_top=10, bin_unit="keV")
    assert len(figure.axes) == 10 * 3 * 2  # a spectrum and its pulls for each of 10 rows (12 stored) x 3 models
    spectra = [ax for ax in figure.axes if ax.get_label().startswith("spectrum ")]
    pulls = [ax for ax in figure.axes if ax.get_label().startswith("pulls ")]
    assert len(spectra) == len(pulls) == 30
    first = spectra[0]
    assert first.get_legend() is not None and first.get_ylabel().startswith("counts")
    assert first.get_yscale() == "log"
    assert str(int(examples["vae"]["spectrum_id"][0])) in first.get_title()
    for ax in spectra:
        assert len(ax.lines) == 2  # input steps and reconstruction
    for ax, spectrum in zip(pulls, spectra):
        assert ax.get_xlabel() == "bin centre [keV]" and ax.get_ylabel() == "pull"
        assert ax.get_shared_x_axes().joined(ax, spectrum)  # the pulls sit under their spectrum
        assert len(ax.collections) == 1 and len(ax.lines) == 3  # filled pull steps; lines at -3, +3 and 0
        low, high = ax.get_ylim()
        assert low == -high and 4 <= high <= 10
    stored, counts = examples["vae"]["pulls"][0], examples["vae"]["input"][0]
    outline = pulls[0].collections[0].get_paths()[0].vertices[:, 1]
    assert np.isin(np.round(stored, 9), np.round(outline, 9)).all()  # every bin's pull is a step of the fill
    np.testing.assert_allclose(spectra[0].lines[0].get_ydata(), np.repeat(np.maximum(counts, 0.5), 2))
    assert pulls[0].get_legend() is not None
    assert top_anomalies_figure(examples, n_top=2).axes[1].get_xlabel() == "bin centre"  # no unit known


def test_ranked_table_joins_every_model(tmp_path):
    inputs, tables = make_inputs(tmp_path)
    reference, top = top_spectra_table(read_score_tables(inputs["scores"]), n=20)
    assert reference == "vae" and len(top) == 20
    expected = tables["vae"].sort_values("anomaly_score", ascending=False).head(20)
    assert top["spectrum_id"].tolist() == expected["spectrum_id"].tolist()
    for model, table in tables.items():
        by_id = table.set_index("spectrum_id")["anomaly_score"]
        assert np.allclose(top[f"anomaly_score ({model})"], by_id.loc[top["spectrum_id"]].to_numpy())
    assert {"run", "lumisection", "source_object", "label", "split"} <= set(top.columns)
    assert "largest pull (vae)" in top.columns and "max_pull_bin" not in top.columns
    bins = tables["vae"].set_index("spectrum_id")["max_pull_bin"].loc[top["spectrum_id"]]
    assert top["largest pull (vae)"].tolist() == [f"bin {b}" for b in bins]  # no edges given: the index alone
    edges = np.linspace(0.0, 3000.0, N_BINS + 1)  # 62.5 keV wide
    _, top = top_spectra_table(read_score_tables(inputs["scores"]), n=20, bin_edges=edges, bin_unit="keV")
    assert top["largest pull (vae)"].tolist() == [f"bin {b} ({62.5 * b:.6g}\u2013{62.5 * (b + 1):.6g} keV)" for b in bins]
    assert "max_pull_bin" not in score_columns(tables["vae"])  # a location, never ranked or evaluated


def test_a_bin_is_named_with_its_range_where_the_edges_are_more_than_its_index():
    edges = np.linspace(0.0, 3000.0, 151)  # 20 keV wide
    assert bin_label(57, edges=edges, unit="keV") == "bin 57 (1140\u20131160 keV)"
    assert bin_label(57, edges=edges) == "bin 57 (1140\u20131160)"
    assert bin_label(0, edges=np.array([0.5, 1.25, 2.0])) == "bin 0 (0.5\u20131.25)"
    assert bin_label(57, edges=np.arange(151.0), unit="keV") == bin_label(57) == "bin 57"


def test_the_ranked_table_names_the_bin_of_the_largest_pull_in_the_datas_units(tmp_path):
    inputs, tables = make_inputs(tmp_path / "in")
    _, arguments = run_report(tmp_path, inputs, bin_unit="keV")
    page = arguments["html_path"].read_text()
    top = tables["vae"].sort_values("anomaly_score", ascending=False).iloc[0]
    b = int(top["max_pull_bin"])
    assert "<th>largest pull (vae)</th>" in page and "largest pull column" in page
    assert f"<td>bin {b} ({62.5 * b:.6g}&#8211;{62.5 * (b + 1):.6g} keV)</td>" in page  # the dash, escaped


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in")
    with pytest.raises(ConfigError, match="expected exactly roc, precision_recall, score_distributions"):
        run_report(tmp_path, inputs, figure_paths={"roc": tmp_path / "roc.png"})
    broken = tmp_path / "in" / "broken.history.csv"
    broken.write_text("# format_version: 1\nepoch,loss\n1,2.0\n")
    with pytest.raises(InputFileError, match="lacks column"):
        run_report(tmp_path, {**inputs, "histories": {"vae": broken}})
    assert not (tmp_path / "out").exists()


def test_data_summary_reports_dropped_spectra_and_devices(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in")
    summary = {"n_spectra": 997, "n_bins": 64, "sources": ["raw/run1.h5"], "n_dropped_nonfinite": 3,
               "devices": {"vae": "cuda (NVIDIA H100)", "autoencoder": "cpu (2 threads)"}}
    metrics, arguments = run_report(tmp_path, inputs, data_summary=summary)
    assert json.loads(arguments["metrics_path"].read_text())["data"] == summary
    page = arguments["html_path"].read_text()
    assert "<b>3</b> spectra dropped at ingestion for NaN or infinite values" in page
    assert "raw/run1.h5" in page and "cuda (NVIDIA H100)" in page


def test_variants_aggregate_seeds_and_rank_by_mean_auc():
    from spectral_anomaly.report.metrics import variant_metrics

    models = {
        "vae-seed0": {"kind": "vae", "primary_score": "negative_elbo", "roc_auc": 0.90, "pr_auc": 0.5},
        "vae-seed1": {"kind": "vae", "primary_score": "negative_elbo", "roc_auc": 0.80, "pr_auc": 0.3},
        "ae-seed0": {"kind": "autoencoder", "primary_score": "reconstruction_error", "roc_auc": 0.95, "pr_auc": 0.6},
        "ae-seed1": {"kind": "autoencoder", "primary_score": "reconstruction_error", "roc_auc": 0.93, "pr_auc": 0.7},
        "pca": {"kind": "pca", "primary_score": "pca_nll", "roc_auc": 0.88, "pr_auc": 0.4},
    }
    variants = variant_metrics(models)
    assert list(variants) == ["ae", "pca", "vae"]
    assert variants["vae"]["n_seeds"] == 2 and variants["vae"]["instances"] == ["vae-seed0", "vae-seed1"]
    assert variants["vae"]["roc_auc_mean"] == pytest.approx(0.85)
    assert variants["vae"]["roc_auc_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert variants["ae"]["pr_auc_mean"] == pytest.approx(0.65)
    assert variants["pca"]["n_seeds"] == 1 and variants["pca"]["roc_auc_std"] is None


# --- bootstrap bands, precision-recall, agreement between models, flags per run -----------------

def test_bootstrap_curves_match_sklearn_and_are_seeded():
    from spectral_anomaly.report.bootstrap import FPR_GRID, detection_curves

    rng = np.random.default_rng(7)
    labels = (rng.random(3000) < 0.05).astype(int)
    scores = np.round(rng.normal(size=3000) + 1.2 * labels, 2)  # ties, as sklearn groups them
    curves = detection_curves(labels, scores)
    assert curves.roc_auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert curves.pr_auc == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert curves.n_resamples == 200 and 0.005 < curves.roc_auc_std < 0.05 and 0.005 < curves.pr_auc_std < 0.1
    # a naive bootstrap with scikit-learn gives the same spread
    naive = [roc_auc_score(labels[i], scores[i]) for i in (rng.integers(0, 3000, 3000) for _ in range(200))]
    assert curves.roc_auc_std == pytest.approx(np.std(naive, ddof=1), rel=0.3)
    low, high = curves.tpr_band
    assert np.all(low <= high + 1e-12) and np.mean((low <= curves.tpr + 1e-9) & (curves.tpr <= high + 1e-9)) > 0.9
    assert np.all(np.diff(curves.tpr) >= -1e-12) and curves.tpr[FPR_GRID == 1.0][0] == 1.0
    again = detection_curves(labels, scores)
    assert again.roc_auc_std == curves.roc_auc_std and np.array_equal(again.precision_band[0], curves.precision_band[0])
    assert detection_curves(np.zeros(10), np.arange(10.0)) is None  # one class: no curve


def test_metrics_carry_bootstrap_std_of_each_auc(tmp_path):
    from spectral_anomaly.report import compute_metrics

    inputs, _ = make_inputs(tmp_path / "in")
    stored = compute_metrics(read_score_tables(inputs["scores"]), dataset="d", run_name="r")
    assert "bootstrap" in stored["auc_uncertainty"]
    assert stored["models"]["vae"]["roc_auc_std"] == pytest.approx(0.0, abs=1e-12)  # separates in every resample
    for model in ("autoencoder", "pca"):
        assert 0.0 < stored["models"][model]["roc_auc_std"] < 0.1 and 0.0 < stored["models"][model]["pr_auc_std"] < 0.2
    inputs, _ = make_inputs(tmp_path / "unlabelled", labelled=False)
    metrics = compute_metrics(read_score_tables(inputs["scores"]), dataset="d", run_name="r")
    assert all(entry["roc_auc_std"] is None and entry["pr_auc_std"] is None for entry in metrics["models"].values())


def test_precision_recall_figure_has_bands_and_random_line(tmp_path):
    from matplotlib.collections import PolyCollection

    from spectral_anomaly.report.curves import precision_recall_figure

    inputs, tables = make_inputs(tmp_path)
    (ax,) = _check_axes(precision_recall_figure(read_score_tables(inputs["scores"]), labelled=True), n_axes=1)
    assert len(ax.lines) == 3 + 1 and sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("vae") and "AP = 1.000 \u00b1 0.000" in t for t in legend)
    test = tables["vae"][tables["vae"]["split"] == "test"]
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(test["label"].mean())  # random ranking: the anomaly fraction
    (ax,) = _check_axes(precision_recall_figure(read_score_tables(inputs["scores"]), labelled=False), n_axes=1)
    assert "no labels configured" in ax.texts[0].get_text()


def test_score_agreement_subsamples_keeps_anomalies_and_gives_spearman(tmp_path):
    from scipy.stats import spearmanr

    from spectral_anomaly.report.comparison import score_agreement_figure

    inputs, tables = make_inputs(tmp_path, n=30_000)
    figure = score_agreement_figure(read_score_tables(inputs["scores"]), labelled=True)
    axes = _check_axes(figure, n_axes=3)
    assert [ax.get_title() for ax in axes] == ["vae vs autoencoder", "vae vs pca", "autoencoder vs pca"]
    n_anomalous = int(tables["vae"]["label"].sum())
    for ax, (a, b) in zip(axes, [("vae", "autoencoder"), ("vae", "pca"), ("autoencoder", "pca")]):
        normal, anomalous = ax.collections[:2]
        assert len(anomalous.get_offsets()) == n_anomalous  # every anomaly drawn
        assert len(normal.get_offsets()) + n_anomalous == 20_000  # subsampled to the limit
        assert ax.get_xscale() == ax.get_yscale() == "log" and ax.get_legend() is not None
        rho = spearmanr(tables[a]["anomaly_score"], tables[b]["anomaly_score"]).statistic
        assert f"\u03c1 = {rho:.3f}" in ax.texts[0].get_text()
    assert "20,000 of 30,000" in figure.get_suptitle()
    assert "all 400 spectra" in score_agreement_figure(read_score_tables(make_inputs(tmp_path / "small")[0]["scores"]),
                                                       labelled=True).get_suptitle()


def test_run_summary_fractions_figure_and_table(tmp_path):
    from spectral_anomaly.report.comparison import (
        group_column,
        run_summary,
        run_summary_figure,
    )
    from spectral_anomaly.score import read_scores
    from spectral_anomaly.thresholds import add_threshold_flags

    inputs, _ = make_inputs(tmp_path / "in")
    for path in inputs["scores"].values():
        table, info = add_threshold_flags(read_scores(path), false_positive_rates=[0.1, 0.01])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    tables = read_score_tables(inputs["scores"])
    assert group_column(tables) == "run"
    summary = run_summary(tables, column="run")
    expected = tables["pca"].groupby("run")["flag_fpr_10pct"].mean()
    assert np.allclose(summary.set_index("run")["flagged 10% (pca)"], expected)
    assert np.allclose(summary["labelled anomalous"], tables["vae"].groupby("run")["label"].mean().to_numpy())
    assert summary["spectra"].sum() == 400 and list(summary.columns[:3]) == ["run", "spectra", "labelled anomalous"]
    axes = _check_axes(run_summary_figure(tables, summary, column="run"), n_axes=3)
    for ax in axes:
        assert len(ax.lines) == 3 and ax.get_legend() is not None  # labelled fraction and two rates
        assert ax.get_xticklabels()[0].get_text() == "300000"
    _, arguments = run_report(tmp_path, inputs)
    page = arguments["html_path"].read_text()
    section = page.split('<h2 id="run_summary">')[1].split("<h2")[0]
    assert "<th>flagged 10% (vae)</th>" in section and section.count("<tr>") == 1 + 8  # header and 8 runs
    assert json.loads(arguments["metrics_path"].read_text())["runs"] == {"column": "run", "n_runs": 8}
    no_runs = {name: t.drop(columns="run") for name, t in tables.items()}
    assert group_column(no_runs) is None
    (ax,) = _check_axes(run_summary_figure(no_runs, None, column=None), n_axes=1)
    assert "no run column" in ax.texts[0].get_text()


def _figure_problems(name, figure):
    """What makes a figure hard to read: unlabelled or empty axes, no legend, tiny text."""
    problems = []
    axes = [ax for ax in figure.axes if ax.get_label() != "<colorbar>" and ax.get_visible() and ax.axison]
    legends = list(figure.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    if not legends:
        problems.append(f"{name}: no legend")
    for ax in axes:
        where = f"{name}/{ax.get_title() or ax.get_label()}"
        if not (ax.lines or ax.patches or ax.collections or ax.texts or ax.images):
            problems.append(f"{where}: empty axes")
        labelled_below = any(o is not ax and ax.get_shared_x_axes().joined(ax, o) and o.get_xlabel() for o in axes)
        if ax.get_xticks().size and not ax.get_xlabel() and not labelled_below:  # a spectrum's x label is under its pulls
            problems.append(f"{where}: no x label")
        if ax.get_yticks().size and not ax.get_ylabel():
            problems.append(f"{where}: no y label")
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        problems += [f"{where}: text {t.get_text()!r} at {t.get_fontsize()} pt" for t in texts if t.get_text() and t.get_fontsize() < 7.5]
    return problems


@pytest.mark.parametrize("labelled", [True, False])
def test_every_report_figure_is_labelled_and_filled(tmp_path, labelled):
    from spectral_anomaly.report.comparison import run_summary
    from spectral_anomaly.report.metrics import model_curves
    from spectral_anomaly.report.registry import FIGURES, FigureInputs
    from spectral_anomaly.score import read_examples, read_scores
    from spectral_anomaly.thresholds import add_threshold_flags

    inputs, _ = make_inputs(tmp_path, labelled=labelled)
    for path in inputs["scores"].values():
        table, info = add_threshold_flags(read_scores(path), false_positive_rates=[0.05])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    tables = read_score_tables(inputs["scores"])
    inputs = FigureInputs(
        tables, histories=read_histories(inputs["histories"]),
        examples={name: read_examples(path) for name, path in inputs["examples"].items()}, labelled=labelled,
        curves=model_curves(tables, labelled=labelled), runs=run_summary(tables, column="run"), run_column="run",
        n_top=3, bin_unit="keV")
    assert list(FIGURES) == list(FIGURE_NAMES)
    problems = []
    for name, entry in FIGURES.items():
        figure = entry.build(inputs)
        figure.canvas.draw()  # lays the figure out, as saving does
        if not labelled and name in ("roc", "precision_recall"):
            assert all("no labels configured" in ax.texts[0].get_text() for ax in figure.axes)
            continue
        problems += _figure_problems(name, figure)
        if labelled and name in ("roc", "precision_recall"):
            assert any(type(c).__name__.endswith("PolyCollection") for ax in figure.axes for c in ax.collections), name
    assert not problems, "\n".join(problems)


def test_the_snakemake_report_captions_are_written_from_the_figure_registry(tmp_path):
    """workflow/report/<figure>.rst are generated (scripts/write_report_captions.py): each says what the registry says."""
    from spectral_anomaly.report.registry import FIGURES, snakemake_caption, write_snakemake_captions

    folder = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for name, figure in FIGURES.items():
        assert (folder / f"{name}.rst").read_text() == snakemake_caption(name), (
            f"{name}.rst is out of date: run scripts/write_report_captions.py")
        assert figure.caption in snakemake_caption(name)
    written = write_snakemake_captions(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.rst" for name in FIGURES)
