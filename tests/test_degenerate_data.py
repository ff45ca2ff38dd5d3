"""Degenerate spectra get finite scores, or the run stops before training with one clear line."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import run_stages_to_scores

from spectral_anomaly.exceptions import ConfigError, InvalidSpectraError
from spectral_anomaly.score import build_score_table
from spectral_anomaly.store.canonical import CanonicalSpectra

N_SPECTRA, N_BINS = 200, 16


@pytest.fixture
def base() -> np.ndarray:
    return np.random.default_rng(5).poisson(50.0, size=(N_SPECTRA, N_BINS)).astype(np.float64)


def run_until_scores(tmp_path, X, *, models=None, steps=("unit_integral", "standardize")):
    """Ingest, split, normalize, PCA baseline and every model; return the score tables by model."""
    from spectral_anomaly.config import validate_config

    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as handle:
        handle["spectra"] = X.astype(np.float32)
    config = validate_config({
        "run_name": "t", "datasets": {"d": {"format": "hdf5_array", "path": str(raw), "dataset": "spectra"}},
        "models": models or {"ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 2}},
        "training": {"epochs": 2, "device": "cpu"}, "normalization": {"steps": list(steps)},
        "scoring": {"false_positive_rates": [0.05]},
    })
    return run_stages_to_scores(config, raw, tmp_path / "out")


def assert_every_score_finite(tables):
    for model, table in tables.items():
        numeric = table.select_dtypes("number")
        bad = [c for c in numeric.columns if not np.isfinite(numeric[c].to_numpy(dtype=float)).all()]
        assert not bad, f"{model}: non-finite {bad}"
        assert "flag_fpr_5pct" in table.columns, f"{model}: cuts were calibrated"


@pytest.mark.parametrize(("case", "expected"), [
    ("all zero", f"its {int(0.6 * N_SPECTRA)} training spectra are identical after normalization"),
    ("all identical", "none of the 16 bins varies"),
])
def test_spectra_without_variation_stop_before_training(case, expected, base, tmp_path):
    X = np.zeros_like(base) if case == "all zero" else np.tile(base[0], (N_SPECTRA, 1))
    with pytest.raises(InvalidSpectraError) as info:
        run_until_scores(tmp_path, X)
    message = str(info.value)
    assert expected in message and message.startswith("dataset 'd': ") and "\n" not in message
    assert "Check the input" in message, "it says what to do"
    if case == "all zero":
        assert f"{int(0.6 * N_SPECTRA)} of them are all zero" in message
    assert not (tmp_path / "out" / "norm.json").exists(), "no normalization, so no training job can start"


def test_spectra_of_one_bin_are_refused_naming_the_dataset(base, tmp_path):
    with pytest.raises(ConfigError, match="dataset 'd': its spectra have 1 bin; every model needs at least 2 bins"):
        run_until_scores(tmp_path, base[:, :1], models={"ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 1}})


def test_a_bin_that_never_varies_in_training_keeps_every_score_finite(base, tmp_path):
    X = base.copy()
    X[:, 3] = 0.0
    assert_every_score_finite(run_until_scores(tmp_path, X))


def test_fewer_varying_bins_than_principal_components_keep_every_score_finite(base, tmp_path):
    X = base.copy()
    X[:, 3:] = 7.0  # three bins vary: two directions after the total is divided out, fewer than 4 components
    assert_every_score_finite(run_until_scores(tmp_path, X, steps=("standardize",)))


def test_empty_spectra_among_normal_ones_get_finite_scores_from_every_likelihood(base, tmp_path):
    X = base.copy()
    X[:20] = 0.0
    models = {"gauss": {"kind": "vae", "hidden": [8], "latent_dim": 2},
              "poisson": {"kind": "vae", "hidden": [8], "latent_dim": 2, "likelihood": "poisson"},
              "learned": {"kind": "vae", "hidden": [8], "latent_dim": 2, "likelihood": "gaussian_learned"}}
    assert_every_score_finite(run_until_scores(tmp_path, X, models=models))


def test_a_score_table_with_a_non_finite_score_is_refused():
    spectra = CanonicalSpectra(dataset="d", X=np.zeros((3, 2), np.float32), bin_edges=np.arange(3.0),
                               metadata=pd.DataFrame({"spectrum_id": [0, 1, 2]}))
    split = {"train": np.array([0]), "validation": np.array([1]), "test": np.array([2])}
    with pytest.raises(InvalidSpectraError, match="1 of 3 spectra got a non-finite pca_nll \\(first: spectrum_id 1\\)"):
        build_score_table(spectra, split, {"pca_nll": np.array([1.0, np.nan, 2.0])}, model="pca", primary="pca_nll")


def test_values_too_large_for_float32_sums_are_refused_at_ingestion(base, tmp_path):
    X = base * 1e35  # finite in float32, but a sum over 16 bins overflows the models' float32 arithmetic
    with pytest.raises(InvalidSpectraError, match="spectrum 0 of 'spectra' holds values up to .* rescale the input"):
        run_until_scores(tmp_path, X)
    assert not (tmp_path / "out" / "d.h5").exists()


@pytest.mark.parametrize("value", [1e21, 1e29])
def test_a_far_out_value_outside_training_gets_a_finite_top_score(value, base, tmp_path):
    X = base.copy()
    X[-1, 2] = value  # the last spectrum, in the test split, lies far outside the training spectra
    tables = run_until_scores(tmp_path, X, steps=("standardize",), models={
        "ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 2}, "vae": {"kind": "vae", "hidden": [8], "latent_dim": 2},
        "poisson": {"kind": "vae", "hidden": [8], "latent_dim": 2, "likelihood": "poisson"}})
    assert_every_score_finite(tables)
    for model, table in tables.items():
        if table["split"].iloc[-1] == "test":
            assert table["anomaly_score"].idxmax() == N_SPECTRA - 1, model


def test_values_too_small_for_float32_are_refused_before_training(base, tmp_path):
    with pytest.raises(InvalidSpectraError, match="dataset 'd': normalization step standardize: bin [0-9]+ of the "
                                                  "training spectra varies by only .* rescale the input"):
        run_until_scores(tmp_path, base * 1e-40, steps=("standardize",))
    assert not (tmp_path / "out" / "norm.json").exists()
