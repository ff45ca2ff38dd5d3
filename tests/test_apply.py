"""Train once, then score new runs with the stored detectors and the cuts stored with them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import remove_test_folder

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow

DEMO = {"seed": 42, "n_spectra": 4000, "n_bins": 256, "anomaly_fraction": 0.06}
READER = {"format": "hdf5_array", "dataset": "spectra", "bin_edges_dataset": "bin_edges", "metadata_group": "metadata"}
REFERENCE_CONFIG = {
    "run_name": "ref",
    "demo": DEMO,
    "datasets": {"demo_hdf5": {**READER, "path": "demo://spectra.h5", "anomaly_label": "anomaly_kind != 0"}},
    "models": {
        "ae": {"kind": "autoencoder", "hidden": [128, 32], "latent_dim": 4},
        "vae": {"kind": "vae", "hidden": [128, 32], "latent_dim": 4},
        "pca": {"kind": "pca", "n_components": 4},
    },
    "split": {"train_on": "normal"},
    "normalization": {"steps": ["unit_integral", "standardize"]},
    "training": {"device": "cpu"},
}
MODELS = ("ae", "vae", "pca")


def snakemake(workdir: Path, config: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    executable = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    return subprocess.run(
        [executable, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path),
         "--cores", "2", *extra],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )


def write_demo_file(path: Path, *, seed: int, gain: float = 1.0, n_bins: int = 256, n_spectra: int = 4000) -> Path:
    from spectral_anomaly.demo import generate_demo_spectra, write_demo_hdf5

    demo = generate_demo_spectra(**{**DEMO, "seed": seed, "n_bins": n_bins, "n_spectra": n_spectra}, gain=gain)
    write_demo_hdf5(demo, path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A training run on the demo data (seed 42): the workdir and its result version."""
    workdir = tmp_path_factory.mktemp("apply")
    result = snakemake(workdir, REFERENCE_CONFIG, "reference")
    assert result.returncode == 0, result.stderr[-4000:]
    (version,) = sorted((workdir / "results").glob("ref-*"))
    yield workdir, version
    remove_test_folder(workdir)


def apply_config(reference_version: Path, new_file: Path, **extra) -> dict:
    return {"reference": str(reference_version), "datasets": {"night": {**READER, "path": str(new_file)}},
            "monitoring": {"run_column": "run", "order_column": "lumisection"}, **extra}


