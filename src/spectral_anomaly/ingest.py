"""Ingestion: stream raw files into the canonical store, checking every spectrum on the way.

One pass over the input, block by block: each block of rows is read and checked (NaN and
infinities; negative values where the normalization needs counts) while it is still in the CPU
cache, so memory stays at one block however large the input. Several files (a glob) are concatenated in
name order and must share their binning. The store is written to a temporary file and renamed
only when complete, so a failed ingestion leaves nothing behind.

Where the input already is float32 in HDF5 and every spectrum passes the checks, the store's
``X`` is an HDF5 virtual dataset that maps the input's rows without copying them (``store:
auto``): a 2 GB input then costs one read, not a 2 GB copy per result version. The store records
each linked file's size and modification time, and reading it refuses a file that has changed
since. Otherwise, or with ``store: copy``, the spectra are copied into ``X``, written in chunks
of whole rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .exceptions import InputFileError, InvalidSpectraError
from .io import RawSpectra, open_raw_spectra
from .io.hdf5_mapping import mapped_row_blocks, row_regions
from .store.atomic import atomic_path
from .store.canonical import (
    create_spectra_dataset,
    evaluate_metadata_expression,
    rows_per_chunk,
    write_store_contents,
)
from .store.provenance import file_state, sha256_file
from .text import counted

log = logging.getLogger(__name__)

#: bytes of float32 spectra read and checked at a time when nothing is copied (fits in the L2/L3 cache)
BLOCK_BYTES = 4 * 1024 * 1024
#: normalization steps that take only values >= 0 (counts; for ``log``, positive quantities)
STEPS_NEEDING_COUNTS = ("unit_integral", "log1p", "log", "sqrt")


def evaluate_label(metadata: pd.DataFrame, expression: str, *, dataset: str) -> np.ndarray:
    """The dataset's ``anomaly_label`` (true = anomalous) as int8 labels, 1 = anomalous."""
    return evaluate_metadata_expression(metadata, expression, dataset=dataset, key="anomaly_label").astype(np.int8)


def _check_compatible(sources: list[tuple[str, RawSpectra]]) -> None:
    first_path, first = sources[0]
    for path, raw in sources[1:]:
        if raw.n_bins != first.n_bins or not np.array_equal(raw.bin_edges, first.bin_edges):
            raise InvalidSpectraError(
                f"{path}: {raw.n_bins} bins over [{raw.bin_edges[0]}, {raw.bin_edges[-1]}] but {first_path} has "
                f"{first.n_bins} bins over [{first.bin_edges[0]}, {first.bin_edges[-1]}]; files of one dataset "
                "must share one binning"
            )
        if (raw.variances is None) != (first.variances is None):
            raise InvalidSpectraError(f"{path}: per-bin variances present in only some files of the dataset")


