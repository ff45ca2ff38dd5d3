"""The canonical store: one HDF5 file per dataset that every later stage reads.

Layout (format version in the root attribute ``format_version``):

- ``X``: float32 ``(n_spectra, n_bins)``, chunked by whole rows, uncompressed (fast to read);
- ``bin_edges``: float64 ``(n_bins + 1,)``;
- ``metadata/<column>``: one value per spectrum (``spectrum_id``, ``source_file``,
  ``source_object``, ``entry`` and whatever the reader found), column order in attribute ``columns``;
- ``label``: int8, 1 = anomalous, 0 = normal (only where the dataset configures a label);
- attributes ``dataset``, ``source_sha256`` (JSON: file -> sha256), ``n_dropped_nonfinite``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .exceptions import InputFileError
from .formats import FORMAT_VERSIONS, check_format_version

ROWS_PER_CHUNK = 10_000


@dataclass
class CanonicalSpectra:
    """Spectra of one dataset in the project's canonical form."""

    dataset: str
    X: np.ndarray
    bin_edges: np.ndarray
    metadata: pd.DataFrame
    labels: np.ndarray | None = None
    source_sha256: dict[str, str] = field(default_factory=dict)
    n_dropped_nonfinite: int = 0

    @property
    def n_spectra(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.X.shape[1])


def write_canonical(spectra: CanonicalSpectra, path: str | os.PathLike[str]) -> None:
    """Write ``spectra`` to ``path`` atomically."""
    import h5py

    X = np.ascontiguousarray(spectra.X, dtype=np.float32)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format_version"] = FORMAT_VERSIONS["canonical_store"]
        handle.attrs["dataset"] = spectra.dataset
        handle.attrs["source_sha256"] = json.dumps(spectra.source_sha256)
        handle.attrs["n_dropped_nonfinite"] = int(spectra.n_dropped_nonfinite)
        chunk_rows = max(1, min(len(X), ROWS_PER_CHUNK))
        handle.create_dataset("X", data=X, chunks=(chunk_rows, X.shape[1]))
        handle.create_dataset("bin_edges", data=np.asarray(spectra.bin_edges, dtype=np.float64))
        group = handle.create_group("metadata")
        group.attrs["columns"] = json.dumps([str(c) for c in spectra.metadata.columns])
        for column in spectra.metadata.columns:
            values = spectra.metadata[column].to_numpy()
            if values.dtype.kind in "OUS":
                group.create_dataset(str(column), data=values.astype(str).astype(object), dtype=h5py.string_dtype())
            else:
                group.create_dataset(str(column), data=values)
        if spectra.labels is not None:
            handle.create_dataset("label", data=np.asarray(spectra.labels, dtype=np.int8))


def read_canonical(path: str | os.PathLike[str], *, load_X: bool = True) -> CanonicalSpectra:
    """Read a canonical store; ``load_X=False`` skips the spectra (metadata and labels only)."""
    import h5py

    if not os.path.exists(path):
        raise InputFileError(f"{path}: canonical store not found; run the workflow's ingest step to create it")
    try:
        with h5py.File(path, "r") as handle:
            check_format_version(handle.attrs.get("format_version"), kind="canonical_store", path=path)
            columns = json.loads(handle["metadata"].attrs["columns"])
            metadata = pd.DataFrame(
                {c: _decode_column(handle["metadata"][c][()]) for c in columns}, columns=columns
            )
            return CanonicalSpectra(
                dataset=str(handle.attrs["dataset"]),
                X=handle["X"][()] if load_X else np.empty((len(metadata), handle["X"].shape[1]), np.float32),
                bin_edges=handle["bin_edges"][()],
                metadata=metadata,
                labels=handle["label"][()] if "label" in handle else None,
                source_sha256=json.loads(handle.attrs["source_sha256"]),
                n_dropped_nonfinite=int(handle.attrs["n_dropped_nonfinite"]),
            )
    except (OSError, KeyError) as error:
        raise InputFileError(
            f"{path}: not a complete canonical store ({error}); delete it and rerun the workflow to rebuild it"
        ) from None


def _decode_column(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values
