"""Ingestion: read a raw file, check it, attach labels, and write the canonical store."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from .data import CanonicalSpectra, write_canonical
from .exceptions import ConfigError, InvalidSpectraError
from .io import RawSpectra, read_raw_spectra
from .provenance import sha256_file

log = logging.getLogger(__name__)


def evaluate_label(metadata: pd.DataFrame, expression: str, *, dataset: str) -> np.ndarray:
    """Evaluate the dataset's ``anomaly_label`` expression (true = anomalous) on its metadata."""
    try:
        result = metadata.eval(expression, engine="python")
    except (pd.errors.UndefinedVariableError, NameError, KeyError) as error:
        raise ConfigError(
            f"dataset {dataset!r}: anomaly_label {expression!r} refers to an unknown column ({error}); "
            f"metadata columns: {', '.join(map(str, metadata.columns))}"
        ) from None
    except (SyntaxError, ValueError, TypeError) as error:
        raise ConfigError(f"dataset {dataset!r}: anomaly_label {expression!r} is not a valid expression: {error}") from None
    values = np.asarray(result)
    if values.shape != (len(metadata),) or values.dtype != bool:
        raise ConfigError(
            f"dataset {dataset!r}: anomaly_label {expression!r} must give one true/false value per spectrum "
            f"(e.g. 'anomaly_kind != 0'), got dtype {values.dtype} and shape {values.shape}"
        )
    return values.astype(np.int8)


def apply_nonfinite_policy(raw: RawSpectra, *, policy: str, path: str | os.PathLike[str]) -> tuple[RawSpectra, int]:
    """Refuse (``error``) or drop (``drop``) spectra holding NaN or infinite values."""
    finite = np.isfinite(raw.counts).all(axis=1)
    n_bad = int((~finite).sum())
    if n_bad == 0:
        return raw, 0
    if policy == "error":
        first = int(np.flatnonzero(~finite)[0])
        obj = raw.metadata["source_object"].iloc[first]
        raise InvalidSpectraError(
            f"{path}: {n_bad} spectra hold NaN or infinite values (first: entry {first} of {obj!r}); "
            "fix the file or set the dataset's nonfinite: drop to leave them out"
        )
    if n_bad == len(finite):
        raise InvalidSpectraError(f"{path}: every spectrum holds NaN or infinite values; nothing is left to ingest")
    kept = RawSpectra(
        counts=raw.counts[finite], bin_edges=raw.bin_edges, metadata=raw.metadata[finite].reset_index(drop=True)
    )
    log.warning("%s: dropped %d of %d spectra holding NaN or infinite values", path, n_bad, len(finite))
    return kept, n_bad


def ingest_dataset(name: str, dataset: dict[str, Any], *, path: str | os.PathLike[str]) -> CanonicalSpectra:
    """Read ``path`` as the dataset ``name`` describes and return its canonical form."""
    log.info("dataset %s: reading %s (format %s)", name, path, dataset["format"])
    raw = read_raw_spectra(path, dataset)
    raw, n_dropped = apply_nonfinite_policy(raw, policy=dataset.get("nonfinite", "error"), path=path)
    metadata = raw.metadata.copy()
    metadata.insert(0, "spectrum_id", np.arange(len(metadata), dtype=np.int64))
    labels = evaluate_label(metadata, dataset["anomaly_label"], dataset=name) if dataset.get("anomaly_label") else None
    spectra = CanonicalSpectra(
        dataset=name,
        X=raw.counts.astype(np.float32),
        bin_edges=raw.bin_edges,
        metadata=metadata,
        labels=labels,
        source_sha256={str(path): sha256_file(path)},
        n_dropped_nonfinite=n_dropped,
    )
    summary = f"{spectra.n_spectra} spectra x {spectra.n_bins} bins"
    if labels is not None:
        summary += f", {int(labels.sum())} labelled anomalous"
    log.info("dataset %s: %s", name, summary)
    return spectra


def ingest_to_store(name: str, dataset: dict[str, Any], *, path: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Ingest and write the canonical store atomically."""
    write_canonical(ingest_dataset(name, dataset, path=path), output)
