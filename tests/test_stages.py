"""Stage functions as the workflow runs them: what they write, and what they leave when they fail."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_anomaly import stages
from spectral_anomaly.exceptions import TrainingError


@pytest.fixture()
def prepared(tmp_path, tiny_demo_config):
    config = tiny_demo_config(models={"vae": {"kind": "vae", "hidden": [16], "latent_dim": 2}},
                              training={"epochs": 5, "device": "cpu"})
    stages.run_demo(config, hdf5_path=tmp_path / "raw.h5", root_path=tmp_path / "raw.root")
    stages.run_ingest(config, "d", input_paths=[tmp_path / "raw.h5"], output=tmp_path / "data.h5")
    stages.run_split(config, "d", data_path=tmp_path / "data.h5", output=tmp_path / "split.json")
    stages.run_normalize(config, "d", data_path=tmp_path / "data.h5", split_path=tmp_path / "split.json",
                         output=tmp_path / "norm.json")
    return config, tmp_path


def test_a_diverging_training_stops_with_the_epoch_and_writes_no_model(prepared):
    config, out = prepared
    config["training"]["learning_rate"] = 1e30  # beyond what the schema allows: the loss overflows at once
    with pytest.raises(TrainingError, match=r"epoch \d+.*lower learning_rate"):
        stages.run_train(config, "d", "vae", data_path=out / "data.h5", split_path=out / "split.json",
                         normalization_path=out / "norm.json", model_path=out / "m" / "vae.npz",
                         history_path=out / "m" / "vae.history.csv", summary_path=out / "m" / "vae.summary.json")
    assert not (out / "m").exists() or sorted(p.name for p in (out / "m").iterdir()) == []


def test_training_writes_model_history_and_summary_and_no_checkpoint(prepared):
    config, out = prepared
    stages.run_train(config, "d", "vae", data_path=out / "data.h5", split_path=out / "split.json",
                     normalization_path=out / "norm.json", model_path=out / "m" / "vae.npz",
                     history_path=out / "m" / "vae.history.csv", summary_path=out / "m" / "vae.summary.json")
    assert sorted(p.name for p in (out / "m").iterdir()) == [
        ".vae.history.csv.xxh128", ".vae.npz.xxh128", ".vae.summary.json.xxh128", "vae.history.csv", "vae.npz",
        "vae.summary.json"]


def test_training_with_scores_writes_what_scoring_the_model_file_writes(prepared):
    """The workflow's train job scores in the same process; the result equals the score stage's."""
    from spectral_anomaly.score import read_examples, read_scores

    config, out = prepared
    paths = dict(data_path=out / "data.h5", split_path=out / "split.json")
    stages.run_train(config, "d", "vae", **paths, normalization_path=out / "norm.json", model_path=out / "m" / "vae.npz",
                     history_path=out / "m" / "vae.history.csv", summary_path=out / "m" / "vae.summary.json",
                     scores_path=out / "s" / "vae.parquet", examples_path=out / "s" / "vae.examples.npz")
    stages.run_score(config, "d", "vae", **paths, model_path=out / "m" / "vae.npz",
                     scores_path=out / "alone" / "vae.parquet", examples_path=out / "alone" / "vae.examples.npz")
    together, alone = read_scores(out / "s" / "vae.parquet"), read_scores(out / "alone" / "vae.parquet")
    assert len(together) == 300 and {"negative_elbo", "anomaly_score", "flag_fpr_1pct"} <= set(together.columns)
    np.testing.assert_allclose(together["anomaly_score"], alone["anomaly_score"], rtol=1e-6)
    assert together.attrs == alone.attrs
    np.testing.assert_allclose(read_examples(out / "s" / "vae.examples.npz")["reconstruction"],
                               read_examples(out / "alone" / "vae.examples.npz")["reconstruction"], rtol=1e-6)
    _check_max_pull_bin(together, read_examples(out / "s" / "vae.examples.npz"))
    np.testing.assert_array_equal(together["max_pull_bin"], alone["max_pull_bin"])


def _check_max_pull_bin(table, examples) -> None:
    """The table's ``max_pull_bin`` is an integer bin, the one of the largest |pull| the stored examples draw."""
    assert table["max_pull_bin"].dtype.kind == "i"
    assert table["max_pull_bin"].between(0, examples["pulls"].shape[1] - 1).all()
    by_id = table.set_index("spectrum_id")["max_pull_bin"]
    magnitudes = np.abs(examples["pulls"])
    top2 = np.sort(magnitudes, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3 * top2[:, 1]  # rounding in another batch cannot swap these
    assert clear.any()
    np.testing.assert_array_equal(by_id.loc[examples["spectrum_id"][clear]].to_numpy(), magnitudes.argmax(axis=1)[clear])


@pytest.mark.parametrize("kind", ["pca", "autoencoder"])
def test_one_train_stage_fits_any_kind_and_its_model_file_scores_alone(prepared, kind):
    """PCA is a detector like the others: the same stage fits it, writes its file, history and summary."""
    import json

    from spectral_anomaly.score import read_examples, read_scores

    config, out = prepared
    spec = {"kind": "pca", "n_components": 2} if kind == "pca" else {"kind": "autoencoder", "hidden": [8], "latent_dim": 2}
    config = {**config, "models": {"m": spec}}
    paths = dict(data_path=out / "data.h5", split_path=out / "split.json")
    stages.run_train(config, "d", "m", **paths, normalization_path=out / "norm.json", model_path=out / "m.npz",
                     history_path=out / "m.history.csv", summary_path=out / "m.summary.json",
                     scores_path=out / "m.parquet", examples_path=out / "m.examples.npz")
    summary = json.loads((out / "m.summary.json").read_text())
    assert summary["kind"] == kind and summary["device"].startswith("cpu")
    stages.run_score(config, "d", "m", **paths, model_path=out / "m.npz", scores_path=out / "again.parquet",
                     examples_path=out / "again.examples.npz")
    table, again = read_scores(out / "m.parquet"), read_scores(out / "again.parquet")
    np.testing.assert_array_equal(table["anomaly_score"], again["anomaly_score"])
    assert table.attrs["primary_score"] == ("pca_nll" if kind == "pca" else "reconstruction_error")
    _check_max_pull_bin(table, read_examples(out / "m.examples.npz"))


def test_pca_pulls_are_residuals_in_units_of_the_noise_width():
    from spectral_anomaly.models import build_detector
    from spectral_anomaly.normalize import SpectrumNormalizer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(200, 8))
    detector = build_detector({"kind": "pca", "n_components": 3}, normalization=SpectrumNormalizer([]).fit(X)).fit(X, None)
    pca = detector.pca_
    residual = X[:5] - pca.inverse_transform(pca.transform(X[:5].astype(np.float32)))
    pulls = detector.reconstruct(X[:5])["pulls"]
    np.testing.assert_allclose(pulls, residual / np.sqrt(pca.noise_variance_), rtol=1e-5, atol=1e-5)
