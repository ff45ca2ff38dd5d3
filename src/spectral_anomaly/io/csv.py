"""CSV reader: one spectrum per row, bin columns chosen by a regular expression.

Two layouts are common: a header row with bin columns among metadata columns (e.g. ``bin_0`` ...
``bin_101`` beside ``run``, ``lumi`` and a label ``y``), and a headerless table of numbers whose
first row holds the bin centres (e.g. a wavelength grid) and every later row one spectrum.
"""

from __future__ import annotations

import os
import re
import warnings
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
    try:
        with warnings.catch_warnings():  # a row longer than the header would otherwise lose fields silently
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, header=0 if header else None, index_col=False, low_memory=False)
    except pd.errors.ParserWarning:
        raise InputFileError(f"{path}: some rows have more fields than the header names; the file is damaged") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise InputFileError(f"{path}: not a readable CSV file: {error}") from None
    table.columns = [str(c) for c in table.columns]
    pattern = dataset.get("bin_columns")
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as error:
        raise ConfigError(f"{path}: bin_columns {pattern!r} is not a valid regular expression: {error}") from None
    bins = [c for c in table.columns if regex is None or regex.fullmatch(c)]
    if not bins:
        raise ObjectNotFoundError(
            f"{path}: no column matches bin_columns {pattern!r}; columns (closest first): "
            f"{closest_first(pattern or '', table.columns)}"
        )
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
    metadata = pd.concat([source_metadata(path, os.path.basename(path), len(counts)), metadata_columns], axis=1)
    return RawSpectra(counts=counts, bin_edges=edges, metadata=metadata)
