"""Scoring new spectra with the detectors of a stored result version, flagged at their stored cuts.

The everyday use of a detector: train once on reference data (a result version of the workflow),
then score each new run as it arrives. Nothing is fitted or calibrated on the new spectra: each
reference detector brings its normalization and the flag cuts calibrated at training time on the
reference's validation spectra (:attr:`.models.base.Detector.cuts_`), so a shift of the new data
shows as a change in what is flagged instead of moving the cut with it.

:func:`apply_to_store` streams a canonical store block by block, so a new file larger than memory is
scored with memory bounded by the block: each detector's score table is written one row group per
block, and only the most anomalous spectra are kept to draw them. The ``spectral-anomaly apply``
subcommand and the workflow's apply run (a config with ``reference:``) both call it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ConfigError, InputFileError, InvalidSpectraError, closest_first
from .store.layout import VersionLayout
from .text import counted

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]

#: the split name of every new spectrum in an apply run's score tables
APPLY_SPLIT = "apply"
#: relative difference of bin edges tolerated between the reference's and the new spectra's binning
EDGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Reference:
    """A complete result version used as the reference of an apply run."""

    folder: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def layout(self) -> VersionLayout:
        return VersionLayout(self.folder)

    @property
    def datasets(self) -> list[str]:
        return list(self.config["datasets"])

    @property
    def models(self) -> list[str]:
        from .config import model_instances

        return model_instances(self.config)

    def dataset(self, name: str | None) -> str:
        """The reference dataset whose detectors score new spectra: ``name``, or the only one."""
        if name is None:
            if len(self.datasets) != 1:
                raise ConfigError(f"reference {self.folder} holds datasets {', '.join(self.datasets)}: name the one whose "
                                  "detectors score the new spectra with reference_dataset (--reference-dataset)")
            return self.datasets[0]
        if name not in self.datasets:
            raise ConfigError(f"reference_dataset {name!r}: not a dataset of reference {self.folder}; its datasets: "
                              f"{closest_first(name, self.datasets)}")
        return name


def open_reference(folder: PathLike) -> Reference:
    """The result version at ``folder``, refusing one that is missing or incomplete (no manifest yet)."""
    from .config import read_config_file, validate_config

    path = Path(folder)
    layout = VersionLayout(path)
    if not path.is_dir():
        raise InputFileError(f"reference {folder}: no such result version folder; give a folder results/<run_name>-<hash> "
                             "written by a training run (see `spectral-anomaly runs`)")
    if not layout.config.is_file() or not layout.manifest.is_file():
        raise InputFileError(f"reference {folder}: not a complete result version (it needs config.yaml and manifest.json); "
                             "finish its training run first")
    config = read_config_file(layout.config)
    config.pop("reference", None)
    return Reference(path, validate_config(config, source=layout.config))


def load_reference_detectors(reference: Reference, dataset: str, *, device: str | None = None,
                             models: list[str] | None = None) -> dict[str, Any]:
    """Every stored detector of ``dataset`` in the reference (or those of ``models``), ready to score."""
    from .models import load_detector

    chosen = reference.models if models is None else models
    unknown = [m for m in chosen if m not in reference.models]
    if unknown:
        raise ConfigError(f"model(s) {', '.join(unknown)}: not in reference {reference.folder}; its models: "
                          f"{', '.join(reference.models)}")
    context = {"device": device} if device else {}
    detectors = {model: load_detector(reference.layout.model(dataset, model), **context) for model in chosen}
    for model, detector in detectors.items():
        if not detector.cuts_:  # a model file written before cuts were saved in it: its score table has them
            detector.cuts_ = stored_table_cuts(reference.layout.scores(dataset, model))
    return detectors


def stored_table_cuts(path: PathLike) -> dict[str, Any]:
    """The cuts calibrated at training time as the reference's score table records them (empty if none)."""
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        return {}
    metadata = pq.read_schema(path).metadata or {}
    stored = metadata.get(b"spectral_anomaly.thresholds")
    return json.loads(stored) if stored else {}


