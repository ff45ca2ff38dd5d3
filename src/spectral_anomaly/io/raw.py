"""What every reader returns, and the checks every reader's output must pass."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InvalidSpectraError


@dataclass
class RawSpectra:
    """Spectra as read from one file, before labels, checks and the canonical store.

    ``counts`` is ``(n_spectra, n_bins)``; ``bin_edges`` has ``n_bins + 1`` increasing values;
    ``metadata`` has one row per spectrum and at least ``source_file``, ``source_object`` and
    ``entry`` (the spectrum's position within its object).
    """

    counts: np.ndarray
    bin_edges: np.ndarray
    metadata: pd.DataFrame


def uniform_edges(n_bins: int, dataset: dict) -> np.ndarray:
    """Bin edges from the dataset's ``bin_range: [low, high]``, else the bin index 0..n_bins."""
    low, high = dataset.get("bin_range") or (0.0, float(n_bins))
    return np.linspace(float(low), float(high), n_bins + 1)


def check_spectra_shape(counts: np.ndarray, *, path: str | os.PathLike[str], obj: str) -> np.ndarray:
    """Require a non-empty 2-D numeric array; return it."""
    if counts.ndim != 2:
        raise InvalidSpectraError(
            f"{path}: object {obj!r} has shape {counts.shape}; expected a 2-D array (n_spectra, n_bins)"
        )
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise InvalidSpectraError(f"{path}: object {obj!r} is empty (shape {counts.shape})")
    if not np.issubdtype(counts.dtype, np.number) or np.issubdtype(counts.dtype, np.complexfloating):
        raise InvalidSpectraError(f"{path}: object {obj!r} has dtype {counts.dtype}; expected real numbers")
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
