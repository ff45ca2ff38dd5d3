"""HDF5 readers: pandas ``DataFrame.to_hdf`` files and plain 2-D h5py datasets.

pandas files are read with h5py straight from their ``<key>/block<i>_values`` arrays, which is
about ten times faster than ``pandas.read_hdf`` and never unpickles anything: a pickled object
column is refused, because unpickling a file runs code from it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import (
    InputFileError,
    InvalidSpectraError,
    ObjectNotFoundError,
    SpectralAnomalyError,
    closest_first,
)
from .raw import RawSpectra, check_edges, check_spectra_shape, uniform_edges


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Open an HDF5 file read-only, turning h5py's errors into :class:`InputFileError`."""
    import h5py

    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputFileError(
            f"{path}: not a readable HDF5 file (truncated or corrupt?): {error}"
        ) from None
    try:
        yield handle
    except SpectralAnomalyError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as error:  # h5py's errors for damaged internals
        raise InputFileError(f"{path}: damaged HDF5 file (corrupt internal structure?): {error}") from None
    finally:
        handle.close()


def _all_paths(handle: Any, kind: str) -> list[str]:
    """Paths of every dataset (``kind='dataset'``) or group (``kind='group'``) in the file."""
    import h5py

    wanted = h5py.Dataset if kind == "dataset" else h5py.Group
    found: list[str] = []
    handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, wanted) else None)
    return found


def _get_object(handle: Any, key: str, *, path: str | os.PathLike[str], kind: str) -> Any:
    import h5py

    wanted = h5py.Dataset if kind == "dataset" else h5py.Group
    obj = handle.get(key)
    if not isinstance(obj, wanted):
        what = "has no" if obj is None else f"has {key!r}, but it is not a"
        raise ObjectNotFoundError(
            f"{path}: {what} {kind} {key!r}; available {kind}s (closest first): "
            f"{closest_first(key, _all_paths(handle, kind))}"
        )
    return obj


def _read_array(dataset: Any, *, path: str | os.PathLike[str]) -> np.ndarray:
    try:
        return dataset[()]
    except (OSError, RuntimeError, ValueError) as error:
        raise InputFileError(f"{path}: cannot read {dataset.name!r} (truncated or corrupt?): {error}") from None


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    return values


def _pandas_frame_blocks(group: Any, *, path: str | os.PathLike[str], key: str) -> list[tuple[list, Any]]:
    """The (column names, values dataset) pairs of a pandas fixed-format frame."""
    pandas_type = group.attrs.get("pandas_type", b"")
    pandas_type = pandas_type.decode() if isinstance(pandas_type, bytes) else str(pandas_type)
    if pandas_type == "frame_table":
        raise InvalidSpectraError(
            f"{path}: key {key!r} is a pandas 'table' format frame; this reader takes the default "
            "'fixed' format (DataFrame.to_hdf(..., format='fixed')), or use format 'hdf5_array'"
        )
    if pandas_type != "frame":
        raise InvalidSpectraError(
            f"{path}: key {key!r} is not a pandas DataFrame (pandas_type={pandas_type or 'none'}); "
            "for a plain 2-D dataset use format 'hdf5_array'"
        )
    blocks = []
    for i in range(int(group.attrs.get("nblocks", 0))):
        items_key = f"block{i}_items"
        names = list(_decode(group[items_key][()])) if items_key in group else []
        blocks.append((names, group[f"block{i}_values"]))
    return blocks


def _columns_in_frame_order(group: Any, blocks: list[tuple[list, Any]], *, path: str | os.PathLike[str]) -> np.ndarray:
    """Join the blocks (pandas groups columns by dtype) back into the frame's column order."""
    joined = np.concatenate([_read_array(values, path=path) for _, values in blocks], axis=1)
    if "axis0" not in group or len(blocks) == 1:
        return joined
    items = [item for names, _ in blocks for item in names]
    position = {item: i for i, item in enumerate(items)}
    order = [position[item] for item in _decode(_read_array(group["axis0"], path=path))]
    return joined[:, order]


def _is_pickled(dataset: Any) -> bool:
    atom = dataset.attrs.get("PSEUDOATOM", b"")
    return (atom.decode() if isinstance(atom, bytes) else str(atom)) == "object" or dataset.dtype.kind == "O"


