"""Anomaly detectors: an autoencoder, a variational autoencoder and a PCA baseline, behind one contract.

Each kind is a :class:`~.base.Detector` (see :mod:`.base` for the contract) registered in
:data:`DETECTORS` by its config ``kind``. The registry names the module and class of each kind
without importing it, so choosing a detector imports only what that detector needs: torch is
imported by the jobs of the deep kinds alone.

Adding a kind: a module with a :class:`~.base.Detector` subclass, its entry in :data:`DETECTORS`
(which also declares its score columns, the single list of them that ingestion, score tables and the
report read), and its entry in the config schema (``schema/config.schema.yaml``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ConfigError


@dataclass(frozen=True)
class DetectorKind:
    """What the pipeline knows of a kind before importing it."""

    module: str
    class_name: str
    #: the config key of its latent size (checked against the number of bins before any job)
    latent_key: str
    #: whether it trains over epochs with the config's ``training`` section (and imports torch)
    trained_by_epochs: bool
    #: every score column the kind writes (latent coordinates and ``max_pull_bin``, which are not scores, aside),
    #: its primary score first; each in the anomaly sign (higher = more anomalous) unless it is a signed copy
    score_columns: tuple[str, ...] = ()
    #: score columns that are signed copies (higher = more normal) -> the anomaly-sign column they copy
    signed_copies: Mapping[str, str] = field(default_factory=dict)
    #: the report ranks its table of most anomalous spectra by the first model of the highest rank
    report_rank: int = 0


#: config ``kind`` -> where its detector lives
DETECTORS: dict[str, DetectorKind] = {
    "autoencoder": DetectorKind(
        "spectral_anomaly.models.autoencoder", "AutoencoderDetector", "latent_dim", True,
        score_columns=("reconstruction_error", "chi2", "max_abs_pull"), report_rank=1),
    "vae": DetectorKind(  # elbo_deviance (the primary score of a Poisson likelihood) only with that likelihood
        "spectral_anomaly.models.vae", "VAEDetector", "latent_dim", True,
        score_columns=("elbo_deviance", "negative_elbo", "elbo", "reconstruction_nll", "kl", "iw_nll", "latent_radius",
                       "reconstruction_error", "chi2", "max_abs_pull"),
        signed_copies={"elbo": "negative_elbo"}, report_rank=2),
    "pca": DetectorKind(
        "spectral_anomaly.models.pca", "PCADetector", "n_components", False,
        score_columns=("pca_nll", "log_likelihood", "reconstruction_error", "hotelling_t2", "chi2", "max_abs_pull"),
        signed_copies={"log_likelihood": "pca_nll"}),
}
DETECTOR_KINDS = tuple(DETECTORS)


def detector_kind(kind: str) -> DetectorKind:
    if kind not in DETECTORS:
        raise ConfigError(f"unknown detector kind {kind!r}; valid kinds: {', '.join(DETECTOR_KINDS)}")
    return DETECTORS[kind]


def detector_class(kind: str) -> type:
    """The :class:`~.base.Detector` subclass of ``kind``, imported on first use."""
    entry = detector_kind(kind)
    return getattr(importlib.import_module(entry.module), entry.class_name)


def build_detector(spec: dict[str, Any], **context: Any) -> Any:
    """An unfitted detector from its config section ``spec`` (with ``kind``) and the run's ``context``.

    ``context``: ``normalization`` (the fitted normalizer), and for the deep kinds ``training``,
    ``scoring``, ``seed``, ``device`` and ``checkpoint_path``; keys a kind does not use are ignored.
    """
    params = {key: value for key, value in spec.items() if key != "kind"}
    return detector_class(spec["kind"]).from_config(params, **context)


def load_detector(path: Any, **context: Any) -> Any:
    """The fitted detector stored at ``path`` (any kind); ``context`` may give the ``device`` to score on."""
    from .base import read_detector_file

    meta, arrays = read_detector_file(path)
    detector = detector_class(meta["kind"])._restore(meta, arrays, context=context)
    detector.choices_ = dict(meta.get("choices") or {})
    detector.cuts_ = dict(meta.get("cuts") or {})
    return detector


__all__ = ["DETECTORS", "DETECTOR_KINDS", "build_detector", "detector_class", "detector_kind", "load_detector"]
