"""Tests of the report: metrics against scikit-learn, figure files and contents, the HTML page."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from spectral_anomaly.exceptions import ConfigError, InputFileError
from spectral_anomaly.formats import FORMAT_VERSIONS
from spectral_anomaly.report import FIGURE_NAMES, build_report
from spectral_anomaly.report.figures import (
    latent_space_figure,
    roc_figure,
    score_distribution_figure,
    top_anomalies_figure,
    training_curves_figure,
)
from spectral_anomaly.report.metrics import (
    read_histories,
    read_score_tables,
    top_spectra_table,
)
from spectral_anomaly.score import write_scores

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
    primary = {"vae": "negative_elbo", "pca": "pca_nll", "autoencoder": "reconstruction_error"}[kind]
    table["anomaly_score"] = table[primary]
    return table


def make_examples(rng, path, table, *, k=12):
    order = np.argsort(-table["anomaly_score"].to_numpy(), kind="stable")[:k]
    edges = np.linspace(0.0, 3000.0, N_BINS + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    shape = np.exp(-centres / 800) + 0.6 * np.exp(-0.5 * ((centres - 1460) / 40) ** 2)
    expected = shape / shape.sum() * 20000
    counts = rng.poisson(np.tile(expected, (k, 1))).astype(np.float64)
    counts[:, 30:33] = 0.0  # a dead region the reconstruction does not follow
    np.savez(path, format_version=1, spectrum_id=table["spectrum_id"].to_numpy()[order],
             anomaly_score=table["anomaly_score"].to_numpy()[order], input=counts,
             reconstruction=np.tile(expected, (k, 1)), bin_edges=edges)


def make_history(path, *, epochs=30, best=22):
    epoch = np.arange(1, epochs + 1)
    train = 200 * np.exp(-epoch / 6) + 50
    validation = np.where(epoch <= best, 200 * np.exp(-epoch / 6) + 55, 200 * np.exp(-best / 6) + 55 + 0.4 * (epoch - best))
    flags, running = [], np.inf
    for value in validation:
        flags.append(bool(value < running))
        running = min(running, value)
    pd.DataFrame({"epoch": epoch, "train_loss": train, "validation_loss": validation,
                  "seconds": 0.5, "best": flags}).to_csv(path, index=False)


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
        write_scores(table, scores[model], kind=kind)
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
    assert re.search(r'<td class="num best">1\.000</td>', page)  # the VAE's perfect AUC is highlighted
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


def test_roc_figure_has_one_curve_per_model_and_diagonal(tmp_path):
    inputs, _ = make_inputs(tmp_path)
    tables = read_score_tables(inputs["scores"])
    (ax,) = _check_axes(roc_figure(tables, labelled=True), n_axes=1)
    assert len(ax.lines) == len(tables) + 1
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(t.startswith("vae") and "AUC = 1.000" in t for t in legend)
    diagonal = ax.lines[-1]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    (ax,) = _check_axes(roc_figure(tables, labelled=False), n_axes=1)
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
    figure = top_anomalies_figure(examples, n_top=10)
    assert len(figure.axes) == 10 * 3
    first = figure.axes[0]
    assert first.get_legend() is not None and first.get_ylabel().startswith("counts")
    assert first.get_yscale() == "log"
    assert str(int(examples["vae"]["spectrum_id"][0])) in first.get_title()
    for ax in figure.axes:
        assert len(ax.lines) == 1 and len(ax.patches) == 1  # reconstruction line and input steps
    assert figure.get_size_inches()[0] == pytest.approx(3 * 4.5)


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


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path):
    inputs, _ = make_inputs(tmp_path / "in")
    with pytest.raises(ConfigError, match="expected exactly roc, score_distributions"):
        run_report(tmp_path, inputs, figure_paths={"roc": tmp_path / "roc.png"})
    broken = tmp_path / "in" / "broken.history.csv"
    broken.write_text("epoch,loss\n1,2.0\n")
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
