"""Format versions of every file the pipeline writes, and the check that refuses newer ones.

Each written file records ``format_version`` (an HDF5 attribute, a parquet metadata entry, a JSON
field or a checkpoint key). A reader accepts versions up to the one it knows and refuses a newer
one with a message saying which package version to install, instead of misreading it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..exceptions import FormatVersionError, InputFileError
from .integrity import verify_checksum

#: kind of file -> format version written by this package version
FORMAT_VERSIONS: dict[str, int] = {
    "canonical_store": 2,
    "split": 1,
    "normalization": 1,
    "model": 2,
    "scores": 1,
    "examples": 1,
    "metrics": 1,
    "manifest": 1,
    "history": 1,
    "training_summary": 1,
    "report_build": 1,
    "monitoring_metrics": 1,
}


def check_format_version(found: object, *, kind: str, path: object) -> int:
    """Return ``found`` as an int if this package can read it, else raise :class:`FormatVersionError`.

    Every reader of a result file calls this, so it also checks the file at ``path`` against the
    checksum recorded when it was written (:func:`.integrity.verify_checksum`; files without one
    pass): a file damaged after writing stops with :class:`InputFileError` before its content is used.
    """
    if isinstance(path, (str, os.PathLike)):
        verify_checksum(path)
    known = FORMAT_VERSIONS[kind]
    try:
        version = int(found)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise FormatVersionError(
            f"{path}: not a spectral_anomaly {kind.replace('_', ' ')} file "
            f"(no readable format_version; found {found!r}). Rebuild it with the workflow."
        ) from None
    if version > known:
        raise FormatVersionError(
            f"{path}: {kind.replace('_', ' ')} format version {version} is newer than this "
            f"spectral_anomaly understands (up to {known}). Upgrade spectral_anomaly to read it."
        )
    return version


def read_versioned_json(path: str | os.PathLike[str], *, kind: str, step: str) -> dict[str, Any]:
    """Read a JSON file the workflow's ``step`` wrote, refusing a missing, corrupt or newer one."""
    what = kind.replace("_", " ")
    try:
        with open(path) as stream:
            payload = json.load(stream)
    except FileNotFoundError:
        raise InputFileError(f"{path}: {what} file not found; run the workflow's {step} step") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputFileError(f"{path}: corrupt {what} file ({error}); delete it and rerun the workflow") from None
    if not isinstance(payload, dict):
        raise InputFileError(f"{path}: not a {what} file (expected a JSON object); delete it and rerun the workflow")
    check_format_version(payload.get("format_version"), kind=kind, path=path)
    return payload


def write_versioned_csv(frame: Any, path: str | os.PathLike[str], *, kind: str) -> None:
    """Write a table as CSV whose first line is the comment ``# format_version: N``, atomically."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as stream:
        stream.write(f"# format_version: {FORMAT_VERSIONS[kind]}\n")
        frame.to_csv(stream, index=False)


def read_versioned_csv(path: str | os.PathLike[str], *, kind: str, step: str) -> Any:
    """Read a CSV written by :func:`write_versioned_csv`, refusing a missing, corrupt or newer one."""
    import pandas as pd

    what = kind.replace("_", " ")
    try:
        with open(path) as stream:
            first = stream.readline()
            found = first.split(":", 1)[1].strip() if first.startswith("# format_version:") else None
            check_format_version(found, kind=kind, path=path)
            return pd.read_csv(stream)
    except FileNotFoundError:
        raise InputFileError(f"{path}: {what} file not found; run the workflow's {step} step") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputFileError(f"{path}: corrupt {what} file ({error}); delete it and rerun the workflow") from None
