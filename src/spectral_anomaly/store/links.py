"""A version's files as links to the shared stage outputs they are, made read-only.

Each link is relative (the results folder can be moved whole) and created atomically: a temporary
link beside it, renamed into place. Its target is made read-only, so the file an old version
links to cannot be changed in place; a rerun of its stage writes a new file under a new name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..exceptions import InputFileError
from .atomic import writer_tag

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
    tmp = link.with_name(f".{link.name}.{writer_tag()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(relative, tmp)
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    mode = target.stat().st_mode
    if mode & WRITE_BITS:
        target.chmod(mode & ~WRITE_BITS)


def link_files(pairs: Iterable[tuple[PathLike, PathLike]]) -> None:
    """Link every ``(link, target)`` pair (:func:`link_file`)."""
    for link, target in pairs:
        link_file(link, target)
