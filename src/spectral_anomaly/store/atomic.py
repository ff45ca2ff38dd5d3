"""Write files whole or not at all: into a temporary file in the same folder, then rename.

The temporary file is named ``.<name>.<pid>@<host>.<random>.tmp``. A writer killed outright
(SIGKILL, power loss) cannot remove its own; the next writer of the same file on the same host
removes those of processes that no longer run, so a rerun after a kill leaves nothing behind.
Result files (models, stores, score tables, the JSON, CSV and YAML records) also get a checksum sidecar
(:mod:`.integrity`) before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import DiskFullError
from .integrity import SIDECAR_SUFFIX, checksum_path, file_checksum, wants_checksum


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{writer_tag()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        if wants_checksum(target):
            write_checksum(tmp, target=target)
        os.replace(tmp, target)
    except Exception as error:
        if not isinstance(error, DiskFullError) and _is_disk_full(error, target.parent):
            raise DiskFullError(
                f"{target}: no space left on the device while writing it (nothing was written); free space in "
                f"{target.parent} or choose a results_dir on a larger disk, then rerun"
            ) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_checksum(content: str | os.PathLike[str], *, target: str | os.PathLike[str]) -> None:
    """Record the checksum of ``content`` (the finished temporary file) as the checksum of ``target``.

    Written atomically itself (a temporary name, then a rename) and before ``target`` is renamed into
    place, so a complete ``target`` always has its sidecar.
    """
    sidecar = checksum_path(target)
    tmp = sidecar.with_name(f"{sidecar.name}.{writer_tag()}.tmp")  # .<name>.xxh128.<pid>@<host>.tmp
    try:
        tmp.write_text(f"{file_checksum(content)}  {Path(target).name}\n")
        os.replace(tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)


def _is_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` came from a full file system: ENOSPC, in the error or its text (h5py and torch
    report it only there), or no free space left in ``folder``."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


def writer_tag() -> str:
    """``<pid>@<host>``: which process wrote a temporary file (host names shortened, without dots)."""
    return f"{os.getpid()}@{socket.gethostname().split('.')[0]}"


_TAG = re.compile(rf"^(?:{SIDECAR_SUFFIX}\.)?(\d+)@([^.]+)\.")


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporary_files(target: Path) -> None:
    """Remove temporary files of ``target`` (and of its checksum) left by killed writers on this host."""
    prefix, host = f".{target.name}.", writer_tag().split("@", 1)[1]
    for leftover in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        tag = _TAG.match(leftover.name[len(prefix):])
        if tag and tag.group(2) == host and not _process_is_running(int(tag.group(1))):
            leftover.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
