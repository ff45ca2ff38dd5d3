"""Per-spectrum anomaly scores, one table per model, plus the most anomalous examples.

Every table has one row per spectrum of the dataset, keyed by ``spectrum_id``, with its
metadata, ``split`` and ``label`` (where configured), every score of the model, the latent
coordinates (``latent_0``, ...) and ``anomaly_score``: the model's primary score, higher =
more anomalous. Scores are computed on normalized spectra; sums run over bins.

Primary scores: autoencoder ``reconstruction_error``; VAE ``negative_elbo``; PCA
``pca_nll`` (the probabilistic-PCA negative log-likelihood).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .data import CanonicalSpectra
from .exceptions import InputFileError, SpectralAnomalyError
from .formats import FORMAT_VERSIONS, check_format_version
from .normalize import SpectrumNormalizer
from .split import split_labels

PRIMARY_SCORE = {"autoencoder": "reconstruction_error", "vae": "negative_elbo", "pca": "pca_nll"}


@dataclass
class ModelScores:
    """Scores of one model on one dataset: the table and normalized reconstructions of every spectrum."""

    table: pd.DataFrame
    reconstruction: np.ndarray  # normalized units, (n_spectra, n_bins)


def score_deep_model(model, X_normalized: np.ndarray, *, mc_samples: int, seed: int, device: str, batch_size: int = 1024) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Score normalized spectra in eval mode under ``torch.inference_mode()``, deterministically.

    Returns the per-spectrum score columns (latent coordinates as ``latent_<j>``) and the
    reconstructions. The same model, data, seed and batch size give the same numbers.
    """
    import torch

    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    outputs: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(X_normalized), batch_size):
            batch = torch.as_tensor(X_normalized[start : start + batch_size], dtype=torch.float32, device=device)
            for name, values in model.score_batch(batch, mc_samples=mc_samples, generator=generator).items():
                outputs.setdefault(name, []).append(values.double().cpu().numpy())
    merged = {name: np.concatenate(parts) for name, parts in outputs.items()}
    reconstruction = merged.pop("reconstruction")
    latent = merged.pop("latent")
    for j in range(latent.shape[1]):
        merged[f"latent_{j}"] = latent[:, j]
    return merged, reconstruction


def score_pca(pca, X_normalized: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """PCA baseline scores: ``pca_nll`` (-log-likelihood), ``log_likelihood``, ``reconstruction_error``."""
    log_likelihood = pca.score_samples(X_normalized)
    latent = pca.transform(X_normalized)
    columns = {
        "pca_nll": -log_likelihood,
        "log_likelihood": log_likelihood,
        "reconstruction_error": pca.reconstruction_error(X_normalized),
    }
    for j in range(latent.shape[1]):
        columns[f"latent_{j}"] = latent[:, j]
    return columns, pca.inverse_transform(latent)


def build_score_table(
    spectra: CanonicalSpectra, split: dict[str, np.ndarray], scores: dict[str, np.ndarray], *, model: str, kind: str
) -> pd.DataFrame:
    """Assemble the per-spectrum table: metadata, split, label, scores and ``anomaly_score``."""
    table = spectra.metadata.copy()
    table.insert(1, "split", split_labels(spectra.n_spectra, split))
    if spectra.labels is not None:
        table.insert(2, "label", spectra.labels.astype(np.int8))
    table.insert(1, "model", model)
    for name, values in scores.items():
        table[name] = values
    table["anomaly_score"] = scores[PRIMARY_SCORE[kind]]
    return table


def write_scores(table: pd.DataFrame, path: str | os.PathLike[str], *, kind: str) -> None:
    """Write a score table as parquet, with format version and primary score in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = {**(arrow.schema.metadata or {}),
                b"spectral_anomaly.format_version": str(FORMAT_VERSIONS["scores"]).encode(),
                b"spectral_anomaly.model_kind": kind.encode(),
                b"spectral_anomaly.primary_score": PRIMARY_SCORE[kind].encode()}
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(metadata), tmp)


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a score table; ``table.attrs`` holds ``model_kind`` and ``primary_score``."""
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
    return table


def write_examples(
    path: str | os.PathLike[str], *, spectra: CanonicalSpectra, normalizer: SpectrumNormalizer,
    table: pd.DataFrame, reconstruction: np.ndarray, n_examples: int
) -> None:
    """Store the ``n_examples`` most anomalous spectra with their reconstructions, in input units.

    The report draws these without loading any model, so it can be regenerated from stored results.
    """
    order = np.argsort(-table["anomaly_score"].to_numpy(), kind="stable")[:n_examples]
    totals = spectra.X[order].astype(np.float64).sum(axis=1)
    recon_counts = normalizer.inverse_transform(reconstruction[order], totals=totals)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez(
            stream,
            format_version=FORMAT_VERSIONS["examples"],
            spectrum_id=table["spectrum_id"].to_numpy()[order],
            anomaly_score=table["anomaly_score"].to_numpy()[order],
            input=spectra.X[order].astype(np.float64),
            reconstruction=recon_counts,
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
