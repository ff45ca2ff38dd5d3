"""ROOT readers (uproot): TH1 histograms by name pattern, and TTrees with one spectrum per entry.

- :func:`read_root_histograms`: many TH1s in a file or its directories, one spectrum each, all
  with the same binning; per-bin variances are kept where the histograms store ``Sumw2``.
- :func:`read_root_tree_array`: a TTree whose fixed-size numeric array branch holds one
  spectrum per entry (e.g. ``double counts[512]``).
- :func:`read_root_tree_flat`: a TTree with flat numeric branches, one feature vector per entry.

Other scalar numeric branches of the tree become metadata. A file shorter than the end its
header records is refused as truncated.
"""

from __future__ import annotations

import fnmatch
import os
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
    source_metadata,
    uniform_edges,
    with_input_metadata,
)

#: ROOT classes read as one-dimensional histograms
TH1_CLASSES = ("TH1C", "TH1S", "TH1I", "TH1L", "TH1F", "TH1D")
TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")


def open_root(path: str | os.PathLike[str]) -> Any:
    """Open a ROOT file with uproot; a missing, foreign or truncated file is :class:`InputFileError`."""
    import uproot

    if not os.path.exists(path):
        raise InputFileError(f"{path}: file not found")
    try:
        handle = uproot.open(path)
        recorded_end = int(handle.file.fEND)
    except Exception as error:  # uproot raises many types for a file that is not ROOT
        raise InputFileError(f"{path}: not a readable ROOT file (truncated or corrupt?): {error}") from None
    size = os.path.getsize(path)
    if size < recorded_end:
        handle.close()
        raise InputFileError(f"{path}: truncated ROOT file: {size} bytes, but its header records {recorded_end}")
    return handle


def _classnames(handle: Any, *, path: str | os.PathLike[str]) -> dict[str, str]:
    try:
        return handle.classnames(recursive=True, cycle=False)
    except Exception as error:
        raise InputFileError(f"{path}: cannot list the objects of the ROOT file (corrupt?): {error}") from None


def _guarded(path: str | os.PathLike[str], what: str, action):
    """Run ``action()``, turning uproot's errors on damaged data into :class:`InputFileError`."""
    try:
        return action()
    except SpectralAnomalyError:
        raise
    except Exception as error:
        raise InputFileError(f"{path}: cannot read {what} (truncated or corrupt?): {error}") from None


