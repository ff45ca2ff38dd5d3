"""A latent space at or above the number of bins is refused before any job, naming the key and the bins."""

from __future__ import annotations

import pytest

from spectral_anomaly.config import check_model_shapes
from spectral_anomaly.exceptions import ConfigError
from spectral_anomaly.io import count_bins, read_raw_spectra


@pytest.mark.parametrize(("sections", "key", "size"), [
    ({"models": {"ae": {"kind": "autoencoder", "latent_dim": 32}}}, "models.ae.latent_dim", 32),
    ({"models": {"ae": {"kind": "autoencoder", "latent_dim": 2}, "big": {"kind": "vae", "latent_dim": 40}}},
     "models.big.latent_dim", 40),
    ({"models": {"base": {"kind": "pca", "n_components": 32}}}, "models.base.n_components", 32),
])
def test_a_latent_size_at_or_above_the_bins_is_refused(sections, key, size, tiny_demo_config):
    config = tiny_demo_config(**sections)
    with pytest.raises(ConfigError) as info:
        check_model_shapes(config, dataset="d", n_bins=32)
    assert str(info.value) == (f"{key} is {size}, but dataset 'd' has spectra of 32 bins; a latent space must be "
                               f"smaller than the spectrum: choose {key.rsplit('.', 1)[1]} from 1 to 31")
    check_model_shapes(config, dataset="d", n_bins=size + 1)  # one bin more is fine


@pytest.mark.parametrize(("relative", "dataset"), [
    ("cms_dqm_pixel_zerobias2017B/data_small_train.csv", {"format": "csv", "bin_columns": "bin_[0-9]+"}),
    ("sdss_quasar_cs229/quasar_test.csv", {"format": "csv", "header": False, "bin_centres_row": True}),
    ("ipaml_spectra/spectra_data.hf5", {"format": "pandas_hdf5", "key": "data"}),
    ("gamma_nai_baldr/measurements.h5", {"format": "pandas_hdf5", "key": "spectra"}),
    ("root_skhep_testdata/uproot-histograms.root", {"format": "root_th1", "pattern": "one"}),
    ("root_skhep_testdata/uproot-histograms.root", {"format": "root_th1", "pattern": "one", "flow": True}),
    ("root_skhep_testdata/uproot-issue-861.root", {"format": "root_th1", "pattern": "Energy/*"}),
    ("root_skhep_testdata/uproot-HZZ.root", {"format": "root_tree_flat", "tree": "events", "branches": ["MET_p*"]}),
])
def test_counting_bins_from_the_structure_agrees_with_reading(relative, dataset, shared_file):
    path = shared_file(relative)
    assert count_bins(path, dataset) == read_raw_spectra(path, dataset).n_bins


@pytest.mark.workflow
@pytest.mark.parametrize(("models", "key"), [
    ({"ae": {"kind": "autoencoder", "latent_dim": 32}}, "models.ae.latent_dim is 32"),
    ({"ae": {"kind": "autoencoder", "latent_dim": 2}, "pca": {"kind": "pca", "n_components": 40}},
     "models.pca.n_components is 40"),
])
def test_the_workflow_refuses_a_latent_size_before_any_job(models, key, tmp_path):
    from test_workflow import snakemake

    config = {"run_name": "shapes", "demo": {"n_spectra": 200, "n_bins": 32},
              "datasets": {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra"}},
              "models": models}
    run = snakemake(tmp_path, config, "-n")
    output = run.stdout + run.stderr
    assert run.returncode != 0 and f"{key}, but dataset 'd' has spectra of 32 bins" in output
    assert not (tmp_path / "results").exists(), "no job ran"


@pytest.mark.parametrize("bin_range", [[5, 5], [10, 0]])
def test_an_empty_or_reversed_bin_range_is_refused(bin_range, tiny_demo_config):
    datasets = {"d": {"format": "csv", "path": "x.csv", "bin_range": bin_range}}
    with pytest.raises(ConfigError, match=r"datasets\.d\.bin_range: \[.*\] is empty or reversed"):
        tiny_demo_config(datasets=datasets)
