"""Every intermediate of a version is checked: deleted files are rebuilt, edited ones refused, the
manifest is right after any rerun."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import remove_test_folder
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
#: files of a version that the manifest does not list: itself and its front page (and the job logs, benchmarks
#: and reports, whose builds are recorded beside them)
UNLISTED = {"manifest.json", "manifest.rst"}
UNLISTED_FOLDERS = ("logs", "benchmarks", "reports")


def assert_manifest_is_right(version: Path) -> None:
    """Every file of the version is listed with the sha256 of its current content, and nothing else is."""
    manifest = json.loads((version / "manifest.json").read_text())
    listed = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    on_disk = {str(p.relative_to(version)) for p in version.rglob("*")
               if p.is_file() and not p.name.startswith(".") and p.relative_to(version).parts[0] not in UNLISTED_FOLDERS}
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
    yield workdir, version
    remove_test_folder(workdir)


def test_a_deleted_model_file_is_rebuilt_and_the_manifest_follows(run):
    workdir, version = run
    (version / "models" / "d" / "ae.npz").unlink()
    again = snakemake(workdir, CONFIG)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (version / "models" / "d" / "ae.npz").is_file()
    assert_manifest_is_right(version)
    nothing = snakemake(workdir, CONFIG, "-n")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr


@pytest.mark.parametrize("relative", ["normalization/d.json", "splits/d.json"])
def test_an_edited_intermediate_is_refused_until_it_is_rebuilt(relative, run):
    workdir, version = run
    path = version / relative  # written by this run, shared with later versions: read-only
    assert not path.is_symlink() and not path.stat().st_mode & 0o222
    original = path.read_text()
    path.chmod(0o644)
    path.write_text(original.replace("0", "1", 1))  # still parses: only the checksum tells
    edited = snakemake(workdir, CONFIG)
    assert edited.returncode != 0
    logs = "".join(p.read_text() for p in (version / "logs").rglob("*.log"))
    assert f"{path.relative_to(workdir)}: damaged: its content no longer matches the checksum" in logs
    path.unlink()  # the shared copy is the same file, damaged too: the stage runs again
    rebuilt = snakemake(workdir, CONFIG)
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert path.read_text() == original, "the same config and inputs rebuild the same file"
    assert_manifest_is_right(version)


def test_a_report_rebuild_leaves_the_manifest_byte_for_byte_and_records_itself(run):
    workdir, version = run
    manifest = (version / "manifest.json").read_bytes()
    first_build = json.loads((version / "reports" / "d.build.json").read_text())
    rebuilt = snakemake(workdir, {**CONFIG, "report": {"top_spectra": 2}}, "reports")
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert (version / "manifest.json").read_bytes() == manifest, "the training run's record is never rewritten"
    assert_manifest_is_right(version)
    build = json.loads((version / "reports" / "d.build.json").read_text())
    assert build["report_options"]["top_spectra"] == 2 and first_build["report_options"]["top_spectra"] == 3
    assert build["built"] >= first_build["built"]
    listed = {entry["path"]: entry["sha256"] for entry in build["files"]}
    for path, recorded in listed.items():
        assert hashlib.sha256((version / path).read_bytes()).hexdigest() == recorded, f"{path}: stale checksum"
