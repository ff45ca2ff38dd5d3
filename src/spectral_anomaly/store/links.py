"""The shared stage outputs: how a version puts its stage outputs there, and links to those of others.

A stage job writes its outputs into its own version, then *shares* each one
(:func:`share_file`): a hard link (a copy where the file system has none) under the stage's key in
``<results>/.stages`` (:class:`.layout.StageLayout`), unless an intact one is already there. A later
version whose stage has the same key does not run the stage: it *links* the shared file
(:func:`link_file`, a relative symbolic link, so the results folder can be moved whole). Both are
atomic (a temporary name beside the final one, renamed into place) and leave the files read-only, so
a file that an old version holds cannot be changed in place; a rerun of a stage writes a new file.
Two runs at once that compute the same stage each write their own version's file (neither waits for
the other), and the first to finish shares it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..exceptions import InputFileError
from .atomic import remove_stale_temporary_files, writer_tag
from .integrity import checksum_path, verify_checksum, wants_checksum

PathLike = str | os.PathLike[str]
#: write permission bits, removed from every link target
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def link_file(link: PathLike, target: PathLike) -> None:
    """Make ``link`` a relative symbolic link to ``target`` (an existing file), atomically; make ``target`` read-only."""
    link, target = Path(link), Path(target)
    if not target.is_file():
        raise InputFileError(f"{target}: stage output not found, so {link} cannot link to it; rerun the workflow")
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target.resolve(), link.parent.resolve())
    remove_stale_temporary_files(link)
    tmp = link.with_name(f".{link.name}.{writer_tag()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(relative, tmp)
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    _read_only(target)


def link_files(pairs: Iterable[tuple[PathLike, PathLike]]) -> None:
    """Link every ``(link, target)`` pair (:func:`link_file`)."""
    for link, target in pairs:
        link_file(link, target)


def _read_only(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & WRITE_BITS:
        path.chmod(mode & ~WRITE_BITS)


def is_shared(target: PathLike) -> bool:
    """Whether ``target`` is a whole, intact shared stage output (with its checksum sidecar, which
    its content matches) that a version may link instead of running the stage."""
    target = Path(target)
    if not target.is_file():
        return False
    if not wants_checksum(target):
        return True
    if not checksum_path(target).is_file():
        return False
    try:
        verify_checksum(target)
    except InputFileError:
        return False
    return True


def _place(source: Path, destination: Path) -> None:
    """``destination`` becomes the same file as ``source`` (a hard link, else a copy), atomically."""
    import shutil

    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(destination)
    tmp = destination.with_name(f".{destination.name}.{writer_tag()}.share.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(source, tmp)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def share_file(path: PathLike, target: PathLike) -> None:
    """Share ``path`` (a stage output just written into a version) as ``target`` in the stage store,
    unless an intact ``target`` is there already; make ``path`` read-only. The checksum sidecar is
    shared first, so a target is never there without it."""
    path, target = Path(path), Path(target)
    _read_only(path)
    if is_shared(target):
        return
    if wants_checksum(path) and checksum_path(path).is_file():
        _place(checksum_path(path), checksum_path(target))
    _place(path, target)


def share_files(pairs: Iterable[tuple[PathLike, PathLike]]) -> None:
    """Share every ``(version file, stage output)`` pair (:func:`share_file`)."""
    for path, target in pairs:
        share_file(path, target)
