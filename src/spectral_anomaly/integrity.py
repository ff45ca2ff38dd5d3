"""Checksums that catch result files damaged after they were written.

A truncated model, score table or canonical store fails to parse, but a changed byte in the
middle of one often still parses (HDF5 data, parquet data pages and the tensors of a ``.pt`` file
carry no checksum of their own). So every ``.pt``, ``.parquet`` and ``.h5`` file written through
:func:`.atomic.atomic_path` gets a sidecar ``.<name>.sha256`` beside it (the sha256 of its content
in ``sha256sum`` format, so ``sha256sum -c .<name>.sha256`` checks it by hand). The sidecar is
written before the file is renamed into place; a reader compares the two with
:func:`verify_checksum` (:func:`.formats.check_format_version` does it for every result file) and
refuses a file whose content no longer matches, naming the file and how to rebuild it.

A file without a sidecar (written by hand or by an older version) is read unchecked.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .exceptions import InputFileError

#: suffixes of the files that get a checksum sidecar: the large binary results
CHECKSUMMED_SUFFIXES = (".pt", ".parquet", ".h5")
_CHUNK = 16 * 1024 * 1024


def checksum_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar of ``path``: ``.<name>.sha256`` in the same folder."""
    target = Path(path)
    return target.with_name(f".{target.name}.sha256")


def wants_checksum(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix in CHECKSUMMED_SUFFIXES


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksum(content: str | os.PathLike[str], *, target: str | os.PathLike[str]) -> None:
    """Record the sha256 of ``content`` (the finished temporary file) as the checksum of ``target``.

    Written atomically itself (a temporary name, then a rename) and before ``target`` is renamed into
    place, so a complete ``target`` always has its sidecar.
    """
    from .atomic import writer_tag

    sidecar = checksum_path(target)
    tmp = sidecar.with_name(f"{sidecar.name}.{writer_tag()}.tmp")  # .<name>.sha256.<pid>@<host>.tmp
    try:
        tmp.write_text(f"{file_sha256(content)}  {Path(target).name}\n")
        os.replace(tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)


def verify_checksum(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputFileError` if ``path`` has a sidecar checksum that its content no longer matches."""
    sidecar = checksum_path(path)
    try:
        recorded = sidecar.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return
    if not os.path.isfile(path):
        return
    if file_sha256(path) != recorded:
        raise InputFileError(
            f"{path}: damaged: its content no longer matches the sha256 recorded in {sidecar} when it was written; "
            f"delete {path} and rerun the workflow to rebuild it"
        )
