"""Result versions: format versions refused by every reader, the version hash, `runs` and `compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectral_anomaly import cli
from spectral_anomaly.config import check_report_options
from spectral_anomaly.exceptions import (
    ConfigError,
    FormatVersionError,
    ObjectNotFoundError,
)
from spectral_anomaly.report.monitoring import read_monitoring_metrics
from spectral_anomaly.store.atomic import write_json
from spectral_anomaly.store.formats import FORMAT_VERSIONS
from spectral_anomaly.store.provenance import result_version_name, versioned_config
from spectral_anomaly.store.versions import (
    ABSENT,
    compare_versions,
    diff_mappings,
    flatten,
    list_versions,
    load_version,
    read_flag_table,
    read_manifest,
    read_metrics,
    render_comparison,
    report_front_page,
    resolve_version,
)

# --- every reader refuses a newer format version ---------------------------------------------------


def _spectra(n: int = 40, n_bins: int = 8):
    from spectral_anomaly.store.canonical import CanonicalSpectra

    rng = np.random.default_rng(0)
    X = rng.poisson(50.0, size=(n, n_bins)).astype(np.float32)
    metadata = pd.DataFrame({"source_file": ["a.h5"] * n, "entry": np.arange(n)})
    return CanonicalSpectra(dataset="d", X=X, bin_edges=np.linspace(0.0, 1.0, n_bins + 1), metadata=metadata,
                            labels=(np.arange(n) % 10 == 0).astype(np.int8), source_sha256={"a.h5": "0" * 64})


def _score_table(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"spectrum_id": np.arange(n), "source_file": ["a.h5"] * n, "entry": np.arange(n),
                         "pca_nll": rng.normal(size=n), "anomaly_score": rng.normal(size=n),
                         "flag_fpr_1pct": np.zeros(n, dtype=bool)})


def _write_canonical(path: Path) -> None:
    from spectral_anomaly.store.canonical import write_canonical

    write_canonical(_spectra(), path)


def _read_canonical(path: Path) -> None:
    from spectral_anomaly.store.canonical import read_canonical

    read_canonical(path)


def _write_split(path: Path) -> None:
    from spectral_anomaly.split import write_split

    write_split({"train": np.arange(20), "validation": np.arange(20, 30), "test": np.arange(30, 40)}, path,
                dataset="d", seed=0, train_on="all")


def _read_split(path: Path) -> None:
    from spectral_anomaly.split import read_split

    read_split(path)


def _write_normalization(path: Path) -> None:
    from spectral_anomaly.normalize import SpectrumNormalizer, write_normalizer

    write_normalizer(SpectrumNormalizer(steps=["unit_integral", "standardize"]).fit(_spectra().X), path, dataset="d")


def _read_normalization(path: Path) -> None:
    from spectral_anomaly.normalize import read_normalizer

    read_normalizer(path)


def _write_ae_model(path: Path) -> None:
    from spectral_anomaly.models import build_detector
    from spectral_anomaly.normalize import SpectrumNormalizer

    X = _spectra().X
    detector = build_detector({"kind": "autoencoder", "hidden": [4], "latent_dim": 2},
                              normalization=SpectrumNormalizer(steps=["unit_integral", "standardize"]).fit(X),
                              training={"epochs": 1, "device": "cpu"})
    detector.fit(X[:30], X[30:]).save(path)


def _write_report_build(path: Path) -> None:
    from spectral_anomaly.store.manifest import report_build_record

    write_json(path, report_build_record({"report": {"top_spectra": 3}}, dataset="d", files=[], result_dir=path.parent))


def _read_report_build(path: Path) -> None:
    from spectral_anomaly.store.manifest import read_report_build

    read_report_build(path)


def _load_model(path: Path) -> None:
    from spectral_anomaly.models import load_detector

    load_detector(path)


def _write_pca(path: Path) -> None:
    from spectral_anomaly.models import build_detector
    from spectral_anomaly.normalize import SpectrumNormalizer

    X = _spectra().X
    build_detector({"kind": "pca", "n_components": 2}, normalization=SpectrumNormalizer(["standardize"]).fit(X)).fit(
        X, None).save(path)


def _read_pca(path: Path) -> None:
    _load_model(path)


def _write_scores(path: Path) -> None:
    from spectral_anomaly.score import write_scores

    write_scores(_score_table(), path, kind="pca", primary="pca_nll")


def _read_scores(path: Path) -> None:
    from spectral_anomaly.score import read_scores

    read_scores(path)


def _write_examples(path: Path) -> None:
    from spectral_anomaly.score import write_examples

    spectra, rows = _spectra(), np.arange(3)
    write_examples(path, spectra=spectra, table=_score_table(), rows=rows, reconstruction=spectra.X[rows],
                   pulls=np.zeros((3, spectra.n_bins)))


def _read_examples(path: Path) -> None:
    from spectral_anomaly.score import read_examples

    read_examples(path)


def _write_metrics(path: Path) -> None:
    from spectral_anomaly.report.metrics import compute_metrics

    table = _score_table().assign(split="test", label=(np.arange(40) % 10 == 0).astype(np.int8))
    table.attrs.update(model_kind="pca", primary_score="pca_nll")
    write_json(path, compute_metrics({"pca": table}, dataset="d", run_name="r-0123456789"))


def _write_manifest(path: Path) -> None:
    from spectral_anomaly.store.manifest import build_manifest

    write_json(path, build_manifest({"run_name": "r"}, result_dir=path.parent, input_checksums={}))


def _write_history(path: Path) -> None:
    from spectral_anomaly.store.formats import write_versioned_csv

    write_versioned_csv(pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "validation_loss": [2.5, 1.5]}),
                        path, kind="history")


def _read_history(path: Path) -> None:
    from spectral_anomaly.report.metrics import read_histories

    read_histories({"ae": path})


def _write_training_summary(path: Path) -> None:
    write_json(path, {"format_version": FORMAT_VERSIONS["training_summary"], "device": "cpu (2 threads)"})


def _read_training_summary(path: Path) -> None:
    from spectral_anomaly.store.formats import read_versioned_json

    read_versioned_json(path, kind="training_summary", step="train")


#: kind of file -> file name, writer (the package's own) and every reader of that kind
def _write_monitoring_metrics(path):
    write_json(path, {"format_version": FORMAT_VERSIONS["monitoring_metrics"], "dataset": "d", "models": {}})


READERS = {
    "canonical_store": ("d.h5", _write_canonical, [_read_canonical]),
    "split": ("d.json", _write_split, [_read_split]),
    "normalization": ("d.json", _write_normalization, [_read_normalization]),
    "model": ("ae.npz", _write_ae_model, [_load_model]),
    "model (PCA)": ("pca.npz", _write_pca, [_read_pca]),
    "scores": ("ae.parquet", _write_scores, [_read_scores, read_flag_table]),
    "examples": ("ae.examples.npz", _write_examples, [_read_examples]),
    "metrics": ("d.metrics.json", _write_metrics, [read_metrics]),
    "monitoring_metrics": ("d.monitoring.json", _write_monitoring_metrics, [read_monitoring_metrics]),
    "manifest": ("manifest.json", _write_manifest, [read_manifest]),
    "history": ("ae.history.csv", _write_history, [_read_history]),
    "training_summary": ("ae.summary.json", _write_training_summary, [_read_training_summary]),
    "report_build": ("d.build.json", _write_report_build, [_read_report_build]),
}
CASES = [pytest.param(kind, reader, id=f"{kind}-{reader.__name__.lstrip('_')}")
         for kind, (_, _, readers) in READERS.items() for reader in readers]


def _format_kind(kind: str) -> str:
    return kind.split(" ")[0]


@pytest.mark.parametrize(("kind", "reader"), CASES)
def test_every_reader_refuses_a_newer_format_version_naming_the_file(kind, reader, tmp_path, monkeypatch):
    name, writer, _ = READERS[kind]
    path = tmp_path / name
    with monkeypatch.context() as patch:  # the package's own writer, one format version ahead
        patch.setitem(FORMAT_VERSIONS, _format_kind(kind), FORMAT_VERSIONS[_format_kind(kind)] + 1)
        writer(path)
    with pytest.raises(FormatVersionError) as error:
        reader(path)
    message = str(error.value)
    assert str(path) in message
    assert f"version {FORMAT_VERSIONS[_format_kind(kind)] + 1}" in message
    assert "Upgrade spectral_anomaly" in message


@pytest.mark.parametrize(("kind", "reader"), CASES)
def test_every_reader_reads_the_current_format_version(kind, reader, tmp_path):
    name, writer, _ = READERS[kind]
    writer(tmp_path / name)
    reader(tmp_path / name)


def test_every_format_version_kind_has_a_reader_test():
    assert {_format_kind(kind) for kind in READERS} == set(FORMAT_VERSIONS)


# --- the version hash leaves the report options out -------------------------------------------------


def test_report_options_do_not_change_the_result_version():
    config = {"run_name": "r", "scoring": {"n_examples": 50}, "report": {"top_spectra": 10}}
    same = {**config, "report": {"top_spectra": 3}}
    other = {**config, "scoring": {"n_examples": 60}}
    assert result_version_name(config, {}) == result_version_name(same, {})
    assert result_version_name(config, {}) != result_version_name(other, {})
    assert "report" not in versioned_config(config) and versioned_config(config)["scoring"] == {"n_examples": 50}


def test_top_spectra_above_the_stored_examples_is_refused_with_the_valid_range():
    check_report_options({"report": {"top_spectra": 50}, "scoring": {"n_examples": 50}})
    with pytest.raises(ConfigError, match=r"report.top_spectra is 51.*from 1 to 50.*scoring.n_examples"):
        check_report_options({"report": {"top_spectra": 51}, "scoring": {"n_examples": 50}})


# --- runs and compare ----------------------------------------------------------------------------------


def _config(**changes) -> dict:
    config = {"run_name": "demo", "datasets": {"d": {"format": "csv", "path": "d.csv"}},
              "models": {"ae": {"kind": "autoencoder", "hidden": [8]}, "pca": {"kind": "pca"}},
              "training": {"seeds": [0], "device": "cpu"},
              "scoring": {"false_positive_rates": [0.01]}, "report": {"top_spectra": 10}}
    for key, value in changes.items():
        section, name = key.split("__")
        config[section] = {**config[section], name: value}
    return config


def _fake_version(results: Path, name: str, *, started: str, config: dict, roc: float, flagged: list[int],
                  n: int = 20, complete: bool = True, source_dir: Path | None = None) -> Path:
    """A result folder with what `runs` and `compare` read: manifest (or config), metrics, score tables."""
    import yaml

    from spectral_anomaly.score import write_scores

    folder = results / name
    (folder / "reports").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if complete:
        write_json(folder / "manifest.json", {
            "format_version": FORMAT_VERSIONS["manifest"], "result_version": name, "run_name": config["run_name"],
            "started": started, "finished": started.replace(":00+", ":59+"), "git_commit": "abc",
            "packages": {"spectral_anomaly": "0.1.0", "torch": "2.13.0"}, "devices": {"d/ae": "cpu"},
            "input_checksums": {}, "format_versions": dict(FORMAT_VERSIONS), "config": config, "files": []})
    write_json(folder / "reports" / "d.metrics.json", {
        "format_version": FORMAT_VERSIONS["metrics"], "dataset": "d",
        "models": {m: {"roc_auc": roc, "pr_auc": roc - 0.1} for m in ("ae", "pca")}})
    for model in ("ae", "pca"):
        table = pd.DataFrame({
            "spectrum_id": np.arange(n), "source_file": [f"{source_dir or folder}/demo/spectra.h5"] * n, "entry": np.arange(n),
            "anomaly_score": np.arange(n, dtype=float), "pca_nll": np.arange(n, dtype=float),
            "flag_fpr_1pct": np.isin(np.arange(n), flagged)})
        (folder / "scores" / "d").mkdir(parents=True, exist_ok=True)
        write_scores(table, folder / "scores" / "d" / f"{model}.parquet", kind="pca", primary="pca_nll")
    return folder


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    _fake_version(root, "demo-aaaaaaaaaa", started="2026-01-01T10:00:00+00:00", config=_config(), roc=0.9,
                  flagged=[18, 19])
    _fake_version(root, "demo-bbbbbbbbbb", started="2026-01-02T10:00:00+00:00",
                  config=_config(training__device="cuda", scoring__mc_samples=32), roc=0.95, flagged=[17, 19])
    _fake_version(root, "other-cccccccccc", started="2026-01-03T10:00:00+00:00", config=_config(), roc=0.5,
                  flagged=[], complete=False)
    (root / "not-a-version").mkdir()
    return root


def test_runs_lists_versions_newest_first_with_their_roc_auc(results, capsys):
    assert [v.name for v in list_versions(results)] == ["other-cccccccccc", "demo-bbbbbbbbbb", "demo-aaaaaaaaaa"]
    assert cli.main(["runs", "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "HASH", "STARTED"]
    assert lines[1].startswith("other-cccccccccc") and "unfinished" in lines[1]
    assert "2026-01-02 10:00:00" in lines[2] and "ae 0.950  pca 0.950" in lines[2] and "complete" in lines[2]
    assert lines[1].index("d ") == lines[2].index("d ") == lines[3].index("d ")  # aligned columns


def test_runs_json(results, capsys):
    assert cli.main(["runs", "--json", "--results", str(results)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["name"] == "demo-bbbbbbbbbb" and rows[1]["hash"] == "bbbbbbbbbb"
    assert rows[1]["roc_auc"] == {"d": {"ae": 0.95, "pca": 0.95}} and rows[1]["models"] == ["ae", "pca"]
    assert rows[0]["complete"] is False and rows[0]["finished"] is None


def test_a_version_is_found_by_name_prefix_or_hash_and_otherwise_the_available_ones_are_listed(results):
    assert resolve_version(results, "demo-aaaaaaaaaa").name == "demo-aaaaaaaaaa"
    assert resolve_version(results, "demo-b").name == "demo-bbbbbbbbbb"
    assert resolve_version(results, "ccc").name == "other-cccccccccc"
    assert resolve_version(results, str(results / "demo-aaaaaaaaaa")).name == "demo-aaaaaaaaaa"
    with pytest.raises(ObjectNotFoundError, match="ambiguous.*demo-aaaaaaaaaa, demo-bbbbbbbbbb"):
        resolve_version(results, "demo")
    with pytest.raises(ObjectNotFoundError, match="no result version 'nope'.*available: .*demo-aaaaaaaaaa"):
        resolve_version(results, "nope")


def test_flatten_and_diff_give_key_paths():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}
    assert diff_mappings({"a": {"b": 1, "c": 2}}, {"a": {"b": 3, "d": 4}}) == [
        {"key": "a.b", "old": 1, "new": 3}, {"key": "a.c", "old": 2, "new": ABSENT}, {"key": "a.d", "old": ABSENT, "new": 4}]


def test_compare_reports_config_metric_and_flag_changes(results):
    comparison = compare_versions(load_version(results / "demo-aaaaaaaaaa"), load_version(results / "demo-bbbbbbbbbb"))
    assert comparison["config"] == [{"key": "scoring.mc_samples", "old": ABSENT, "new": 32},
                                    {"key": "training.device", "old": "cpu", "new": "cuda"}]
    (ae,) = [m for m in comparison["metrics"] if m["model"] == "ae"]
    assert ae["roc_auc"]["old"] == 0.9 and ae["roc_auc"]["new"] == 0.95 and ae["roc_auc"]["delta"] == pytest.approx(0.05)
    flags = {(f["dataset"], f["model"]): f for f in comparison["flags"]}
    ae_flags = flags[("d", "ae")]
    assert ae_flags["n_matched"] == 20 and "source file" in ae_flags["matching"]  # demo paths differ by version folder only
    assert ae_flags["rates"]["flag_fpr_1pct"]["only_a"] == [18] and ae_flags["rates"]["flag_fpr_1pct"]["only_b"] == [17]


def test_compare_matches_demo_spectra_read_from_another_versions_folder(tmp_path):
    # a version whose ingest is shared from an earlier one reads the demo file from that version's folder
    root = tmp_path / "results"
    first = _fake_version(root, "demo-aaaaaaaaaa", started="2026-01-01T10:00:00+00:00", config=_config(), roc=0.9,
                          flagged=[18, 19])
    _fake_version(root, "demo-bbbbbbbbbb", started="2026-01-02T10:00:00+00:00", config=_config(scoring__mc_samples=32),
                  roc=0.95, flagged=[17, 19], source_dir=first)
    comparison = compare_versions(load_version(root / "demo-aaaaaaaaaa"), load_version(root / "demo-bbbbbbbbbb"))
    flags = {(f["dataset"], f["model"]): f for f in comparison["flags"]}
    assert flags[("d", "ae")]["n_matched"] == 20
    assert flags[("d", "ae")]["rates"]["flag_fpr_1pct"]["only_b"] == [17]


def test_source_names_are_relative_to_the_datasets_path():
    from spectral_anomaly.store.versions import source_names

    assert list(source_names(["/data/a/run1/x.h5", "/data/a/run2/x.h5"], "/data/a/*/x.h5")) == ["run1/x.h5", "run2/x.h5"]
    assert list(source_names(["/mnt/copy/run1/x.h5"], "/mnt/copy/*/x.h5")) == ["run1/x.h5"]
    assert list(source_names(["results/demo-1/demo/spectra.h5"], "demo://spectra.h5")) == ["spectra.h5"]
    assert list(source_names(["/elsewhere/file.root"], "/data/file.root")) == ["file.root"]


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_compare_writes_markdown_or_html(results, tmp_path, suffix):
    output = tmp_path / f"comparison{suffix}"
    assert cli.main(["compare", "demo-a", "demo-b", "--results", str(results), "--output", str(output)]) == 0
    text = output.read_text()
    for expected in ("demo-aaaaaaaaaa", "training.device", "cuda", "0.9000", "0.9500", "+0.0500", "flag_fpr_1pct"):
        assert expected in text
    assert ("| d | ae | flag_fpr_1pct | 2 | 2 | 1 | 18 | 1 | 17 |" in text) if suffix == ".md" else ("<table>" in text)


def test_compare_of_an_unknown_version_fails_listing_the_available_ones(results, capsys):
    assert cli.main(["compare", "demo-a", "zzz", "--results", str(results)]) == 2
    error = capsys.readouterr().err
    assert "no result version 'zzz'" in error and "demo-bbbbbbbbbb" in error


def test_compare_refuses_an_unknown_output_type(results, tmp_path, capsys):
    assert cli.main(["compare", "demo-a", "demo-b", "--results", str(results), "--output", str(tmp_path / "x.pdf")]) == 2
    assert "valid: .md, .html" in capsys.readouterr().err


def test_render_comparison_of_identical_versions_says_so(results):
    version = load_version(results / "demo-aaaaaaaaaa")
    text = render_comparison(compare_versions(version, version))
    assert "The configs are identical." in text and "| d | ae | flag_fpr_1pct | 2 | 2 | 0 | - | 0 | - |" in text


def test_front_page_states_config_versions_and_devices(results):
    """Rendered as Snakemake renders it: a Jinja template, then reStructuredText."""
    import jinja2
    from docutils.core import publish_parts

    manifest = read_manifest(results / "demo-bbbbbbbbbb" / "manifest.json")
    text = report_front_page(manifest, result_dir=results / "demo-bbbbbbbbbb")
    rendered = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render()
    body = publish_parts(rendered, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    for expected in ("demo-bbbbbbbbbb", "torch", "2.13.0", "d/ae", "cpu", "device: cuda", "0.9500", "Package versions"):
        assert expected in body


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_compare_shows_config_strings_as_text(tmp_path, suffix):
    payload = "<img src=x onerror=alert(1)> | *x* {{ 7 * 7 }}"
    root = tmp_path / "results"
    _fake_version(root, "demo-aaaaaaaaaa", started="2026-01-01T10:00:00+00:00", config=_config(), roc=0.9, flagged=[])
    _fake_version(root, "demo-bbbbbbbbbb", started="2026-01-02T10:00:00+00:00",
                  config=_config(datasets__d={"format": "csv", "path": "d.csv", "bin_unit": payload}), roc=0.9, flagged=[])
    output = tmp_path / f"comparison{suffix}"
    assert cli.main(["compare", "demo-a", "demo-b", "--results", str(root), "--output", str(output)]) == 0
    text = output.read_text()
    if suffix == ".md":
        assert "| datasets.d.bin_unit | (absent) | \\<img src=x onerror=alert(1)\\> \\| \\*x\\* {{ 7 \\* 7 }} |" in text
    else:
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
