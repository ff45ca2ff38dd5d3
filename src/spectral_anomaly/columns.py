"""The pipeline's own column names, and how input metadata is kept apart from them.

Score tables hold the pipeline's columns (a spectrum's identity and origin, its split and label,
every score, latent coordinates, the bin of the largest pull and flags) beside the metadata the input files carry. An input
column whose name is one of the pipeline's (a CSV column ``label``, a tree branch ``entry``) is
stored, scored, reported and referred to in expressions under the name
``input_<name>`` (:data:`INPUT_PREFIX`), so it can neither break a stage nor be overwritten
silently; ingestion logs each such renaming.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .models import DETECTORS

log = logging.getLogger(__name__)

#: each spectrum's row in the canonical store
ID_COLUMN = "spectrum_id"
#: where a spectrum comes from, added by every reader
ORIGIN_COLUMNS = ("source_file", "source_object", "entry")
#: columns a score table adds to the metadata
TABLE_COLUMNS = ("model", "split", "label", "anomaly_score")
#: signed copies of a score (higher = more normal) -> the anomaly-sign column evaluated instead
SIGNED_COPIES: dict[str, str] = {copy: score for kind in DETECTORS.values() for copy, score in kind.signed_copies.items()}
#: score columns in the anomaly sign (higher = more anomalous) of every detector kind, evaluated by the
#: report when present: as the detectors declare them (:data:`spectral_anomaly.models.DETECTORS`)
SCORE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    column for kind in DETECTORS.values() for column in kind.score_columns if column not in SIGNED_COPIES))
#: where a spectrum's anomaly lies, written beside the scores but not a score (never ranked or evaluated):
#: ``max_pull_bin``, the 0-based bin of the largest absolute pull (the bin of ``max_abs_pull``)
LOCALIZATION_COLUMNS = ("max_pull_bin",)
#: prefixes of numbered pipeline columns: latent coordinates (latent_0, ...) and flags (flag_fpr_1pct, ...)
RESERVED_PREFIXES = ("latent_", "flag_fpr_")
#: every exact pipeline column name
RESERVED_COLUMNS: tuple[str, ...] = (ID_COLUMN, *ORIGIN_COLUMNS, *TABLE_COLUMNS, *SCORE_COLUMNS, *SIGNED_COPIES,
                                    *LOCALIZATION_COLUMNS)
#: the prefix an input column whose name is reserved is stored under
INPUT_PREFIX = "input_"


def is_reserved(name: str) -> bool:
    """Whether ``name`` is (or is shaped like) one of the pipeline's own columns."""
    return name in RESERVED_COLUMNS or name.startswith(RESERVED_PREFIXES)


def input_column_names(names: Iterable[str], *, source: str) -> list[str]:
    """The names input metadata columns ``names`` are stored under: reserved ones with :data:`INPUT_PREFIX`.

    The prefix is repeated until the name is free (``input_label`` taken too: ``input_input_label``).
    """
    names = [str(name) for name in names]
    result, taken = [], set(names)
    for name in names:
        stored = name
        while is_reserved(stored) or (stored != name and stored in taken):
            stored = INPUT_PREFIX + stored
        if stored != name:
            log.warning("%s: metadata column %r is one of the pipeline's own column names; it is kept as %r",
                        source, name, stored)
            taken.add(stored)
        result.append(stored)
    return result