def read_root_histograms(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """Every TH1 whose full name (``dir/name``) matches ``pattern``, in the file's key order.

    Options: ``pattern`` (shell-style, e.g. ``spectra/spectrum_*``), ``flow`` (keep the under- and
    overflow bins as first and last bin; default false), ``metadata_tree`` (optional TTree with
    one entry per matched histogram, in the same order, whose numeric branches become metadata).
    """
    pattern = dataset["pattern"]
    flow = bool(dataset.get("flow", False))
    with open_root(path) as handle:
        classes = _classnames(handle, path=path)
        names = _matched_histograms(classes, pattern, path=path)
        counts, variances, edges = _read_histograms(handle, names, flow=flow, path=path)
        metadata = source_metadata(path, names, len(names))
        if dataset.get("metadata_tree"):
            tree = _tree(handle, dataset["metadata_tree"], classes, path=path)
            tree_metadata = pd.DataFrame(_scalar_branches(tree, path=path))
            if len(tree_metadata) != len(names):
                raise InvalidSpectraError(
                    f"{path}: metadata tree {dataset['metadata_tree']!r} has {len(tree_metadata)} entries but "
                    f"pattern {pattern!r} matches {len(names)} histograms; they must match entry for histogram"
                )
            metadata = with_input_metadata(metadata, tree_metadata, path=path)
    return RawSpectra(counts=check_spectra_shape(counts, path=path, obj=pattern), bin_edges=edges,
                      metadata=metadata, variances=variances)


def _matched_histograms(classes: dict[str, str], pattern: str, *, path: str | os.PathLike[str]) -> list[str]:
    histograms = [name for name, cls in classes.items() if cls in TH1_CLASSES]
    names = [name for name in histograms if fnmatch.fnmatchcase(name, pattern)]
    if not names:
        raise ObjectNotFoundError(
            f"{path}: no TH1 histogram matches pattern {pattern!r}; TH1 histograms in the file "
            f"(closest first): {closest_first(pattern, histograms)}"
        )
    return names


def _read_histograms(handle: Any, names: list[str], *, flow: bool, path: str | os.PathLike[str]):
    reference_edges: np.ndarray | None = None
    reference_name = ""
    rows, variance_rows, all_weighted = [], [], True
    for name in names:
        histogram = _guarded(path, f"histogram {name!r}", lambda name=name: handle[name])
        values, edges, sumw2 = _guarded(path, f"histogram {name!r}", lambda h=histogram: _histogram_arrays(h, flow=flow))
        check_edges(edges if not flow else edges[1:-1], len(values) - (2 if flow else 0), path=path, obj=name)
        if reference_edges is None:
            reference_edges, reference_name = edges, name
        elif edges.shape != reference_edges.shape or not np.array_equal(edges, reference_edges):
            raise InvalidSpectraError(
                f"{path}: histogram {name!r} has {len(edges) - 1} bins over [{edges[0]}, {edges[-1]}] but "
                f"{reference_name!r} has {len(reference_edges) - 1} bins over [{reference_edges[0]}, "
                f"{reference_edges[-1]}]; all selected histograms must share one binning (narrow the pattern)"
            )
        rows.append(values)
        all_weighted = all_weighted and sumw2
        if all_weighted:
            variance_rows.append(histogram.variances(flow=flow))
    edges = np.asarray(reference_edges, dtype=np.float64).copy()
    if flow:  # uproot gives -inf/+inf as the flow bins' outer edges; keep them finite and ordered
        edges[0], edges[-1] = edges[1] - (edges[2] - edges[1]), edges[-2] + (edges[-2] - edges[-3])
    variances = np.asarray(variance_rows, dtype=np.float64) if all_weighted else None
    return np.asarray(rows, dtype=np.float64), variances, edges


def _histogram_arrays(histogram: Any, *, flow: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """Contents, bin edges and whether Sumw2 is stored, after checking the axis against the contents.

    The bin count is checked first: a damaged axis could otherwise ask for billions of edges.
    """
    contents = histogram.values(flow=True)
    n_bins = int(histogram.member("fXaxis").member("fNbins"))
    if n_bins + 2 != len(contents):
        raise ValueError(f"its axis has {n_bins} bins but {len(contents) - 2} stored contents")  # -> InputFileError
    values = contents if flow else contents[1:-1]
    return values, histogram.axis().edges(flow=flow), len(histogram.member("fSumw2")) > 0


def _tree(handle: Any, tree_name: str, classes: dict[str, str], *, path: str | os.PathLike[str]) -> Any:
    trees = [name for name, cls in classes.items() if cls in TREE_CLASSES]
    if tree_name not in trees:
        raise ObjectNotFoundError(
            f"{path}: no TTree named {tree_name!r}; trees in the file (closest first): {closest_first(tree_name, trees)}"
        )
    return _guarded(path, f"tree {tree_name!r}", lambda: handle[tree_name])


def _numeric_shape(branch: Any) -> tuple[int, ...] | None:
    """The per-entry shape of a numeric branch (``()`` scalar, ``(k,)`` fixed array), else None."""
    from uproot.interpretation.numerical import AsDtype

    interpretation = branch.interpretation
    if isinstance(interpretation, AsDtype) and interpretation.to_dtype.base.kind in "biuf":
        return tuple(interpretation.inner_shape)  # () for a scalar; (k,) for a fixed-size array (dtype kind V)
    return None


def _scalar_branches(tree: Any, *, path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every scalar numeric branch of ``tree`` (not in ``exclude``) as an array per entry."""
    names = [name for name, branch in tree.items() if name not in exclude and _numeric_shape(branch) == ()]
    return {name: _guarded(path, f"branch {name!r}", lambda n=name: tree[n].array(library="np")) for name in names}


def read_root_tree_array(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """One spectrum per entry from a fixed-size numeric array branch of a TTree.

    Options: ``tree``, ``branch`` (e.g. ``counts`` of type ``double[512]``), ``bin_range``.
    Every scalar numeric branch becomes a metadata column.
    """
    with open_root(path) as handle:
        tree = _tree(handle, dataset["tree"], _classnames(handle, path=path), path=path)
        name = dataset["branch"]
        _array_branch_bins(tree, dataset, path=path)
        counts = _guarded(path, f"branch {name!r}", lambda: tree[name].array(library="np"))
        counts = check_spectra_shape(np.asarray(counts, dtype=np.float64), path=path, obj=f"{dataset['tree']}/{name}")
        metadata = with_input_metadata(source_metadata(path, f"{dataset['tree']}/{name}", len(counts)),
                                       _scalar_branches(tree, path=path), path=path)
    return RawSpectra(counts=counts, bin_edges=uniform_edges(counts.shape[1], dataset), metadata=metadata)


def _array_branch_bins(tree: Any, dataset: dict[str, Any], *, path: str | os.PathLike[str]) -> int:
    """The length of the tree's fixed-size numeric array branch ``dataset["branch"]`` (checked to exist)."""
    arrays = {name: shape for name, branch in tree.items() if (shape := _numeric_shape(branch)) and len(shape) == 1}
    name = dataset["branch"]
    if name not in arrays:
        raise ObjectNotFoundError(
            f"{path}: tree {dataset['tree']!r} has no fixed-size numeric array branch {name!r}; such branches: "
            f"{closest_first(name, arrays)}"
        )
    return int(arrays[name][0])


def read_root_tree_flat(path: str | os.PathLike[str], dataset: dict[str, Any]) -> RawSpectra:
    """One feature vector per entry from flat numeric branches of a TTree.

    Options: ``tree``, ``branches`` (shell-style patterns of the feature branches, in the order
    given; default every scalar numeric branch), ``metadata_branches`` (scalar branches kept as
    metadata instead of features), ``bin_range``.
    """
    with open_root(path) as handle:
        tree = _tree(handle, dataset["tree"], _classnames(handle, path=path), path=path)
        metadata_names = tuple(dataset.get("metadata_branches") or ())
        features = _feature_branches(tree, dataset, path=path)
        columns = [_guarded(path, f"branch {n!r}", lambda n=n: tree[n].array(library="np")) for n in features]
        counts = check_spectra_shape(np.column_stack(columns).astype(np.float64), path=path, obj=dataset["tree"])
        metadata = with_input_metadata(source_metadata(path, dataset["tree"], len(counts)), {
            name: _guarded(path, f"branch {name!r}", lambda n=name: tree[n].array(library="np")) for name in metadata_names
        }, path=path)
    return RawSpectra(counts=counts, bin_edges=uniform_edges(counts.shape[1], dataset), metadata=metadata)


def _feature_branches(tree: Any, dataset: dict[str, Any], *, path: str | os.PathLike[str]) -> list[str]:
    """The scalar numeric branches that ``branches`` (default every one) selects, minus ``metadata_branches``."""
    metadata_names = tuple(dataset.get("metadata_branches") or ())
    scalars = [name for name, branch in tree.items() if _numeric_shape(branch) == ()]
    for name in metadata_names:
        if name not in scalars:
            raise ObjectNotFoundError(
                f"{path}: tree {dataset['tree']!r} has no scalar numeric branch {name!r}; such branches: "
                f"{closest_first(name, scalars)}"
            )
    candidates = [name for name in scalars if name not in metadata_names]
    features: list[str] = []
    for pattern in dataset.get("branches") or ["*"]:
        matched = [n for n in candidates if fnmatch.fnmatchcase(n, pattern) and n not in features]
        if not matched:
            raise ObjectNotFoundError(
                f"{path}: no scalar numeric branch of tree {dataset['tree']!r} matches {pattern!r}; such branches: "
                f"{closest_first(pattern, candidates)}"
            )
        features.extend(matched)
    return features


def count_root_bins(path: str | os.PathLike[str], dataset: dict[str, Any]) -> int:
    """The number of bins the dataset's ROOT reader would give, from the file's structure and the first
    matching histogram's axis (no spectra are read)."""
    with open_root(path) as handle:
        classes = _classnames(handle, path=path)
        if dataset["format"] == "root_th1":
            first = _matched_histograms(classes, dataset["pattern"], path=path)[0]
            histogram = _guarded(path, f"histogram {first!r}", lambda: handle[first])
            n_bins = int(_guarded(path, f"histogram {first!r}", lambda: histogram.member("fXaxis").member("fNbins")))
            return n_bins + (2 if dataset.get("flow", False) else 0)
        tree = _tree(handle, dataset["tree"], classes, path=path)
        if dataset["format"] == "root_tree_array":
            return _array_branch_bins(tree, dataset, path=path)
        return len(_feature_branches(tree, dataset, path=path))
