"""The latent size chosen without labels (``auto``): by held-out likelihood, recorded with the model and in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA

from spectral_anomaly import stages
from spectral_anomaly.config import validate_config
from spectral_anomaly.models import build_detector, load_detector
from spectral_anomaly.models.latent_size import choose_latent_size, held_out_log_likelihoods
from spectral_anomaly.normalize import SpectrumNormalizer


def _low_rank(n: int, *, rank: int, n_bins: int = 40, seed: int = 0) -> np.ndarray:
    """Spectra varying along ``rank`` directions (of falling strength) plus white noise. Each direction
    moves every bin by the same amount (random signs), so every bin has the same spread and standardizing
    the bins leaves the noise white."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(99).choice([-1.0, 1.0], size=(rank, n_bins))
    strengths = np.linspace(4.0, 2.0, rank)[None, :]
    return (rng.normal(size=(n, rank)) * strengths @ directions + 0.3 * rng.normal(size=(n, n_bins))).astype(np.float32)


def test_the_held_out_likelihood_of_every_size_is_that_of_a_probabilistic_pca_fitted_with_it():
    fit, held_out = _low_rank(400, rank=3).astype(np.float64), _low_rank(100, rank=3, seed=1).astype(np.float64)
    ours = held_out_log_likelihoods(fit, held_out, 6)[1:]
    expected = [PCA(k).fit(fit).score(held_out) for k in range(1, 7)]
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


@pytest.mark.parametrize("steps", [[], ["standardize"]], ids=["raw", "standardized bins"])
@pytest.mark.parametrize("rank", [1, 3, 5])
def test_auto_finds_the_number_of_directions_in_which_the_normal_spectra_vary(rank, steps):
    train, validation = _low_rank(600, rank=rank), _low_rank(150, rank=rank, seed=1)
    choice = choose_latent_size(SpectrumNormalizer(steps).fit(train), train, validation)
    assert choice["value"] == rank, choice["reason"]
    assert f"{rank} kept" in choice["reason"]
    assert len(choice["held_out_log_likelihood"]) == rank + 2  # sizes 0 .. rank + 1


@pytest.mark.parametrize("spec", [{"kind": "pca", "n_components": "auto"},
                                  {"kind": "autoencoder", "hidden": [16], "latent_dim": "auto"},
                                  {"kind": "vae", "hidden": [16], "latent_dim": "auto"}], ids=["pca", "ae", "vae"])
def test_every_kind_resolves_auto_and_keeps_the_choice_in_its_model_file(spec, tmp_path):
    train, validation = _low_rank(300, rank=2), _low_rank(80, rank=2, seed=1)
    detector = build_detector(spec, normalization=SpectrumNormalizer(["standardize"]).fit(train),
                              training={"epochs": 2, "device": "cpu"}, scoring={"mc_samples": 2})
    detector.fit(train, validation)
    key = "n_components" if spec["kind"] == "pca" else "latent_dim"
    assert detector.params[key] == 2 and detector.latent_dim == 2
    assert detector.choices_[key]["asked"] == "auto" and detector.choices_[key]["value"] == 2
    assert [c for c in detector.score(validation) if c.startswith("latent_") and c[7:].isdigit()] == ["latent_0", "latent_1"]
    detector.save(tmp_path / "m.npz")
    assert load_detector(tmp_path / "m.npz").choices_ == json.loads(json.dumps(detector.choices_))


def test_a_config_without_models_gets_the_recommended_set_with_latent_sizes_chosen_from_the_data():
    config = validate_config({"run_name": "x", "datasets": {"d": {"format": "csv", "path": "spectra.csv"}}})
    kinds = {name: spec["kind"] for name, spec in config["models"].items()}
    assert kinds == {"pca": "pca", "ae": "autoencoder", "vae": "vae"}
    assert config["models"]["pca"]["n_components"] == "auto"
    assert config["models"]["ae"]["latent_dim"] == config["models"]["vae"]["latent_dim"] == "auto"
    assert config["models"]["vae"]["likelihood"] == "gaussian"


def test_the_choice_reaches_the_training_summary_the_score_table_and_the_report(tmp_path, tiny_demo_config):
    from spectral_anomaly.report.html import comparison_table
    from spectral_anomaly.report.metrics import model_metrics
    from spectral_anomaly.score import read_scores

    config = tiny_demo_config(models={"p": {"kind": "pca", "n_components": "auto"}}, training={"epochs": 2, "device": "cpu"})
    stages.run_demo(config, hdf5_path=tmp_path / "raw.h5", root_path=tmp_path / "raw.root")
    stages.run_ingest(config, "d", input_paths=[tmp_path / "raw.h5"], output=tmp_path / "data.h5")
    stages.run_split(config, "d", data_path=tmp_path / "data.h5", output=tmp_path / "split.json")
    stages.run_normalize(config, "d", data_path=tmp_path / "data.h5", split_path=tmp_path / "split.json",
                         output=tmp_path / "norm.json")
    stages.run_train(config, "d", "p", data_path=tmp_path / "data.h5", split_path=tmp_path / "split.json",
                     normalization_path=tmp_path / "norm.json", model_path=tmp_path / "p.npz",
                     history_path=tmp_path / "p.csv", summary_path=tmp_path / "p.json",
                     scores_path=tmp_path / "p.parquet", examples_path=tmp_path / "p.examples.npz")
    summary = json.loads((tmp_path / "p.json").read_text())
    choice = summary["choices"]["n_components"]
    assert 1 <= choice["value"] < 32 and "held-out" in choice["reason"]
    assert summary["choices"]["primary_score"]["value"] == "pca_nll"
    assert summary["choices"]["normalization"]["value"] == ["unit_integral", "standardize"]  # auto: demo counts
    assert "before any data" in summary["choices"]["primary_score"]["reason"]
    table = read_scores(tmp_path / "p.parquet")
    assert table.attrs["choices"] == summary["choices"]
    metrics = {"models": {"p": model_metrics(table, labelled=True)}}
    assert metrics["models"]["p"]["choices"] == summary["choices"]
    html = comparison_table(metrics)
    assert "Chosen without anomaly labels" in html and f"<b>n_components</b> = {choice['value']} (p)" in html
    assert "<b>primary_score</b> = pca_nll (p)" in html
