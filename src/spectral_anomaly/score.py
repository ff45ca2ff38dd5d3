"""Per-spectrum anomaly scores, one table per detector, plus the most anomalous examples.

Every table has one row per spectrum of the dataset, keyed by ``spectrum_id``, with its
metadata, ``split`` and ``label`` (where configured), every score column of the detector, the
latent coordinates (``latent_0``, ...), ``anomaly_score`` (the detector's primary score, higher =
more anomalous) and the flags at the calibrated cuts. :func:`score_and_write` is the one scoring
path of every detector kind: it talks to the detector contract (:mod:`.models.base`) only.

Every detector also gets ``chi2`` (the sum over bins of squared pulls) and ``max_abs_pull``, a
pull being a bin's residual over its uncertainty: the input file's variances where it has them
(ROOT ``Sumw2``), else the detector's own. ``max_pull_bin`` (an integer) is the 0-based bin of that
largest absolute pull, where the spectrum deviates most (the first of tied bins; bin 0 where every
pull is zero); it locates an anomaly and is not a score, so it is neither ranked nor evaluated.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .columns import INPUT_PREFIX, TABLE_COLUMNS
from .exceptions import InputFileError, InvalidSpectraError, SpectralAnomalyError
from .split import split_labels
from .store.atomic import atomic_path
from .store.canonical import CanonicalSpectra
from .store.formats import FORMAT_VERSIONS, check_format_version


def build_score_table(
    spectra: CanonicalSpectra, split: dict[str, np.ndarray], scores: dict[str, np.ndarray], *, model: str, primary: str
) -> pd.DataFrame:
    """Assemble the per-spectrum table: metadata, split, label, what the detector returned (scores, latent
    coordinates, ``max_pull_bin``) and ``anomaly_score``.

    Every score must be finite: a table with a NaN or infinite score is refused (nothing is written),
    so a run never ends complete with scores that cannot rank spectra.
    """
    check_finite_scores(scores, spectra=spectra, model=model)
    clashes = [c for c in (*TABLE_COLUMNS, *scores) if c in spectra.metadata.columns]
    if clashes:
        raise InvalidSpectraError(
            f"dataset {spectra.dataset!r}: the canonical store's metadata holds the pipeline's own column(s) "
            f"{', '.join(map(repr, clashes))}; it was written by an older version: delete it and rerun the workflow "
            f"(input columns of these names are now kept as {INPUT_PREFIX}<name>)"
        )
    table = spectra.metadata.copy()
    table.insert(1, "split", split_labels(spectra.n_spectra, split))
    if spectra.labels is not None:
        table.insert(2, "label", spectra.labels.astype(np.int8))
    table.insert(1, "model", model)
    for name, values in scores.items():
        table[name] = values
    table["anomaly_score"] = scores[primary]
    return table


def check_finite_scores(scores: dict[str, np.ndarray], *, spectra: CanonicalSpectra, model: str) -> None:
    """Refuse scores that are NaN or infinite, naming the dataset, model, score and first such spectrum."""
    for name, values in scores.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            ids = spectra.metadata["spectrum_id"] if "spectrum_id" in spectra.metadata.columns else None
            spectrum = int(ids.iloc[first]) if ids is not None else first
            raise InvalidSpectraError(
                f"dataset {spectra.dataset!r}, model {model!r}: {int(bad.sum())} of {len(bad)} spectra got a "
                f"non-finite {name} (first: spectrum_id {spectrum}); the run stops rather than report them. Such scores "
                "come from degenerate spectra (all zero, or identical after normalization) or a diverged model: check "
                "those spectra and the normalization, or lower training.learning_rate"
            )


def score_table_metadata(*, kind: str, primary: str, thresholds: dict | None = None,
                         choices: dict | None = None) -> dict[bytes, bytes]:
    """The parquet metadata of a score table: format version, detector kind, primary score and, where
    given, the flag calibration (``spectral_anomaly.thresholds``) and the detector's label-free choices."""
    import json

    metadata = {b"spectral_anomaly.format_version": str(FORMAT_VERSIONS["scores"]).encode(),
                b"spectral_anomaly.model_kind": kind.encode(),
                b"spectral_anomaly.primary_score": primary.encode()}
    if thresholds is not None:
        metadata[b"spectral_anomaly.thresholds"] = json.dumps(thresholds).encode()
    if choices:
        metadata[b"spectral_anomaly.choices"] = json.dumps(choices).encode()
    return metadata


