"""End to end: snakemake on a small demo config in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import remove_test_folder

from spectral_anomaly.store.formats import FORMAT_VERSIONS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow

SMALL_CONFIG = {
    "run_name": "small",
    "demo": {"seed": 7, "n_spectra": 800, "n_bins": 96, "anomaly_fraction": 0.1},
    "datasets": {
        "demo_hdf5": {
            "format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
            "bin_edges_dataset": "bin_edges", "metadata_group": "metadata", "anomaly_label": "anomaly_kind != 0",
        },
        "demo_root": {
            "format": "root_th1", "path": "demo://spectra.root", "pattern": "spectra/spectrum_*",
            "metadata_tree": "metadata", "anomaly_label": "anomaly_kind != 0",
        },
    },
    "split": {"train_on": "normal"},
    "models": {
        "ae": {"kind": "autoencoder", "hidden": [32], "latent_dim": 3},
        "vae": {"kind": "vae", "hidden": [32], "latent_dim": 3, "sigma_x": 1.0},
        "pca": {"kind": "pca", "n_components": 3},
    },
    "training": {"epochs": 15, "patience": 5, "device": "cpu"},
    "scoring": {"mc_samples": 4},
    "report": {"top_spectra": 5},
}


def snakemake(workdir: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    config_path = workdir / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    executable = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    return subprocess.run(
        [executable, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path),
         "--cores", "2", *extra],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir, SMALL_CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    versions = sorted((workdir / "results").glob("small-*"))
    assert len(versions) == 1
    yield workdir, versions[0]
    remove_test_folder(workdir)


def test_scores_have_one_row_per_spectrum_and_the_contract_columns(finished_run):
    _, version = finished_run
    for dataset in SMALL_CONFIG["datasets"]:
        for model, primary in (("ae", "reconstruction_error"), ("vae", "negative_elbo"), ("pca", "pca_nll")):
            table = pd.read_parquet(version / "scores" / dataset / f"{model}.parquet")
            assert len(table) == SMALL_CONFIG["demo"]["n_spectra"]
            assert table["spectrum_id"].is_unique
            assert {"split", "label", "run", "lumisection", "anomaly_score", primary} <= set(table.columns)
            assert (table["anomaly_score"] == table[primary]).all()
        vae = pd.read_parquet(version / "scores" / dataset / "vae.parquet")
        assert {"kl", "reconstruction_nll", "latent_radius", "elbo"} <= set(vae.columns)
        assert (vae["negative_elbo"] - (vae["reconstruction_nll"] + vae["kl"])).abs().max() < 1e-6 * vae["negative_elbo"].abs().max()


def test_hdf5_and_root_copies_give_identical_scores(finished_run):
    _, version = finished_run
    for model in ("ae", "vae", "pca"):
        from_hdf5 = pd.read_parquet(version / "scores" / "demo_hdf5" / f"{model}.parquet")
        from_root = pd.read_parquet(version / "scores" / "demo_root" / f"{model}.parquet")
        pd.testing.assert_series_equal(from_hdf5["anomaly_score"], from_root["anomaly_score"])


def test_report_and_metrics_are_written(finished_run):
    _, version = finished_run
    for dataset in SMALL_CONFIG["datasets"]:
        html = (version / "reports" / f"{dataset}.html").read_text()
        assert html.count("data:image/png;base64,") >= 5
        metrics = json.loads((version / "reports" / f"{dataset}.metrics.json").read_text())
        assert set(metrics["models"]) == {"ae", "vae", "pca"}
        for model in metrics["models"].values():
            assert 0.5 < model["roc_auc"] <= 1.0
        for figure in ("roc", "score_distributions", "training_curves", "top_anomalies", "latent_space"):
            assert (version / "reports" / dataset / f"{figure}.png").stat().st_size > 5000


def test_manifest_records_provenance(finished_run):
    _, version = finished_run
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["result_version"] == version.name
    assert manifest["config"]["run_name"] == "small"
    assert manifest["packages"]["torch"] and manifest["packages"]["spectral_anomaly"]
    assert set(manifest["devices"]) == {f"{d}/{m}" for d in SMALL_CONFIG["datasets"] for m in SMALL_CONFIG["models"]}
    assert all(device.startswith("cpu") for device in manifest["devices"].values())
    kinds = {entry["kind"] for entry in manifest["files"]}
    assert {"canonical_store", "split", "normalization", "model", "scores", "examples"} <= kinds
    assert all(entry["format_version"] == FORMAT_VERSIONS[entry["kind"]] for entry in manifest["files"] if entry["kind"])
    assert manifest["started"] <= manifest["finished"]
    assert not [e["path"] for e in manifest["files"] if e["path"].startswith("reports/")], "reports record their builds"
    for dataset in SMALL_CONFIG["datasets"]:  # each report's build is recorded beside it
        build = json.loads((version / "reports" / f"{dataset}.build.json").read_text())
        listed = {entry["path"]: entry["sha256"] for entry in build["files"]}
        assert f"reports/{dataset}.metrics.json" in listed and f"reports/{dataset}.html" in listed
        assert build["result_version"] == version.name and build["report_options"] == {
            **build["report_options"], **SMALL_CONFIG["report"]}


def test_rerun_does_nothing_and_a_new_config_writes_a_new_version(finished_run):
    workdir, version = finished_run
    dry = snakemake(workdir, SMALL_CONFIG, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr
    before = {p: p.stat().st_mtime_ns for p in version.rglob("*") if p.is_file()}
    changed = {**SMALL_CONFIG, "models": {**SMALL_CONFIG["models"], "pca": {"kind": "pca", "n_components": 2}}}
    dry_new = snakemake(workdir, changed, "-n")
    assert dry_new.returncode == 0, dry_new.stderr[-2000:]
    assert "small-" in dry_new.stdout
    assert version.name not in dry_new.stdout  # the changed config targets a new folder only
    assert before == {p: p.stat().st_mtime_ns for p in version.rglob("*") if p.is_file()}


def planned_jobs(run: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs by rule from a dry run's job statistics (without the ``all`` target)."""
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    if "Nothing to be done" in output:
        return {}
    lines = output.split("Job stats:", 1)[1].strip().splitlines()[2:]
    jobs = {}
    for line in lines:
        if not line.strip():
            break
        rule, count = line.split()
        jobs[rule] = int(count)
    jobs.pop("total")
    jobs.pop("all", None)
    return jobs


