"""HDF5 readers: pandas ``DataFrame.to_hdf`` files (fixed and table format) and 2-D h5py datasets.

Both are opened lazily: the reader yields a :class:`RawSpectra` whose ``counts`` reads rows on
demand while the file is open, so ingestion can stream files larger than memory. pandas files
are read with h5py straight from their arrays (ten times faster than ``pandas.read_hdf``) and
nothing in them is ever unpickled as an object: a pickled object column is refused, because
unpickling a file runs code from it. The only pickles read are pandas' column-name lists, and
those through an unpickler that can build nothing but plain lists, tuples, strings and numbers.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import pickle
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
from .raw import (
    RawSpectra,
    check_edges,
    check_spectra_shape,
    readable_text,
    source_metadata,
    uniform_edges,
    with_input_metadata,
)


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Open an HDF5 file read-only; h5py's errors for bad files become :class:`InputFileError`."""
    import h5py

    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputFileError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {error}") from None
    try:
        yield handle
    except SpectralAnomalyError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:  # damaged internals
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
    """The group or dataset ``key`` of the open file ``handle``, checked to lie wholly inside the file."""
    import h5py

    wanted = h5py.Dataset if kind == "dataset" else h5py.Group
    _refuse_external_link(handle, key, path=path)  # before anything follows the link: it may lead anywhere
    try:
        obj = handle.get(key)
    except (KeyError, OSError) as error:
        raise InputFileError(f"{path}: cannot open {kind} {key!r} (corrupt?): {error}") from None
    _check_inside_file(handle, key, obj, path=path)
    if not isinstance(obj, wanted):
        what = "has no" if obj is None else f"has {key!r}, but it is not a"
        raise ObjectNotFoundError(
            f"{path}: {what} {kind} {key!r}; available {kind}s (closest first): "
            f"{closest_first(key, _all_paths(handle, kind))}"
        )
    return obj


def _members(group: Any, *, path: str | os.PathLike[str]) -> list[tuple[str, Any]]:
    """``(name, object)`` of every member of ``group``, each checked to lie inside the file.

    A name that is not UTF-8 (h5py gives it as bytes) is shown with replacement characters.
    """
    return [(readable_text(name), _get_object(group, name, path=path, kind="dataset")) for name in group]


def _external_link_on(handle: Any, key: str | bytes, *, depth: int = 0) -> tuple[str, str] | None:
    """``(its path, where it points)`` of the first external link on the way to ``key`` (each part of the
    path; soft links followed by their target path), else None. Links are read with HDF5's link API on
    the raw names, so nothing is followed and names that are not UTF-8 work."""
    import h5py

    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    group, parts = handle, [part for part in raw.split(b"/") if part]
    for part in parts:
        if not group.id.links.exists(part):
            return None
        info = group.id.links.get_info(part)
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            filename, target = group.id.links.get_val(part)
            return (f"{group.name.rstrip('/')}/{readable_text(part)}",
                    f"{readable_text(filename)}:{readable_text(target)}")
        if info.type == h5py.h5l.TYPE_SOFT and depth < 32:
            found = _external_link_on(handle.file, group.id.links.get_val(part), depth=depth + 1)
            if found is not None:
                return found
        try:
            group = group[part]
        except (KeyError, OSError):
            return None
        if not isinstance(group, h5py.Group):
            return None
    return None


_REMEDY = "copy the data into the file itself (e.g. h5py: f.create_dataset(name, data=dset[()])), then ingest it"


def _object_name(handle: Any, key: str | bytes) -> str:
    return f"{getattr(handle, 'name', '/').rstrip('/')}/{readable_text(key).strip('/')}"


def _refuse_external_link(handle: Any, key: str, *, path: str | os.PathLike[str]) -> None:
    """Refuse ``key`` when an external link lies on the way to it, found from the links alone (never followed)."""
    found = _external_link_on(handle, key)
    if found is not None:
        link_path, target = found
        name = _object_name(handle, key)
        via = "is" if link_path == name else f"lies behind {link_path!r},"
        raise InputFileError(f"{path}: {name!r} {via} an HDF5 external link to {target}; input files may not point "
                             f"to other files; {_REMEDY}")


def _check_inside_file(handle: Any, key: str, obj: Any, *, path: str | os.PathLike[str]) -> None:
    """Refuse an object that is reached through an external link, or a dataset whose data live in other
    files (HDF5 external storage or a virtual dataset): an input file must never make the pipeline read
    another file. The message names the object and where it points."""
    import h5py

    name = _object_name(handle, key)
    if obj is not None and obj.file.filename != handle.file.filename:
        raise InputFileError(f"{path}: {name!r} lies in another file, {obj.file.filename}; input files may not point "
                             f"to other files; {_REMEDY}")
    if not isinstance(obj, h5py.Dataset):
        return
    if obj.is_virtual:
        sources = sorted({f"{source.file_name}:{source.dset_name}" for source in obj.virtual_sources()})
        raise InputFileError(f"{path}: {name!r} is an HDF5 virtual dataset over {', '.join(sources)}; input files "
                             f"may not point to other files; {_REMEDY}")
    plist = obj.id.get_create_plist()
    if plist.get_external_count():
        files = [plist.get_external(i)[0] for i in range(plist.get_external_count())]
        shown = ", ".join(f.decode(errors="replace") if isinstance(f, bytes) else str(f) for f in files)
        raise InputFileError(f"{path}: {name!r} keeps its data in external file(s) {shown}; input files may not "
                             f"point to other files; {_REMEDY}")


