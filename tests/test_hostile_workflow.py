"""A whole run on crafted inputs: config strings and file contents are data, never code or markup.

One run puts a payload that is Jinja, HTML and reStructuredText at once into every string key of
the schema a dataset can take (file names, object names, patterns, expressions, units, the results
folder) and into metadata names and values, over every reader; input paths hold braces, percent
signs, spaces and non-ASCII letters. The run must finish, nothing in the payload may run (its marker
file never appears), and the payload must show as text in the HTML reports and `snakemake --report`.
"""

from __future__ import annotations

import html
import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import remove_test_folder
from tables import NaturalNameWarning
from test_workflow import snakemake

from spectral_anomaly.score import read_scores

pytestmark = pytest.mark.workflow

MARKER = "payload-ran"
JINJA = f"{{{{ cycler.__init__.__globals__.os.system('touch {MARKER}') }}}}{{% endraw %}}{{# x #}}"
HTML = "<img src=x onerror=alert(1)>"
RST = "*rst* `link <javascript:alert(1)>`_ |sub| $x^$"
PAYLOAD = f"{JINJA}{HTML}{RST}"
#: a folder and file stem with braces, a percent sign, spaces and non-ASCII letters besides the payload
ODD = f"run{{1}} 100% spektrum-ä-π {PAYLOAD}"
N_SPECTRA, N_BINS = 160, 24