def job_counts(output: str) -> dict[str, int]:
    """The Job stats table Snakemake prints: rule -> number of jobs."""
    counts, rows = {}, output.split("Job stats:", 1)[-1].splitlines()
    for line in rows[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def applied(reference):
    """An apply run on a new demo file (seed 43, the usual anomalies), and its version folder."""
    workdir, version = reference
    new_file = write_demo_file(workdir / "night43.h5", seed=43)
    models_before = {m: (version / "models" / "demo_hdf5" / f"{m}.npz").stat().st_mtime_ns for m in MODELS}
    result = snakemake(workdir, apply_config(version, new_file), "apply43")
    assert result.returncode == 0, result.stderr[-4000:]
    (applied_version,) = sorted((workdir / "results" / "apply").glob("apply-*"))
    return {"workdir": workdir, "reference": version, "version": applied_version, "output": result.stderr,
            "models_before": models_before, "file": new_file}


def test_the_stored_cut_flags_the_new_runs_anomalies_and_few_normal_spectra(applied):
    from spectral_anomaly.score import read_scores

    for model in MODELS:
        table = read_scores(applied["version"] / "scores" / "night" / f"{model}.parquet")
        assert len(table) == 4000 and set(table["split"]) == {"apply"}
        anomalous = table["anomaly_kind"].to_numpy() != 0
        flagged = table["flag_fpr_1pct"].to_numpy()
        assert flagged[anomalous].mean() >= 0.90, model
        assert flagged[~anomalous].mean() <= 0.02, model


def test_the_cuts_are_those_of_the_training_run_not_recalibrated(applied):
    from spectral_anomaly import load_detector
    from spectral_anomaly.score import read_scores

    for model in MODELS:
        trained = read_scores(applied["reference"] / "scores" / "demo_hdf5" / f"{model}.parquet").attrs["thresholds"]
        stored = load_detector(applied["reference"] / "models" / "demo_hdf5" / f"{model}.npz").cuts_
        new = read_scores(applied["version"] / "scores" / "night" / f"{model}.parquet").attrs["thresholds"]
        assert [r["cut"] for r in new["rates"]] == [r["cut"] for r in stored["rates"]] == [r["cut"] for r in trained["rates"]]
        assert new["stored"] is True


def test_nothing_is_trained_and_a_rerun_does_nothing(applied):
    counts = job_counts(applied["output"])
    assert counts.get("apply_score") == 1 and "train" not in counts and "split" not in counts and "normalize" not in counts
    for model, before in applied["models_before"].items():
        assert (applied["reference"] / "models" / "demo_hdf5" / f"{model}.npz").stat().st_mtime_ns == before
    again = snakemake(applied["workdir"], apply_config(applied["reference"], applied["file"]), "apply43")
    assert again.returncode == 0 and "Nothing to be done" in again.stderr


def test_the_version_records_its_reference_and_a_new_file_gets_a_new_version(applied):
    recorded = yaml.safe_load((applied["version"] / "config.yaml").read_text())
    assert recorded["reference_version"] == applied["reference"].name
    other = write_demo_file(applied["workdir"] / "night44.h5", seed=44, n_spectra=600)
    result = snakemake(applied["workdir"], apply_config(applied["reference"], other), "apply44")
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(list((applied["workdir"] / "results" / "apply").glob("apply-*"))) == 2


def test_the_drift_test_reports_a_gain_shift_and_not_a_new_run_of_the_same_conditions(applied):
    metrics = json.loads((applied["version"] / "reports" / "night.metrics.json").read_text())
    assert not any(metrics["models"][m]["drift"]["drifted"] for m in MODELS)
    drifted_file = write_demo_file(applied["workdir"] / "gain103.h5", seed=45, gain=1.03, n_spectra=1000)
    result = snakemake(applied["workdir"], apply_config(applied["reference"], drifted_file, run_name="drifted"), "drift")
    assert result.returncode == 0, result.stderr[-4000:]
    (version,) = (applied["workdir"] / "results" / "apply").glob("drifted-*")
    drifted = json.loads((version / "reports" / "night.metrics.json").read_text())
    assert all(drifted["models"][m]["drift"]["drifted"] for m in MODELS)


def test_a_new_binning_is_refused_naming_both_binnings(applied):
    other = write_demo_file(applied["workdir"] / "bins128.h5", seed=46, n_bins=128, n_spectra=50)
    result = snakemake(applied["workdir"], apply_config(applied["reference"], other), "bins", "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "has 128 bins" in output and "trained on 256 bins from 0 to 3000" in output


def test_the_python_api_gives_the_workflows_numbers(applied):
    import h5py

    from spectral_anomaly import load_detector
    from spectral_anomaly.score import read_scores

    with h5py.File(applied["file"], "r") as handle:
        X = handle["spectra"][:300]
    for model in MODELS:
        detector = load_detector(applied["reference"] / "models" / "demo_hdf5" / f"{model}.npz")
        trained = read_scores(applied["reference"] / "scores" / "demo_hdf5" / f"{model}.parquet")
        from_store = detector.score(applied["reference"] / "data" / "demo_hdf5.h5")[detector.primary_score]
        np.testing.assert_array_equal(from_store, trained["anomaly_score"].to_numpy())
        new = read_scores(applied["version"] / "scores" / "night" / f"{model}.parquet")
        flags = detector.flag(X)
        for column in ("flag_fpr_1pct", "flag_fpr_0p1pct"):
            np.testing.assert_array_equal(flags[column], new[column].to_numpy()[:300])


def test_the_apply_subcommand_needs_no_split_and_streams_block_by_block(applied, tmp_path):
    from spectral_anomaly.apply import apply_to_store, open_reference
    from spectral_anomaly.score import read_scores
    from spectral_anomaly.store.layout import VersionLayout

    small = write_demo_file(tmp_path / "small.h5", seed=47, n_spectra=500)
    result = subprocess.run([str(Path(sys.executable).parent / "spectral-anomaly"), "apply", "--reference",
                             str(applied["reference"]), "--input", str(small), "--output-dir", str(tmp_path / "cli")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ae: 500 spectra scored" in result.stdout
    whole = {m: read_scores(tmp_path / "cli" / "scores" / "demo_hdf5" / f"{m}.parquet") for m in MODELS}
    apply_to_store(tmp_path / "cli" / "data" / "demo_hdf5.h5", reference=open_reference(applied["reference"]),
                   reference_dataset="demo_hdf5", dataset="blocks", layout=VersionLayout(tmp_path / "blocks"),
                   block_spectra=64)
    for model in MODELS:
        blocks = read_scores(tmp_path / "blocks" / "scores" / "blocks" / f"{model}.parquet")
        np.testing.assert_allclose(blocks["anomaly_score"], whole[model]["anomaly_score"], rtol=1e-12)
        assert (blocks["flag_fpr_1pct"] == whole[model]["flag_fpr_1pct"]).all()
        with np.load(tmp_path / "blocks" / "scores" / "blocks" / f"{model}.examples.npz") as examples:
            top = np.sort(whole[model]["anomaly_score"].to_numpy())[::-1][:10]
            np.testing.assert_allclose(examples["anomaly_score"], top, rtol=1e-12)


def test_a_detector_without_stored_cuts_is_refused_with_the_remedy(applied, tmp_path):
    from spectral_anomaly import load_detector
    from spectral_anomaly.exceptions import InvalidSpectraError

    detector = load_detector(applied["reference"] / "models" / "demo_hdf5" / "pca.npz")
    detector.cuts_ = {}
    with pytest.raises(InvalidSpectraError, match="no stored flag cuts.*retrain it"):
        detector.flag(np.ones((2, 256)))


def test_a_model_file_without_cuts_takes_those_its_training_run_recorded_in_the_score_table(applied, tmp_path):
    from spectral_anomaly.apply import Reference, load_reference_detectors, open_reference

    reference = open_reference(applied["reference"])
    (detector,) = load_reference_detectors(reference, "demo_hdf5", models=["pca"]).values()
    stored = detector.cuts_
    older = Reference(tmp_path / "older", reference.config)  # as written before model files held their cuts
    detector.cuts_ = {}
    detector.save(older.layout.model("demo_hdf5", "pca"))
    older.layout.scores("demo_hdf5", "pca").parent.mkdir(parents=True)
    shutil.copyfile(reference.layout.scores("demo_hdf5", "pca"), older.layout.scores("demo_hdf5", "pca"))
    (reloaded,) = load_reference_detectors(older, "demo_hdf5", models=["pca"]).values()
    assert reloaded.cuts_["rates"] == stored["rates"]


def test_an_unknown_apply_key_names_the_valid_ones(applied, tmp_path):
    from spectral_anomaly.apply_config import validate_apply_config
    from spectral_anomaly.exceptions import ConfigError

    config = apply_config(applied["reference"], applied["file"])
    with pytest.raises(ConfigError, match="referense_dataset: unknown key .*did you mean 'reference_dataset'"):
        validate_apply_config({**config, "referense_dataset": "demo_hdf5"})
    with pytest.raises(ConfigError, match="not a dataset of reference"):
        validate_apply_config({**config, "reference_dataset": "nope"})


def test_the_readmes_python_example_runs_on_a_reference(reference):
    _, version = reference
    text = (ROOT / "README.md").read_text()
    section = text.split("## Monitoring new runs", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0].replace("results/demo-1a2b3c4d5e", str(version))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the documented example, on a real result version
    assert namespace["scores"]["negative_elbo"].shape == (100,)
    assert set(namespace["flags"]) == {"flag_fpr_1pct", "flag_fpr_0p1pct"}
    assert len(namespace["store_scores"]["negative_elbo"]) == DEMO["n_spectra"]