def _read_array(dataset: Any, *, path: str | os.PathLike[str]) -> np.ndarray:
    try:
        return dataset[()]
    except (OSError, RuntimeError, ValueError) as error:
        raise InputFileError(f"{path}: cannot read {dataset.name!r} (truncated or corrupt?): {error}") from None


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        return np.array([readable_text(v) for v in values], dtype=object)
    return values


def _attr_text(obj: Any, name: str) -> str:
    value = obj.attrs.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)


class _PlainValuesUnpickler(pickle.Unpickler):
    """Unpickles lists, tuples, strings and numbers only; any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _column_names(obj: Any, attr: str, *, path: str | os.PathLike[str]) -> list:
    raw = obj.attrs.get(attr)
    try:
        return list(_PlainValuesUnpickler(_io.BytesIO(bytes(raw))).load())
    except Exception:
        raise InvalidSpectraError(
            f"{path}: pandas attribute {obj.name}/{attr} is not a plain list of column names; "
            "it is not read, because unpickling a file runs code from it"
        ) from None


def _is_pickled(dataset: Any) -> bool:
    return _attr_text(dataset, "PSEUDOATOM") == "object" or dataset.dtype.kind == "O"


class _FixedFrameColumns:
    """Lazy rows of a pandas fixed-format frame, its dtype blocks joined in column order."""

    def __init__(self, group: Any, *, path: str | os.PathLike[str], key: str) -> None:
        n_blocks = int(group.attrs.get("nblocks", 0))
        if n_blocks == 0:
            raise InvalidSpectraError(f"{path}: pandas key {key!r} holds no columns")
        self.blocks = [_get_object(group, f"block{i}_values", path=path, kind="dataset") for i in range(n_blocks)]
        for values in self.blocks:
            if _is_pickled(values):
                raise InvalidSpectraError(
                    f"{path}: pandas key {key!r} has a pickled object column ({values.name}); it is not read, "
                    "because unpickling a file runs code from it. Spectra must be numeric columns."
                )
        n_rows = {values.shape[0] for values in self.blocks}
        if len(n_rows) != 1 or any(values.ndim != 2 for values in self.blocks):
            raise InvalidSpectraError(f"{path}: pandas key {key!r} has inconsistent blocks (corrupt file?)")
        self.order = None
        if n_blocks > 1:
            items = [item for i in range(n_blocks)
                     for item in _decode(_read_array(_get_object(group, f"block{i}_items", path=path, kind="dataset"),
                                                     path=path))]
            position = {item: i for i, item in enumerate(items)}
            axis = _get_object(group, "axis0", path=path, kind="dataset")
            self.order = [position[item] for item in _decode(_read_array(axis, path=path))]
        self.shape = (n_rows.pop(), sum(values.shape[1] for values in self.blocks))
        self.dtype = np.result_type(*[values.dtype for values in self.blocks])

    def __getitem__(self, rows: slice) -> np.ndarray:
        if len(self.blocks) == 1:
            return self.blocks[0][rows]
        joined = np.concatenate([values[rows] for values in self.blocks], axis=1)
        return joined[:, self.order]


class _TableFrameColumns:
    """Lazy rows of a pandas table-format frame (a compound ``table`` dataset)."""

    def __init__(self, group: Any, *, path: str | os.PathLike[str], key: str) -> None:
        self.table = _get_object(group, "table", path=path, kind="dataset")
        fields = [name for name in self.table.dtype.names if name != "index"]
        for name in fields:
            if self.table.dtype[name].base.kind not in "biuf":
                raise InvalidSpectraError(
                    f"{path}: pandas key {key!r} has a non-numeric column block {name!r} "
                    f"(dtype {self.table.dtype[name]}); spectra must be numeric columns"
                )
        names = [n for field in fields for n in _column_names(self.table, f"{field}_kind", path=path)]
        order_axes = _column_names(group, "non_index_axes", path=path)
        columns = list(order_axes[0][1]) if order_axes else names
        position = {n: i for i, n in enumerate(names)}
        self.fields = fields
        self.order = [position[c] for c in columns]
        self.shape = (int(self.table.shape[0]), len(columns))
        self.dtype = np.result_type(*[self.table.dtype[f].base for f in fields])

    def __getitem__(self, rows: slice) -> np.ndarray:
        records = self.table[rows]
        parts = [np.asarray(records[f], dtype=self.dtype).reshape(len(records), -1) for f in self.fields]
        return np.concatenate(parts, axis=1)[:, self.order]


def _frame_columns(handle: Any, key: str, *, path: str | os.PathLike[str]) -> _FixedFrameColumns | _TableFrameColumns:
    group = _get_object(handle, key, path=path, kind="group")
    pandas_type = _attr_text(group, "pandas_type")
    if pandas_type == "frame":
        return _FixedFrameColumns(group, path=path, key=key)
    if pandas_type == "frame_table":
        return _TableFrameColumns(group, path=path, key=key)
    raise InvalidSpectraError(
        f"{path}: key {key!r} is not a pandas DataFrame (pandas_type={pandas_type or 'none'}); "
        "for a plain 2-D dataset use format 'hdf5_array'"
    )


@contextlib.contextmanager
def open_pandas_hdf5(path: str | os.PathLike[str], dataset: dict[str, Any]) -> Iterator[RawSpectra]:
    """Spectra from a pandas HDF5 key (one row per spectrum, one column per bin).

    Options: ``key`` (the DataFrame's key, e.g. ``data``), ``metadata_key`` (optional: a second
    DataFrame with one row per spectrum whose numeric columns become metadata; its pickled
    object columns are skipped unread), ``bin_range``.
    """
    key = dataset["key"].strip("/")
    with open_hdf5(path) as handle:
        counts = check_spectra_shape(_frame_columns(handle, key, path=path), path=path, obj=key)
        metadata = source_metadata(path, key, counts.shape[0])
        if dataset.get("metadata_key"):
            extra = _numeric_frame(handle, dataset["metadata_key"].strip("/"), path=path)
            if len(extra) != counts.shape[0]:
                raise InvalidSpectraError(
                    f"{path}: metadata key {dataset['metadata_key']!r} has {len(extra)} rows but "
                    f"{key!r} has {counts.shape[0]} spectra; they must match row for row"
                )
            metadata = with_input_metadata(metadata, extra, path=path)
        yield RawSpectra(counts=counts, bin_edges=uniform_edges(counts.shape[1], dataset), metadata=metadata)


def _numeric_frame(handle: Any, key: str, *, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Numeric columns of a pandas fixed-format frame; pickled object columns are left unread."""
    group = _get_object(handle, key, path=path, kind="group")
    if _attr_text(group, "pandas_type") != "frame":
        raise InvalidSpectraError(f"{path}: metadata key {key!r} must be a pandas fixed-format DataFrame")
    columns: dict[str, np.ndarray] = {}
    for i in range(int(group.attrs.get("nblocks", 0))):
        values = _get_object(group, f"block{i}_values", path=path, kind="dataset")
        if _is_pickled(values):
            continue
        names = _decode(_read_array(_get_object(group, f"block{i}_items", path=path, kind="dataset"), path=path))
        array = _read_array(values, path=path)
        for j, name in enumerate(names):
            columns[str(name)] = array[:, j]
    return pd.DataFrame(columns)


