"""Likelihoods, pulls, the importance-weighted bound, convolutional networks and the in-model normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln, logsumexp
from torch.distributions import Normal, Poisson

from spectral_anomaly.models import build_detector
from spectral_anomaly.models.base import file_variance_pulls
from spectral_anomaly.models.deep import build_network
from spectral_anomaly.models.likelihoods import Likelihood, poisson_log_likelihood
from spectral_anomaly.models.vae import VariationalAutoencoder
from spectral_anomaly.normalize import SpectrumNormalizer


def test_poisson_log_likelihood_matches_a_hand_computation_and_torch():
    counts = torch.tensor([[0.0, 3.0, 7.0], [1.0, 0.0, 2.0]], dtype=torch.float64)
    rates = torch.tensor([[0.5, 2.0, 9.0], [1.5, 0.2, 2.0]], dtype=torch.float64)
    c, r = counts.numpy(), rates.numpy()
    by_hand = (c * np.log(r) - r - gammaln(c + 1)).sum(axis=1)
    np.testing.assert_allclose(poisson_log_likelihood(counts, rates).numpy(), by_hand, rtol=1e-12)
    torch.testing.assert_close(poisson_log_likelihood(counts, rates), Poisson(rates).log_prob(counts).sum(-1))


def test_poisson_rates_share_the_spectrum_total_and_pulls_use_their_square_root():
    likelihood = Likelihood("poisson")
    logits = torch.tensor([[[0.0, math.log(3.0), math.log(6.0)]]])  # softmax = 0.1, 0.3, 0.6
    counts = torch.tensor([[2.0, 40.0, 58.0]])
    totals = counts.sum(-1)
    rates, sigma = likelihood.mean_and_sigma(logits, totals)
    torch.testing.assert_close(rates, torch.tensor([[10.0, 30.0, 60.0]]))
    torch.testing.assert_close(sigma, torch.sqrt(torch.tensor([[10.0, 30.0, 60.0]])))
    expected_pulls = (counts - rates) / torch.sqrt(rates)
    torch.testing.assert_close(likelihood.pulls(logits, counts, totals), expected_pulls)


def test_poisson_pull_variance_is_floored_at_one_count():
    likelihood = Likelihood("poisson")
    logits = torch.tensor([[[0.0, math.log(1e-6)]]])
    counts = torch.tensor([[1000.0, 1.0]])
    pulls = likelihood.pulls(logits, counts, counts.sum(-1))
    rate = 1001.0 * 1e-6 / (1 + 1e-6)
    assert pulls[0, 1].item() == pytest.approx((1.0 - rate) / 1.0, rel=1e-4)


def test_learned_gaussian_width_is_floored_softplus_and_enters_likelihood_and_pulls():
    likelihood = Likelihood("gaussian_learned", sigma_floor=0.05)
    output = torch.tensor([[[0.5, -1.0], [0.0, -30.0]]], dtype=torch.float64)  # mean, raw width per bin
    target = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    mean, sigma = likelihood.mean_and_sigma(output)
    expected_sigma = 0.05 + np.log1p(np.exp([0.0, -30.0]))
    np.testing.assert_allclose(sigma[0].numpy(), expected_sigma, rtol=1e-10)
    expected_ll = Normal(mean, sigma).log_prob(target).sum(-1)
    torch.testing.assert_close(likelihood.log_likelihood(output, target), expected_ll)
    torch.testing.assert_close(likelihood.pulls(output, target), (target - mean) / sigma)
    assert sigma.min().item() >= 0.05  # the floor holds even for a very negative raw width


def _hand_vae(likelihood="gaussian"):
    model = VariationalAutoencoder(n_bins=2, hidden=[], latent_dim=1, likelihood=likelihood, sigma_x=0.5)
    with torch.no_grad():
        model.to_mu.weight.copy_(torch.tensor([[0.5, -0.25]]))
        model.to_mu.bias.fill_(0.1)
        model.to_logvar.weight.copy_(torch.tensor([[0.2, 0.1]]))
        model.to_logvar.bias.fill_(-0.3)
        model.decoder[0].weight.copy_(torch.tensor([[1.5], [-0.5]]))
        model.decoder[0].bias.copy_(torch.tensor([0.2, 0.3]))
    return model.eval()


@pytest.mark.parametrize("mc_samples", [1, 4])
def test_importance_weighted_bound_matches_a_hand_computation(mc_samples):
    model = _hand_vae()
    x = np.array([[1.0, 2.0], [-0.5, 0.4]])
    eps = torch.randn((mc_samples, 2, 1), generator=torch.Generator().manual_seed(7))[..., 0].double().numpy()
    mu = x @ [0.5, -0.25] + 0.1
    logvar = x @ [0.2, 0.1] - 0.3
    z = mu + np.exp(0.5 * logvar) * eps
    xhat = z[..., None] * np.array([1.5, -0.5]) + np.array([0.2, 0.3])
    log_lik = (-0.5 * ((x - xhat) / 0.5) ** 2 - np.log(0.5) - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_prior = -0.5 * (z**2 + np.log(2 * np.pi))
    log_q = -0.5 * ((z - mu) ** 2 / np.exp(logvar) + logvar + np.log(2 * np.pi))
    iw_nll = -(logsumexp(log_lik + log_prior - log_q, axis=0) - np.log(mc_samples))
    with torch.inference_mode():
        scores = model.score_batch(torch.tensor(x, dtype=torch.float32), mc_samples=mc_samples,
                                   generator=torch.Generator().manual_seed(7))
    np.testing.assert_allclose(scores["iw_nll"].numpy(), iw_nll, rtol=1e-5)


def test_importance_weighted_bound_is_tighter_than_the_elbo():
    torch.manual_seed(0)
    model = build_network({"kind": "vae", "n_bins": 12, "hidden": [8], "latent_dim": 2}).eval()
    x = torch.randn(200, 12)
    with torch.inference_mode():
        scores = model.score_batch(x, mc_samples=64, generator=torch.Generator().manual_seed(0))
    # both are Monte-Carlo estimates: the importance-weighted bound is lower (tighter) in expectation
    gap = scores["negative_elbo"] - scores["iw_nll"]
    assert gap.mean() > 0.05
    assert (gap > 0).float().mean() > 0.9


def test_gaussian_pulls_and_chi2_of_the_hand_vae():
    model = _hand_vae()
    x = torch.tensor([[1.0, 2.0]])
    with torch.inference_mode():
        scores = model.score_batch(x, mc_samples=2, generator=torch.Generator().manual_seed(0))
    mu = 1.0 * 0.5 + 2.0 * -0.25 + 0.1
    recon = np.array([1.5 * mu + 0.2, -0.5 * mu + 0.3])
    pulls = (np.array([1.0, 2.0]) - recon) / 0.5
    np.testing.assert_allclose(scores["pulls"][0].numpy(), pulls, rtol=1e-6)
    assert scores["chi2"].item() == pytest.approx((pulls**2).sum(), rel=1e-6)
    assert scores["max_abs_pull"].item() == pytest.approx(np.abs(pulls).max(), rel=1e-6)


def test_file_variance_pulls():
    counts = np.array([[10.0, 0.0, 4.0]])
    recon = np.array([[8.0, 1.0, 4.0]])
    variances = np.array([[4.0, 0.0, 9.0]])
    np.testing.assert_allclose(file_variance_pulls(counts, recon, variances), [[1.0, -1.0, 0.0]])


@pytest.mark.parametrize("steps", [["unit_integral", "standardize"], ["log1p", "center_maxabs"], ["unit_integral", "log1p", "standardize"]])
def test_the_one_normalization_matches_its_definition_in_float64_and_inverts(steps):
    """Fitting, training and scoring all use SpectrumNormalizer.transform (float32 by default)."""
    X = np.random.default_rng(1).poisson(30.0, size=(50, 20)).astype(np.float64)
    normalizer = SpectrumNormalizer(steps).fit(X[:40])
    expected = X[40:].copy()
    for step, params in zip(normalizer.steps, normalizer.params_):
        if step == "unit_integral":
            expected = expected / expected.sum(axis=1, keepdims=True)
        elif step == "log1p":
            expected = np.log1p(expected)
        else:
            expected = (expected - np.array(params["mean"])) / np.array(params["std"] if step == "standardize" else params["scale"])
    np.testing.assert_allclose(normalizer.transform(X[40:]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer.transform(X[40:], dtype=np.float64), expected, rtol=1e-12, atol=1e-12)
    back = normalizer.inverse_transform(normalizer.transform(X[40:], dtype=np.float64), totals=X[40:].sum(axis=1))
    np.testing.assert_allclose(back, X[40:], rtol=1e-10)


@pytest.mark.parametrize("n_bins", [64, 100, 37])
@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_convolutional_models_reconstruct_every_bin(kind, n_bins):
    model = build_network({"kind": kind, "n_bins": n_bins, "architecture": "conv", "conv_channels": [4, 8],
                         "kernel_size": 5, "latent_dim": 3, "likelihood": "gaussian_learned"})
    x = torch.rand(6, n_bins) * 10
    with torch.inference_mode():
        scores = model.score_batch(x, mc_samples=3, generator=torch.Generator().manual_seed(0))
    assert scores["reconstruction"].shape == (6, n_bins)
    assert scores["pulls"].shape == (6, n_bins)
    assert torch.isfinite(scores["chi2"]).all()
    assert any(isinstance(m, torch.nn.Conv1d) for m in model.modules())


def test_poisson_vae_trains_on_counts_and_scores_a_distorted_spectrum_higher():
    rng = np.random.default_rng(0)
    shape = np.exp(-np.linspace(0, 3, 32)) + 0.3 * np.exp(-0.5 * ((np.arange(32) - 12) / 1.5) ** 2)
    shape /= shape.sum()
    X = rng.poisson(shape * rng.uniform(2000, 4000, size=(600, 1))).astype(np.float32)
    normalizer = SpectrumNormalizer(["unit_integral", "standardize"]).fit(X[:400])
    detector = build_detector({"kind": "vae", "hidden": [16], "latent_dim": 2, "likelihood": "poisson"},
                              normalization=normalizer, seed=0, scoring={"mc_samples": 4, "seed": 0},
                              training={"epochs": 30, "batch_size": 64, "learning_rate": 3e-3, "patience": 30,
                                        "device": "cpu"}).fit(X[:400], X[400:500])
    odd = X[500:].copy()
    odd[:, 20] += 300  # a hot bin
    normal, anomalous = detector.score(X[500:]), detector.score(odd)
    assert detector.primary_score == "elbo_deviance"
    assert np.median(anomalous["negative_elbo"]) > np.median(normal["negative_elbo"]) + 100
    assert np.all(anomalous["max_abs_pull"] > 5)
    assert np.median(normal["chi2"]) < 3 * 32  # a trained Poisson model fits normal spectra to about one count-sigma per bin


def test_poisson_vae_primary_score_is_the_elbo_above_a_perfect_fit():
    from scipy.special import gammaln

    from spectral_anomaly.models.vae import VAEDetector

    torch.manual_seed(0)
    model = build_network({"kind": "vae", "n_bins": 6, "hidden": [4], "latent_dim": 2, "likelihood": "poisson"}).eval()
    counts = torch.tensor([[5.0, 0.0, 3.0, 9.0, 1.0, 2.0], [50.0, 0.0, 30.0, 90.0, 10.0, 20.0]])
    with torch.inference_mode():
        scores = model.score_batch(counts, mc_samples=4, generator=torch.Generator().manual_seed(1))
    c = counts.double().numpy()
    saturated = (np.where(c > 0, c * np.log(np.where(c > 0, c, 1.0)), 0.0) - c - gammaln(c + 1)).sum(axis=1)
    np.testing.assert_allclose(scores["elbo_deviance"].numpy(), scores["negative_elbo"].numpy() + saturated, rtol=1e-5)
    assert (scores["elbo_deviance"] > 0).all()  # no fit beats the perfect one, and the KL is positive
    detector = VAEDetector(normalization=SpectrumNormalizer(["standardize"]), likelihood="poisson")
    assert detector.primary_score == "elbo_deviance"
    assert VAEDetector(normalization=detector.normalization, likelihood="gaussian").primary_score == "negative_elbo"
