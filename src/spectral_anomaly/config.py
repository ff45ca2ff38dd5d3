"""Read the effective run config that the workflow writes, and look up its sections by name.

The workflow validates ``config/config.yaml`` against ``workflow/schemas/config.schema.yaml``
(filling in defaults) and writes the result into the result version as ``config.yaml``; every
subcommand reads that file, so a stage run by hand sees exactly what the workflow saw.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from .exceptions import ConfigError, InputFileError, closest_first


def load_run_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a YAML run config, with a clear error if it is missing or not a mapping."""
    try:
        with open(path) as stream:
            config = yaml.safe_load(stream)
    except FileNotFoundError:
        raise InputFileError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(config).__name__}")
    return config


def _section_entry(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    entries = config.get(section) or {}
    if name not in entries:
        raise ConfigError(
            f"config has no {section[:-1]} named {name!r}; configured {section}: {closest_first(name, entries)}"
        )
    return entries[name]


def dataset_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``datasets.<name>`` section."""
    return _section_entry(config, "datasets", name)


def model_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``models.<name>`` section."""
    return _section_entry(config, "models", name)