def check_same_binning(new_edges: np.ndarray, reference_edges: np.ndarray, *, new: str, reference: str) -> None:
    """Refuse new spectra whose binning differs from the reference's, naming both binnings."""
    new_edges, reference_edges = np.asarray(new_edges, float), np.asarray(reference_edges, float)
    same = new_edges.shape == reference_edges.shape and np.allclose(
        new_edges, reference_edges, rtol=EDGE_TOLERANCE, atol=EDGE_TOLERANCE * float(np.abs(reference_edges).max() or 1.0))
    if not same:
        raise InvalidSpectraError(
            f"{new} has {describe_binning(new_edges)}, but {reference} was trained on {describe_binning(reference_edges)}; "
            "a detector scores only spectra of the binning it was trained on (rebin the new spectra, or select the "
            "same bins with bin_range)")


def describe_binning(edges: np.ndarray) -> str:
    edges = np.asarray(edges, float)
    return f"{len(edges) - 1} bins from {edges[0]:g} to {edges[-1]:g}"


class TopSpectra:
    """The ``n`` highest anomaly scores seen so far over streamed blocks, with their rows in the store."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.scores = np.empty(0)
        self.rows = np.empty(0, dtype=np.int64)

    def update(self, scores: np.ndarray, *, offset: int) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        self.scores = np.concatenate([self.scores, scores])
        self.rows = np.concatenate([self.rows, offset + np.arange(len(scores), dtype=np.int64)])
        keep = np.lexsort((self.rows, -self.scores))[: self.n]  # highest first; ties by row, as top_spectra does
        self.scores, self.rows = self.scores[keep], self.rows[keep]


def apply_to_store(
    store_path: PathLike, *, reference: Reference, reference_dataset: str, dataset: str, layout: VersionLayout,
    models: list[str] | None = None, device: str | None = None, n_examples: int = 10, block_spectra: int | None = None,
) -> dict[str, Any]:
    """Score the canonical store at ``store_path`` with the reference's detectors of ``reference_dataset``;
    write each model's score table (flags at the stored cuts) and most anomalous examples into ``layout``
    under ``dataset``. Returns a summary: spectra scored and flagged per model and cut."""
    from .normalize import block_rows
    from .store.canonical import iter_canonical_blocks

    detectors = load_reference_detectors(reference, reference_dataset, device=device, models=models)
    n_spectra, edges = store_shape(store_path)
    check_same_binning(edges, reference_bin_edges(reference, reference_dataset), new=f"dataset {dataset!r} ({store_path})",
                       reference=f"reference {reference.name} dataset {reference_dataset!r}")
    rows = block_spectra or block_rows(len(edges) - 1)
    started = time.perf_counter()
    tops = {model: TopSpectra(n_examples) for model in detectors}
    flagged = {model: {} for model in detectors}
    with contextlib.ExitStack() as stack:
        writers = {model: stack.enter_context(_score_table_writer(layout.scores(dataset, model), detector))
                   for model, detector in detectors.items()}
        done = 0
        for block in iter_canonical_blocks(store_path, rows=rows):
            for model, detector in detectors.items():
                table = score_block(detector, block, model=model)
                writers[model](table)
                tops[model].update(table["anomaly_score"].to_numpy(), offset=done)
                for entry in detector.cuts_["rates"]:
                    flagged[model][entry["column"]] = flagged[model].get(entry["column"], 0) + int(table[entry["column"]].sum())
            done += block.n_spectra
            log.info("dataset %s: scored %d of %s with %s (%.1f s)", dataset, done, counted(n_spectra, "spectrum"),
                     counted(len(detectors), "detector"), time.perf_counter() - started)
    for model, detector in detectors.items():
        write_top_examples(store_path, detector, tops[model], path=layout.examples(dataset, model))
    return {"dataset": dataset, "reference": reference.name, "reference_dataset": reference_dataset,
            "n_spectra": n_spectra, "flagged": flagged, "seconds": round(time.perf_counter() - started, 3)}


def store_shape(path: PathLike) -> tuple[int, np.ndarray]:
    """The number of spectra and the bin edges of a canonical store, without reading its metadata."""
    import h5py

    from .store.canonical import read_canonical

    if not os.path.exists(path):
        read_canonical(path, load_X=False)  # its clear error
    try:
        with h5py.File(path, "r") as handle:
            return int(handle["X"].shape[0]), handle["bin_edges"][()]
    except (OSError, KeyError) as error:
        raise InputFileError(f"{path}: not a complete canonical store ({error}); delete it and ingest again") from None


def score_block(detector: Any, block: Any, *, model: str):
    """The score table of one block of new spectra, flagged at the detector's stored cuts."""
    from .score import build_score_table
    from .thresholds import flag_with_stored_cuts

    scores = detector.score(block.X, variances=block.variances)
    empty = {name: np.empty(0, dtype=np.int64) for name in ("train", "validation", "test")}
    table = build_score_table(block, empty, scores, model=model, primary=detector.primary_score)
    table["split"] = APPLY_SPLIT
    table, _ = flag_with_stored_cuts(table, detector.cuts_, what=f"model {model!r}")
    return table


