"""The pipeline on a real one-node SLURM cluster, through workflow/profiles/slurm.

scripts/slurm/start-cluster.sh installs (Debian: munge, slurmctld, slurmd, slurm-client),
configures and starts SLURM 22.05 on 127.0.0.1; the tests submit every job through
snakemake-executor-plugin-slurm and stop the cluster at the end. Where the cluster cannot run
(not root, no apt-get, no network to the package mirror, ...) they are skipped with the reason;
set SPECTRAL_ANOMALY_REQUIRE_SLURM=1 to make that a failure instead (CI does).

Installing packages and starting daemons changes the machine, so these tests are marked
``system`` and run only when asked: ``pytest --run-system`` or SPECTRAL_ANOMALY_SYSTEM_TESTS=1.
The cluster's state folder (config, munge key, spool, logs, pids) is made under pytest's
temporary folder unless SPECTRAL_ANOMALY_SLURM_DIR names one.

The cluster has no GPUs (no GRES), so the configs set training.device: cpu, which drops the
training jobs' GPU request. Job states come from squeue (no slurmdbd); the same squeue output,
kept for MinJobAge = 600 s, shows each job's state, start and end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "slurm" / "start-cluster.sh"
STOP = ROOT / "scripts" / "slurm" / "stop-cluster.sh"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
pytestmark = [pytest.mark.workflow, pytest.mark.system]

# Test-only settings on top of the profile: poll the cluster every few seconds instead of 20
# (the cluster's MinJobAge of 600 s stays far above 3 x this).
FAST_POLLING = ("--slurm-init-seconds-before-status-checks", "2")
# The demo data is tiny: 2 GB instead of the rules' 8 GB lets four jobs share the test node.
SMALL_MEMORY = ("train:mem_mb=2000",)
# and one CPU instead of the rule's 4 lets them share a test node of a few CPUs
ONE_THREAD = ("--set-threads", "train=1")

DEMO_HDF5 = {
    "format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
    "bin_edges_dataset": "bin_edges", "metadata_group": "metadata", "anomaly_label": "anomaly_kind != 0",
}
DEMO_ROOT = {
    "format": "root_th1", "path": "demo://spectra.root", "pattern": "spectra/spectrum_*",
    "metadata_tree": "metadata", "anomaly_label": "anomaly_kind != 0",
}
# Like tests/test_workflow.py's SMALL_CONFIG, as a sweep: 2 datasets x 2 model variants x 2 seeds.
SWEEP_CONFIG = {
    "run_name": "slurm_sweep",
    "demo": {"seed": 7, "n_spectra": 600, "n_bins": 64, "anomaly_fraction": 0.1},
    "datasets": {"demo_hdf5": DEMO_HDF5, "demo_root": DEMO_ROOT},
    "split": {"train_on": "normal"},
    "models": {
        "ae": {"kind": "autoencoder", "hidden": [32], "latent_dim": 3},
        "vae": {"kind": "vae", "hidden": [32], "latent_dim": 3, "sigma_x": 1.0},
        "pca": {"kind": "pca", "n_components": 3},
    },
    "training": {"epochs": 8, "patience": 4, "device": "cpu", "seeds": [0, 1]},
    "scoring": {"mc_samples": 4},
    "report": {"top_spectra": 5},
}
FAILURE_CONFIG = {
    **SWEEP_CONFIG,
    "run_name": "slurm_failures",
    "datasets": {"demo_hdf5": DEMO_HDF5},
    "training": {"epochs": 8, "patience": 4, "device": "cpu", "seeds": [0]},
}

# Injected faults, outside the pipeline's code: bash sources $BASH_ENV before every `bash -c`
# that Snakemake runs a rule's shell command with, inside the SLURM job. The training of the
# VAE writes half a model file and exits 1 (a crash); the fit of the PCA writes half a score table
# and hangs until SLURM kills it at its (tiny) runtime.
FAULTS = r"""
case "$BASH_EXECUTION_STRING" in
*"spectral-anomaly "*" train "*"--model vae "*)
    [[ $BASH_EXECUTION_STRING =~ --model-file\ ([^ ]+) ]] && echo partial > "${BASH_REMATCH[1]}"
    echo "injected failure: training crashed" >&2
    exit 1 ;;
