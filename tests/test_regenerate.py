"""Reports rebuilt from stored results: report options and report code rerun only report jobs.

One small run in a temporary folder; then the report options change (``snakemake reports``), the
reports are forced (``--forcerun report``) and ``snakemake --report`` is built, and every time no
ingest, split, normalize or train job may run and none of their files may change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import remove_test_folder
from test_workflow import SMALL_CONFIG, snakemake

pytestmark = pytest.mark.workflow

CONFIG = {
    **SMALL_CONFIG,
    "run_name": "regen",
    "datasets": {"demo_hdf5": SMALL_CONFIG["datasets"]["demo_hdf5"]},
    "training": {"epochs": 4, "patience": 2, "device": "cpu"},
    "report": {"top_spectra": 5},
}
#: the same run with other report options: the same result version
NEW_REPORT_OPTIONS = {**CONFIG, "report": {"top_spectra": 12}}
#: the stages whose outputs must never change when only reports are rebuilt
STORED = ("config.yaml", "data", "splits", "normalization", "models", "scores", "demo")


def jobs_run(result) -> set[str]:
    """Names of the rules whose jobs Snakemake ran (``rule x:`` or ``localrule x:`` in its log)."""
    return set(re.findall(r"^(?:local)?rule (\w+):", result.stderr, flags=re.MULTILINE))


def stored_mtimes(version: Path) -> dict[Path, int]:
    files = {p: p.stat().st_mtime_ns for name in STORED for p in (version / name).rglob("*") if p.is_file()}
    files.update({version / n: (version / n).stat().st_mtime_ns for n in STORED if (version / n).is_file()})
    return files


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("regenerate")
    result = snakemake(workdir, CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    (version,) = (workdir / "results").glob("regen-*")
    yield workdir, version
    remove_test_folder(workdir)


def test_changing_a_report_option_rebuilds_only_the_reports_in_the_same_version(run):
    workdir, version = run
    before = stored_mtimes(version)
    html_before = (version / "reports" / "demo_hdf5.html").stat().st_mtime_ns
    manifest_before = (version / "manifest.json").read_bytes()
    assert len(before) > 10

    result = snakemake(workdir, NEW_REPORT_OPTIONS, "reports")
    assert result.returncode == 0, result.stderr[-4000:]
    assert jobs_run(result) == {"report", "reports"}  # the manifest, the training run's record, stays
    assert [p.name for p in (workdir / "results").glob("regen-*")] == [version.name]  # no new version
    assert stored_mtimes(version) == before  # nothing ingested, trained or scored again
    assert (version / "reports" / "demo_hdf5.html").stat().st_mtime_ns > html_before
    assert (version / "manifest.json").read_bytes() == manifest_before
    build = json.loads((version / "reports" / "demo_hdf5.build.json").read_text())
    assert build["report_options"]["top_spectra"] == 12  # the build record holds the options used
    assert "top_spectra: 12" in (version / "reports" / "demo_hdf5.html").read_text()
    assert "report" not in yaml.safe_load((version / "config.yaml").read_text())  # not part of the version

    again = snakemake(workdir, NEW_REPORT_OPTIONS, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_forcerun_report_rebuilds_the_html_after_a_change_of_report_code(run):
    workdir, version = run
    before = stored_mtimes(version)
    html = version / "reports" / "demo_hdf5.html"
    html_before = html.stat().st_mtime_ns

    result = snakemake(workdir, NEW_REPORT_OPTIONS, "--forcerun", "report")
    assert result.returncode == 0, result.stderr[-4000:]
    assert jobs_run(result) == {"report", "all"}
    assert not jobs_run(result) & {"ingest", "split", "normalize", "train", "link", "demo_data", "run_config"}
    assert stored_mtimes(version) == before
    assert html.stat().st_mtime_ns > html_before and html.read_text().count("data:image/png;base64,") >= 5


def test_more_top_spectra_than_stored_examples_is_refused_before_any_job(run):
    workdir, _ = run
    too_many = {**CONFIG, "scoring": {**CONFIG["scoring"], "n_examples": 20}, "report": {"top_spectra": 30}}
    result = snakemake(workdir, too_many, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "report.top_spectra is 30" in output and "scoring.n_examples" in output


def test_snakemake_report_front_page_states_config_versions_and_device(run, tmp_path):
    workdir, version = run
    report = tmp_path / "report.html"
    result = snakemake(workdir, NEW_REPORT_OPTIONS, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    manifest = json.loads((version / "manifest.json").read_text())
    for expected in ("Result version:", version.name, "Package versions", "torch", manifest["packages"]["torch"],
                     "spectral_anomaly", manifest["packages"]["spectral_anomaly"], "demo_hdf5/ae",
                     manifest["devices"]["demo_hdf5/ae"], "Configuration", "n_examples",
                     "Receiver operating characteristic of each model"):  # the front page, and a figure's caption
        assert expected in text, expected


def test_runs_lists_the_version_with_its_roc_auc(run):
    import subprocess
    import sys

    workdir, version = run
    program = Path(sys.executable).parent / "spectral-anomaly"
    listing = subprocess.run([str(program), "runs", "--results", str(workdir / "results")],
                             capture_output=True, text=True, check=True).stdout
    assert version.name in listing and "demo_hdf5" in listing and "complete" in listing