def _read_block(raw: RawSpectra, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Rows ``start:stop`` of ``raw.counts`` as float32, read into ``out`` where possible."""
    block = out[: stop - start]
    if hasattr(raw.counts, "read_direct") and np.dtype(raw.counts.dtype) == np.float32:
        raw.counts.read_direct(block, np.s_[start:stop], np.s_[0 : stop - start])
    else:
        block[...] = raw.counts[start:stop]
    return block


# float32 bit patterns from 0x7F800000 up are +inf, NaN or (sign bit set) negative numbers
FIRST_NONFINITE_OR_NEGATIVE_BITS = np.uint32(0x7F800000)
#: the largest magnitude accepted in a spectrum: a sum over bins of such values stays far inside float32
#: (3.4e38), so the models' sums and likelihoods cannot overflow
LARGEST_VALUE = 2.0**100
#: float32 bit patterns below this are finite non-negative values below LARGEST_VALUE
FIRST_UNSAFE_BITS = np.float32(LARGEST_VALUE).view(np.uint32)


def _row_blocks(
    raw: RawSpectra, *, block_rows: int, buffer: np.ndarray, mapped: bool,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, rows)`` over ``raw.counts``: memory-mapped where ``mapped`` and the file allows, else read."""
    regions = row_regions(raw.counts) if mapped and isinstance(raw.counts, h5py.Dataset) else None
    if regions is not None:
        yield from mapped_row_blocks(raw.counts.file.filename, regions, n_bins=raw.n_bins)
        return
    for start in range(0, raw.n_spectra, block_rows):
        stop = min(start + block_rows, raw.n_spectra)
        yield start, stop, _read_block(raw, start, stop, buffer)


def _bad_rows(block: np.ndarray, *, require_counts: bool) -> tuple[np.ndarray | None, int | None, int | None]:
    """Rows with NaN/inf (None if all finite), the first row with a negative value (if checked) and
    the first row with a value beyond :data:`LARGEST_VALUE` in magnitude.

    One pass over the block, still in the CPU cache, settles the common case: seen as unsigned
    32-bit integers, finite non-negative float32 values below :data:`LARGEST_VALUE` are exactly those
    below :data:`FIRST_UNSAFE_BITS` (NaN, infinities, larger values and every value with the sign
    bit set lie above), so a block whose largest bit pattern is below that holds no bad value.
    Otherwise the minimum and maximum tell NaN/inf (NaN propagates through both, -inf shows in the
    minimum, +inf in the maximum) from negative and huge values, and only then is the block examined
    row by row.
    """
    if block.view(np.uint32).max(initial=0) < FIRST_UNSAFE_BITS:
        return None, None, None
    low, high = block.min(), block.max()
    nonfinite = None
    if not (np.isfinite(low) and np.isfinite(high)):
        finite = np.isfinite(block).all(axis=1)
        nonfinite = None if finite.all() else ~finite
    negative = None
    if require_counts and low < 0:
        rows = np.flatnonzero((block < 0).any(axis=1))
        negative = int(rows[0]) if len(rows) else None
    huge = None
    with np.errstate(invalid="ignore"):
        if high > LARGEST_VALUE or low < -LARGEST_VALUE or not (np.isfinite(low) and np.isfinite(high)):
            rows = np.flatnonzero((np.isfinite(block) & (np.abs(block) > LARGEST_VALUE)).any(axis=1))
            huge = int(rows[0]) if len(rows) else None
    return nonfinite, negative, huge


def _linkable(raw: RawSpectra) -> bool:
    """Whether ``raw.counts`` is a float32 HDF5 dataset that a virtual dataset can map as it is."""
    return isinstance(raw.counts, h5py.Dataset) and raw.counts.dtype == np.float32 and not raw.counts.is_virtual


def _scan(
    name: str, sources: list[tuple[str, RawSpectra]], *, policy: str, require_counts: bool, X: Any | None,
) -> np.ndarray | None:
    """Check every spectrum block by block, writing the kept rows into ``X`` when given.

    Returns the mask of kept spectra; with ``X=None`` (linking), None as soon as a spectrum would
    have to be dropped, since a link cannot leave rows out. A plainly stored float32 HDF5 input is
    checked in place, memory-mapped (:mod:`.io.hdf5_mapping`): one pass over the page cache, no
    copy. Anything else is read block by block and each block checked while it is still in the
    CPU cache. When copying, a block is one stored chunk and is written after its check.
    """
    n_bins = sources[0][1].n_bins
    n_total = sum(raw.n_spectra for _, raw in sources)
    block_rows = rows_per_chunk(n_bins) if X is not None else max(1, BLOCK_BYTES // (4 * n_bins))
    buffer = np.empty((min(block_rows, n_total), n_bins), dtype=np.float32)
    keep = np.ones(n_total, dtype=bool)
    written, offset, last_log = 0, 0, time.perf_counter()
    for path, raw in sources:
        for start, stop, block in _row_blocks(raw, block_rows=block_rows, buffer=buffer, mapped=X is None):
            nonfinite, negative, huge = _bad_rows(block, require_counts=require_counts)
            if huge is not None:
                raise InvalidSpectraError(
                    f"{path}: spectrum {start + huge} of {raw.metadata['source_object'].iloc[start + huge]!r} holds "
                    f"values up to {float(np.abs(block[huge][np.isfinite(block[huge])]).max()):.3g}, beyond the "
                    f"{LARGEST_VALUE:.3g} the models' float32 sums over bins can take; rescale the input (e.g. to counts "
                    "or to other units)"
                )
            if negative is not None:
                raise InvalidSpectraError(
                    f"{path}: spectrum {start + negative} of {raw.metadata['source_object'].iloc[start + negative]!r} "
                    "has negative values, but the normalization (unit_integral, log1p) needs counts >= 0; "
                    "fix the file or use only standardize / center_maxabs"
                )
            if nonfinite is not None:
                first_bad = start + int(np.flatnonzero(nonfinite)[0])
                if policy == "error":
                    raise InvalidSpectraError(
                        f"{path}: {int(nonfinite.sum())} spectra in rows {start}-{stop - 1} hold NaN or infinite "
                        "values, or values beyond float32's range of 3.4e38 "
                        f"(first: spectrum {first_bad} of {raw.metadata['source_object'].iloc[first_bad]!r}); "
                        "fix the file or set the dataset's nonfinite: drop to leave them out"
                    )
                if X is None:
                    return None
                keep[offset + start : offset + stop] = ~nonfinite
                block = block[~nonfinite]
            if X is not None:
                X.write_direct(np.ascontiguousarray(block), dest_sel=np.s_[written : written + len(block)])
                written += len(block)
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                log.info("dataset %s: %d / %s checked (%.0f %%)", name, offset + stop, counted(n_total, "spectrum"),
                         100 * (offset + stop) / n_total)
        offset += raw.n_spectra
    return keep


def _virtual_source_name(name: str) -> str:
    """``name`` as HDF5 reads a virtual dataset's source file or dataset name: a printf-like pattern
    (``%b`` is a block number), so a literal percent sign is written ``%%``."""
    return name.replace("%", "%%")


def _link(
    handle: Any, sources: list[tuple[str, RawSpectra]], states: dict[str, tuple[int, int]],
) -> list[dict[str, Any]]:
    """Make ``X`` a virtual dataset over the sources' rows; return what it links to (with the size and
    modification time each file had when ingestion started, which every read of the store checks)."""
    first = sources[0][1]
    n_total = sum(raw.n_spectra for _, raw in sources)
    layout = h5py.VirtualLayout(shape=(n_total, first.n_bins), dtype=np.float32, maxshape=(n_total, first.n_bins))
    linked, offset = [], 0
    for path, raw in sources:
        absolute = os.path.abspath(path)
        layout[offset : offset + raw.n_spectra] = h5py.VirtualSource(
            _virtual_source_name(absolute), _virtual_source_name(raw.counts.name), shape=raw.counts.shape)
        size, mtime_ns = states[path]
        linked.append({"path": absolute, "dataset": raw.counts.name, "bytes": size, "mtime_ns": mtime_ns})
        offset += raw.n_spectra
    handle.create_virtual_dataset("X", layout)
    return linked


def source_checksums(
    paths: Sequence[str | os.PathLike[str]], checksums: dict[str, Any] | None,
) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """The sha256 of every input and its state (size, mtime) now, before it is read.

    ``checksums`` maps a path to its sha256, or to the fingerprint the workflow took at its start
    (``{"sha256", "bytes", "mtime_ns"}``, :func:`.provenance.input_fingerprint`); a file whose size or
    modification time no longer match that fingerprint has changed since and is refused, since the
    version's name and manifest record the old checksum. Paths without one are hashed here.
    """
    sha256, states = {}, {}
    for path in map(str, paths):
        states[path] = file_state(path)
        recorded = (checksums or {}).get(path)
        if isinstance(recorded, dict):
            if states[path] != (recorded["bytes"], recorded["mtime_ns"]):
                raise InputFileError(
                    f"{path}: changed since the workflow started (size or modification time differ from when its "
                    "checksum was taken); run the workflow again, which gives the new content its own result version"
                )
            recorded = recorded["sha256"]
        sha256[path] = recorded or sha256_file(path)
        if not recorded and file_state(path) != states[path]:
            raise InputFileError(f"{path}: changed while its checksum was taken; run again once it is complete")
    return sha256, states


def _check_unchanged(states: dict[str, tuple[int, int]]) -> None:
    """Refuse inputs that changed while they were read: the store would mix old and new content."""
    for path, state in states.items():
        if file_state(path) != state:
            raise InputFileError(
                f"{path}: changed while it was being ingested; nothing was written. Run the workflow again once "
                "the file is complete (it then gets a result version of its own)"
            )


def ingest_to_store(
    name: str,
    dataset: dict[str, Any],
    *,
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    checksums: dict[str, Any] | None = None,
    require_counts: bool = False,
    store: str = "auto",
) -> dict[str, Any]:
    """Ingest ``paths`` (one dataset) into the canonical store at ``output``; return a summary.

    ``checksums`` (path -> sha256, or the workflow's fingerprint, see :func:`source_checksums`) avoids
    hashing inputs that the caller already hashed; either way the checksum recorded is that of the
    bytes read, since a file that changes before or while it is read is refused. ``require_counts``
    refuses negative values (for normalizations that need counts). ``store`` is ``auto`` (link
    float32 HDF5 inputs, copy the rest) or ``copy`` (always copy).
    """
    policy = dataset.get("nonfinite", "error")
    started = time.perf_counter()
    sha256, states = source_checksums(paths, checksums)
    with contextlib.ExitStack() as stack:
        sources = []
        for path in paths:
            log.info("dataset %s: opening %s (format %s)", name, path, dataset["format"])
            sources.append((str(path), stack.enter_context(open_raw_spectra(path, dataset))))
        _check_compatible(sources)
        first = sources[0][1]
        n_total = sum(raw.n_spectra for _, raw in sources)
        metadata = sources[0][1].metadata if len(sources) == 1 else pd.concat(
            [raw.metadata for _, raw in sources], ignore_index=True)
        labels = evaluate_label(metadata, dataset["anomaly_label"], dataset=name) if dataset.get("anomaly_label") else None
        with atomic_path(output) as tmp, h5py.File(tmp, "w") as handle:
            keep, linked = None, []
            if store == "auto" and all(_linkable(raw) for _, raw in sources):
                keep = _scan(name, sources, policy=policy, require_counts=require_counts, X=None)
                if keep is not None:
                    linked = _link(handle, sources, states)
            if keep is None:
                X = create_spectra_dataset(handle, "X", n_rows=n_total, n_bins=first.n_bins)
                keep = _scan(name, sources, policy=policy, require_counts=require_counts, X=X)
                X.resize(int(keep.sum()), axis=0)
            written = int(keep.sum())
            if written == 0:
                raise InvalidSpectraError(f"dataset {name}: every spectrum holds NaN or infinite values; nothing is left")
            if first.variances is not None:
                variances = np.concatenate([raw.variances for _, raw in sources])[keep]
                create_spectra_dataset(handle, "variances", n_rows=written, n_bins=first.n_bins)[...] = variances
            kept = metadata if written == n_total else metadata[keep].reset_index(drop=True)
            kept.insert(0, "spectrum_id", np.arange(written, dtype=np.int64))
            write_store_contents(
                handle, dataset=name, bin_edges=first.bin_edges, metadata=kept,
                labels=None if labels is None else labels[keep],
                source_sha256=sha256, n_dropped_nonfinite=n_total - written, linked_sources=linked,
            )
            _check_unchanged(states)
    seconds = time.perf_counter() - started
    summary = {"dataset": name, "n_spectra": written, "n_bins": first.n_bins, "n_dropped_nonfinite": n_total - written,
               "n_anomalous": None if labels is None else int(labels[keep].sum()), "linked": bool(linked),
               "seconds": seconds}
    if n_total > written:
        log.warning("dataset %s: dropped %d of %s holding NaN or infinite values", name, n_total - written,
                    counted(n_total, "spectrum"))
    log.info("dataset %s: %s x %s%s, %s, in %.2f s", name, counted(written, "spectrum"), counted(first.n_bins, "bin"),
             "" if labels is None else f", {summary['n_anomalous']} labelled anomalous",
             "linked to the input (no copy)" if linked else "copied", seconds)
    return summary
