"""Ingestion: stream raw files into the canonical store, checking every spectrum on the way.

One pass over the input: while a background thread reads the next block of rows, the current
block is checked (NaN and infinities; negative values where the normalization needs counts) and
written into the store, so memory stays at a few blocks however large the input. Several files
(a glob) are concatenated in name order and must share their binning. The store is written to a
temporary file and renamed only when complete, so a failed ingestion leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .data import (
    create_spectra_dataset,
    evaluate_metadata_expression,
    rows_per_chunk,
    write_store_contents,
)
from .exceptions import InvalidSpectraError
from .io import RawSpectra, open_raw_spectra
from .provenance import sha256_file

log = logging.getLogger(__name__)

#: rows per processing block are a multiple of the stored chunk, about this many bytes of float32
BLOCK_BYTES = 64 * 1024 * 1024
#: normalization steps that are only meaningful for counts (values >= 0)
STEPS_NEEDING_COUNTS = ("unit_integral", "log1p")


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


def _bad_rows(block: np.ndarray, *, require_counts: bool) -> tuple[np.ndarray | None, int | None]:
    """Rows with NaN/inf (None if all finite) and the first row with a negative value (if checked)."""
    nonfinite = None
    if not np.isfinite(np.add.reduce(block, axis=None)):  # one fast pass; NaN and inf propagate
        finite = np.isfinite(block).all(axis=1)
        nonfinite = None if finite.all() else ~finite
    negative = None
    if require_counts and block.min() < 0:
        rows = np.flatnonzero((block < 0).any(axis=1))
        negative = int(rows[0]) if len(rows) else None
    return nonfinite, negative


def ingest_to_store(
    name: str,
    dataset: dict[str, Any],
    *,
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    checksums: dict[str, str] | None = None,
    require_counts: bool = False,
) -> dict[str, Any]:
    """Ingest ``paths`` (one dataset) into the canonical store at ``output``; return a summary.

    ``checksums`` (path -> sha256) avoids hashing inputs that the caller already hashed.
    ``require_counts`` refuses negative values (for normalizations that need counts).
    """
    policy = dataset.get("nonfinite", "error")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        sources = []
        for path in paths:
            log.info("dataset %s: opening %s (format %s)", name, path, dataset["format"])
            sources.append((str(path), stack.enter_context(open_raw_spectra(path, dataset))))
        _check_compatible(sources)
        first = sources[0][1]
        n_total = sum(raw.n_spectra for _, raw in sources)
        metadata = pd.concat([raw.metadata for _, raw in sources], ignore_index=True)
        labels = evaluate_label(metadata, dataset["anomaly_label"], dataset=name) if dataset.get("anomaly_label") else None
        keep = np.ones(n_total, dtype=bool)
        block_rows = rows_per_chunk(first.n_bins) * max(1, BLOCK_BYTES // (rows_per_chunk(first.n_bins) * 4 * first.n_bins))
        buffers = [np.empty((min(block_rows, n_total), first.n_bins), dtype=np.float32) for _ in range(2)]
        with atomic_path(output) as tmp:
            import h5py

            with h5py.File(tmp, "w") as handle:
                X = create_spectra_dataset(handle, "X", n_rows=n_total, n_bins=first.n_bins)
                written = offset = 0
                last_log = time.perf_counter()
                blocks = [(path, raw, start, min(start + block_rows, raw.n_spectra))
                          for path, raw in sources for start in range(0, raw.n_spectra, block_rows)]
                with ThreadPoolExecutor(max_workers=1) as reader:
                    pending = reader.submit(_read_block, blocks[0][1], blocks[0][2], blocks[0][3], buffers[0])
                    for i, (path, raw, start, stop) in enumerate(blocks):
                        block = pending.result()
                        if i + 1 < len(blocks):
                            _, next_raw, next_start, next_stop = blocks[i + 1]
                            pending = reader.submit(_read_block, next_raw, next_start, next_stop, buffers[(i + 1) % 2])
                        nonfinite, negative = _bad_rows(block, require_counts=require_counts)
                        where = offset + start
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
                                    f"{path}: {int(nonfinite.sum())} spectra in rows {start}-{stop - 1} hold NaN or "
                                    f"infinite values (first: spectrum {first_bad} of "
                                    f"{raw.metadata['source_object'].iloc[first_bad]!r}); fix the file or set the "
                                    "dataset's nonfinite: drop to leave them out"
                                )
                            keep[where : where + len(block)] = ~nonfinite
                            block = block[~nonfinite]
                        X.write_direct(np.ascontiguousarray(block), dest_sel=np.s_[written : written + len(block)])
                        written += len(block)
                        if stop == raw.n_spectra:
                            offset += raw.n_spectra
                        if time.perf_counter() - last_log > 5:
                            last_log = time.perf_counter()
                            done = where + stop - start
                            log.info("dataset %s: %d / %d spectra ingested (%.0f %%)", name, done, n_total,
                                     100 * done / n_total)
                n_dropped = int(n_total - written)
                if written == 0:
                    raise InvalidSpectraError(f"{name}: every spectrum holds NaN or infinite values; nothing is left")
                X.resize(written, axis=0)
                if first.variances is not None:
                    variances = np.concatenate([raw.variances for _, raw in sources])[keep]
                    create_spectra_dataset(handle, "variances", n_rows=written, n_bins=first.n_bins)[...] = variances
                kept = metadata[keep].reset_index(drop=True)
                kept.insert(0, "spectrum_id", np.arange(written, dtype=np.int64))
                sha = {str(p): (checksums or {}).get(str(p)) or sha256_file(p) for p in paths}
                write_store_contents(
                    handle, dataset=name, bin_edges=first.bin_edges, metadata=kept,
                    labels=None if labels is None else labels[keep], source_sha256=sha, n_dropped_nonfinite=n_dropped,
                )
    seconds = time.perf_counter() - started
    summary = {"dataset": name, "n_spectra": written, "n_bins": first.n_bins, "n_dropped_nonfinite": n_dropped,
               "n_anomalous": None if labels is None else int(labels[keep].sum()), "seconds": seconds}
    if n_dropped:
        log.warning("dataset %s: dropped %d of %d spectra holding NaN or infinite values", name, n_dropped, n_total)
    log.info("dataset %s: %d spectra x %d bins%s in %.2f s", name, written, first.n_bins,
             "" if labels is None else f", {summary['n_anomalous']} labelled anomalous", seconds)
    return summary