*"spectral-anomaly "*" train "*"--model pca "*)
    [[ $BASH_EXECUTION_STRING =~ --scores\ ([^ ]+) ]] && echo partial > "${BASH_REMATCH[1]}"
    echo "injected hang: the PCA job waits for SLURM's time limit" >&2
    # SIGTERM at the limit ends the sleep, not always this shell: never go on to the real command
    sleep 600; exit 1 ;;
esac
"""

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def skip_or_fail(reason: str):
    if os.environ.get("SPECTRAL_ANOMALY_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM cluster required (SPECTRAL_ANOMALY_REQUIRE_SLURM=1) but: {reason}")
    print(f"\nSKIP test_slurm: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Environment of a running one-node cluster (SLURM_CONF); stopped after the module."""
    if sys.platform != "linux":
        skip_or_fail(f"a SLURM test cluster needs Linux, not {sys.platform}")
    if os.geteuid() != 0:
        skip_or_fail("starting a SLURM test cluster needs root (the daemons run as root)")
    state_dir = os.environ.get("SPECTRAL_ANOMALY_SLURM_DIR") or str(tmp_path_factory.mktemp("slurm_state"))
    env = {**os.environ, "SPECTRAL_ANOMALY_SLURM_DIR": state_dir}
    try:
        started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        skip_or_fail(f"{START.name} did not finish in 900 s")
    if started.returncode != 0:
        skip_or_fail(f"{START.name} failed (exit {started.returncode}): {started.stderr.strip()[-1500:]}")
    print(f"\n{started.stderr.strip()}", file=sys.stderr)
    bindir = str(Path(sys.executable).parent)
    cluster_env = {
        **{k: v for k, v in os.environ.items() if k != "BASH_ENV"},
        "SLURM_CONF": f"{state_dir}/slurm.conf",
        "PATH": f"{bindir}:{os.environ['PATH']}",
    }
    yield cluster_env
    if os.environ.get("SPECTRAL_ANOMALY_KEEP_SLURM") != "1":
        subprocess.run(["bash", str(STOP)], env=env, timeout=120, check=False)


def start_snakemake(workdir: Path, config: dict, *extra: str, env: dict) -> subprocess.Popen:
    """Start snakemake in workdir (its own .snakemake/) on config; stdout and stderr together."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "run.yaml").write_text(yaml.safe_dump(config))
    executable = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    process = subprocess.Popen(
        [executable, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", "run.yaml", *extra],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    process.started = time.monotonic()
    process.extra = extra
    return process


def finish(process: subprocess.Popen, timeout: int = 600) -> subprocess.CompletedProcess:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"snakemake ran longer than {timeout} s: {output[-3000:]}")
    print(f"\nsnakemake {' '.join(process.extra)}: exit {process.returncode} in {time.monotonic() - process.started:.0f} s",
          file=sys.stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def on_slurm(workdir: Path, config: dict, *set_resources: str, env: dict) -> subprocess.CompletedProcess:
    """snakemake --workflow-profile workflow/profiles/slurm, with the test's overrides."""
    extra = ("--workflow-profile", str(PROFILE), *FAST_POLLING, *ONE_THREAD, "--set-resources", *SMALL_MEMORY,
             *set_resources)
    return finish(start_snakemake(workdir, config, *extra, env=env))


def rule_of(slurm_log: str) -> str:
    """rule name from .snakemake/slurm_logs/rule_<name>/[<wildcards>/]<jobid>.log"""
    return next(part[len("rule_"):] for part in Path(slurm_log).parts if part.startswith("rule_"))


def slurm_jobs(output: str) -> dict[str, tuple[str, Path]]:
    """SLURM job id -> (rule, SLURM log) of every job a run submitted."""
    return {slurm_id: (rule_of(log), Path(log)) for _, slurm_id, log in SUBMITTED.findall(output)}


