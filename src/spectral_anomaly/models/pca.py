"""PCA baseline detector: reconstruction error and the probabilistic-PCA likelihood.

Probabilistic PCA (Tipping & Bishop 1999) models x ~ N(mean, C) with
C = W W^T + sigma^2 I, whose eigenvalues are the q leading PCA variances and sigma^2 (the mean
of the discarded variances) for the remaining d - q directions. For a residual r = x - mean with
projections p_i = u_i . r on the principal axes u_i (variances lambda_i):

    log p(x) = -1/2 [ d log(2 pi) + sum_i log lambda_i + (d - q) log sigma^2
                      + sum_i p_i^2 / lambda_i + (|r|^2 - sum_i p_i^2) / sigma^2 ]

``score_samples`` returns this log-likelihood (higher = more normal), as scikit-learn does; the
anomaly score is its negative.

The fit reads the training spectra in blocks and accumulates their covariance matrix (d x d,
about a shifted origin so that large means cannot cancel digits), then takes its eigenvectors:
the same axes and variances as an SVD of the centred data (scikit-learn's ``full`` solver, signs
fixed the same way), without holding the data, a centred copy and the SVD's n x d factor at once.

:class:`PCADetector` is the pipeline's detector of kind ``pca``: the probabilistic PCA of the
normalized training spectra. Its primary score is ``pca_nll`` (the negative log-likelihood);
the likelihood's two data terms are also kept apart, as in process monitoring with PCA:
``reconstruction_error``, the squared distance from the principal subspace (the SPE or Q
statistic: a shape the training spectra never had), and ``hotelling_t2`` = sum_i p_i^2 / lambda_i,
the Mahalanobis distance within it (Hotelling's T^2: a known kind of variation, but far more of
it than in training). The pulls are the residuals in units of the noise width sqrt(sigma^2).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..exceptions import InvalidSpectraError
from .base import Detector, pull_summaries

#: floor on sigma^2 and on every kept variance, relative to the largest variance, so that a fit whose
#: training spectra span fewer directions than it keeps (bins that never vary) stays finite
NOISE_VARIANCE_FLOOR = 1e-9


class PCABaseline:
    """Linear baseline with the same interface as the deep models' scores."""

    def __init__(self, n_components: int = 4) -> None:
        self.n_components = n_components

    def fit(self, X: np.ndarray, block_rows: int | None = None) -> PCABaseline:
        """Fit on the spectra ``X`` (rows), ``block_rows`` at a time (default: 64 MB of float64)."""
        from ..normalize import block_rows as default_block_rows

        size = block_rows or default_block_rows(X.shape[1])
        return self.fit_blocks(X[start : start + size] for start in range(0, len(X), size))

    def fit_blocks(self, blocks: Iterable[np.ndarray]) -> PCABaseline:
        """Fit on the rows of every block together (one pass; each block may be dropped after use).

        While there are fewer training spectra than bins (wide spectra, e.g. 16,384-bin histograms) the
        centred spectra are kept and their n x n Gram matrix is decomposed instead of the d x d
        covariance: the same axes and variances in O(n^2 d) time and n d memory rather than O(d^3) and
        d^2. Once the spectra outnumber the bins, the covariance is accumulated block by block.
        """
        n, shift, sums, scatter, kept = 0, None, None, None, []
        for block in blocks:
            Z = np.asarray(block, dtype=np.float64)
            if len(Z) == 0:
                continue
            if shift is None:
                shift = Z.mean(axis=0)
                sums = np.zeros_like(shift)
            deviations = Z - shift
            sums += deviations.sum(axis=0)
            n += len(Z)
            if scatter is None and n < len(shift):
                kept.append(deviations)
                continue
            if scatter is None:
                scatter = np.zeros((len(shift), len(shift)))
                for part in kept:
                    scatter += part.T @ part
                kept = []
            scatter += deviations.T @ deviations
        if n < 2:
            raise ValueError(f"the PCA baseline needs at least 2 training spectra, got {n}")
        offset = sums / n
        q = min(self.n_components, n - 1, len(shift))
        if scatter is None:
            variances, components = _gram_axes(np.concatenate(kept) - offset, q)
        else:
            covariance = (scatter - n * np.outer(offset, offset)) / (n - 1)
            eigenvalues, eigenvectors = np.linalg.eigh(covariance)
            rank = min(n, len(shift))  # the SVD of n centred rows has min(n, d) singular values
            variances = np.clip(eigenvalues[::-1][:rank], 0.0, None)
            components = np.ascontiguousarray(eigenvectors[:, ::-1].T[:q])
        components *= np.sign(components[np.arange(q), np.abs(components).argmax(axis=1)])[:, None]
        if not variances.any():
            raise InvalidSpectraError(
                f"the PCA baseline's {n} training spectra are all the same: no direction varies, so there is "
                "nothing to fit (check the input and the dataset's train_selection)"
            )
        floor = NOISE_VARIANCE_FLOOR * float(variances.max())
        self.mean_ = shift + offset
        self.components_ = components
        self.explained_variance_ = np.maximum(variances[:q], floor)
        noise_variance = float(variances[q:].mean()) if q < len(variances) else 0.0
        self.noise_variance_ = max(noise_variance, floor)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T

    def inverse_transform(self, latent: np.ndarray) -> np.ndarray:
        return latent @ self.components_ + self.mean_

    def reconstruction_error(self, X: np.ndarray) -> np.ndarray:
        """Sum over bins of squared residuals after projecting onto the principal subspace."""
        X = np.asarray(X, dtype=np.float64)
        return ((self.inverse_transform(self.transform(X)) - X) ** 2).sum(axis=1)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Probabilistic-PCA log-likelihood per spectrum (higher = more normal)."""
        residual = np.asarray(X, dtype=np.float64) - self.mean_
        n_features = residual.shape[1]
        q = len(self.explained_variance_)
        projections = residual @ self.components_.T
        in_subspace = (projections**2 / self.explained_variance_).sum(axis=1)
        off_subspace = ((residual**2).sum(axis=1) - (projections**2).sum(axis=1)) / self.noise_variance_
        log_det = np.log(self.explained_variance_).sum() + (n_features - q) * np.log(self.noise_variance_)
        return -0.5 * (n_features * np.log(2.0 * np.pi) + log_det + in_subspace + off_subspace)


def _gram_axes(centred: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Variances (all n of them, largest first) and the q leading principal axes of ``centred`` rows (n < d).

    The eigenvectors v of the Gram matrix C C^T / (n - 1) with eigenvalues lambda give the axes
    u = C^T v / sqrt((n - 1) lambda): the right singular vectors of C, as an SVD would give them.
    An axis of zero variance (training spectra spanning fewer than q directions) is left as zeros.
    """
    n = len(centred)
    eigenvalues, vectors = np.linalg.eigh(centred @ centred.T / (n - 1))
    variances = np.clip(eigenvalues[::-1], 0.0, None)
    vectors = vectors[:, ::-1][:, :q]
    norms = np.sqrt(variances[:q] * (n - 1))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 1e-12 * max(float(norms.max(initial=0)), 1e-300))
    return variances, np.ascontiguousarray((vectors.T @ centred) * scale[:, None])


