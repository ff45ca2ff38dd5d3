"""Every intermediate of a version is checked: deleted files are rebuilt, edited ones refused, the
manifest is right after any rerun."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_workflow import snakemake

pytestmark = pytest.mark.workflow

CONFIG = {
    "run_name": "checked",
    "demo": {"seed": 5, "n_spectra": 400, "n_bins": 32, "anomaly_fraction": 0.1},
    "datasets": {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
                       "metadata_group": "metadata", "anomaly_label": "anomaly_kind != 0"}},
    "models": {"ae": {"kind": "autoencoder", "hidden": [16], "latent_dim": 2}},
    "training": {"epochs": 3, "device": "cpu"},
    "scoring": {"false_positive_rates": [0.05]},
    "report": {"top_spectra": 3},
}
#: files of a version that the manifest does not list: itself and its front page (and the job logs and benchmarks)
UNLISTED = {"manifest.json", "manifest.rst"}


def assert_manifest_is_right(version: Path) -> None:
    """Every file of the version is listed with the sha256 of its current content, and nothing else is."""
    manifest = json.loads((version / "manifest.json").read_text())
    listed = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    on_disk = {str(p.relative_to(version)) for p in version.rglob("*")
               if p.is_file() and not p.name.startswith(".") and p.relative_to(version).parts[0] not in ("logs", "benchmarks")}
    assert set(listed) == on_disk - UNLISTED
    for path, recorded in listed.items():
        assert hashlib.sha256((version / path).read_bytes()).hexdigest() == recorded, f"{path}: stale checksum"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("checked")
    first = snakemake(workdir, CONFIG)
    assert first.returncode == 0, first.stderr[-4000:]
    (version,) = (workdir / "results").glob("checked-*")
    assert_manifest_is_right(version)
    return workdir, version


def test_a_deleted_model_file_is_rebuilt_and_the_manifest_follows(run):
    workdir, version = run
    (version / "models" / "d" / "ae.pt").unlink()
    again = snakemake(workdir, CONFIG)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (version / "models" / "d" / "ae.pt").is_file()
    assert_manifest_is_right(version)
    nothing = snakemake(workdir, CONFIG, "-n")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr


@pytest.mark.parametrize("relative", ["normalization/d.json", "splits/d.json"])
def test_an_edited_intermediate_is_refused_until_it_is_rebuilt(relative, run):
    workdir, version = run
    path = version / relative
    original = path.read_text()
    path.write_text(original.replace("0", "1", 1))  # still parses: only the checksum tells
    edited = snakemake(workdir, CONFIG)
    assert edited.returncode != 0
    logs = "".join(p.read_text() for p in (version / "logs").rglob("*.log"))
    assert f"{path.relative_to(workdir)}: damaged: its content no longer matches the checksum" in logs
    path.unlink()
    rebuilt = snakemake(workdir, CONFIG)
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert path.read_text() == original, "the same config and inputs rebuild the same file"
    assert_manifest_is_right(version)


def test_the_manifest_is_right_after_a_report_rebuild(run):
    workdir, version = run
    rebuilt = snakemake(workdir, {**CONFIG, "report": {"top_spectra": 2}}, "reports")
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert_manifest_is_right(version)
