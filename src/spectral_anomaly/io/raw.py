"""What every reader yields, and the checks every reader's output must pass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..columns import input_column_names
from ..exceptions import InvalidSpectraError


class RowSource(Protocol):
    """Row-sliceable spectra: an ndarray, an h5py dataset, or a reader's own lazy view."""

    shape: tuple[int, ...]
    dtype: Any

    def __getitem__(self, rows: slice) -> np.ndarray: ...


@dataclass
class RawSpectra:
    """Spectra of one file, before labels, checks and the canonical store.

    ``counts`` has shape ``(n_spectra, n_bins)`` and may be lazy (an open HDF5 dataset): slicing
    rows reads them, so a large file is never loaded whole. ``bin_edges`` has ``n_bins + 1``
    increasing values; ``metadata`` has one row per spectrum with at least ``source_file``,
    ``source_object`` and ``entry`` (the position within its object); ``variances`` holds
    per-bin variances where the file has them (ROOT ``Sumw2``).
    """

    counts: RowSource
    bin_edges: np.ndarray
    metadata: pd.DataFrame
    variances: np.ndarray | None = None

    @property
    def n_spectra(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[1])


def readable_text(value: object) -> str:
    """``value`` as text: bytes and undecodable names (ROOT keys, HDF5 names that are not UTF-8) with
    each bad byte as the replacement character, so every name can be stored, compared and shown."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, escaped by the decoder
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        text = raw.decode("utf-8", "replace")
    return text


def _repeated(value: str, n: int) -> pd.Categorical:
    """One text value for ``n`` rows, stored once (a categorical: one byte per row)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def source_metadata(path: str | os.PathLike[str], obj: str | list[str], n: int) -> pd.DataFrame:
    """The metadata columns every reader provides: file, object and entry within the object."""
    return pd.DataFrame({
        "source_file": _repeated(readable_text(path), n),
        "source_object": _repeated(readable_text(obj), n) if isinstance(obj, str) else [readable_text(o) for o in obj],
        "entry": np.arange(n, dtype=np.int64),
    })


def with_input_metadata(
    origin: pd.DataFrame, columns: pd.DataFrame | dict[str, Any], *, path: str | os.PathLike[str],
) -> pd.DataFrame:
    """``origin`` (from :func:`source_metadata`) joined by the file's own metadata ``columns``, row for row.

    A file column named like one of the pipeline's columns is kept as ``input_<name>``
    (:func:`.columns.input_column_names`), so it can neither clash with nor replace them.
    """
    extra = columns if isinstance(columns, pd.DataFrame) else pd.DataFrame(columns)
    if extra.shape[1] == 0:
        return origin
    extra = extra.reset_index(drop=True)
    extra.columns = input_column_names([readable_text(c) for c in extra.columns], source=str(path))
    return pd.concat([origin.reset_index(drop=True), extra], axis=1)


def uniform_edges(n_bins: int, dataset: dict) -> np.ndarray:
    """Bin edges from the dataset's ``bin_range: [low, high]``, else the bin index 0..n_bins."""
    low, high = dataset.get("bin_range") or (0.0, float(n_bins))
    return np.linspace(float(low), float(high), n_bins + 1)


def check_spectra_shape(counts: RowSource, *, path: str | os.PathLike[str], obj: str) -> RowSource:
    """Require a non-empty 2-D array of real numbers (checked without reading it); return it."""
    shape = tuple(counts.shape)
    if len(shape) != 2:
        raise InvalidSpectraError(
            f"{path}: object {obj!r} has shape {shape}; expected a 2-D array (n_spectra, n_bins)"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidSpectraError(f"{path}: object {obj!r} is empty (shape {shape})")
    dtype = np.dtype(counts.dtype)
    if dtype.kind not in "biuf":
        raise InvalidSpectraError(f"{path}: object {obj!r} has dtype {dtype}; expected real numbers")
    return counts


def check_edges(edges: np.ndarray, n_bins: int, *, path: str | os.PathLike[str], obj: str) -> np.ndarray:
    """Require ``n_bins + 1`` finite, strictly increasing bin edges; return them as float64."""
    edges = np.asarray(edges, dtype=np.float64)
    if edges.shape != (n_bins + 1,):
        raise InvalidSpectraError(
            f"{path}: bin edges {obj!r} have shape {edges.shape}; expected ({n_bins + 1},) for {n_bins} bins"
        )
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise InvalidSpectraError(f"{path}: bin edges {obj!r} must be finite and strictly increasing")
    return edges


def edges_from_centres(centres: np.ndarray, *, path: str | os.PathLike[str], obj: str) -> np.ndarray:
    """Bin edges halfway between increasing bin centres (outer edges mirrored)."""
    centres = np.asarray(centres, dtype=np.float64)
    if len(centres) < 2 or not np.all(np.diff(centres) > 0):
        raise InvalidSpectraError(f"{path}: bin centres {obj!r} must be at least two strictly increasing values")
    inner = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - inner[0]], inner, [2 * centres[-1] - inner[-1]]])
