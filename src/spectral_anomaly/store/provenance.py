"""Where results come from: input checksums, the result-version name, and the run manifest.

A result version is a folder ``<run name>-<short hash>`` whose hash covers everything that
determines the results: the effective config, the checksums of the input files and the package
version. This module imports nothing heavy, because the Snakefile imports it on every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..exceptions import InputFileError

_CHUNK = 16 * 1024 * 1024
SHORT_HASH_LENGTH = 10
DEPENDENCIES = (
    "torch", "snakemake", "h5py", "numpy", "pandas", "pyarrow", "tables",
    "scikit-learn", "uproot", "matplotlib", "PyYAML", "jsonschema",
)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, expected a file") from None
    return digest.hexdigest()


def cached_sha256(path: str | os.PathLike[str], *, cache_file: str | os.PathLike[str]) -> str:
    """Return the sha256 of ``path``, reusing an earlier result while size and mtime are unchanged.

    The workflow asks for the checksum of every raw input on each start; the cache keeps that
    cheap for large files. A changed file (new size or modification time) is hashed again.
    """
    source = Path(path)
    try:
        stat = source.stat()
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_path = Path(cache_file)
    try:
        cache = json.loads(cache_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        cache = {}
    if key in cache:
        return cache[key]
    checksum = sha256_file(source)
    cache[key] = checksum
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, cache_path)
    return checksum


def file_state(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)``: what tells a changed file without reading it."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    return stat.st_size, stat.st_mtime_ns


def input_fingerprint(path: str | os.PathLike[str], *, cache_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The sha256 of ``path`` (see :func:`cached_sha256`) with the size and modification time it belongs to.

    Ingestion compares the file's state with these before and after reading it, so the checksum a
    version records is always that of the bytes it ingested. A file that changes while it is hashed
    is refused.
    """
    before = file_state(path)
    checksum = cached_sha256(path, cache_file=cache_file)
    if file_state(path) != before:
        raise InputFileError(f"{path}: changed while its checksum was taken (is it still being written?); "
                             "wait until it is complete, then run again")
    return {"sha256": checksum, "bytes": before[0], "mtime_ns": before[1]}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


#: config sections that only change how results are presented, not the results: they are left out
#: of the result version's hash and of its ``config.yaml``, so changing them rebuilds only the reports
PRESENTATION_SECTIONS = ("report",)


def versioned_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that determines the results: all but :data:`PRESENTATION_SECTIONS`."""
    return {key: value for key, value in config.items() if key not in PRESENTATION_SECTIONS}


def presentation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sections of ``config`` that only change the reports (:data:`PRESENTATION_SECTIONS`)."""
    return {key: config[key] for key in PRESENTATION_SECTIONS if key in config}


def result_version_name(
    config: Mapping[str, Any], input_checksums: Mapping[str, str], *, package_version: str = __version__
) -> str:
    """Return ``<run_name>-<hash>``, the result folder name for this config, inputs and package.

    The hash covers :func:`versioned_config`: report options do not change the version, so a
    report with other options is rebuilt inside the same folder from the stored results.
    """
    payload = canonical_json(
        {"config": versioned_config(config), "inputs": dict(sorted(input_checksums.items())), "package": package_version}
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:SHORT_HASH_LENGTH]
    return f"{config['run_name']}-{digest}"


def package_versions() -> dict[str, str | None]:
    """Installed versions of this package, Python and every runtime dependency."""
    versions: dict[str, str | None] = {"spectral_anomaly": __version__, "python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: str | os.PathLike[str] = ".") -> str | None:
    """The commit of the git checkout at ``directory`` (with ``-dirty`` if modified), else None."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
