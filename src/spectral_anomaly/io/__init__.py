"""Readers that turn raw files into :class:`RawSpectra`, one reader per file format.

A reader takes the file path and the dataset's config section and returns counts
``(n_spectra, n_bins)``, bin edges and per-spectrum metadata. Formats are chosen by the
dataset's ``format`` key; :data:`READERS` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigError
from .hdf5 import read_hdf5_array, read_pandas_hdf5
from .raw import RawSpectra
from .root import read_root_histograms

READERS: dict[str, Callable[[str | os.PathLike[str], dict[str, Any]], RawSpectra]] = {
    "pandas_hdf5": read_pandas_hdf5,
    "hdf5_array": read_hdf5_array,
    "root_th1": read_root_histograms,
}


def read_raw_spectra(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Read ``path`` with the reader that the dataset's ``format`` names."""
    fmt = dataset.get("format")
    if fmt not in READERS:
        raise ConfigError(f"unknown dataset format {fmt!r}; valid formats: {', '.join(sorted(READERS))}")
    return READERS[fmt](path, dataset)


__all__ = ["READERS", "RawSpectra", "read_raw_spectra"]
