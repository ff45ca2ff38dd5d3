"""Per-spectrum anomaly scores, one table per model, plus the most anomalous examples.

Every table has one row per spectrum of the dataset, keyed by ``spectrum_id``, with its
metadata, ``split`` and ``label`` (where configured), every score of the model, the latent
coordinates (``latent_0``, ...) and ``anomaly_score``: the model's primary score, higher =
more anomalous. Scores are computed on normalized spectra; sums run over bins.

Primary scores: autoencoder ``reconstruction_error``; VAE ``negative_elbo``; PCA
``pca_nll`` (the probabilistic-PCA negative log-likelihood). Every model also gets ``chi2`` (the
sum over bins of squared pulls) and ``max_abs_pull``, a pull being a bin's residual over its
uncertainty: the input file's variances where it has them (ROOT ``Sumw2``), else the model's own
(Poisson, learned or fixed width; residuals in normalized units for the autoencoder and in units
of the noise width for PCA).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .data import CanonicalSpectra
from .columns import INPUT_PREFIX, TABLE_COLUMNS
from .exceptions import InputFileError, InvalidSpectraError, SpectralAnomalyError
from .formats import FORMAT_VERSIONS, check_format_version
from .split import split_labels

PRIMARY_SCORE = {"autoencoder": "reconstruction_error", "vae": "negative_elbo", "pca": "pca_nll"}
#: a Poisson VAE's primary score: -ELBO above its best possible value, which does not grow with the counts
POISSON_PRIMARY_SCORE = "elbo_deviance"


def primary_score(kind: str, columns) -> str:
    """The column that is a model's ``anomaly_score``: ``elbo_deviance`` for a Poisson VAE, else by kind."""
    return POISSON_PRIMARY_SCORE if kind == "vae" and POISSON_PRIMARY_SCORE in columns else PRIMARY_SCORE[kind]


#: per-spectrum outputs of ``score_batch`` that are arrays over bins, not score columns
_BIN_ARRAYS = ("reconstruction", "reconstruction_counts", "pulls")


