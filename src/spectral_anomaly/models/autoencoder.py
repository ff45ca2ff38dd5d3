"""Deterministic autoencoder; its anomaly score is the reconstruction error.

``reconstruction_error`` is the sum over bins of squared residuals in normalized units (higher =
more anomalous). Without a noise model, its pulls are those residuals themselves: per-bin
standard deviations of the training spectra when the normalization ends with ``standardize``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .networks import build_decoder, build_encoder
from .normalization import NormalizationLayer


class Autoencoder(nn.Module):
    """Encoder ``n_bins -> latent_dim`` and decoder back, MLP or 1-D convolutional; takes raw spectra."""

    def __init__(
        self, *, n_bins: int, latent_dim: int, hidden: list[int] | None = None, activation: str = "relu",
        architecture: str = "mlp", conv_channels: list[int] | None = None, kernel_size: int = 5,
        normalization: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        hidden, conv_channels = list(hidden or []), list(conv_channels or [16, 32])
        self.normalize = NormalizationLayer(normalization)
        self.encoder_body = build_encoder(architecture, n_bins=n_bins, hidden=hidden, conv_channels=conv_channels,
                                          kernel_size=kernel_size, activation=activation)
        self.to_latent = nn.Linear(self.encoder_body.out_features, latent_dim)
        self.decoder = build_decoder(architecture, latent_dim=latent_dim, n_bins=n_bins, hidden=hidden,
                                     conv_channels=conv_channels, kernel_size=kernel_size, activation=activation,
                                     channels=1)

    def encoder(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder_body(normalized))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` in normalized units."""
        return self.decoder(self.encoder(self.normalize(x)))[..., 0, :]

    #: the training loss needs only normalized spectra, so training may normalize them once
    trains_on_normalized = True

    def training_loss(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, kl_weight: float = 1.0,
        normalized_input: bool = False,
    ) -> torch.Tensor:
        """Mean over the batch of the per-spectrum sum of squared residuals (``kl_weight`` is unused).

        ``normalized_input``: ``x`` has been through :attr:`normalize` already.
        """
        normalized = x if normalized_input else self.normalize(x)
        # squeeze, not [..., 0, :]: its backward is a view, where a select's fills a new zero tensor
        return (self.decoder(self.encoder(normalized)).squeeze(-2) - normalized).pow(2).sum(dim=-1).mean()

    def score_batch(
        self, x: torch.Tensor, *, mc_samples: int = 1, generator: torch.Generator | None = None, bin_arrays: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum scores, pulls, latent codes and reconstructions (normalized and in input units).

        With ``bin_arrays=False`` only the per-spectrum columns are returned (no per-bin
        ``reconstruction``, ``reconstruction_counts`` and ``pulls``).
        """
        normalized = self.normalize(x)
        latent = self.encoder(normalized)
        reconstruction = self.decoder(latent)[..., 0, :]
        pulls = normalized - reconstruction
        squared = pulls.pow(2).sum(dim=-1)
        scores = {
            "reconstruction_error": squared,
            "chi2": squared,
            "max_abs_pull": pulls.abs().amax(dim=-1),
            "latent": latent,
        }
        if bin_arrays:
            scores.update(reconstruction=reconstruction, pulls=pulls,
                          reconstruction_counts=self.normalize.inverse(reconstruction, x.sum(dim=-1)))
        return scores