def _changed(section: str, key: str, value, *, model: str | None = None) -> dict:
    config = json.loads(json.dumps(SMALL_CONFIG))
    (config["models"][model] if model else config.setdefault(section, {}))[key] = value
    return config


def test_a_rerun_redoes_only_what_the_changed_key_feeds(finished_run):
    """A change reruns the jobs that read the changed key and those downstream of them, nothing else:
    the other stage outputs are shared with the earlier version (linked read-only into the new one)."""
    workdir, _ = finished_run
    n_data = len(SMALL_CONFIG["datasets"])
    links = {"link": 1}  # the new version's folder links every shared stage output in one job
    version_jobs = {"run_config": 1, **links, "report": n_data, "manifest": 1}
    expected = {
        "training key": (_changed("training", "learning_rate", 0.002),
                         {**version_jobs, "train": n_data * 2}),  # the two deep models, not the PCA
        "one detector's key": (_changed("models", "latent_dim", 2, model="vae"), {**version_jobs, "train": n_data}),
        "report key": (_changed("report", "top_spectra", 4), {"report": n_data}),  # rebuilt in the same version
        # steps that take any values, as auto (the default) does: the ingest key, which says whether the
        # spectra must be counts, stays
        "normalization key": (_changed("normalization", "steps", ["standardize_spectrum", "standardize"]),
                              {**version_jobs, "normalize": n_data, "train": n_data * len(SMALL_CONFIG["models"])}),
        "split key": (_changed("split", "seed", 11), {**version_jobs, "split": n_data, "normalize": n_data,
                                                     "train": n_data * len(SMALL_CONFIG["models"])}),
    }
    for change, (config, jobs) in expected.items():
        assert planned_jobs(snakemake(workdir, config, "-n")) == jobs, change
    assert planned_jobs(snakemake(workdir, SMALL_CONFIG, "-n")) == {}, "the unchanged config has nothing to do"