def file_variance_pulls(counts: np.ndarray, reconstruction_counts: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Pulls against the per-bin variances stored in the input file (e.g. ROOT Sumw2).

    A bin of zero variance counts as variance one (one count), so that it cannot divide by zero.
    """
    return (counts - reconstruction_counts) / np.sqrt(np.where(variances > 0, variances, 1.0))


#: spectra x Monte-Carlo samples x bins in one scoring batch: its largest tensors stay near 64 MB, so wide
#: spectra (16,384 bins, K = 16) are scored in smaller batches than ``scoring.batch_size``
MAX_BATCH_ELEMENTS = 1 << 24


def scoring_batch_size(batch_size: int, *, mc_samples: int, n_bins: int) -> int:
    """``batch_size``, or fewer spectra where ``mc_samples`` x ``n_bins`` would make a batch's tensors large."""
    return max(1, min(batch_size, MAX_BATCH_ELEMENTS // max(1, mc_samples * n_bins)))


def score_deep_model(
    model, X: np.ndarray, *, mc_samples: int, seed: int, device: str, batch_size: int = 1024,
    variances: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Score raw spectra ``X`` in eval mode under ``torch.inference_mode()``, deterministically.

    Returns the per-spectrum score columns (latent coordinates as ``latent_<j>``); the same model,
    data, seed and batch size give the same numbers. Batches hold at most :data:`MAX_BATCH_ELEMENTS`
    spectra x samples x bins (:func:`scoring_batch_size`), which bounds memory for wide spectra. With
    the input file's ``variances``, ``chi2`` and ``max_abs_pull`` use them instead of the model's own
    uncertainties.
    """
    import torch

    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    outputs: dict[str, list[np.ndarray]] = {}
    batch_size = scoring_batch_size(batch_size, mc_samples=mc_samples, n_bins=X.shape[1])
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            batch = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32, device=device)
            scores = model.score_batch(batch, mc_samples=mc_samples, generator=generator, bin_arrays=variances is not None)
            if variances is not None:
                pulls = file_variance_pulls(batch.double().cpu().numpy(), scores["reconstruction_counts"].double().cpu().numpy(),
                                            variances[start : start + batch_size])
                scores["chi2"], scores["max_abs_pull"] = torch.as_tensor((pulls**2).sum(1)), torch.as_tensor(np.abs(pulls).max(1))
            for name, values in scores.items():
                if name not in _BIN_ARRAYS:
                    outputs.setdefault(name, []).append(values.double().cpu().numpy())
    merged = {name: np.concatenate(parts) for name, parts in outputs.items()}
    latent = merged.pop("latent")
    for j in range(latent.shape[1]):
        merged[f"latent_{j}"] = latent[:, j]
    return merged


def reconstruct_deep_model(model, X: np.ndarray, *, device: str, variances: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reconstructions in input units and per-bin pulls of a few spectra (from the posterior mean)."""
    import torch

    model.eval()
    with torch.inference_mode():
        batch = torch.as_tensor(X, dtype=torch.float32, device=device)
        out = model.score_batch(batch, mc_samples=1, generator=torch.Generator(device=device).manual_seed(0))
    reconstruction = out["reconstruction_counts"].double().cpu().numpy()
    pulls = out["pulls"].double().cpu().numpy()
    if variances is not None:
        pulls = file_variance_pulls(np.asarray(X, dtype=np.float64), reconstruction, variances)
    return {"reconstruction": reconstruction, "pulls": pulls}


def score_pca(
    pca, X_normalized: np.ndarray, *, counts: np.ndarray | None = None, normalizer=None,
    variances: np.ndarray | None = None, batch_size: int = 10_000,
) -> dict[str, np.ndarray]:
    """PCA baseline scores: ``pca_nll`` (-log-likelihood), ``log_likelihood``, ``reconstruction_error``,
    and ``chi2`` / ``max_abs_pull`` of the residuals in units of the probabilistic-PCA noise width,
    or against the file's ``variances`` (then ``counts`` and the ``normalizer`` are needed)."""
    log_likelihood = pca.score_samples(X_normalized)
    latent = pca.transform(X_normalized)
    chi2, max_abs = np.empty(len(X_normalized)), np.empty(len(X_normalized))
    for start in range(0, len(X_normalized), batch_size):
        rows = slice(start, start + batch_size)
        if variances is None:
            pulls = pca_pulls(pca, X_normalized[rows])
        else:
            batch_counts = np.asarray(counts[rows], dtype=np.float64)
            recon = normalizer.inverse_transform(pca.inverse_transform(latent[rows]), totals=batch_counts.sum(axis=1))
            pulls = file_variance_pulls(batch_counts, recon, variances[rows])
        chi2[rows], max_abs[rows] = (pulls**2).sum(axis=1), np.abs(pulls).max(axis=1)
    columns = {
        "pca_nll": -log_likelihood,
        "log_likelihood": log_likelihood,
        "reconstruction_error": pca.reconstruction_error(X_normalized),
        "chi2": chi2,
        "max_abs_pull": max_abs,
    }
    for j in range(latent.shape[1]):
        columns[f"latent_{j}"] = latent[:, j]
    return columns


def pca_pulls(pca, X_normalized: np.ndarray) -> np.ndarray:
    """Residuals from the principal subspace in units of the noise width sqrt(sigma^2)."""
    X_normalized = np.asarray(X_normalized, dtype=np.float64)
    return (X_normalized - pca.inverse_transform(pca.transform(X_normalized))) / np.sqrt(pca.noise_variance_)


def build_score_table(
    spectra: CanonicalSpectra, split: dict[str, np.ndarray], scores: dict[str, np.ndarray], *, model: str, kind: str
) -> pd.DataFrame:
    """Assemble the per-spectrum table: metadata, split, label, scores and ``anomaly_score``.

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
    table["anomaly_score"] = scores[primary_score(kind, scores)]
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


def write_scores(table: pd.DataFrame, path: str | os.PathLike[str], *, kind: str, thresholds: dict | None = None) -> None:
    """Write a score table as parquet, with format version and primary score in its metadata.

    ``thresholds``, the calibration of the flag columns (:func:`.thresholds.add_threshold_flags`),
    is stored as JSON under ``spectral_anomaly.thresholds``.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = {**(arrow.schema.metadata or {}),
                b"spectral_anomaly.format_version": str(FORMAT_VERSIONS["scores"]).encode(),
                b"spectral_anomaly.model_kind": kind.encode(),
                b"spectral_anomaly.primary_score": primary_score(kind, table.columns).encode()}
    if thresholds is not None:
        metadata[b"spectral_anomaly.thresholds"] = json.dumps(thresholds).encode()
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(metadata), tmp)


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a score table; ``table.attrs`` holds ``model_kind``, ``primary_score`` and, when stored, ``thresholds``."""
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
