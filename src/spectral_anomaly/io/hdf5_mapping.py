"""Rows of a plainly stored float32 HDF5 dataset, memory-mapped from the file instead of read.

A dataset that HDF5 stores as raw little-endian float32 bytes (no compression or other filter,
no external file, contiguous or chunked by whole rows) can be checked in place: mapping the bytes
of a block of rows shows them to numpy straight from the operating system's page cache, with no
copy into a buffer. Checking every value of a large input then costs one pass over memory
instead of a read (a copy) plus a pass. Only a few blocks are mapped at a time, so resident
memory stays small however large the file.

:func:`row_regions` says where the rows lie in the file, or None when the dataset is stored in
any other way (the caller then reads it through h5py); :func:`mapped_row_blocks` yields them.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

#: bytes mapped at a time: large enough that mapping costs little per byte, small next to memory
MAPPED_BLOCK_BYTES = 32 * 1024 * 1024
#: float32, little-endian: the only element type whose stored bytes numpy can take as they are
MAPPABLE_DTYPE = np.dtype("<f4")


def row_regions(dataset: Any) -> list[tuple[int, int, int]] | None:
    """``(first_row, byte_offset, n_rows)`` of each stored run of whole rows, in row order.

    None unless every row of ``dataset`` (an ``h5py.Dataset``) is stored as raw float32 bytes
    inside its own file: a filter, an external or virtual layout, chunks that split rows, chunks
    not yet written, or a region reaching past the end of the file all give None.
    """
    if dataset.dtype != MAPPABLE_DTYPE or dataset.is_virtual or len(dataset.shape) != 2:
        return None
    plist = dataset.id.get_create_plist()
    if plist.get_nfilters() or plist.get_external_count():
        return None
    n_rows, n_bins = dataset.shape
    row_bytes = MAPPABLE_DTYPE.itemsize * n_bins
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        regions = None if offset is None else [(0, offset, n_rows)]
    else:
        chunk_rows, chunk_bins = dataset.chunks
        n_chunks = dataset.id.get_num_chunks()
        if chunk_bins != n_bins or n_chunks != math.ceil(n_rows / chunk_rows):
            return None
        regions = []
        for index in range(n_chunks):
            info = dataset.id.get_chunk_info(index)
            if info.byte_offset is None or info.filter_mask:
                return None
            first = info.chunk_offset[0]
            regions.append((first, info.byte_offset, min(chunk_rows, n_rows - first)))
        regions.sort()
    file_bytes = os.path.getsize(dataset.file.filename)
    if regions is None or any(offset + rows * row_bytes > file_bytes for _, offset, rows in regions):
        return None
    return regions


def mapped_row_blocks(
    path: str | os.PathLike[str], regions: list[tuple[int, int, int]], *, n_bins: int,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, rows)``: read-only float32 views of at most ``MAPPED_BLOCK_BYTES`` each.

    Each block is its own mapping, filled by the kernel in one go (``MAP_POPULATE`` where the
    platform has it) and unmapped as soon as the caller drops its view, so at most about two
    blocks are resident at a time.
    """
    row_bytes = MAPPABLE_DTYPE.itemsize * n_bins
    block_rows = max(1, MAPPED_BLOCK_BYTES // row_bytes)
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with open(path, "rb") as stream:
        for first_row, offset, n_rows in regions:
            for start in range(0, n_rows, block_rows):
                rows = min(block_rows, n_rows - start)
                begin = offset + start * row_bytes
                aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
                mapped = mmap.mmap(stream.fileno(), begin - aligned + rows * row_bytes, flags=flags,
                                   prot=mmap.PROT_READ, offset=aligned)
                block = np.frombuffer(mapped, dtype=MAPPABLE_DTYPE, count=rows * n_bins, offset=begin - aligned)
                yield first_row + start, first_row + start + rows, block.reshape(rows, n_bins)
