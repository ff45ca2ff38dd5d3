"""Deterministic autoencoder; its anomaly score is the reconstruction error.

``reconstruction_error`` is the sum over bins of squared residuals in normalized units, so
higher means more anomalous.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import build_mlp


class Autoencoder(nn.Module):
    """MLP encoder ``n_bins -> hidden... -> latent_dim`` and the mirrored decoder."""

    def __init__(self, *, n_bins: int, hidden: list[int], latent_dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.encoder = build_mlp([n_bins, *hidden, latent_dim], activation=activation)
        self.decoder = build_mlp([latent_dim, *reversed(hidden), n_bins], activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def training_loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean over the batch of the per-spectrum sum of squared residuals."""
        return ((self(x) - x) ** 2).sum(dim=1).mean()

    def score_batch(self, x: torch.Tensor, *, mc_samples: int = 1, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-spectrum scores (``reconstruction_error``), latent codes and reconstructions."""
        latent = self.encoder(x)
        reconstruction = self.decoder(latent)
        return {
            "reconstruction_error": ((reconstruction - x) ** 2).sum(dim=1),
            "latent": latent,
            "reconstruction": reconstruction,
        }
