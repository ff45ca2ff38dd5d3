"""Input metadata named like the pipeline's own columns is kept apart as ``input_<name>``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import run_stages_to_scores

from spectral_anomaly.columns import INPUT_PREFIX, RESERVED_COLUMNS, input_column_names, is_reserved
from spectral_anomaly.config import validate_config
from spectral_anomaly.store.canonical import read_canonical

N_SPECTRA, N_BINS = 120, 12
RESERVED_EXAMPLES = list(dict.fromkeys([*RESERVED_COLUMNS, "max_pull_bin", "latent_0", "flag_fpr_1pct"]))


def write_csv(path, columns: dict) -> np.ndarray:
    rng = np.random.default_rng(2)
    X = rng.poisson(30.0, size=(N_SPECTRA, N_BINS)).astype(float)
    frame = pd.DataFrame({**columns, **{f"bin_{i}": X[:, i] for i in range(N_BINS)}})
    frame.to_csv(path, index=False)
    return X


def run_stages(tmp_path, columns: dict, *, models: dict | None = None, label: str | None = None):
    raw = tmp_path / "input.csv"
    write_csv(raw, columns)
    dataset = {"format": "csv", "path": str(raw), "bin_columns": "bin_[0-9]+"}
    if label:
        dataset["anomaly_label"] = label
    config = validate_config({"run_name": "t", "datasets": {"d": dataset},
                              "models": models or {"ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 2}},
                              "training": {"epochs": 1, "device": "cpu"}, "scoring": {"false_positive_rates": [0.05]}})
    tables = run_stages_to_scores(config, raw, tmp_path / "out", train=list(models or []))
    return read_canonical(tmp_path / "out" / "d.h5", load_X=False), tables


@pytest.mark.parametrize("name", RESERVED_EXAMPLES)
def test_an_input_column_with_a_reserved_name_is_kept_apart(name, tmp_path):
    values = np.arange(N_SPECTRA) * 10 + 7  # unlike anything the pipeline would write there
    store, tables = run_stages(tmp_path, {name: values})
    stored = INPUT_PREFIX + name
    np.testing.assert_array_equal(store.metadata[stored].to_numpy(), values)
    table = tables["pca"]
    np.testing.assert_array_equal(table[stored].to_numpy(), values)
    if name in table.columns:  # the pipeline's own column beside it, untouched by the file's values
        assert not np.array_equal(np.asarray(table[name]), values)
    np.testing.assert_array_equal(table["spectrum_id"], np.arange(N_SPECTRA))
    np.testing.assert_array_equal(table["anomaly_score"], table["pca_nll"])


def test_every_clash_at_once_through_a_deep_model_and_a_label_expression(tmp_path):
    columns = {name: np.arange(N_SPECTRA) % 2 for name in ("label", "split", "model", "entry", "source_file",
                                                           "spectrum_id", "anomaly_score", "negative_elbo", "kl")}
    models = {"vae": {"kind": "vae", "hidden": [8], "latent_dim": 2}}
    store, tables = run_stages(tmp_path, columns, models=models, label="input_label == 1")
    np.testing.assert_array_equal(store.labels, np.arange(N_SPECTRA) % 2)
    vae = tables["vae"]
    assert set(vae["split"]) <= {"train", "validation", "test"} and set(vae["model"]) == {"vae"}
    assert list(vae["entry"]) == list(range(N_SPECTRA)) and vae["source_file"].iloc[0].endswith("input.csv")
    np.testing.assert_array_equal(vae["anomaly_score"], vae["negative_elbo"])
    for name in columns:
        np.testing.assert_array_equal(vae[INPUT_PREFIX + name], np.arange(N_SPECTRA) % 2)


def test_the_prefix_repeats_until_the_name_is_free():
    assert input_column_names(["label", "input_label", "run"], source="f") == ["input_input_label", "input_label", "run"]
    assert not is_reserved("input_label") and is_reserved("latent_7") and is_reserved("flag_fpr_0p1pct")


def test_every_column_a_model_writes_is_reserved(tmp_path):
    models = {"ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 2},
              "vae": {"kind": "vae", "hidden": [8], "latent_dim": 2, "likelihood": "poisson"}}
    store, tables = run_stages(tmp_path, {"run": np.ones(N_SPECTRA, dtype=int)}, models=models)
    for model, table in tables.items():
        own = [c for c in table.columns if c not in store.metadata.columns]
        assert own and all(is_reserved(c) for c in own), f"{model}: {[c for c in own if not is_reserved(c)]}"


def test_column_names_that_look_like_hdf5_paths_are_stored_as_they_are(tmp_path):
    names = ["/label", "a", "a/b", ".", "/X", "bin_edges", "x.y"]
    store, tables = run_stages(tmp_path, {name: np.arange(N_SPECTRA) + i for i, name in enumerate(names)})
    assert store.labels is None, "a column /label is no label"
    for i, name in enumerate(names):
        np.testing.assert_array_equal(store.metadata[name], np.arange(N_SPECTRA) + i)
        np.testing.assert_array_equal(tables["pca"][name], np.arange(N_SPECTRA) + i)


def test_a_store_of_format_version_1_still_reads(tmp_path):
    """Version 1 named the metadata datasets after their columns."""
    import json

    import h5py

    from spectral_anomaly.store.canonical import read_canonical

    path = tmp_path / "v1.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"format_version": 1, "dataset": "d", "source_sha256": "{}", "n_dropped_nonfinite": 0,
                             "linked_sources": "[]"})
        handle["X"] = np.ones((3, 2), np.float32)
        handle["bin_edges"] = np.arange(3.0)
        handle["metadata/spectrum_id"] = np.arange(3)
        handle["metadata/run"] = np.array([7, 7, 8])
        handle["metadata"].attrs["columns"] = json.dumps(["spectrum_id", "run"])
    store = read_canonical(path)
    assert list(store.metadata.columns) == ["spectrum_id", "run"] and list(store.metadata["run"]) == [7, 7, 8]
