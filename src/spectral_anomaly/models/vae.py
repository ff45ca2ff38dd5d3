"""Variational autoencoder scored by its evidence lower bound (ELBO).

For one spectrum x with encoder posterior q(z|x) = N(mu, diag(sigma^2)) and unit-Gaussian prior,

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))

with a Gaussian likelihood of fixed width ``sigma_x`` summed over bins,

    log p(x|z) = -1/2 sum_b ((x_b - xhat_b(z)) / sigma_x)^2 - n_bins log(sigma_x) - n_bins/2 log(2 pi)

and the closed-form KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1). The expectation is
estimated with K Monte-Carlo samples from a seeded generator. ``elbo`` keeps its natural sign
(higher = more normal); the anomaly score is ``negative_elbo = -elbo`` (higher = more anomalous).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .mlp import ACTIVATIONS, build_mlp

#: log-variances are clamped to this range so exp() can neither overflow nor vanish
LOGVAR_RANGE = (-20.0, 10.0)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, sigma_x: float) -> torch.Tensor:
    """log N(x | mean, sigma_x^2 I), summed over the last (bin) axis."""
    n_bins = x.shape[-1]
    squared = ((x - mean) / sigma_x).pow(2).sum(dim=-1)
    return -0.5 * squared - n_bins * math.log(sigma_x) - 0.5 * n_bins * math.log(2.0 * math.pi)


class VariationalAutoencoder(nn.Module):
    """MLP encoder to (mu, log sigma^2) of the latent posterior, and an MLP decoder to the mean spectrum."""

    def __init__(
        self, *, n_bins: int, hidden: list[int], latent_dim: int, activation: str = "relu", sigma_x: float = 1.0
    ) -> None:
        super().__init__()
        if sigma_x <= 0:
            raise ValueError(f"sigma_x must be positive, got {sigma_x}")
        self.latent_dim = latent_dim
        self.sigma_x = float(sigma_x)
        self.encoder = build_mlp([n_bins, *hidden], activation=activation) if hidden else nn.Identity()
        self.encoder_activation = ACTIVATIONS[activation]() if hidden else nn.Identity()
        width = hidden[-1] if hidden else n_bins
        self.to_mu = nn.Linear(width, latent_dim)
        self.to_logvar = nn.Linear(width, latent_dim)
        self.decoder = build_mlp([latent_dim, *reversed(hidden), n_bins], activation=activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and clamped log-variance."""
        h = self.encoder_activation(self.encoder(x))
        return self.to_mu(h), self.to_logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction from the posterior mean."""
        mu, _ = self.encode(x)
        return self.decoder(mu)

    def elbo_terms(
        self, x: torch.Tensor, *, mc_samples: int = 1, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum ``elbo``, ``expected_log_likelihood`` and ``kl`` with K = ``mc_samples`` samples."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        eps = torch.randn((mc_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + std * eps  # (K, batch, latent)
        expected_ll = gaussian_log_likelihood(x, self.decoder(z), self.sigma_x).mean(dim=0)
        kl = kl_to_standard_normal(mu, logvar)
        return {"elbo": expected_ll - kl, "expected_log_likelihood": expected_ll, "kl": kl, "mu": mu}

    def training_loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean over the batch of the negative ELBO (one Monte-Carlo sample)."""
        return -self.elbo_terms(x, mc_samples=1, generator=generator)["elbo"].mean()

    def score_batch(self, x: torch.Tensor, *, mc_samples: int = 1, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-spectrum ELBO parts, latent radius, reconstruction error, latent means and reconstructions."""
        terms = self.elbo_terms(x, mc_samples=mc_samples, generator=generator)
        reconstruction = self.decoder(terms["mu"])
        return {
            "negative_elbo": -terms["elbo"],
            "elbo": terms["elbo"],
            "reconstruction_nll": -terms["expected_log_likelihood"],
            "kl": terms["kl"],
            "latent_radius": terms["mu"].norm(dim=1),
            "reconstruction_error": ((reconstruction - x) ** 2).sum(dim=1),
            "latent": terms["mu"],
            "reconstruction": reconstruction,
        }
