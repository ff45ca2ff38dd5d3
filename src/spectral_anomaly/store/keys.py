"""What each stage's output depends on, and the key that names it: reruns redo only what changed.

A stage reads only its own settings, a part of the config (:func:`stage_settings`), and the outputs
of the stages before it. Its key is a short hash of those settings, the keys of its inputs (or the
checksums of the raw files) and the package version, so two configs that agree on what a stage
reads share that stage's output (:class:`.layout.StageLayout`):

- ``demo``: the ``demo`` section;
- ``ingest`` (per dataset): the dataset's reader keys and ``anomaly_label`` (not ``train_selection``
  or ``bin_unit``), the ``ingest`` section, whether the spectra must be counts, and its raw files;
- ``split``: the ``split`` section and the dataset's ``train_selection``, after its ingest;
- ``normalize``: the ``normalization`` section, after its split;
- ``train`` (per dataset and detector instance): the detector's section, its seed, the ``training``
  section for detectors trained over epochs, and the ``scoring`` section, after its normalization.

The report and the manifest belong to the version and depend on everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..config import model_instances, split_instance
from .provenance import canonical_json

#: hex digits of a stage key
KEY_LENGTH = 10
#: dataset keys that only later stages or the report read
NOT_INGEST_KEYS = ("train_selection", "bin_unit")
#: normalization steps that are only meaningful for counts (values >= 0)
STEPS_NEEDING_COUNTS = ("unit_integral", "log1p")
STAGES = ("demo", "ingest", "split", "normalize", "train")


def requires_counts(config: Mapping[str, Any]) -> bool:
    """Whether ingestion must refuse negative values: a normalization step or a Poisson likelihood needs counts."""
    steps = config["normalization"]["steps"]
    steps = [] if steps == "auto" else steps  # auto takes counts and other values alike
    return any(step in STEPS_NEEDING_COUNTS for step in steps) or any(
        spec.get("likelihood") == "poisson" for spec in config["models"].values())


def stage_settings(config: Mapping[str, Any], stage: str, *, dataset: str | None = None,
                   model: str | None = None) -> dict[str, Any]:
    """The part of ``config`` that ``stage`` reads, shaped like a config (its sections, only what matters)."""
    from ..models import detector_kind

    if stage == "demo":
        return {"demo": dict(config["demo"])}
    if stage == "ingest":
        entry = {key: value for key, value in config["datasets"][dataset].items() if key not in NOT_INGEST_KEYS}
        return {"datasets": {dataset: entry}, "ingest": dict(config["ingest"]), "require_counts": requires_counts(config)}
    if stage == "split":
        entry = {key: config["datasets"][dataset][key] for key in ("train_selection",) if key in config["datasets"][dataset]}
        return {"datasets": {dataset: entry}, "split": dict(config["split"])}
    if stage == "normalize":
        return {"normalization": dict(config["normalization"])}
    if stage == "train":
        base, seed = split_instance(config, model)
        spec = config["models"][base]
        training = dict(config["training"]) if detector_kind(spec["kind"]).trained_by_epochs else {}
        return {"models": {base: dict(spec)}, "training": {**training, "seeds": [seed]}, "scoring": dict(config["scoring"])}
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def _key(*parts: Any) -> str:
    return hashlib.sha256(canonical_json([*parts, __version__]).encode()).hexdigest()[:KEY_LENGTH]


@dataclass
class StageKeys:
    """The key of every stage output of a config: ``demo``, and per dataset (and detector instance) the rest."""

    demo: str
    ingest: dict[str, str] = field(default_factory=dict)
    split: dict[str, str] = field(default_factory=dict)
    normalize: dict[str, str] = field(default_factory=dict)
    train: dict[tuple[str, str], str] = field(default_factory=dict)


def stage_keys(config: Mapping[str, Any], inputs: Mapping[str, Mapping[str, str | None]]) -> StageKeys:
    """The keys of ``config``'s stage outputs; ``inputs``: per dataset, its raw files' checksums
    (``None`` for a file that the demo stage generates)."""
    keys = StageKeys(demo=_key("demo", stage_settings(config, "demo")))
    for dataset in config["datasets"]:
        sources = {path: (checksum if checksum is not None else keys.demo) for path, checksum in inputs[dataset].items()}
        keys.ingest[dataset] = _key("ingest", stage_settings(config, "ingest", dataset=dataset), sources)
        keys.split[dataset] = _key("split", stage_settings(config, "split", dataset=dataset), keys.ingest[dataset])
        keys.normalize[dataset] = _key("normalize", stage_settings(config, "normalize", dataset=dataset),
                                       keys.split[dataset])
        for model in model_instances(config):
            keys.train[dataset, model] = _key("train", stage_settings(config, "train", model=model),
                                              keys.normalize[dataset])
    return keys
