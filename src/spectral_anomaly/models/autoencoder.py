"""Deterministic autoencoder; its anomaly score is the reconstruction error.

``reconstruction_error`` is the sum over bins of squared residuals in normalized units (higher =
more anomalous). Without a noise model, its pulls are those residuals themselves: per-bin
standard deviations of the training spectra when the normalization ends with ``standardize``.
"""

from __future__ import annotations

import torch
from torch import nn

from .deep import DeepDetector
from .networks import build_decoder, build_encoder


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
        generator: torch.Generator | None = None, bin_arrays: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum scores and latent codes; with ``bin_arrays`` also the per-bin ``reconstruction``
        (normalized units) and ``pulls`` (the residuals)."""
        latent = self.encoder(normalized)
        reconstruction = self.decoder(latent)[..., 0, :]
        pulls = normalized - reconstruction
        squared = pulls.pow(2).sum(dim=-1)
        scores = {"reconstruction_error": squared, "chi2": squared, "max_abs_pull": pulls.abs().amax(dim=-1),
                  "latent": latent}
        if bin_arrays:
            scores.update(reconstruction=reconstruction, pulls=pulls)
        return scores


class AutoencoderDetector(DeepDetector):
    """The autoencoder as a detector (kind ``autoencoder``), scored by its reconstruction error."""

    kind = "autoencoder"
    network_class = Autoencoder
    network_keys = ("architecture", "hidden", "conv_channels", "kernel_size", "latent_dim", "activation")
