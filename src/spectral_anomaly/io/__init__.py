"""Readers that open raw files as :class:`RawSpectra`, one reader per file format.

:func:`open_raw_spectra` is a context manager: HDF5 readers keep the file open and read rows on
demand, so ingestion streams files larger than memory; the ROOT and CSV readers load their
(small) objects whole. Formats are chosen by the dataset's ``format`` key; :data:`FORMATS`
lists them.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..exceptions import ConfigError, InputFileError
from .csv import count_csv_bins, read_csv_spectra
from .hdf5 import open_hdf5_array, open_pandas_hdf5
from .raw import RawSpectra
from .root import count_root_bins, read_root_histograms, read_root_tree_array, read_root_tree_flat

_LAZY_READERS: dict[str, Callable[[Any, dict[str, Any]], contextlib.AbstractContextManager[RawSpectra]]] = {
    "pandas_hdf5": open_pandas_hdf5,
    "hdf5_array": open_hdf5_array,
}
_EAGER_READERS: dict[str, Callable[[Any, dict[str, Any]], RawSpectra]] = {
    "csv": read_csv_spectra,
    "root_th1": read_root_histograms,
    "root_tree_array": read_root_tree_array,
    "root_tree_flat": read_root_tree_flat,
}
FORMATS = tuple(sorted({*_LAZY_READERS, *_EAGER_READERS}))
#: formats whose bins are counted without the reader (which would load the whole file); lazy readers open it
_BIN_COUNTERS: dict[str, Callable[[Any, dict[str, Any]], int]] = {
    "csv": count_csv_bins,
    "root_th1": count_root_bins,
    "root_tree_array": count_root_bins,
    "root_tree_flat": count_root_bins,
}


@contextlib.contextmanager
def open_raw_spectra(path: str | os.PathLike[str], dataset: dict[str, Any]) -> Iterator[RawSpectra]:
    """Open ``path`` with the reader that the dataset's ``format`` names."""
    fmt = dataset.get("format")
    if fmt in _LAZY_READERS:
        with _LAZY_READERS[fmt](path, dataset) as raw:
            yield raw
    elif fmt in _EAGER_READERS:
        yield _EAGER_READERS[fmt](path, dataset)
    else:
        raise ConfigError(f"unknown dataset format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def count_bins(path: str | os.PathLike[str], dataset: dict[str, Any]) -> int:
    """The number of bins of the file's spectra, read from its structure (cheap: no spectra are read)."""
    if dataset.get("format") in _BIN_COUNTERS:
        return _BIN_COUNTERS[dataset["format"]](path, dataset)
    with open_raw_spectra(path, dataset) as raw:
        return raw.n_bins


def read_raw_spectra(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Read ``path`` whole into memory (for small files and interactive use; ingestion streams)."""
    import numpy as np

    with open_raw_spectra(path, dataset) as raw:
        counts = np.asarray(raw.counts[0 : raw.n_spectra])
        return RawSpectra(counts=counts, bin_edges=raw.bin_edges, metadata=raw.metadata, variances=raw.variances)


def expand_input_paths(pattern: str) -> list[str]:
    """The files a dataset's ``path`` names: itself, or every match of a glob pattern, sorted.

    A file of exactly that name wins over reading the name as a pattern, so a file name with ``*``,
    ``?`` or ``[`` in it can be given as it is.
    """
    if not glob.has_magic(pattern) or os.path.isfile(pattern):
        return [pattern]
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not paths:
        raise InputFileError(f"{pattern}: no file matches this pattern (working directory {os.getcwd()})")
    return paths


def dataset_input_files(name: str, pattern: str) -> list[str]:
    """The existing files of dataset ``name`` whose ``path`` is ``pattern`` (:func:`expand_input_paths`), each as a
    job's command line may take it: a relative path starting with ``-`` gets ``./``, so it is not read as an option."""
    files = [os.path.join(".", file) if file.startswith("-") else file for file in expand_input_paths(pattern)]
    for file in files:
        if not os.path.isfile(file):
            raise InputFileError(f"dataset {name!r}: input file {file!r} not found (working directory {os.getcwd()})")
    return files


__all__ = ["FORMATS", "RawSpectra", "count_bins", "dataset_input_files", "expand_input_paths", "open_raw_spectra",
           "read_raw_spectra"]
