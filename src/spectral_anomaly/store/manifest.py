"""The manifest of a result version: what was run, on what, with what, and every result file.

``manifest.json`` records the effective config, input checksums, package versions, git commit,
the device each model trained on, start and end times, and for every result file of the version its
kind, format version, size and sha256 (and, for a link to a shared stage output, where it points).
It is written once the training run's results are complete and is never rewritten by a report
rebuild: the reports are listed in their own build records (:func:`report_build_record`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .formats import FORMAT_VERSIONS
from .layout import FRONT_PAGE, MANIFEST, RUN_RECORD_FOLDERS
from .provenance import git_commit, package_versions, sha256_file, utc_now, versioned_config

#: (folder, suffix) -> kind of file, for the files of a result version
FILE_KINDS = (
    ("data", ".h5", "canonical_store"),
    ("splits", ".json", "split"),
    ("normalization", ".json", "normalization"),
    ("models", ".npz", "model"),
    ("scores", ".parquet", "scores"),
    ("scores", ".npz", "examples"),
    ("reports", ".metrics.json", "metrics"),
    ("models", ".history.csv", "history"),
    ("models", ".summary.json", "training_summary"),
)


#: folders of a version that the manifest does not list: job logs and benchmarks (Snakemake's records of
#: how jobs ran) and the reports (each listed in its own build record)
UNLISTED_FOLDERS = (*RUN_RECORD_FOLDERS, "reports")


def stored_format_version(path: Path, kind: str) -> int | None:
    """Read the format version recorded inside a file, without importing torch."""
    try:
        if kind == "canonical_store":
            import h5py

            with h5py.File(path, "r") as handle:
                return int(handle.attrs["format_version"])
        if path.suffix == ".csv":
            return int(path.read_text().split("\n", 1)[0].split(":", 1)[1])
        if path.suffix == ".json":
            return int(json.loads(path.read_text())["format_version"])
        if kind == "scores":
            import pyarrow.parquet as pq

            return int(pq.read_schema(path).metadata[b"spectral_anomaly.format_version"])
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as stored:
                return int(stored["format_version"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return FORMAT_VERSIONS[kind]  # checkpoints: written by this package version


def _file_kind(relative: Path) -> str | None:
    for folder, suffix, kind in FILE_KINDS:
        if relative.parts[0] == folder and relative.name.endswith(suffix):
            return kind
    return None


def _file_entry(path: Path, relative: Path) -> dict[str, Any]:
    kind = _file_kind(relative)
    entry = {"path": str(relative), "kind": kind, "format_version": stored_format_version(path, kind) if kind else None,
             "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if path.is_symlink():
        entry["links_to"] = os.readlink(path)
    return entry


def report_build_record(config: dict[str, Any], *, dataset: str, files: list[Path], result_dir: Path) -> dict[str, Any]:
    """The record of one build of a dataset's report: when, with which code and options, which files."""
    return {
        "format_version": FORMAT_VERSIONS["report_build"], "result_version": result_dir.name, "dataset": dataset,
        "built": utc_now(), "git_commit": git_commit(Path(__file__).parent), "packages": package_versions(),
        "report_options": config["report"],
        "files": [_file_entry(path, path.relative_to(result_dir) if path.is_relative_to(result_dir) else path)
                  for path in files],
    }


def read_report_build(path: Path | str) -> dict[str, Any]:
    """Read a report's build record, refusing a missing, corrupt or newer one."""
    from .formats import read_versioned_json

    return read_versioned_json(path, kind="report_build", step="report")


def build_manifest(config: dict[str, Any], *, result_dir: Path, input_checksums: dict[str, str]) -> dict[str, Any]:
    """Collect the manifest of ``result_dir`` (the manifest file itself is not listed)."""
    files = []
    for path in sorted(p for p in result_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(result_dir)
        if str(relative) in (MANIFEST, FRONT_PAGE) or relative.parts[0] in UNLISTED_FOLDERS:
            continue
        files.append(_file_entry(path, relative))
    devices = {}
    for summary in sorted(result_dir.glob("models/*/*.summary.json")):
        info = json.loads(summary.read_text())
        devices[f"{info['dataset']}/{info['model']}"] = info["device"]
    config_file = result_dir / "config.yaml"
    started = (
        datetime.fromtimestamp(config_file.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        if config_file.exists() else None
    )
    return {
        "format_version": FORMAT_VERSIONS["manifest"],
        "result_version": result_dir.name,
        "run_name": config["run_name"],
        "started": started,
        "finished": utc_now(),
        "git_commit": git_commit(Path(__file__).parent),
        "packages": package_versions(),
        "devices": devices,
        "input_checksums": input_checksums,
        "format_versions": FORMAT_VERSIONS,
        "config": versioned_config(config),  # the report options are in each report's build record
        "files": files,
    }
