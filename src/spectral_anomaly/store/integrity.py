"""Checksums that catch result files damaged after they were written.

A truncated model, score table or canonical store fails to parse, but a changed byte in the
middle of one often still parses (HDF5 data, parquet data pages and the arrays of a ``.npz`` model file
carry no checksum of their own), and an edited split, normalization or config file parses as well
as the original. So every result file written through :func:`.atomic.atomic_path` (the suffixes
of :data:`CHECKSUMMED_SUFFIXES`: models, stores, score tables, examples, splits, normalizations,
histories, summaries, metrics, the run's config and the manifest) gets a sidecar ``.<name>.xxh128`` beside it: the 128-bit XXH3 hash of
its content in the format of ``xxh128sum`` (``xxhsum -H2``), so ``xxh128sum -c .<name>.xxh128``
checks it by hand. XXH3 rather than sha256 because every reader verifies the whole file: XXH3 over
the memory-mapped file runs at memory speed (about 20 GB/s here, 15 times sha256), so checking a
2 GB store costs a fraction of reading it. It detects damage, not tampering. The sidecar is
written (by :mod:`.atomic`) before the file is renamed into place; a reader compares the two with
:func:`verify_checksum` (:func:`.formats.check_format_version` does it for every result file) and
refuses a file whose content no longer matches, naming the file and how to rebuild it.

A file without a sidecar (written by hand or by an older version) is read unchecked.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import xxhash

from ..exceptions import InputFileError

#: suffixes of the files that get a checksum sidecar: every result file a later stage reads
CHECKSUMMED_SUFFIXES = (".parquet", ".h5", ".npz", ".json", ".csv", ".yaml")
#: the sidecar's suffix, after the file's own name
SIDECAR_SUFFIX = "xxh128"
#: bytes mapped at a time while hashing, so a large file never counts whole towards resident memory
_WINDOW = 64 * 1024 * 1024


def checksum_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar of ``path``: ``.<name>.xxh128`` in the same folder."""
    target = Path(path)
    return target.with_name(f".{target.name}.{SIDECAR_SUFFIX}")


def wants_checksum(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix in CHECKSUMMED_SUFFIXES


def file_checksum(path: str | os.PathLike[str]) -> str:
    """The XXH3 128-bit hash of the file's content, as ``xxh128sum`` prints it."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        for offset in range(0, size, _WINDOW):  # _WINDOW is a multiple of the mapping granularity
            with mmap.mmap(stream.fileno(), min(_WINDOW, size - offset), access=mmap.ACCESS_READ,
                           offset=offset) as window:
                digest.update(window)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputFileError` if ``path`` has a sidecar checksum that its content no longer matches.

    A symbolic link (a version's file linking a shared stage output) is checked against its target's sidecar.
    """
    real = Path(path).resolve()
    sidecar = checksum_path(real)
    try:
        recorded = sidecar.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return
    if not os.path.isfile(path):
        return
    if file_checksum(path) != recorded:
        raise InputFileError(
            f"{path}: damaged: its content no longer matches the checksum recorded in {sidecar} when it was written; "
            f"delete {path if real == Path(path).absolute() else real} and rerun the workflow to rebuild it"
        )
