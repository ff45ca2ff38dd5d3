"""Shared fixtures: the third-party data folder, small random spectra and a tiny demo config.

Tests marked ``system`` change the machine they run on: they install packages, start daemons or
mount file systems (the one-node SLURM cluster of tests/test_slurm.py, a small tmpfs). They run
only when asked, with ``--run-system`` or ``SPECTRAL_ANOMALY_SYSTEM_TESTS=1``; otherwise they are
skipped with that reason.

Tests leave nothing outside pytest's temporary folder, and little in it: after a test that passed,
the files of 1 MB or more in its ``tmp_path`` are deleted, and the module-wide workflow runs delete
their folders when their module is done (:func:`remove_test_folder`). Set
``SPECTRAL_ANOMALY_KEEP_TEST_FILES=1`` to keep everything for debugging.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

#: third-party test data (not part of the repository); tests using it skip when it is absent
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


#: the environment variable that, set to 1, runs the tests marked ``system`` (like ``--run-system``)
SYSTEM_TESTS_VARIABLE = "SPECTRAL_ANOMALY_SYSTEM_TESTS"


def pytest_addoption(parser):
    parser.addoption("--run-system", action="store_true", default=False,
                     help="also run the tests that install packages, start daemons or mount file systems "
                          f"(marked system; or set {SYSTEM_TESTS_VARIABLE}=1)")


def system_tests_asked(config) -> bool:
    """Whether this run asked for the tests that change the machine."""
    return config.getoption("--run-system") or os.environ.get(SYSTEM_TESTS_VARIABLE) == "1"


def pytest_collection_modifyitems(config, items):
    if system_tests_asked(config):
        return
    skip = pytest.mark.skip(reason="changes this machine (installs packages, starts daemons or mounts file systems): "
                                   f"run with --run-system or {SYSTEM_TESTS_VARIABLE}=1")
    for item in items:
        if "system" in item.keywords:
            item.add_marker(skip)


#: files at least this large are deleted from a passed test's tmp_path
LARGE_TEST_FILE_BYTES = 1_000_000
KEEP_TEST_FILES_VARIABLE = "SPECTRAL_ANOMALY_KEEP_TEST_FILES"


def keep_test_files() -> bool:
    return os.environ.get(KEEP_TEST_FILES_VARIABLE) == "1"


def remove_test_folder(folder: Path) -> None:
    """Delete a folder a module's fixture wrote (a whole workflow run), unless asked to keep test files."""
    if not keep_test_files():
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.passed_call = report.passed
    return report


@pytest.fixture(autouse=True)
def drop_large_test_files(request):
    """After a test that passed, delete the large files it wrote into its tmp_path."""
    # asked for before the test, so that tmp_path is torn down after this fixture
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp_path is None or keep_test_files() or not getattr(request.node, "passed_call", False):
        return
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= LARGE_TEST_FILE_BYTES:
            path.unlink()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of third-party data files; skips the test when it is missing."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared test data folder {SHARED_DATA_DIR} is missing (third-party files, not in the repository)")
    return SHARED_DATA_DIR


@pytest.fixture
def shared_file(shared_data_dir: Path):
    """Return a function giving the path of a shared data file, skipping the test when it is missing."""

    def get(relative: str) -> Path:
        path = shared_data_dir / relative
        if not path.is_file():
            pytest.skip(f"shared test data file {path} is missing")
        return path

    return get


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def poisson_spectra(rng: np.random.Generator) -> np.ndarray:
    """40 Poisson-count spectra of 16 bins: a falling background plus a peak of varying height."""
    bins = np.arange(16)
    shape = 200.0 * np.exp(-bins / 6.0) + 5.0
    peak = 80.0 * np.exp(-0.5 * ((bins - 10) / 1.5) ** 2)
    heights = rng.uniform(0.0, 1.0, size=(40, 1))
    return rng.poisson(shape + heights * peak).astype(np.float64)


@pytest.fixture
def latent_spectra() -> np.ndarray:
    """200 spectra of 8 bins generated from a 2-D latent structure plus a little noise (float32)."""
    generator = np.random.default_rng(7)
    z = generator.normal(size=(200, 2))
    mixing = generator.normal(size=(2, 8))
    return (np.tanh(z @ mixing) + 0.05 * generator.normal(size=(200, 8))).astype(np.float32)


#: a small run on the built-in demo data (300 spectra x 32 bins, one tiny model) for stage tests
TINY_DEMO_CONFIG = {
    "run_name": "t",
    "demo": {"seed": 3, "n_spectra": 300, "n_bins": 32, "anomaly_fraction": 0.1},
    "datasets": {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
                       "metadata_group": "metadata", "anomaly_label": "anomaly_kind != 0"}},
    "models": {"ae": {"kind": "autoencoder", "hidden": [16], "latent_dim": 2}},
    "training": {"epochs": 3, "device": "cpu"},
}


@pytest.fixture(scope="session")
def tiny_demo_config():
    """Makes :data:`TINY_DEMO_CONFIG` with the given top-level sections replaced, validated."""
    from spectral_anomaly.config import validate_config

    def make(**sections) -> dict:
        return validate_config(copy.deepcopy({**TINY_DEMO_CONFIG, **sections}))

    return make


def run_stages_to_scores(config: dict, raw, out, *, train: list[str] | None = None) -> dict:
    """Ingest ``raw`` as dataset ``d`` of ``config``, then split, normalize, and train and score a PCA
    model ``pca`` (added when the config has none) and every other model (or those named in
    ``train``), each stage as the workflow runs it; the score tables by model."""
    from spectral_anomaly import stages
    from spectral_anomaly.config import validate_config
    from spectral_anomaly.score import read_scores

    if "pca" not in config["models"]:
        config = validate_config({**copy.deepcopy(config), "models": {
            **config["models"], "pca": {"kind": "pca", "n_components": 2}}})
    paths = {"data_path": out / "d.h5", "split_path": out / "split.json"}
    stages.run_ingest(config, "d", input_paths=[raw], output=paths["data_path"])
    stages.run_split(config, "d", data_path=paths["data_path"], output=paths["split_path"])
    stages.run_normalize(config, "d", **paths, output=out / "norm.json")
    trained = ["pca", *(model for model in (config["models"] if train is None else train) if model != "pca")]
    for model in trained:
        stages.run_train(config, "d", model, **paths, normalization_path=out / "norm.json",
                         model_path=out / f"{model}.npz", history_path=out / f"{model}.csv",
                         summary_path=out / f"{model}.json", scores_path=out / f"{model}.parquet",
                         examples_path=out / f"{model}.examples.npz")
    return {model: read_scores(out / f"{model}.parquet") for model in trained}
