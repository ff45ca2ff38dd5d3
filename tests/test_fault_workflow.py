"""Faults during real workflow runs: SIGKILL anywhere, a killed training job, changed inputs, concurrent runs.

Every test runs snakemake on a tiny demo config (one dataset, one autoencoder) and compares its
score tables with those of one uninterrupted run of the same config.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import remove_test_folder
from test_workflow import ROOT, SMALL_CONFIG, snakemake

from spectral_anomaly.exceptions import InputFileError
from spectral_anomaly.models import load_detector
from spectral_anomaly.score import read_scores
from spectral_anomaly.store.canonical import read_canonical
from spectral_anomaly.store.integrity import verify_checksum

pytestmark = pytest.mark.workflow

FAULT_CONFIG = {
    **SMALL_CONFIG,
    "run_name": "faults",
    "demo": {"seed": 11, "n_spectra": 1500, "n_bins": 64, "anomaly_fraction": 0.1},
    "datasets": {"demo_hdf5": SMALL_CONFIG["datasets"]["demo_hdf5"]},
    "models": {"ae": {"kind": "autoencoder", "hidden": [64], "latent_dim": 3}},
    # long enough (some seconds) that a kill can land in the middle of training
    "training": {"epochs": 40, "patience": 40, "batch_size": 16, "device": "cpu"},
    "scoring": {"mc_samples": 2},
}


def start_snakemake(workdir: Path, config: dict, *extra: str, name: str = "run") -> subprocess.Popen:
    """Start snakemake in its own process group (so a kill reaches every job), output to ``<name>.out``."""
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    executable = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    with (workdir / f"{name}.out").open("w") as out:
        return subprocess.Popen(
            [executable, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path),
             "--cores", "2", *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        )


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def score_tables(version: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(version)): read_scores(p) for p in sorted(version.glob("scores/*/*.parquet"))}


def assert_same_scores(version: Path, reference: Path) -> None:
    tables, expected = score_tables(version), score_tables(reference)
    assert tables.keys() == expected.keys() and tables
    for name, table in tables.items():
        # demo inputs are generated inside the version, so their path names the version
        table["source_file"] = table["source_file"].str.replace(version.name, reference.name, regex=False)
        pd.testing.assert_frame_equal(table, expected[name], obj=name)


def assert_every_file_is_whole(version: Path) -> None:
    """Each file that exists is complete: checksums match and results parse (no truncated file passes)."""
    for path in version.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "logs" in path.parts:
            continue
        verify_checksum(path)
        if path.suffix == ".parquet":
            read_scores(path)
        elif path.suffix == ".npz" and path.parent.parent.name == "models":
            load_detector(path)
        elif path.suffix == ".h5" and path.parent.name == "data":
            read_canonical(path, load_X=True)
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The result version of one uninterrupted run of FAULT_CONFIG."""
    workdir = tmp_path_factory.mktemp("reference")
    result = snakemake(workdir, FAULT_CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    (version,) = (workdir / "results").glob("faults-*")
    yield version
    remove_test_folder(workdir)


def test_sigkill_at_random_moments_then_rerun_gives_the_results_of_an_uninterrupted_run(reference, tmp_path):
    delays = random.Random(20240611).sample([1.5, 3.0, 4.5, 6.0, 7.5, 9.0], 3)
    for attempt, delay in enumerate(sorted(delays)):
        run = start_snakemake(tmp_path, FAULT_CONFIG, "--rerun-incomplete", name=f"attempt{attempt}")
        time.sleep(delay)
        kill_group(run)
        for version in [*(tmp_path / "results").glob("faults-*"), tmp_path / "results" / ".stages"]:  # and shared
            assert_every_file_is_whole(version)
        # the documented recovery: a SIGKILL leaves Snakemake's lock behind
        assert snakemake(tmp_path, FAULT_CONFIG, "--unlock").returncode == 0
    final = snakemake(tmp_path, FAULT_CONFIG, "--rerun-incomplete")
    assert final.returncode == 0, final.stderr[-4000:]
    (version,) = (tmp_path / "results").glob("faults-*")
    assert version.name == reference.name
    assert_same_scores(version, reference)
    assert_every_file_is_whole(version)
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.name.endswith((".tmp", ".checkpoint"))]
    assert leftovers == [], "temporary files and training checkpoints of killed jobs must be gone"