@contextlib.contextmanager
def open_hdf5_array(path: str | os.PathLike[str], dataset: dict[str, Any]) -> Iterator[RawSpectra]:
    """Spectra from a 2-D HDF5 dataset ``(n_spectra, n_bins)``, read lazily.

    Options: ``dataset`` (its path in the file), ``bin_edges_dataset`` (optional path of the
    ``n_bins + 1`` edges), ``metadata_group`` (optional group of 1-D datasets, one value per
    spectrum, each becoming a metadata column), ``bin_range``.
    """
    name = dataset["dataset"].strip("/")
    with open_hdf5(path) as handle:
        counts = check_spectra_shape(_get_object(handle, name, path=path, kind="dataset"), path=path, obj=name)
        n_spectra, n_bins = counts.shape
        if dataset.get("bin_edges_dataset"):
            edges_name = dataset["bin_edges_dataset"].strip("/")
            edges_obj = _get_object(handle, edges_name, path=path, kind="dataset")
            edges = check_edges(_read_array(edges_obj, path=path), n_bins, path=path, obj=edges_name)
        else:
            edges = uniform_edges(n_bins, dataset)
        metadata, columns = source_metadata(path, name, n_spectra), {}
        if dataset.get("metadata_group"):
            group_name = dataset["metadata_group"].strip("/")
            group = _get_object(handle, group_name, path=path, kind="group")
            for column, values in _members(group, path=path):
                data = _decode(_read_array(values, path=path))
                if data.shape != (n_spectra,):
                    raise InvalidSpectraError(
                        f"{path}: metadata dataset {values.name!r} has shape {data.shape}; "
                        f"expected ({n_spectra},), one value per spectrum"
                    )
                columns[column] = data
        yield RawSpectra(counts=counts, bin_edges=edges, metadata=with_input_metadata(metadata, columns, path=path))