def test_snakemake_report_builds_with_captions(finished_run, tmp_path):
    workdir, _ = finished_run
    report = tmp_path / "report.html"
    result = snakemake(workdir, SMALL_CONFIG, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    assert "Receiver operating characteristic of each model" in text and "demo_root" in text


def test_a_sweep_over_seeds_trains_each_model_per_seed_and_reports_the_spread(tmp_path):
    config = {
        **SMALL_CONFIG,
        "run_name": "sweep",
        "datasets": {"demo_hdf5": SMALL_CONFIG["datasets"]["demo_hdf5"]},
        "models": {"ae": SMALL_CONFIG["models"]["ae"], "vae_conv": {"kind": "vae", "architecture": "conv",
                   "conv_channels": [4, 8], "latent_dim": 3, "likelihood": "poisson"}},
        "training": {"epochs": 6, "patience": 3, "device": "cpu", "seeds": [1, 2]},
    }
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    (version,) = (tmp_path / "results").glob("sweep-*")
    trained = sorted(p.name for p in (version / "models" / "demo_hdf5").glob("*.npz"))
    assert trained == ["ae-seed1.npz", "ae-seed2.npz", "vae_conv-seed1.npz", "vae_conv-seed2.npz"]
    assert result.stderr.count("rule train:") == 4  # one job per model and seed
    metrics = json.loads((version / "reports" / "demo_hdf5.metrics.json").read_text())
    assert metrics["variants"]["ae"]["n_seeds"] == 2 and metrics["variants"]["vae_conv"]["n_seeds"] == 2
    assert metrics["variants"]["ae"]["roc_auc_std"] is not None
    assert "Ranking over training seeds" in (version / "reports" / "demo_hdf5.html").read_text()


def train_jobs_planned(run: subprocess.CompletedProcess) -> list[dict[str, str]]:
    """threads, resources and wildcards of every train job of a dry run."""
    assert run.returncode == 0, run.stderr[-3000:]
    blocks = (run.stdout + run.stderr).split("rule train:")[1:]
    jobs = []
    for block in blocks:
        fields = dict(line.strip().split(": ", 1) for line in block.split("\n\n")[0].splitlines()
                      if line.strip().startswith(("threads:", "resources:", "wildcards:")))
        jobs.append({"threads": "1", **fields})  # Snakemake shows threads above 1 only
    return jobs


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_train_jobs_on_a_machine_without_a_gpu_neither_show_nor_ask_for_one(tmp_path, device):
    config = {**SMALL_CONFIG, "training": {**SMALL_CONFIG["training"], "device": device}}
    run = subprocess.run(
        [shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(_write(tmp_path / "run.yaml", config)), "--cores", "2", "-n"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    jobs = train_jobs_planned(run)
    assert len(jobs) == 2 * 3
    assert not [job for job in jobs if "gpu" in job["resources"]]


def test_train_jobs_take_half_the_local_cores_up_to_four_and_set_threads_changes_it(tmp_path):
    default = train_jobs_planned(snakemake(tmp_path, SMALL_CONFIG, "-n", "-p"))
    assert {job["threads"] for job in default} == {"1"}  # half of --cores 2: two trainings side by side
    many = train_jobs_planned(snakemake(tmp_path, SMALL_CONFIG, "-n", "-p", "--cores", "16"))
    assert {job["threads"] for job in many} == {"4"}  # at most 4
    two = snakemake(tmp_path, SMALL_CONFIG, "-n", "-p", "--set-threads", "train=2")
    assert {job["threads"] for job in train_jobs_planned(two)} == {"2"}
    commands = [line for line in (two.stdout + two.stderr).splitlines() if "spectral-anomaly" in line and " train " in line]
    assert len(commands) == 2 * 3 and all(" --threads 2" in line for line in commands)


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
