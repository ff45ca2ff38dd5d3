"""The project's own errors: one clear message naming the file, the object and what is valid.

Every class subclasses a builtin, so callers can catch ``KeyError`` or ``ValueError`` as usual,
and :class:`SpectralAnomalyError` catches them all (the command line turns them into one line
on stderr and exit status 2).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator


class SpectralAnomalyError(Exception):
    """Base class of every error this package raises on purpose."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr with quotes
        return str(self.args[0]) if self.args else ""


class InputFileError(SpectralAnomalyError, OSError):
    """A file is missing, unreadable, truncated or not of the expected format."""


class DiskFullError(SpectralAnomalyError, OSError):
    """The file system ran out of space while a file was written (nothing of it was kept)."""


class ObjectNotFoundError(SpectralAnomalyError, KeyError):
    """A key, dataset path or ROOT object does not exist in a file."""


class InvalidSpectraError(SpectralAnomalyError, ValueError):
    """Spectra have the wrong shape, non-finite values, mismatched binning, or similar."""


class ConfigError(SpectralAnomalyError, ValueError):
    """A configuration value is unknown or invalid."""


class FormatVersionError(SpectralAnomalyError, ValueError):
    """A stored file was written by a newer format than this version can read."""


class TrainingError(SpectralAnomalyError, RuntimeError):
    """Training could not produce a usable model (for example the loss became non-finite)."""


def closest_first(wanted: str, available: Iterable[str], *, limit: int = 20) -> str:
    """Format ``available`` as a comma-separated list, the names closest to ``wanted`` first."""
    names = sorted({str(name) for name in available})
    if not names:
        return "(none)"
    close = difflib.get_close_matches(wanted, names, n=len(names), cutoff=0.0)
    shown = close[:limit]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(repr(n) for n in shown) + more


def did_you_mean(wanted: object, choices: Iterable[object]) -> str:
    """`` did you mean 'x'?`` for the choice closest to ``wanted``, or ``""`` when none is close."""
    choices = list(choices)
    names = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(wanted), names, n=1)
    return f" did you mean {choices[names.index(close[0])]!r}?" if close else ""


@contextlib.contextmanager
def exit_with_message() -> Iterator[None]:
    """End the program with an error's one-line message (exit status 1) instead of its traceback.

    The Snakefile reads and checks the config inside this, so that Snakemake prints only the message.
    """
    try:
        yield
    except SpectralAnomalyError as error:
        raise SystemExit(str(error)) from None