def test_a_stale_lock_after_sigkill_is_reported_with_its_remedy(tmp_path):
    run = start_snakemake(tmp_path, FAULT_CONFIG)
    deadline = time.monotonic() + 60
    while not list((tmp_path / ".snakemake" / "locks").glob("*.lock")):
        assert time.monotonic() < deadline and run.poll() is None, "snakemake never took its lock"
        time.sleep(0.05)
    kill_group(run)
    rerun = snakemake(tmp_path, FAULT_CONFIG)
    assert rerun.returncode != 0
    assert "Directory cannot be locked" in rerun.stderr and "--unlock" in rerun.stderr


def _checkpoint_epoch(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def test_a_training_job_killed_in_a_workflow_run_resumes_from_its_checkpoint(reference, tmp_path):
    model = tmp_path / "results" / reference.name / "models" / "demo_hdf5" / "ae.npz"
    checkpoint = model.with_name(f"{model.name}.checkpoint")
    run = start_snakemake(tmp_path, FAULT_CONFIG)
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(checkpoint) < 3:
        assert run.poll() is None, (tmp_path / "run.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint of epoch 3 within 120 s"
        time.sleep(0.005)
    kill_group(run)  # the train job (spectral-anomaly train) dies with snakemake's process group
    killed_at = _checkpoint_epoch(checkpoint)
    assert 3 <= killed_at < FAULT_CONFIG["training"]["epochs"]
    assert not checkpoint.with_name(model.name).exists()

    assert snakemake(tmp_path, FAULT_CONFIG, "--unlock").returncode == 0
    rerun = snakemake(tmp_path, FAULT_CONFIG, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    log = (tmp_path / "results" / reference.name / "logs" / "train" / "demo_hdf5" / "ae.log").read_text()
    assert f"resuming from epoch {killed_at} of" in log
    assert "epoch    1/" not in log, "training started again from scratch"
    assert not checkpoint.exists()
    assert_same_scores(tmp_path / "results" / reference.name, reference)


def test_two_configs_run_at_once_into_one_results_folder_and_a_second_run_of_one_config_is_refused(reference, tmp_path):
    # the first run trains long enough that both checks below happen while it is still training,
    # however fast or slow the machine; the second is the reference config
    slow = {"epochs": 2000, "patience": 2000, "batch_size": 16, "device": "cpu"}
    first, second = {**FAULT_CONFIG, "run_name": "first", "training": slow}, {**FAULT_CONFIG, "run_name": "second"}
    runs = [start_snakemake(tmp_path, first, name="first"), start_snakemake(tmp_path, second, name="second")]
    (checkpoint,) = _wait_for(lambda: list((tmp_path / "results").glob("first-*/models/demo_hdf5/ae.npz.checkpoint")),
                              runs[0], tmp_path / "first.out", "the first run's training")
    # the same config again while the first run trains: refused, because the running job's outputs are
    # still marked incomplete, or, with --rerun-incomplete, because the first run holds their lock
    checks = [start_snakemake(tmp_path, first, name="duplicate"),
              start_snakemake(tmp_path, first, "--rerun-incomplete", name="forced")]
    duplicate, forced = ((check.wait(timeout=600), (tmp_path / f"{n}.out").read_text())
                         for check, n in zip(checks, ("duplicate", "forced")))
    assert runs[0].poll() is None, "the first run ended before the checks did: they prove nothing"
    kill_group(runs[0])  # its result is not needed: the refusals were the point
    assert runs[1].wait(timeout=600) == 0, (tmp_path / "second.out").read_text()[-3000:]
    assert duplicate[0] != 0 and forced[0] != 0
    assert "LockException" in duplicate[1] or "IncompleteFilesException" in duplicate[1], duplicate[1][-2000:]
    assert "LockException" in forced[1] and "Directory cannot be locked" in forced[1], forced[1][-2000:]
    (version,) = (tmp_path / "results").glob("second-*")
    assert_same_scores(version, reference)
    assert_every_file_is_whole(version)
    assert checkpoint.exists(), "the killed first run keeps its training checkpoint to resume from"
    locks = [lock.read_text() for lock in (tmp_path / ".snakemake" / "locks").glob("*.lock")]
    assert not [lock for lock in locks if version.name in lock], "the second run releases its locks"


def _wait_for(found, run: subprocess.Popen, output: Path, what: str, seconds: float = 120):
    """Poll ``found()`` until it returns something, while ``run`` (writing ``output``) is alive."""
    deadline = time.monotonic() + seconds
    while not (result := found()):
        assert run.poll() is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} did not start within {seconds:.0f} s"
        time.sleep(0.05)
    return result


def _write_raw(path: Path, seed: int, n_spectra: int = 300) -> None:
    from spectral_anomaly.demo import generate_demo_spectra, write_demo_hdf5

    write_demo_hdf5(generate_demo_spectra(seed=seed, n_spectra=n_spectra, n_bins=32, anomaly_fraction=0.1), path)


def test_a_changed_input_file_makes_a_new_result_version_and_the_old_one_stays_readable(tmp_path):
    raw = tmp_path / "raw.h5"
    _write_raw(raw, seed=1)
    config = {**FAULT_CONFIG, "run_name": "changing",
              "datasets": {"d": {**SMALL_CONFIG["datasets"]["demo_hdf5"], "path": str(raw)}},
              "training": {"epochs": 3, "device": "cpu"}}
    assert snakemake(tmp_path, config).returncode == 0
    (old,) = (tmp_path / "results").glob("changing-*")
    old_files = {p: p.read_bytes() for p in old.rglob("*") if p.is_file() and "logs" not in p.parts}

    # same size, new content and modification time
    size = raw.stat().st_size
    _write_raw(raw, seed=2)
    assert raw.stat().st_size == size
    second = snakemake(tmp_path, config)
    assert second.returncode == 0, second.stderr[-3000:]
    versions = sorted((tmp_path / "results").glob("changing-*"))
    assert len(versions) == 2 and old in versions
    (new,) = [v for v in versions if v != old]
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file() and "logs" not in p.parts} == old_files
    assert read_scores(old / "scores" / "d" / "ae.parquet")["anomaly_score"].tolist() != \
        read_scores(new / "scores" / "d" / "ae.parquet")["anomaly_score"].tolist()
    runs = subprocess.run([str(Path(sys.executable).parent / "spectral-anomaly"), "runs", "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, check=False)
    assert runs.returncode == 0 and old.name in runs.stdout and new.name in runs.stdout
    # the old store linked the old file's spectra: it refuses to read them now, naming the file and the remedy
    with pytest.raises(InputFileError, match=r"raw\.h5.*has changed since ingestion.*rerun the workflow"):
        read_canonical(old / "data" / "d.h5")

    # a different size with the modification time of before: still noticed
    stat = raw.stat()
    _write_raw(raw, seed=3, n_spectra=320)
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert raw.stat().st_size != stat.st_size
    dry = snakemake(tmp_path, config, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "changing-" in dry.stdout and old.name not in dry.stdout and new.name not in dry.stdout
    cache = json.loads((tmp_path / "results" / ".checksum-cache.json").read_text())
    assert len({checksum for key, checksum in cache.items() if key.startswith(str(raw.resolve()))}) == 3


def test_a_failed_job_prints_its_error_line_and_log_path_on_the_terminal(tmp_path):
    raw = tmp_path / "raw.h5"
    _write_raw(raw, seed=1)
    config = {**FAULT_CONFIG, "run_name": "wrong-key",
              "datasets": {"d": {**SMALL_CONFIG["datasets"]["demo_hdf5"], "path": str(raw), "dataset": "spectrs"}}}
    failed = snakemake(tmp_path, config)
    assert failed.returncode != 0
    (version,) = (tmp_path / "results").glob("wrong-key-*")
    log = version.relative_to(tmp_path) / "logs" / "ingest" / "d.log"
    line = (tmp_path / log).read_text().splitlines()[-1]
    assert line.startswith("spectral-anomaly ingest: error: ") and "has no dataset 'spectrs'" in line
    assert "'spectra'" in line
    terminal = (failed.stdout + failed.stderr).splitlines()
    assert line in terminal and terminal[terminal.index(line) + 1] == f"log: {log}"
