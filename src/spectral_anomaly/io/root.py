"""ROOT reader: many TH1 histograms in one file, one spectrum each, selected by a name pattern."""

from __future__ import annotations

import fnmatch
import os
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputFileError, InvalidSpectraError, ObjectNotFoundError, closest_first
from .raw import RawSpectra, check_spectra_shape

#: ROOT classes read as one-dimensional histograms
TH1_CLASSES = ("TH1C", "TH1S", "TH1I", "TH1L", "TH1F", "TH1D")


def open_root(path: str | os.PathLike[str]) -> Any:
    """Open a ROOT file with uproot, turning its errors into :class:`InputFileError`."""
    import uproot

    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    try:
        return uproot.open(path)
    except Exception as error:  # uproot raises many types for a file that is not ROOT
        raise InputFileError(f"{path}: not a readable ROOT file (truncated or corrupt?): {error}") from None


def read_root_histograms(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Read every TH1 whose full name (``dir/name``) matches ``pattern``, in the file's key order.

    Options: ``pattern`` (shell-style, e.g. ``spectra/spectrum_*``), ``flow`` (keep the under- and
    overflow bins as first and last bin; default false), ``metadata_tree`` (optional TTree with
    one entry per matched histogram, in the same order, whose numeric branches become metadata).
    All matched histograms must share the same bin edges.
    """
    pattern = dataset["pattern"]
    flow = bool(dataset.get("flow", False))
    with open_root(path) as handle:
        try:
            classes = handle.classnames(recursive=True, cycle=False)
        except Exception as error:
            raise InputFileError(f"{path}: cannot list the objects of the ROOT file: {error}") from None
        histograms = [name for name, cls in classes.items() if cls in TH1_CLASSES]
        names = [name for name in histograms if fnmatch.fnmatchcase(name, pattern)]
        if not names:
            raise ObjectNotFoundError(
                f"{path}: no TH1 histogram matches pattern {pattern!r}; TH1 histograms in the file "
                f"(closest first): {closest_first(pattern, histograms)}"
            )
        counts, edges = _read_histograms(handle, names, flow=flow, path=path)
        metadata = pd.DataFrame({"source_file": str(path), "source_object": names, "entry": np.arange(len(names))})
        if dataset.get("metadata_tree"):
            tree_metadata = _read_tree_metadata(handle, dataset["metadata_tree"], classes, path=path)
            if len(tree_metadata) != len(names):
                raise InvalidSpectraError(
                    f"{path}: metadata tree {dataset['metadata_tree']!r} has {len(tree_metadata)} entries but "
                    f"pattern {pattern!r} matches {len(names)} histograms; they must match entry for histogram"
                )
            metadata = pd.concat([metadata, tree_metadata], axis=1)
    return RawSpectra(counts=check_spectra_shape(counts, path=path, obj=pattern), bin_edges=edges, metadata=metadata)


def _read_histograms(handle: Any, names: list[str], *, flow: bool, path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    reference_edges: np.ndarray | None = None
    rows = []
    for name in names:
        try:
            histogram = handle[name]
            values = histogram.values(flow=flow)
            edges = histogram.axis().edges(flow=flow)
        except Exception as error:
            raise InputFileError(f"{path}: cannot read histogram {name!r} (truncated or corrupt?): {error}") from None
        if reference_edges is None:
            reference_edges = edges
            reference_name = name
        elif edges.shape != reference_edges.shape or not np.array_equal(edges, reference_edges):
            raise InvalidSpectraError(
                f"{path}: histogram {name!r} has {len(edges) - 1} bins over [{edges[0]}, {edges[-1]}] but "
                f"{reference_name!r} has {len(reference_edges) - 1} bins over [{reference_edges[0]}, "
                f"{reference_edges[-1]}]; all selected histograms must share one binning (narrow the pattern)"
            )
        rows.append(values)
    assert reference_edges is not None
    if flow:  # uproot gives -inf/+inf for the flow bins' outer edges; keep them finite and ordered
        reference_edges = reference_edges.copy()
        width = reference_edges[2] - reference_edges[1]
        reference_edges[0], reference_edges[-1] = reference_edges[1] - width, reference_edges[-2] + width
    return np.asarray(rows, dtype=np.float64), np.asarray(reference_edges, dtype=np.float64)


def _read_tree_metadata(handle: Any, tree_name: str, classes: dict[str, str], *, path: str | os.PathLike[str]) -> pd.DataFrame:
    trees = [name for name, cls in classes.items() if cls in ("TTree", "TNtuple", "TNtupleD")]
    if tree_name not in trees:
        raise ObjectNotFoundError(
            f"{path}: no TTree named {tree_name!r}; trees in the file (closest first): {closest_first(tree_name, trees)}"
        )
    tree = handle[tree_name]
    columns: dict[str, np.ndarray] = {}
    for branch in tree.keys():
        try:
            values = tree[branch].array(library="np")
        except Exception:
            continue  # branches of custom classes cannot become metadata columns
        if values.dtype.kind in "biuf" and values.ndim == 1:
            columns[branch] = values
    return pd.DataFrame(columns)
