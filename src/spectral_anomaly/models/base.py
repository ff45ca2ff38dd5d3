"""The detector contract: what every kind of anomaly detector (AE, VAE, PCA, ...) offers the pipeline.

In the scikit-learn spirit: ``__init__`` stores parameters and nothing else, ``fit`` learns from
training spectra (validation spectra guide early stopping where a kind uses them) and returns
self, learned state ends in ``_``. A detector takes raw spectra: the fitted normalization is one of
its parameters, applied inside :meth:`Detector.score` and :meth:`Detector.reconstruct`.

- :attr:`Detector.score_columns` names what :meth:`Detector.score` returns, besides the latent
  coordinates ``latent_0``, ``latent_1``, ... and ``max_pull_bin`` (the bin of ``max_abs_pull``, which
  locates the anomaly and is not a score); every score column is in the anomaly sign (higher = more
  anomalous) or is a signed copy listed in :data:`.columns.SIGNED_COPIES`;
- :attr:`Detector.primary_score` is the column that becomes the table's ``anomaly_score``;
- :meth:`Detector.save` writes one ``.npz`` file (arrays and one JSON text, read back with
  ``allow_pickle=False``, so loading a model file never runs code), and :func:`load_detector`
  rebuilds the detector from it, whatever its kind.

Everything outside :mod:`spectral_anomaly.models` talks to this contract only (through
:func:`.build_detector` and :func:`.load_detector`), so a new kind is one module plus its entry in
the registry of :mod:`spectral_anomaly.models` and in the config schema.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .. import __version__
from ..exceptions import InputFileError, SpectralAnomalyError
from ..normalize import SpectrumNormalizer, block_rows
from ..store.formats import FORMAT_VERSIONS, check_format_version

PathLike = str | os.PathLike[str]
#: columns of a training history: one row per epoch (empty for detectors fitted in one pass)
HISTORY_COLUMNS = ("epoch", "train_loss", "validation_loss", "kl_weight", "seconds", "best")


class Detector(ABC):
    """An anomaly detector of one kind, fitted on training spectra, scoring any spectra of the same binning.

    ``normalization`` is the fitted :class:`~spectral_anomaly.normalize.SpectrumNormalizer`; ``params``
    are the kind's own parameters (its config section). Subclasses set :attr:`kind` and implement
    :meth:`fit`, :meth:`_score_block`, :meth:`_reconstruct`, :meth:`_state` and :meth:`_restore`.
    """

    #: the config's ``kind`` of this detector
    kind: ClassVar[str]

    def __init__(self, *, normalization: SpectrumNormalizer, **params: Any) -> None:
        self.normalization = normalization
        self.params = params
        #: what the fit chose without labels (e.g. ``{"latent_dim": {"value", "reason", ...}}``), saved with it
        self.choices_: dict[str, Any] = {}
        #: the flag cuts calibrated at training time on held-out normal spectra (:mod:`spectral_anomaly.thresholds`),
        #: saved with the detector so new data is flagged with them, never with cuts recalibrated on itself
        self.cuts_: dict[str, Any] = {}

    # --- what a kind declares --------------------------------------------------------------------

    @property
    def score_columns(self) -> tuple[str, ...]:
        """The columns :meth:`score` returns besides ``latent_<j>``: those its kind declares in the registry."""
        from . import detector_kind

        return detector_kind(self.kind).score_columns

    @property
    def primary_score(self) -> str:
        """The column that is this detector's ``anomaly_score`` (higher = more anomalous)."""
        return self.score_columns[0]

    @property
    def latent_dim(self) -> int:
        """Size of the latent space (principal components for PCA)."""
        return int(self.params["latent_dim"])

    def _augmented(self, train: np.ndarray, validation: np.ndarray | None, *, seed: int) -> tuple[np.ndarray, Any]:
        """The training and validation spectra with the variants of the detector's ``augment`` option
        (:mod:`spectral_anomaly.augment`), or as they are."""
        options = self.params.get("augment") or {}
        if int(options.get("copies", 0)) <= 0:
            return train, validation
        import logging

        from ..augment import augment_spectra

        train = augment_spectra(train, options, seed=seed)
        if validation is not None:
            validation = augment_spectra(validation, options, seed=seed + 1, what="validation spectra")
        logging.getLogger(__name__).info("augmented: %d training spectra (%d variants of each)", len(train),
                                         int(options["copies"]))
        return train, validation

    @property
    def primary_reason(self) -> str:
        """Why the primary score ranks spectra, as the kind states it before seeing any data."""
        return "the score the detector kind declares first"

    def _label_free_choices(self, train: np.ndarray, validation: np.ndarray | None) -> None:
        """Record the normalization's choice (where ``steps: auto`` made one), the primary score and why, and
        replace a latent size of ``auto`` by the one chosen from
        ``train`` and ``validation`` (:mod:`.latent_size`), with its reason, in :attr:`choices_`."""
        from . import detector_kind

        normalization = getattr(self.normalization, "choice_", None)  # steps: auto, chosen from the training spectra
        self.choices_ = {**self.choices_, **({"normalization": normalization} if normalization else {}), "primary_score": {
            "value": self.primary_score, "reason": f"fixed by the detector kind before any data: {self.primary_reason}"}}
        key = detector_kind(self.kind).latent_key
        if self.params.get(key) != "auto":
            return
        from .latent_size import choose_latent_size

        empty = np.empty((0, train.shape[1]), dtype=np.float32)
        choice = choose_latent_size(self.normalization, train, validation if validation is not None else empty)
        self.params = {**self.params, key: choice["value"]}
        self.choices_ = {**self.choices_, key: {"asked": "auto", **choice}}

    # --- fitting ---------------------------------------------------------------------------------

    @abstractmethod
    def fit(self, train: np.ndarray, validation: np.ndarray) -> Detector:
        """Fit on raw training spectra (``validation`` for early stopping where the kind uses it); return self."""

    def history(self) -> pd.DataFrame:
        """The per-epoch training history (columns :data:`HISTORY_COLUMNS`); empty for one-pass fits."""
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))

    def fit_summary(self) -> dict[str, Any]:
        """What the training summary records of the fit: device, epochs, best epoch and loss."""
        return {"device": "cpu (numpy)", "epochs_trained": 0, "best_epoch": 0, "best_validation_loss": None}

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, X: np.ndarray, *, variances: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every score column (and ``latent_<j>`` and ``max_pull_bin``) of raw spectra ``X``, one value per
        spectrum. ``X`` is an array ``(n_spectra, n_bins)`` or the path of a canonical store, scored block by block.

        The spectra are scored in blocks of about 64 MB, so memory stays bounded; ``variances`` (the
        input file's per-bin variances, e.g. ROOT Sumw2) replace the model's own uncertainties in
        ``chi2``, ``max_abs_pull`` and ``max_pull_bin``.
        """
        if isinstance(X, (str, os.PathLike)):
            return self._score_store(X)
        size = self._block_rows(X.shape[1])
        parts = [self._score_block(np.asarray(X[start : start + size]),
                                   None if variances is None else np.asarray(variances[start : start + size]))
                 for start in range(0, len(X), size)]
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        latent = columns.pop("latent")
        for j in range(latent.shape[1]):
            columns[f"latent_{j}"] = latent[:, j]
        return columns

    def _score_store(self, path: PathLike) -> dict[str, np.ndarray]:
        """:meth:`score` of every spectrum of a canonical store, read block by block (with its variances)."""
        from ..store.canonical import iter_canonical_blocks

        parts = [self.score(block.X, variances=block.variances)
                 for block in iter_canonical_blocks(path, rows=block_rows(self.normalization.n_bins_))]
        if not parts:
            return {}
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def flag(self, X: np.ndarray, *, variances: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The flags of raw spectra ``X`` at the cuts stored with the detector: ``{flag column: bool array}``.

        Each flag is ``primary score > cut``, the cut calibrated at training time (:attr:`cuts_`), exactly
        as the workflow flags new data.
        """
        from ..thresholds import stored_cut_entries

        entries = stored_cut_entries(self.cuts_, what=f"this {self.kind} detector")
        scores = self.score(X, variances=variances)[self.primary_score]
        return {entry["column"]: scores > entry["cut"] for entry in entries}

    def _block_rows(self, n_bins: int) -> int:
        """Spectra scored per block (default: about 64 MB of float64)."""
        return block_rows(n_bins)

    @abstractmethod
    def _score_block(self, X: np.ndarray, variances: np.ndarray | None) -> dict[str, np.ndarray]:
        """The score columns and ``max_pull_bin`` of one block of raw spectra, with the latent coordinates under
        ``latent``."""

    def reconstruct(self, X: np.ndarray, *, variances: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The reconstruction of raw spectra ``X`` in input units and the per-bin pulls, as the report draws them."""
        reconstruction, pulls = self._reconstruct(np.asarray(X))
        if variances is not None:
            pulls = file_variance_pulls(np.asarray(X, dtype=np.float64), reconstruction, np.asarray(variances))
        return {"reconstruction": reconstruction, "pulls": pulls}

    @abstractmethod
    def _reconstruct(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reconstruction in input units and the model's own pulls of a few raw spectra."""

    def check_binning(self, n_bins: int, *, what: str = "the spectra") -> None:
        """Refuse spectra of another number of bins than the detector was fitted on, naming both."""
        fitted = self.normalization.n_bins_
        if n_bins != fitted:
            from ..exceptions import InvalidSpectraError

            raise InvalidSpectraError(f"{what} have {n_bins} bins, but this {self.kind} detector was fitted on "
                                      f"spectra of {fitted} bins; score spectra of the binning it was trained on")

    # --- files -----------------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write the detector to ``path`` (``.npz``) atomically: parameters, normalization and fitted state."""
        from ..store.atomic import atomic_path

        meta, arrays = self._state()
        meta = {"kind": self.kind, "package_version": __version__, "params": self.params,
                "normalization": self.normalization.to_dict(), "choices": self.choices_, "cuts": self.cuts_, **meta}
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.savez(stream, format_version=FORMAT_VERSIONS["model"], meta=np.array(json.dumps(meta, default=_plain)),
                     **{f"state.{name}": value for name, value in arrays.items()})

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state: plain values (JSON) and named arrays."""

    @classmethod
    @abstractmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, context: dict[str, Any]) -> Detector:
        """Rebuild a fitted detector from what :meth:`_state` saved (``context``: e.g. the device to score on)."""


def _plain(value: Any) -> Any:
    """A numpy scalar as the plain value JSON can hold."""
    return value.item() if hasattr(value, "item") else str(value)


def read_detector_file(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON part and the arrays of a detector file, refusing a missing, damaged or newer one."""
    import zipfile

    from ..store.integrity import verify_checksum

    if not os.path.exists(path):
        raise InputFileError(f"{path}: model file not found; run the workflow's train step")
    verify_checksum(path)  # before parsing: a damaged file is named as such, not as an unreadable zip
    try:
        with np.load(path, allow_pickle=False) as stored:
            check_format_version(stored["format_version"], kind="model", path=path)
            meta = json.loads(str(stored["meta"]))
            arrays = {key.removeprefix("state."): stored[key] for key in stored.files if key.startswith("state.")}
    except SpectralAnomalyError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as error:
        raise InputFileError(f"{path}: not a readable model file ({error}); delete it and rerun training") from None
    if not isinstance(meta, dict) or "kind" not in meta:
        raise InputFileError(f"{path}: not a spectral_anomaly model file (no detector kind); delete it and rerun training")
    return meta, arrays


def file_variance_pulls(counts: np.ndarray, reconstruction_counts: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Pulls against the per-bin variances stored in the input file (e.g. ROOT Sumw2).

    A bin of zero variance counts as variance one (one count), so that it cannot divide by zero.
    """
    return (counts - reconstruction_counts) / np.sqrt(np.where(variances > 0, variances, 1.0))


def pull_summaries(pulls: np.ndarray) -> dict[str, np.ndarray]:
    """``chi2`` (sum of squared pulls, in float64), ``max_abs_pull`` and ``max_pull_bin`` of per-bin pulls, per spectrum.

    ``max_pull_bin`` is the 0-based bin of ``max_abs_pull``: the first such bin where several tie, bin 0
    where every pull is zero.
    """
    pulls = np.asarray(pulls, dtype=np.float64)
    magnitudes = np.abs(pulls)
    return {"chi2": (pulls**2).sum(axis=1), "max_abs_pull": magnitudes.max(axis=1),
            "max_pull_bin": magnitudes.argmax(axis=1).astype(np.int64)}
