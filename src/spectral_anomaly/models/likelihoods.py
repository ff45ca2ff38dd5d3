"""Likelihoods of a spectrum given the decoder's output, and the per-bin pulls they imply.

- ``gaussian``: N(x_b | mean_b, sigma_x^2) on the normalized spectrum, sigma_x fixed in the config.
- ``gaussian_learned``: the decoder also predicts a width per bin, sigma_b = floor + softplus(raw_b),
  so the model learns which bins are noisy; the floor keeps the likelihood bounded.
- ``poisson``: Poisson(n_b | lambda_b) on the raw counts n_b, with rates lambda_b = N * softmax(logits)_b
  that share the spectrum's total count N: the decoder predicts the shape, the data its size.

Every log-likelihood is summed over bins and includes its normalizing constant. A pull is the
residual of a bin divided by its uncertainty under the same model.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..exceptions import ConfigError

LIKELIHOODS = ("gaussian", "gaussian_learned", "poisson")
#: the Poisson variance in a pull is floored at one count, so that empty bins do not dominate
POISSON_VARIANCE_FLOOR = 1.0


def decoder_channels(likelihood: str) -> int:
    """How many numbers per bin the decoder predicts for this likelihood."""
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {likelihood!r}; valid likelihoods: {', '.join(LIKELIHOODS)}")
    return 2 if likelihood == "gaussian_learned" else 1


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """log N(x | mean, sigma^2), summed over the last (bin) axis; ``sigma`` a number or per bin."""
    sigma = torch.as_tensor(sigma, dtype=mean.dtype, device=mean.device)
    per_bin = -0.5 * ((x - mean) / sigma).pow(2) - torch.log(sigma) - 0.5 * math.log(2.0 * math.pi)
    return per_bin.sum(dim=-1)


def poisson_log_likelihood(counts: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
    """log Poisson(counts | rates), summed over the last (bin) axis.

    Inside the logarithm the rates are floored at the smallest normal number of their type: a rate of
    exactly zero (a spectrum of no counts) then gives 0 for an empty bin, as it should, and a finite
    gradient (x log y differentiates to x / y, which is 0 / 0 at zero).
    """
    floored = rates.clamp_min(torch.finfo(rates.dtype).tiny)
    return (torch.xlogy(counts, floored) - rates - torch.lgamma(counts + 1.0)).sum(dim=-1)


class Likelihood:
    """Turns decoder outputs ``(..., channels, n_bins)`` into means, log-likelihoods and pulls."""

    def __init__(self, kind: str, *, sigma_x: float = 1.0, sigma_floor: float = 1e-3) -> None:
        decoder_channels(kind)
        self.kind, self.sigma_x, self.sigma_floor = kind, float(sigma_x), float(sigma_floor)

    def target(self, counts: torch.Tensor, normalized: torch.Tensor) -> torch.Tensor:
        """What the likelihood is evaluated on: raw counts (Poisson) or the normalized spectrum."""
        return counts if self.kind == "poisson" else normalized

    def mean_and_sigma(self, output: torch.Tensor, totals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted mean per bin and its standard deviation, in the target's units."""
        if self.kind == "gaussian":
            mean = output[..., 0, :]
            return mean, torch.full_like(mean, self.sigma_x)
        if self.kind == "gaussian_learned":
            return output[..., 0, :], self.sigma_floor + F.softplus(output[..., 1, :])
        rates = totals.unsqueeze(-1) * torch.softmax(output[..., 0, :], dim=-1)
        return rates, torch.sqrt(rates.clamp_min(POISSON_VARIANCE_FLOOR))

    def log_likelihood(self, output: torch.Tensor, target: torch.Tensor, totals: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "gaussian":  # one width for every bin: no per-bin width tensor, two passes over the bins
            # squeeze, not [..., 0, :]: its backward is a view, where a select's fills a new zero tensor
            n_bins = output.shape[-1]
            squared = (output.squeeze(-2) - target).pow(2).sum(dim=-1)
            return -0.5 / self.sigma_x**2 * squared - n_bins * (math.log(self.sigma_x) + 0.5 * math.log(2.0 * math.pi))
        mean, sigma = self.mean_and_sigma(output, totals)
        if self.kind == "poisson":
            return poisson_log_likelihood(target, mean)
        return gaussian_log_likelihood(target, mean, sigma)

    def pulls(self, output: torch.Tensor, target: torch.Tensor, totals: torch.Tensor | None = None) -> torch.Tensor:
        """(target - mean) / sigma per bin."""
        mean, sigma = self.mean_and_sigma(output, totals)
        return (target - mean) / sigma