@contextlib.contextmanager
def _score_table_writer(path: PathLike, detector: Any):
    """A function writing score-table blocks as row groups of one parquet file, renamed into place at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .score import score_table_metadata
    from .store.atomic import atomic_path
    from .thresholds import stored_cut_entries

    stored_cut_entries(detector.cuts_, what=f"the {detector.kind} detector for {path}")  # refuse before any work
    thresholds = {**detector.cuts_, "stored": True}
    metadata = score_table_metadata(kind=detector.kind, primary=detector.primary_score, thresholds=thresholds,
                                    choices=detector.choices_)
    state: dict[str, Any] = {}
    with atomic_path(path) as tmp:
        def write(table) -> None:
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            if "writer" not in state:
                state["schema"] = arrow.schema.with_metadata({**(arrow.schema.metadata or {}), **metadata})
                state["writer"] = pq.ParquetWriter(tmp, state["schema"])
            state["writer"].write_table(arrow.cast(state["schema"]))

        try:
            yield write
        finally:
            if "writer" in state:
                state["writer"].close()
        if "writer" not in state:
            raise InvalidSpectraError(f"{path}: no spectrum to score")


def write_top_examples(store_path: PathLike, detector: Any, top: TopSpectra, *, path: PathLike) -> None:
    """The most anomalous new spectra with their reconstructions and pulls, as the report draws them."""
    import h5py
    import pandas as pd

    from .score import write_examples
    from .store.canonical import CanonicalSpectra

    order = np.argsort(top.rows)  # h5py reads increasing rows; the file keeps the ranking
    with h5py.File(store_path, "r") as handle:
        X = handle["X"][top.rows[order]] if len(order) else np.empty((0, handle["X"].shape[1]), np.float32)
        variances = handle["variances"][top.rows[order]] if "variances" in handle and len(order) else None
        edges = handle["bin_edges"][()]
    rank = np.argsort(order)
    X = X[rank]
    variances = None if variances is None else variances[rank]
    spectra = CanonicalSpectra(dataset="", X=X, bin_edges=edges, metadata=pd.DataFrame(index=range(len(X))))
    table = pd.DataFrame({"spectrum_id": top.rows, "anomaly_score": top.scores})
    examples = detector.reconstruct(X, variances=variances)
    write_examples(path, spectra=spectra, table=table, rows=np.arange(len(X)), **examples)


def reference_bin_edges(reference: Reference, dataset: str) -> np.ndarray:
    """The bin edges the reference's detectors of ``dataset`` were trained on (read from its canonical store)."""
    import h5py

    path = reference.layout.store(dataset)
    try:
        with h5py.File(path, "r") as handle:
            return handle["bin_edges"][()]
    except (OSError, KeyError) as error:
        raise InputFileError(f"reference {reference.folder}: its canonical store {path} is not readable ({error}); "
                             "rerun the reference's training run to restore it") from None
