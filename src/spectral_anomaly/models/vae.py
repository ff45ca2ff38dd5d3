"""Variational autoencoder scored by its evidence lower bound (ELBO) and importance-weighted bound.

For a spectrum x with encoder posterior q(z|x) = N(mu, diag(sigma^2)) and a unit-Gaussian prior,

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),
    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)   (closed form),

with the likelihood p(x|z) of :mod:`.likelihoods` summed over bins. The expectation uses K
Monte-Carlo samples; in scoring, each spectrum's K draws are its own (:mod:`.draws`), so its score
does not depend on the batch it is scored in. The importance-weighted bound with the same K
samples, log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), is tighter (it approaches log p(x) as K
grows); ``iw_nll`` is its negative. By Jensen's inequality the bound is at least the mean of the
same K log-weights, the ELBO with a sampled KL; the reported ELBO takes the KL in closed form
(lower variance), so ``iw_nll <= negative_elbo`` holds per spectrum up to the Monte-Carlo error of
that sampled KL, which shrinks as 1/sqrt(K). For the Poisson likelihood the log-likelihood grows in size
with the number of counts, so the anomaly score is ``elbo_deviance``: the negative ELBO minus the
log-likelihood of a perfect fit (rates equal to the counts), i.e. half the expected Poisson
deviance plus the KL, which compares spectra of different totals fairly. ``elbo`` keeps its natural sign (higher = more normal); the
anomaly score is ``negative_elbo = -elbo`` (higher = more anomalous). Training minimizes
-E_q[log p(x|z)] + kl_weight * KL (beta-VAE, with the weight warmed up by the training loop).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .deep import DeepDetector
from .likelihoods import (
    Likelihood,
    decoder_channels,
    gaussian_log_likelihood,
    poisson_log_likelihood,
)
from .networks import build_decoder, build_encoder

#: log-variances are clamped to this range so exp() can neither overflow nor vanish
LOGVAR_RANGE = (-20.0, 10.0)

__all__ = ["VAEDetector", "VariationalAutoencoder", "gaussian_log_likelihood", "kl_to_standard_normal"]


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)


def _standard_normal_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + math.log(2.0 * math.pi))).sum(dim=-1)


class VariationalAutoencoder(nn.Module):
    """Encoder to (mu, log sigma^2) of the latent posterior; decoder to the likelihood's parameters.

    The encoder takes normalized spectra; the likelihood is evaluated on the normalized spectra too,
    or for ``poisson`` on the raw counts, which every method then takes as ``counts``.
    """

    def __init__(
        self, *, n_bins: int, latent_dim: int, hidden: list[int] | None = None, activation: str = "relu",
        architecture: str = "mlp", conv_channels: list[int] | None = None, kernel_size: int = 5,
        likelihood: str = "gaussian", sigma_x: float = 1.0, sigma_floor: float = 1e-3,
    ) -> None:
        super().__init__()
        if sigma_x <= 0 or sigma_floor <= 0:
            raise ValueError(f"sigma_x and sigma_floor must be positive, got {sigma_x} and {sigma_floor}")
        hidden, conv_channels = list(hidden or []), list(conv_channels or [16, 32])
        self.latent_dim = latent_dim
        self.likelihood = Likelihood(likelihood, sigma_x=sigma_x, sigma_floor=sigma_floor)
        self.encoder = build_encoder(architecture, n_bins=n_bins, hidden=hidden, conv_channels=conv_channels,
                                     kernel_size=kernel_size, activation=activation)
        self.to_mu = nn.Linear(self.encoder.out_features, latent_dim)
        self.to_logvar = nn.Linear(self.encoder.out_features, latent_dim)
        self.decoder = build_decoder(architecture, latent_dim=latent_dim, n_bins=n_bins, hidden=hidden,
                                     conv_channels=conv_channels, kernel_size=kernel_size, activation=activation,
                                     channels=decoder_channels(likelihood))

    def encode(self, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and clamped log-variance of normalized spectra."""
        h = self.encoder(normalized)
        return self.to_mu(h), self.to_logvar(h).clamp(*LOGVAR_RANGE)

    @property
    def needs_counts(self) -> bool:
        """Whether the likelihood is evaluated on the raw counts (Poisson), which then go with every batch."""
        return self.likelihood.kind == "poisson"

    def _target(self, normalized: torch.Tensor, counts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the likelihood is evaluated on, and the spectra's totals (Poisson only)."""
        if not self.needs_counts:
            return normalized, None
        counts = normalized if counts is None else counts
        return counts, counts.sum(dim=-1)

    def forward(self, normalized: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted mean of the likelihood (in its target's units), decoded from the posterior mean."""
        mu, _ = self.encode(normalized)
        return self.likelihood.mean_and_sigma(self.decoder(mu), self._target(normalized, counts)[1])[0]

    def elbo_terms(
        self, normalized: torch.Tensor, counts: torch.Tensor | None = None, *, mc_samples: int = 1,
        generator: torch.Generator | None = None, importance_weighted: bool = True, draws: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum ``elbo``, ``expected_log_likelihood``, ``kl``, ``iw_log_likelihood`` and ``mu``.

        The K standard normal ``draws`` ``(K, batch, latent_dim)`` are taken from ``generator`` unless
        given. ``importance_weighted=False`` leaves out ``iw_log_likelihood`` (training does not need it).
        """
        target, totals = self._target(normalized, counts)
        mu, logvar = self.encode(normalized)
        eps = draws if draws is not None else torch.randn(
            (mc_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps  # (K, batch, latent)
        log_likelihood = self.likelihood.log_likelihood(self.decoder(z), target, totals)  # (K, batch)
        kl = kl_to_standard_normal(mu, logvar)
        expected = log_likelihood.mean(dim=0)
        terms = {"elbo": expected - kl, "expected_log_likelihood": expected, "kl": kl, "mu": mu,
                 "target": target, "totals": totals}
        if importance_weighted:
            log_weights = (log_likelihood + _standard_normal_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                           - _standard_normal_log_density(z, mu, logvar))
            terms["iw_log_likelihood"] = torch.logsumexp(log_weights, dim=0) - math.log(mc_samples)
        return terms

    def training_loss(
        self, normalized: torch.Tensor, counts: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
    ) -> torch.Tensor:
        """Mean over the batch of -E_q[log p(x|z)] + kl_weight * KL (one Monte-Carlo sample)."""
        terms = self.elbo_terms(normalized, counts, mc_samples=1, generator=generator, importance_weighted=False)
        return (-terms["expected_log_likelihood"] + kl_weight * terms["kl"]).mean()

    def score_batch(
        self, normalized: torch.Tensor, counts: torch.Tensor | None = None, *, mc_samples: int = 1,
        generator: torch.Generator | None = None, bin_arrays: bool = True, draws: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-spectrum scores (with ``max_pull_bin``, the bin of ``max_abs_pull``) and latent means; with
        ``bin_arrays`` also the per-bin ``reconstruction`` (the likelihood's mean at the posterior mean, in
        its target's units) and ``pulls``. ``draws`` as for :meth:`elbo_terms`.

        The K Monte-Carlo samples of the ELBO go through the decoder as one batch of K x batch latent
        codes. ``reconstruction_error`` (squared residuals in normalized units) is left to the caller for
        the Poisson likelihood, whose mean is in counts: the caller normalizes it (:class:`VAEDetector`).
        """
        terms = self.elbo_terms(normalized, counts, mc_samples=mc_samples, generator=generator, draws=draws)
        output = self.decoder(terms["mu"])
        mean, sigma = self.likelihood.mean_and_sigma(output, terms["totals"])
        pulls = (terms["target"] - mean) / sigma
        squared_pulls = pulls.double().pow(2).sum(dim=-1)  # Poisson pulls of huge counts overflow float32 squares
        largest = pulls.abs().max(dim=-1)  # the first bin of the largest, where several tie
        scores = {
            "negative_elbo": -terms["elbo"],
            "elbo": terms["elbo"],
            "reconstruction_nll": -terms["expected_log_likelihood"],
            "kl": terms["kl"],
            "iw_nll": -terms["iw_log_likelihood"],
            "latent_radius": terms["mu"].norm(dim=-1),
            "chi2": squared_pulls,
            "max_abs_pull": largest.values,
            "max_pull_bin": largest.indices,
            "latent": terms["mu"],
        }
        if not self.needs_counts:
            scores["reconstruction_error"] = (mean - normalized).pow(2).sum(dim=-1)
        if bin_arrays or self.needs_counts:
            scores.update(reconstruction=mean, pulls=pulls)
        if self.needs_counts:  # a perfect fit (rates = counts) bounds the log-likelihood from above
            saturated = poisson_log_likelihood(terms["target"], terms["target"])
            scores["elbo_deviance"] = saturated - terms["elbo"]
        return scores


class VAEDetector(DeepDetector):
    """The variational autoencoder as a detector (kind ``vae``), scored by its negative ELBO.

    Its primary score is ``negative_elbo``, and ``elbo_deviance`` for the Poisson likelihood (whose
    log-likelihood grows with the counts; see the module's docstring).
    """

    kind = "vae"
    network_class = VariationalAutoencoder
    monte_carlo = True
    network_keys = ("architecture", "hidden", "conv_channels", "kernel_size", "latent_dim", "activation",
                    "likelihood", "sigma_x", "sigma_floor")

    @property
    def score_columns(self) -> tuple[str, ...]:
        columns = super().score_columns  # elbo_deviance, the primary score, for a Poisson likelihood only
        return columns if self.params.get("likelihood") == "poisson" else tuple(c for c in columns if c != "elbo_deviance")

    @property
    def primary_reason(self) -> str:
        if self.params.get("likelihood") == "poisson":
            return ("the negative ELBO minus the log-likelihood of a perfect fit (half the Poisson deviance plus the KL), "
                    "which compares spectra of different totals")
        return "the negative ELBO, an upper bound on the spectrum's negative log-likelihood under the model"

    @property
    def kl_weights(self) -> tuple[float, int]:
        return float(self.params.get("beta", 1.0)), int(self.params.get("beta_warmup_epochs", 0))