def write_scores(
    table: pd.DataFrame, path: str | os.PathLike[str], *, kind: str, primary: str, thresholds: dict | None = None,
    choices: dict | None = None,
) -> None:
    """Write a score table as parquet, with format version and primary score in its metadata.

    ``thresholds``, the calibration of the flag columns (:func:`.thresholds.add_threshold_flags`),
    is stored as JSON under ``spectral_anomaly.thresholds``; ``choices``, what the detector's fit chose
    without labels (e.g. its latent size), under ``spectral_anomaly.choices``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = {**(arrow.schema.metadata or {}),
                **score_table_metadata(kind=kind, primary=primary, thresholds=thresholds, choices=choices)}
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(metadata), tmp)


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a score table; ``table.attrs`` holds ``model_kind``, ``primary_score`` and, when stored, ``thresholds``
    and ``choices``."""
    import json

    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise InputFileError(f"{path}: score table not found; run the workflow's score step")
    try:
        arrow = pq.read_table(path)
        metadata = arrow.schema.metadata or {}
        check_format_version(metadata.get(b"spectral_anomaly.format_version", b"").decode() or None, kind="scores", path=path)
    except SpectralAnomalyError:
        raise
    except Exception as error:
        raise InputFileError(f"{path}: not a readable score table ({error}); delete it and rerun the workflow") from None
    table = arrow.to_pandas()
    table.attrs["model_kind"] = metadata[b"spectral_anomaly.model_kind"].decode()
    table.attrs["primary_score"] = metadata[b"spectral_anomaly.primary_score"].decode()
    if b"spectral_anomaly.thresholds" in metadata:
        table.attrs["thresholds"] = json.loads(metadata[b"spectral_anomaly.thresholds"])
    if b"spectral_anomaly.choices" in metadata:
        table.attrs["choices"] = json.loads(metadata[b"spectral_anomaly.choices"])
    return table


def score_and_write(
    detector, spectra: CanonicalSpectra, split: dict[str, np.ndarray], *, model: str, scoring: dict,
    scores_path: str | os.PathLike[str], examples_path: str | os.PathLike[str],
) -> pd.DataFrame:
    """Score every spectrum with ``detector``; write the score table (with flags) and the most anomalous examples."""
    from .thresholds import add_threshold_flags

    scores = detector.score(spectra.X, variances=spectra.variances)
    table = build_score_table(spectra, split, scores, model=model, primary=detector.primary_score)
    table, thresholds = add_threshold_flags(table, false_positive_rates=scoring["false_positive_rates"])
    write_scores(table, scores_path, kind=detector.kind, primary=detector.primary_score, thresholds=thresholds,
                 choices=detector.choices_)
    rows = top_spectra(table, scoring["n_examples"])
    examples = detector.reconstruct(spectra.X[rows], variances=None if spectra.variances is None else spectra.variances[rows])
    write_examples(examples_path, spectra=spectra, table=table, rows=rows, **examples)
    return table


def top_spectra(table: pd.DataFrame, n_examples: int) -> np.ndarray:
    """Row positions of the ``n_examples`` highest anomaly scores, most anomalous first."""
    return np.argsort(-table["anomaly_score"].to_numpy(), kind="stable")[:n_examples]


def write_examples(
    path: str | os.PathLike[str], *, spectra: CanonicalSpectra, table: pd.DataFrame, rows: np.ndarray,
    reconstruction: np.ndarray, pulls: np.ndarray,
) -> None:
    """Store the most anomalous spectra (``rows``) with their reconstructions (input units) and pulls.

    The report draws these without loading any model, so it can be regenerated from stored results.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez(
            stream,
            format_version=FORMAT_VERSIONS["examples"],
            spectrum_id=table["spectrum_id"].to_numpy()[rows],
            anomaly_score=table["anomaly_score"].to_numpy()[rows],
            input=spectra.X[rows].astype(np.float64),
            reconstruction=np.asarray(reconstruction, dtype=np.float64),
            pulls=np.asarray(pulls, dtype=np.float64),
            bin_edges=spectra.bin_edges,
        )


def read_examples(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            check_format_version(stored["format_version"], kind="examples", path=path)
            return {key: stored[key] for key in stored.files}
    except SpectralAnomalyError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise InputFileError(f"{path}: not a readable examples file ({error}); rerun the workflow's score step") from None
