"""On the default demo data, every model separates the injected anomalies well (ROC AUC >= 0.90).

Runs the stages exactly as the workflow does, with the default config/config.yaml, on the HDF5
copy of the demo, and measures ROC AUC on the test split.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import remove_test_folder
from sklearn.metrics import roc_auc_score

from spectral_anomaly import stages
from spectral_anomaly.config import validate_config
from spectral_anomaly.score import read_scores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_quality")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate_config(config)
    config["training"]["device"] = "cpu"
    dataset = "demo_hdf5"
    stages.run_demo(config, hdf5_path=out / "spectra.h5", root_path=out / "spectra.root")
    stages.run_ingest(config, dataset, input_paths=[out / "spectra.h5"], output=out / "data.h5")
    stages.run_split(config, dataset, data_path=out / "data.h5", output=out / "split.json")
    stages.run_normalize(config, dataset, data_path=out / "data.h5", split_path=out / "split.json", output=out / "norm.json")
    common = {"data_path": out / "data.h5", "split_path": out / "split.json"}
    for model in config["models"]:
        stages.run_train(config, dataset, model, **common, normalization_path=out / "norm.json",
                         model_path=out / f"{model}.npz", history_path=out / f"{model}.csv", summary_path=out / f"{model}.json")
        stages.run_score(config, dataset, model, **common, model_path=out / f"{model}.npz",
                         scores_path=out / f"{model}.parquet", examples_path=out / f"{model}.examples.npz")
    yield out, config
    remove_test_folder(out)


def test_every_model_reaches_roc_auc_090_on_the_demo_test_split(default_run):
    out, config = default_run
    aucs = {}
    for model in config["models"]:
        table = read_scores(out / f"{model}.parquet")
        test = table[table["split"] == "test"]
        assert test["label"].sum() > 50  # every labelled anomaly is evaluated (train_on: normal)
        aucs[model] = roc_auc_score(test["label"], test["anomaly_score"])
    assert set(aucs) == {"ae", "vae", "pca"}
    assert min(aucs.values()) >= 0.90, aucs


def test_scoring_the_same_model_twice_gives_identical_scores(default_run, tmp_path):
    out, config = default_run
    first = read_scores(out / "vae.parquet")
    stages.run_score(config, "demo_hdf5", "vae", data_path=out / "data.h5", split_path=out / "split.json",
                     model_path=out / "vae.npz", scores_path=tmp_path / "again.parquet", examples_path=tmp_path / "again.npz")
    again = read_scores(tmp_path / "again.parquet")
    assert (first["negative_elbo"].to_numpy() == again["negative_elbo"].to_numpy()).all()