class PCADetector(Detector):
    """Probabilistic PCA of the normalized spectra (kind ``pca``); parameter ``n_components``."""

    kind = "pca"
    primary_reason = ("the negative log-likelihood of the normalized spectrum under probabilistic PCA: its distance "
                      "within the principal subspace and from it, each in units of the training spread")

    @classmethod
    def from_config(cls, params: dict, *, normalization, **_context) -> PCADetector:
        return cls(normalization=normalization, **params)

    @property
    def latent_dim(self) -> int:
        return int(self.params["n_components"])

    def fit(self, train: np.ndarray, validation: np.ndarray | None = None) -> PCADetector:
        """Fit on the normalized training spectra, block by block (``validation`` only for ``n_components: auto``)."""
        from ..normalize import block_rows

        self._label_free_choices(train, validation)
        train, _ = self._augmented(train, None, seed=0)
        size = block_rows(train.shape[1])
        self.pca_ = PCABaseline(n_components=self.latent_dim).fit_blocks(
            self.normalization.transform(train[start : start + size]) for start in range(0, len(train), size))
        return self

    def _score_block(self, X: np.ndarray, variances: np.ndarray | None) -> dict[str, np.ndarray]:
        Z = self.normalization.transform(X).astype(np.float64)
        log_likelihood = self.pca_.score_samples(Z)
        latent = self.pca_.transform(Z)
        projected = self.pca_.inverse_transform(latent)
        if variances is None:
            pulls = (Z - projected) / np.sqrt(self.pca_.noise_variance_)
        else:
            from .base import file_variance_pulls

            counts = np.asarray(X, dtype=np.float64)
            pulls = file_variance_pulls(counts, self.normalization.inverse_transform(projected, original=counts),
                                        variances)
        return {"pca_nll": -log_likelihood, "log_likelihood": log_likelihood,
                "reconstruction_error": ((projected - Z) ** 2).sum(axis=1),
                "hotelling_t2": (latent**2 / self.pca_.explained_variance_).sum(axis=1),
                **pull_summaries(pulls), "latent": latent}

    def _reconstruct(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = self.normalization.transform(X).astype(np.float64)
        projected = self.pca_.inverse_transform(self.pca_.transform(Z))
        return (self.normalization.inverse_transform(projected, original=np.asarray(X, dtype=np.float64)),
                (Z - projected) / np.sqrt(self.pca_.noise_variance_))

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        pca = self.pca_
        return ({"noise_variance": pca.noise_variance_},
                {"mean": pca.mean_, "components": pca.components_, "explained_variance": pca.explained_variance_})

    @classmethod
    def _restore(cls, meta: dict, arrays: dict[str, np.ndarray], *, context: dict) -> PCADetector:
        from ..normalize import SpectrumNormalizer

        detector = cls(normalization=SpectrumNormalizer.from_dict(meta["normalization"]), **meta["params"])
        pca = PCABaseline(n_components=detector.latent_dim)
        pca.mean_, pca.components_ = arrays["mean"], arrays["components"]
        pca.explained_variance_, pca.noise_variance_ = arrays["explained_variance"], float(meta["noise_variance"])
        detector.pca_ = pca
        return detector
