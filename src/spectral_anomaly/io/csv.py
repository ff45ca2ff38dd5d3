"""CSV reader: one spectrum per row, bin columns chosen by a regular expression.

Two layouts are common: a header row with bin columns among metadata columns (e.g. ``bin_0`` ...
``bin_101`` beside ``run``, ``lumi`` and a label ``y``), and a headerless table of numbers whose
first row holds the bin centres (e.g. a wavelength grid) and every later row one spectrum.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import (
    ConfigError,
    InputFileError,
    InvalidSpectraError,
    ObjectNotFoundError,
    closest_first,
)
from .raw import (
    RawSpectra,
    check_spectra_shape,
    edges_from_centres,
    source_metadata,
    uniform_edges,
    with_input_metadata,
)


def read_csv_spectra(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Spectra from a CSV file.

    Options: ``header`` (default true: the first line names the columns), ``bin_columns`` (regular
    expression matched against whole column names; default every column), ``bin_centres_row``
    (default false: the first data row holds the bin centres, from which edges are derived),
    ``bin_range``. Columns that are not bins become metadata.
    """
    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    header = dataset.get("header", True)
    if header:
        _check_header(path)
    try:
        with warnings.catch_warnings():  # a row longer than the header would otherwise lose fields silently
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, header=0 if header else None, index_col=False, low_memory=False)
    except pd.errors.ParserWarning:
        raise InputFileError(f"{path}: some rows have more fields than the header names; the file is damaged") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise InputFileError(f"{path}: not a readable CSV file: {error}") from None
    if len(table) == 0:
        raise InvalidSpectraError(
            f"{path}: holds a header of {len(table.columns)} columns but no data rows; a CSV input needs one row per spectrum"
        )
    table.columns = [str(c) for c in table.columns]
    bins = _bin_columns(table.columns, dataset, path=path)
    non_numeric = [c for c in bins if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InvalidSpectraError(
            f"{path}: bin column(s) {', '.join(non_numeric[:5])} hold non-numeric values; "
            "narrow bin_columns to the numeric bin columns"
        )
    counts = table[bins].to_numpy(dtype=np.float64)
    metadata_columns = table.drop(columns=bins)
    if dataset.get("bin_centres_row", False):
        edges = edges_from_centres(counts[0], path=path, obj="first row (bin centres)")
        counts, metadata_columns = counts[1:], metadata_columns.iloc[1:].reset_index(drop=True)
    else:
        edges = uniform_edges(counts.shape[1], dataset)
    counts = check_spectra_shape(counts, path=path, obj="rows")
    metadata = with_input_metadata(source_metadata(path, os.path.basename(path), len(counts)), metadata_columns, path=path)
    return RawSpectra(counts=counts, bin_edges=edges, metadata=metadata)


def _bin_columns(columns: list[str], dataset: dict[str, Any], *, path: str | os.PathLike[str]) -> list[str]:
    """The columns that ``bin_columns`` (a regular expression on whole names; default all) selects."""
    pattern = dataset.get("bin_columns")
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as error:
        raise ConfigError(f"{path}: bin_columns {pattern!r} is not a valid regular expression: {error}") from None
    bins = [c for c in columns if regex is None or regex.fullmatch(c)]
    if not bins:
        raise ObjectNotFoundError(
            f"{path}: no column matches bin_columns {pattern!r}; columns (closest first): "
            f"{closest_first(pattern or '', columns)}"
        )
    return bins


def count_csv_bins(path: str | os.PathLike[str], dataset: dict[str, Any]) -> int:
    """The number of bin columns of a CSV file, from its first line alone."""
    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    header = dataset.get("header", True)
    if header:
        _check_header(path)
    first = _first_row(path)
    names = first if header else [str(i) for i in range(len(first))]
    return len(_bin_columns(names, dataset, path=path))


def _check_header(path: str | os.PathLike[str]) -> None:
    """Refuse a header that names a column twice (pandas would silently rename the second one)."""
    names = _first_row(path)
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        where = {name: [i + 1 for i, n in enumerate(names) if n == name] for name in repeated[:5]}
        described = "; ".join(f"{name!r} in columns {', '.join(map(str, columns))}" for name, columns in where.items())
        raise InvalidSpectraError(
            f"{path}: the header names {len(repeated)} column(s) more than once ({described}); "
            "give every column its own name"
        )


def _first_row(path: str | os.PathLike[str]) -> list[str]:
    """The fields of the file's first line that is not blank, as pandas reads the header: a byte-order
    mark dropped, lines of nothing but white space skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            for row in csv.reader(stream):
                if any(field.strip() for field in row) or len(row) > 1:
                    return row
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputFileError(f"{path}: not a readable CSV file: {error}") from None
    return []