def read_pandas_hdf5(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Read spectra from a pandas HDF5 key (one row per spectrum, one column per bin).

    Options: ``key`` (the DataFrame's key, e.g. ``data``), ``metadata_key`` (optional: a second
    DataFrame with one row per spectrum whose numeric columns become metadata), ``bin_range``.
    """
    key = dataset["key"].strip("/")
    with open_hdf5(path) as handle:
        group = _get_object(handle, key, path=path, kind="group")
        blocks = _pandas_frame_blocks(group, path=path, key=key)
        if not blocks:
            raise InvalidSpectraError(f"{path}: pandas key {key!r} holds no columns")
        for _, values in blocks:
            if _is_pickled(values):
                raise InvalidSpectraError(
                    f"{path}: pandas key {key!r} has a pickled object column ({values.name}); it is not read, "
                    "because unpickling a file runs code from it. Spectra must be numeric columns."
                )
        counts = _columns_in_frame_order(group, blocks, path=path)
        counts = check_spectra_shape(counts, path=path, obj=key)
        metadata = pd.DataFrame({"source_file": str(path), "source_object": key, "entry": np.arange(len(counts))})
        if dataset.get("metadata_key"):
            extra = _read_pandas_numeric_columns(handle, dataset["metadata_key"].strip("/"), path=path)
            if len(extra) != len(counts):
                raise InvalidSpectraError(
                    f"{path}: metadata key {dataset['metadata_key']!r} has {len(extra)} rows but "
                    f"{key!r} has {len(counts)} spectra; they must match row for row"
                )
            metadata = pd.concat([metadata, extra], axis=1)
    edges = uniform_edges(counts.shape[1], dataset)
    return RawSpectra(counts=counts, bin_edges=edges, metadata=metadata)


def _read_pandas_numeric_columns(handle: Any, key: str, *, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Numeric columns of a pandas fixed-format frame; pickled object columns are left unread."""
    group = _get_object(handle, key, path=path, kind="group")
    columns: dict[str, np.ndarray] = {}
    for names, values in _pandas_frame_blocks(group, path=path, key=key):
        if _is_pickled(values):
            continue
        array = _read_array(values, path=path)
        for j, name in enumerate(names):
            columns[str(name)] = array[:, j]
    return pd.DataFrame(columns)


def read_hdf5_array(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Read spectra from a 2-D HDF5 dataset ``(n_spectra, n_bins)``.

    Options: ``dataset`` (its path in the file), ``bin_edges_dataset`` (optional path of the
    ``n_bins + 1`` edges), ``metadata_group`` (optional group of 1-D datasets, one value per
    spectrum, each becoming a metadata column), ``bin_range``.
    """
    name = dataset["dataset"].strip("/")
    with open_hdf5(path) as handle:
        array = _get_object(handle, name, path=path, kind="dataset")
        if array.ndim != 2:
            check_spectra_shape(np.empty(array.shape), path=path, obj=name)
        counts = check_spectra_shape(_read_array(array, path=path), path=path, obj=name)
        if dataset.get("bin_edges_dataset"):
            edges_name = dataset["bin_edges_dataset"].strip("/")
            edges_obj = _get_object(handle, edges_name, path=path, kind="dataset")
            edges = check_edges(_read_array(edges_obj, path=path), counts.shape[1], path=path, obj=edges_name)
        else:
            edges = uniform_edges(counts.shape[1], dataset)
        metadata = pd.DataFrame({"source_file": str(path), "source_object": name, "entry": np.arange(len(counts))})
        if dataset.get("metadata_group"):
            group_name = dataset["metadata_group"].strip("/")
            group = _get_object(handle, group_name, path=path, kind="group")
            for column, values in group.items():
                data = _decode(_read_array(values, path=path))
                if data.shape != (len(counts),):
                    raise InvalidSpectraError(
                        f"{path}: metadata dataset {values.name!r} has shape {data.shape}; "
                        f"expected ({len(counts)},), one value per spectrum"
                    )
                metadata[column] = data
    return RawSpectra(counts=counts, bin_edges=edges, metadata=metadata)