def _spectra(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = 200.0 * np.exp(-np.arange(N_BINS) / 8.0) + 10.0
    X = rng.poisson(shape * rng.uniform(0.7, 1.3, size=(N_SPECTRA, 1))).astype(np.float64)
    labels = (np.arange(N_SPECTRA) % 10 == 0).astype(np.int64)
    X[labels == 1, N_BINS // 2] += 300.0  # an extra peak: something to find
    return X, labels


def write_inputs(folder: Path) -> dict:
    """One input per reader, each named and filled with the payload; returns the config's datasets."""
    folder.mkdir(parents=True)
    expression = f'y == 1 and note == "{PAYLOAD}" or y == 1'  # a payload inside a quoted string is text
    selection = f'note != "x{PAYLOAD}"'
    common = {"anomaly_label": expression, "train_selection": selection, "bin_unit": PAYLOAD}
    datasets = {}

    X, y = _spectra(1)
    frame = pd.DataFrame({"y": y, "note": PAYLOAD, PAYLOAD: np.arange(N_SPECTRA),
                          **{f"bin_{i}": X[:, i] for i in range(N_BINS)}, "bin_4444": 1.0})
    frame.to_csv(folder / f"{ODD}.csv", index=False)
    datasets["csv"] = {"format": "csv", "path": str(folder / f"{ODD}.csv"),
                       "bin_columns": f"bin_[0-9]{{1,3}}|{PAYLOAD}", **common}

    X, y = _spectra(2)
    with h5py.File(folder / f"{ODD}.h5", "w") as handle:
        handle[PAYLOAD] = X.astype(np.float32)
        handle[f"edges {PAYLOAD}"] = np.linspace(0.0, 1.0, N_BINS + 1)
        handle[f"meta {PAYLOAD}/y"] = y
        handle[f"meta {PAYLOAD}/note"] = np.array([PAYLOAD.encode()] * N_SPECTRA)
        handle[f"meta {PAYLOAD}/{PAYLOAD}"] = np.arange(N_SPECTRA)
    datasets["array"] = {"format": "hdf5_array", "path": str(folder / f"{ODD}.h5"), "dataset": PAYLOAD,
                         "bin_edges_dataset": f"edges {PAYLOAD}", "metadata_group": f"meta {PAYLOAD}", **common}

    X, y = _spectra(3)
    path = folder / f"{ODD} pandas.h5"
    with warnings.catch_warnings():  # PyTables notes that such keys are no Python identifiers
        warnings.simplefilter("ignore", NaturalNameWarning)
        pd.DataFrame(X).to_hdf(path, key=f"k {PAYLOAD}", format="fixed")
        pd.DataFrame({"y": y, PAYLOAD: np.arange(N_SPECTRA)}).to_hdf(path, key=f"m {PAYLOAD}", format="fixed")
    datasets["frame"] = {"format": "pandas_hdf5", "path": str(path), "key": f"k {PAYLOAD}",
                         "metadata_key": f"m {PAYLOAD}", **{**common, "anomaly_label": "y == 1",
                                                           "train_selection": f'source_object != "{PAYLOAD}x"'}}

    import uproot

    X, y = _spectra(4)
    path = folder / f"{ODD}.root"
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    with uproot.recreate(path) as handle:
        for i, row in enumerate(X):
            handle[f"h{i:03d}_{PAYLOAD}"] = (row, edges)
        branches = {f"y {PAYLOAD}": y, "y": y, f"counts {PAYLOAD}": X, **{f"f{i} {PAYLOAD}": X[:, i] for i in range(N_BINS)}}
        tree = handle.mktree(f"tree {PAYLOAD}", {name: (values.dtype, values.shape[1:]) for name, values in branches.items()})
        tree.extend(branches)
    no_label = {**common, "anomaly_label": "y == 1", "train_selection": "y == 0 or y == 1"}
    datasets["th1"] = {"format": "root_th1", "path": str(path), "pattern": f"h*_{PAYLOAD}",
                       "metadata_tree": f"tree {PAYLOAD}", **no_label}
    datasets["tree_array"] = {"format": "root_tree_array", "path": str(path), "tree": f"tree {PAYLOAD}",
                              "branch": f"counts {PAYLOAD}", **no_label}
    datasets["tree_flat"] = {"format": "root_tree_flat", "path": str(path), "tree": f"tree {PAYLOAD}",
                             "branches": [f"f* {PAYLOAD}"], "metadata_branches": ["y", f"y {PAYLOAD}"], **no_label}
    X, y = _spectra(5)  # a relative path starting with '-', which a command line would take for an option
    pd.DataFrame({"y": y, **{f"bin_{i}": X[:, i] for i in range(N_BINS)}}).to_csv(folder.parent / "-dash.csv", index=False)
    datasets["dash"] = {"format": "csv", "path": "-dash.csv", "bin_columns": "bin_[0-9]+", "anomaly_label": "y == 1"}
    return datasets


@pytest.fixture(scope="module")
def payload_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    assert re.compile(f"bin_[0-9]{{1,3}}|{PAYLOAD}")  # the bin_columns payload is a valid regular expression
    config = {
        "run_name": "hostile", "results_dir": "results *rst* `link`_ |sub| $x^$ 100% ä",
        "datasets": write_inputs(workdir / f"inputs {ODD}"),
        "models": {"ae": {"kind": "autoencoder", "hidden": [16], "latent_dim": 2},
                   "pca": {"kind": "pca", "n_components": 2}},
        "training": {"epochs": 3, "device": "cpu"}, "scoring": {"mc_samples": 2, "false_positive_rates": [0.05]},
        "split": {"train_on": "normal"}, "report": {"top_spectra": 3},
    }
    run = snakemake(workdir, config)
    assert run.returncode == 0, run.stderr[-6000:]
    report = snakemake(workdir, config, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-4000:]
    (version,) = [p for p in (workdir / config["results_dir"]).iterdir() if p.is_dir() and not p.name.startswith(".")]
    yield workdir, version, config
    remove_test_folder(workdir)


def test_nothing_in_the_payload_ran(payload_run):
    workdir, _, _ = payload_run
    found = [p for p in Path(workdir).rglob(MARKER)] + ([Path(MARKER)] if Path(MARKER).exists() else [])
    assert not found, f"payload code ran: {found}"


def test_every_reader_reads_the_odd_paths_and_names(payload_run):
    _, version, config = payload_run
    for name, dataset in config["datasets"].items():
        table = read_scores(version / "scores" / name / "ae.parquet")
        assert len(table) == N_SPECTRA and np.isfinite(table["anomaly_score"]).all(), name
        assert table["source_file"].iloc[0] in (dataset["path"], f"./{dataset['path']}"), name
        assert table["label"].sum() == N_SPECTRA // 10, name
    csv = read_scores(version / "scores" / "csv" / "ae.parquet")
    assert "bin_4444" in csv.columns and set(csv["note"]) == {PAYLOAD} and PAYLOAD in csv.columns


def test_the_html_reports_show_the_payload_as_text(payload_run):
    _, version, config = payload_run
    for name in [n for n, dataset in config["datasets"].items() if PAYLOAD in str(dataset)]:
        page = (version / "reports" / f"{name}.html").read_text()
        assert HTML not in page, f"{name}: raw HTML from the payload reached the page"
        assert html.escape(HTML) in page and html.escape(JINJA) in page, name


def test_snakemake_report_shows_the_payload_as_text(payload_run):
    workdir, _, _ = payload_run
    page = (workdir / "report.html").read_text()
    assert HTML not in page, "raw HTML from the payload reached the Snakemake report"
    assert html.escape(HTML) in page
    # the front page's config block holds the payload as YAML text: the Jinja part was not rendered
    assert "{{ cycler.__init__.__globals__.os.system(" in page and "{% endraw %}{# x #}" in page
    assert "|sub|" in page and "*rst*" in page, "reStructuredText markup is shown, not applied"


@pytest.mark.parametrize(("results_dir", "problem"), [
    ("", "is empty"), ("   ", "is empty"), ("/", "is the system folder '/'"), ("/etc", "is the system folder '/etc'"),
    ("out/{version}", "holds braces"), ("out\nx", "holds control characters"),
    ("out/x</script><script>alert(1)</script>", "holds < or >"),
    ("-res", "starts with '-'"), ("/proc/self/x", "lies inside the system folder '/proc'"),
    ("run.yaml/x", "exists and is not a folder"), ("/dev/null", "lies inside the system folder '/dev'"),
])
def test_an_unusable_results_dir_stops_the_run_before_any_job(results_dir, problem, tmp_path):
    config = {"run_name": "r", "results_dir": results_dir,
              "datasets": {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra"}},
              "models": {"ae": {"kind": "autoencoder"}}}
    run = snakemake(tmp_path, config, "-n")
    output = run.stdout + run.stderr
    assert run.returncode != 0 and f"results_dir: {results_dir!r}" in output and problem in output
    assert os.listdir(tmp_path) == ["run.yaml"] or set(os.listdir(tmp_path)) <= {"run.yaml", ".snakemake"}
