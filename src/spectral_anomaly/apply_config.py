"""The config of an apply run (a config with ``reference:``): its keys, validation and version name.

An apply run scores new files with the detectors of a stored result version (:mod:`.apply`). Its config
names the ``reference`` version and the new ``datasets`` (with the keys of a training config's datasets);
everything the scoring needs besides comes from the reference.
"""

from __future__ import annotations

from typing import Any

from .apply import describe_binning, open_reference, reference_bin_edges
from .exceptions import ConfigError, InvalidSpectraError, closest_first, did_you_mean

#: the keys of an apply config (a config with ``reference:``), with their defaults where they have one
APPLY_DEFAULTS: dict[str, Any] = {"reference_dataset": None, "run_name": "apply", "results_dir": "results/apply",
                                  "monitoring": {}, "device": "auto", "n_examples": 10}
APPLY_KEYS = ("reference", "datasets", *APPLY_DEFAULTS, "reference_version")
#: what :func:`validate_apply_config` derives from the reference (left out of the version's config.yaml)
DERIVED_KEYS = ("models", "reference_config")
MONITORING_DEFAULTS: dict[str, Any] = {"order_column": None, "run_column": None}


def is_apply_config(config: dict[str, Any]) -> bool:
    """Whether ``config`` describes an apply run (new files scored by a stored reference) rather than training."""
    return isinstance(config, dict) and "reference" in config


def validate_apply_config(config: dict[str, Any], *, source: str = "config") -> dict[str, Any]:
    """The effective apply config: ``reference`` (a complete result version), ``datasets`` (the new files,
    with the keys of a training config's datasets), and optional ``reference_dataset``, ``run_name``,
    ``results_dir``, ``monitoring`` (``order_column``, ``run_column``), ``device`` and ``n_examples``.

    Each dataset is validated as the reference's config would validate it, so its reader keys, defaults
    and errors are those of a training run. The reference's sections that scoring reads (``ingest``,
    whether spectra must be counts) are added under ``reference_config``.
    """
    from .config import check_results_dir, validate_config

    unknown = [key for key in config if key not in APPLY_KEYS]
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key in an apply config (one with reference:);"
                          f"{did_you_mean(unknown[0], APPLY_KEYS)} valid keys: {closest_first(unknown[0], APPLY_KEYS)}")
    effective = {**APPLY_DEFAULTS, **config}
    if not isinstance(effective["reference"], str) or not effective["reference"]:
        raise ConfigError(f"{source}: reference must be the path of a result version folder, e.g. results/demo-1a2b3c4d5e6f")
    if not isinstance(effective.get("datasets"), dict) or not effective["datasets"]:
        raise ConfigError(f"{source}: datasets: give the new files to score, by name, with the keys of a training "
                          "config's datasets (format, path, ...)")
    monitoring = effective["monitoring"] or {}
    bad = [key for key in monitoring if key not in MONITORING_DEFAULTS]
    if bad:
        raise ConfigError(f"{source}: monitoring.{bad[0]}: unknown key;{did_you_mean(bad[0], MONITORING_DEFAULTS)} "
                          f"valid keys: {closest_first(bad[0], MONITORING_DEFAULTS)}")
    effective["monitoring"] = {**MONITORING_DEFAULTS, **monitoring}
    if effective["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{source}: device {effective['device']!r}: one of auto, cpu, cuda")
    if not isinstance(effective["n_examples"], int) or effective["n_examples"] < 1:
        raise ConfigError(f"{source}: n_examples {effective['n_examples']!r}: a whole number of at least 1")
    check_results_dir(effective["results_dir"])
    reference = open_reference(effective["reference"])
    effective["reference_dataset"] = reference.dataset(effective["reference_dataset"])
    for name, entry in effective["datasets"].items():
        if isinstance(entry, dict) and str(entry.get("path", "")).startswith("demo://"):
            raise ConfigError(f"{source}: datasets.{name}.path: an apply run scores files; the generated demo data "
                              "belongs to training runs")
    if effective.get("reference_version", reference.name) != reference.name:
        raise ConfigError(f"{source}: reference_version {effective['reference_version']!r} was recorded, but "
                          f"{effective['reference']} is now version {reference.name!r}")
    checked = validate_config({**reference.config, "datasets": effective["datasets"]}, source=source)
    effective["datasets"] = checked["datasets"]
    effective["reference_version"] = reference.name
    effective["models"] = reference.models
    effective["reference_config"] = {key: checked[key] for key in ("ingest", "normalization", "models", "training")}
    return effective


def apply_config_record(config: dict[str, Any]) -> dict[str, Any]:
    """The effective apply config as the version's config.yaml records it (what the reference gives left out)."""
    return {key: value for key, value in config.items() if key not in DERIVED_KEYS}


def apply_version_name(config: dict[str, Any], input_checksums: dict[str, str]) -> str:
    """``<run_name>-<hash>`` of an apply run: the hash covers the reference version, the new files' checksums,
    their reader keys and the package, so a new file gives a new version and a rerun finds the same one."""
    import hashlib

    from . import __version__
    from .store.provenance import SHORT_HASH_LENGTH, canonical_json

    payload = canonical_json({"reference": config["reference_version"], "reference_dataset": config["reference_dataset"],
                              "datasets": config["datasets"], "inputs": dict(sorted(input_checksums.items())),
                              "n_examples": config["n_examples"], "package": __version__})
    return f"{config['run_name']}-{hashlib.sha256(payload.encode()).hexdigest()[:SHORT_HASH_LENGTH]}"


def ingest_settings(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What the ingest stage reads for a new dataset: its reader keys and the reference's ingest options."""
    from .store.keys import stage_settings

    return stage_settings({**config["reference_config"], "datasets": config["datasets"]}, "ingest", dataset=dataset)


def check_new_files_binning(config: dict[str, Any], files: dict[str, list[str]]) -> None:
    """Refuse, before any job, new files whose number of bins differs from the reference's (the bin
    edges themselves are compared by the scoring job, once the files are ingested)."""
    from .exceptions import SpectralAnomalyError
    from .io import count_bins

    reference = open_reference(config["reference"])
    edges = reference_bin_edges(reference, config["reference_dataset"])
    for name, paths in files.items():
        try:
            n_bins = count_bins(paths[0], config["datasets"][name])
        except SpectralAnomalyError:
            continue  # an unreadable file is reported by its ingest job, with the reader's own message
        if n_bins != len(edges) - 1:
            raise InvalidSpectraError(
                f"dataset {name!r} ({paths[0]}) has {n_bins} bins, but reference {reference.name} dataset "
                f"{config['reference_dataset']!r} was trained on {describe_binning(edges)}; a detector scores only "
                "spectra of the binning it was trained on (rebin the new spectra, or select the same bins with bin_range)")