def squeue(env: dict, job_ids) -> dict[str, dict]:
    """State, start, end and comment of finished and running jobs, as slurmctld remembers them."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%S|%e|%k", "--jobs", ",".join(job_ids)],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, state, start, end, comment = line.split("|", 4)
        jobs[job_id] = {"state": state, "start": datetime.fromisoformat(start), "end": datetime.fromisoformat(end),
                        "comment": comment}
    return jobs


def score_tables(version: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(version)): pd.read_parquet(p) for p in sorted(version.glob("scores/*/*.parquet"))}


def one_version(workdir: Path, run_name: str) -> Path:
    (version,) = (workdir / "results").glob(f"{run_name}-*")
    return version


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory):
    """The same sweep run locally (the default profile), in the background while the cluster works."""
    workdir = tmp_path_factory.mktemp("local_sweep")
    return workdir, start_snakemake(workdir, SWEEP_CONFIG, "--cores", "2", env=cluster)


@pytest.fixture(scope="module")
def sweep_on_slurm(cluster, local_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_sweep")
    result = on_slurm(workdir, SWEEP_CONFIG, env=cluster)
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir, result.stdout


def test_every_job_of_the_sweep_ran_as_a_slurm_job(cluster, sweep_on_slurm):
    workdir, output = sweep_on_slurm
    jobs = slurm_jobs(output)
    n_models = 2 * len(SWEEP_CONFIG["training"]["seeds"]) + 1  # AE and VAE per seed, and the PCA
    n_datasets = len(SWEEP_CONFIG["datasets"])
    expected = {"run_config": 1, "demo_data": 1, "ingest": n_datasets, "split": n_datasets, "normalize": n_datasets,
                "train": n_datasets * n_models,  # a train job also scores its detector
                "report": n_datasets, "manifest": 1}
    assert pd.Series([rule for rule, _ in jobs.values()]).value_counts().to_dict() == expected
    # every job ran on the cluster and finished there: slurmctld knows it as COMPLETED, and its
    # SLURM log (the job step's Snakemake output) is in .snakemake/slurm_logs/rule_<rule>/
    states = squeue(cluster, jobs)
    assert set(states) == set(jobs)
    assert {s["state"] for s in states.values()} == {"COMPLETED"}
    for slurm_id, (rule, log) in jobs.items():
        assert states[slurm_id]["comment"].startswith(f"rule_{rule}")
        log = log if log.is_absolute() else workdir / log
        assert log.is_file() and log.name == f"{slurm_id}.log"
    version = one_version(workdir, SWEEP_CONFIG["run_name"])
    assert (version / "manifest.json").is_file()
    assert sorted(p.name for p in (version / "models" / "demo_root").glob("*.npz")) == [
        "ae-seed0.npz", "ae-seed1.npz", "pca.npz", "vae-seed0.npz", "vae-seed1.npz"]


def test_the_sweep_runs_concurrently_and_the_report_waits_for_all(cluster, sweep_on_slurm):
    _, output = sweep_on_slurm
    jobs = slurm_jobs(output)
    states = squeue(cluster, jobs)
    training = [states[i] for i, (rule, _) in jobs.items() if rule == "train"]
    overlapping = [(a, b) for k, a in enumerate(training) for b in training[k + 1:]
                   if max(a["start"], b["start"]) < min(a["end"], b["end"])]
    print(f"\n{len(overlapping)} pairs of the {len(training)} training jobs overlapped in time:", file=sys.stderr)
    for a, b in overlapping[:3]:
        print(f"  {a['comment']} {a['start']:%T}-{a['end']:%T} | {b['comment']} {b['start']:%T}-{b['end']:%T}",
              file=sys.stderr)
    assert overlapping, "no two training jobs ran at the same time"
    for dataset in SWEEP_CONFIG["datasets"]:
        (report,) = [s for s in states.values() if s["comment"] == f"rule_report_wildcards_{dataset}"]
        inputs = [states[i] for i, (rule, _) in jobs.items()
                  if rule == "train" and f"_wildcards_{dataset}" in states[i]["comment"]]
        assert len(inputs) == 4 + 1
        assert report["start"] >= max(job["end"] for job in inputs)
    (manifest,) = [states[i] for i, (rule, _) in jobs.items() if rule == "manifest"]
    assert manifest["start"] >= max(states[i]["end"] for i, (rule, _) in jobs.items() if rule == "report")


def test_results_on_slurm_equal_a_local_run(sweep_on_slurm, local_run):
    workdir, _ = sweep_on_slurm
    local_workdir, process = local_run
    local = finish(process)
    assert local.returncode == 0, local.stdout[-5000:]
    assert "SLURM jobid" not in local.stdout
    on_cluster = one_version(workdir, SWEEP_CONFIG["run_name"])
    here = one_version(local_workdir, SWEEP_CONFIG["run_name"])
    assert on_cluster.name == here.name  # same config, inputs and code: the same result version
    expected, got = score_tables(here), score_tables(on_cluster)
    assert len(expected) == 2 * (4 + 1)
    assert got.keys() == expected.keys()
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)


def test_a_failed_and_a_timed_out_job_are_reported_and_a_rerun_resumes(cluster, tmp_path):
    faults = tmp_path / "faults.sh"
    faults.write_text(FAULTS)
    workdir = tmp_path / "run"
    # training jobs get a runtime of 1 minute (SLURM's smallest): the autoencoder's needs seconds, the
    # PCA's hang exceeds it
    failed = on_slurm(workdir, FAILURE_CONFIG, "train:runtime=1", env={**cluster, "BASH_ENV": str(faults)})
    output = failed.stdout
    assert failed.returncode != 0
    version = one_version(workdir, FAILURE_CONFIG["run_name"])
    relative = version.relative_to(workdir)
    jobs = slurm_jobs(output)
    states = squeue(cluster, jobs)
    by_rule = {}
    for slurm_id, (rule, log) in jobs.items():
        by_rule.setdefault(rule, []).append((slurm_id, log))
    (train_vae,) = [(i, log) for i, log in by_rule["train"] if log.parent.name == "demo_hdf5_vae"]
    ((pca_job, pca_log),) = [(i, log) for i, log in by_rule["train"] if log.parent.name == "demo_hdf5_pca"]
    assert states[train_vae[0]]["state"] == "FAILED"
    assert states[pca_job]["state"] == "TIMEOUT"

    # reported with the rule's log and the SLURM job's log
    assert f"SLURM-job '{train_vae[0]}' failed, SLURM status is: 'FAILED'" in output
    assert f"SLURM-job '{pca_job}' failed, SLURM status is: 'TIMEOUT'" in output
    assert f"{relative}/logs/train/demo_hdf5/vae.log" in output
    assert f"{relative}/logs/train/demo_hdf5/pca.log" in output
    assert str(train_vae[1]) in output and str(pca_log) in output
    assert "injected failure: training crashed" in (workdir / train_vae[1]).read_text()
    assert "DUE TO TIME LIMIT" in (workdir / pca_log).read_text()

    # no partial outputs: the half-written model and score table are gone, nothing depends on them
    assert not (version / "models" / "demo_hdf5" / "vae.npz").exists()
    assert not list((version / "models" / "demo_hdf5").glob("vae.*"))
    assert not list((version / "scores" / "demo_hdf5").glob("pca.*"))
    assert not (version / "reports").exists() and not (version / "manifest.json").exists()
    # what did not depend on them finished (keep-going)
    assert (version / "scores" / "demo_hdf5" / "ae.parquet").is_file()
    done_before = {p: p.stat().st_mtime_ns for p in version.rglob("*") if p.is_file() and "logs" not in p.parts}

    # fixed (no faults, the rule's own runtime): only the missing jobs run
    rerun = on_slurm(workdir, FAILURE_CONFIG, env=cluster)
    assert rerun.returncode == 0, rerun.stdout[-5000:]
    rerun_rules = sorted(rule for rule, _ in slurm_jobs(rerun.stdout).values())
    assert rerun_rules == ["manifest", "report", "train", "train"]
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in done_before.items())
    assert (version / "manifest.json").is_file() and (version / "models" / "demo_hdf5" / "vae.npz").stat().st_size > 1000
