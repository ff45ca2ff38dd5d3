"""Deterministic autoencoder; its anomaly score is the reconstruction error.

``reconstruction_error`` is the sum over bins of squared residuals in normalized units (higher =
more anomalous). The network has no noise model, so its pulls (``chi2``, ``max_abs_pull``) take
per-bin uncertainties from the data:

- the input file's per-bin variances (e.g. ROOT Sumw2) where it has them;
- else, where the spectra are counts (the normalization has a step that takes counts:
  ``unit_integral``, ``log1p``, ``sqrt``), Poisson: the reconstruction mapped back to counts is the
  expected count mu of each bin, and the pull is the Pearson residual ``(x - mu) / sqrt(max(mu, 1))``
  (a floor of one count, so that an empty expectation cannot divide by zero);
- else (values that are not counts), the residual in normalized units divided by that bin's
  root-mean-square residual on the validation spectra, measured once training has ended.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .deep import DeepDetector
from .networks import build_decoder, build_encoder

#: the smallest validation residual a pull divides by, relative to the largest bin's (a bin reconstructed
#: exactly on every validation spectrum still gets a finite pull)
RESIDUAL_SCALE_FLOOR = 1e-6


class Autoencoder(nn.Module):
    """Encoder ``n_bins -> latent_dim`` and decoder back, MLP or 1-D convolutional, on normalized spectra."""

    #: the loss and scores need normalized spectra only, never the raw counts
    needs_counts = False

    def __init__(
        self, *, n_bins: int, latent_dim: int, hidden: list[int] | None = None, activation: str = "relu",
        architecture: str = "mlp", conv_channels: list[int] | None = None, kernel_size: int = 5,
    ) -> None:
        super().__init__()
        hidden, conv_channels = list(hidden or []), list(conv_channels or [16, 32])
        self.encoder_body = build_encoder(architecture, n_bins=n_bins, hidden=hidden, conv_channels=conv_channels,
                                          kernel_size=kernel_size, activation=activation)
        self.to_latent = nn.Linear(self.encoder_body.out_features, latent_dim)
        self.decoder = build_decoder(architecture, latent_dim=latent_dim, n_bins=n_bins, hidden=hidden,
                                     conv_channels=conv_channels, kernel_size=kernel_size, activation=activation,
                                     channels=1)

    def encoder(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder_body(normalized))

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        """The reconstruction of normalized spectra, in normalized units."""
        return self.decoder(self.encoder(normalized))[..., 0, :]

    def training_loss(
        self, normalized: torch.Tensor, counts: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
    ) -> torch.Tensor:
        """Mean over the batch of the per-spectrum sum of squared residuals (``counts`` and ``kl_weight`` unused)."""
        # squeeze, not [..., 0, :]: its backward is a view, where a select's fills a new zero tensor
        return (self.decoder(self.encoder(normalized)).squeeze(-2) - normalized).pow(2).sum(dim=-1).mean()

    def score_batch(
        self, normalized: torch.Tensor, counts: torch.Tensor | None = None, *, mc_samples: int = 1,
        generator: torch.Generator | None = None, bin_arrays: bool = True, draws: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum scores (with ``max_pull_bin``, the bin of ``max_abs_pull``) and latent codes; with
        ``bin_arrays`` also the per-bin ``reconstruction``
        (normalized units) and ``pulls`` (the residuals). Deterministic: ``mc_samples``, ``generator`` and
        ``draws`` are unused."""
        latent = self.encoder(normalized)
        reconstruction = self.decoder(latent)[..., 0, :]
        pulls = normalized - reconstruction
        squared = pulls.pow(2).sum(dim=-1)
        largest = pulls.abs().max(dim=-1)  # the first bin of the largest, where several tie
        scores = {"reconstruction_error": squared, "chi2": squared, "max_abs_pull": largest.values,
                  "max_pull_bin": largest.indices, "latent": latent}
        if bin_arrays:
            scores.update(reconstruction=reconstruction, pulls=pulls)
        return scores


class AutoencoderDetector(DeepDetector):
    """The autoencoder as a detector (kind ``autoencoder``), scored by its reconstruction error."""

    kind = "autoencoder"
    network_class = Autoencoder
    network_keys = ("architecture", "hidden", "conv_channels", "kernel_size", "latent_dim", "activation")
    network_pulls = False
    primary_reason = "the squared distance, in normalized units, of the spectrum from what the autoencoder reproduces of it"

    def fit(self, train: np.ndarray, validation: np.ndarray) -> AutoencoderDetector:
        super().fit(train, validation)
        self.residual_scale_ = self._validation_residual_scale(validation)
        return self

    def _validation_residual_scale(self, validation: np.ndarray) -> np.ndarray:
        """Each bin's root-mean-square residual (normalized units) over the validation spectra."""
        squares, n = np.zeros(validation.shape[1]), 0
        network = self.network_.to(self.device).eval()
        size = max(1, int(self.scoring["batch_size"]))
        with torch.inference_mode():
            for start in range(0, len(validation), size):
                normalized = self.normalization.transform(torch.as_tensor(
                    np.asarray(validation[start : start + size]), dtype=torch.float32, device=self.device))
                squares += (network(normalized) - normalized).double().pow(2).sum(dim=0).cpu().numpy()
                n += len(normalized)
        if n == 0:
            return np.ones(validation.shape[1])
        scale = np.sqrt(squares / n)
        return np.maximum(scale, RESIDUAL_SCALE_FLOOR * max(float(scale.max(initial=0.0)), 1e-300))

    def _model_pulls(self, X: np.ndarray, normalized: np.ndarray | None, reconstruction: np.ndarray) -> np.ndarray:
        if self.normalization.takes_counts:
            counts = np.asarray(X, dtype=np.float64)
            expected = self.normalization.inverse_transform(reconstruction, original=counts)
            return (counts - expected) / np.sqrt(np.maximum(expected, 1.0))
        return (normalized - reconstruction) / self.residual_scale_

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, state = super()._state()
        return {**meta, "residual_scale": self.residual_scale_.tolist()}, state

    @classmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, context: dict[str, Any]) -> AutoencoderDetector:
        detector = super()._restore(meta, arrays, context=context)
        detector.residual_scale_ = np.asarray(meta["residual_scale"], dtype=np.float64)
        return detector
