"""The fast paths of training and scoring: device placement, bounded validation, bf16, lean scoring.

They must change speed, not results: scores without per-bin arrays equal those with them, the
fixed-width Gaussian likelihood equals the general formula, and bf16 training still learns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_anomaly.models import build_detector
from spectral_anomaly.models.deep import build_network
from spectral_anomaly.models.likelihoods import Likelihood, gaussian_log_likelihood
from spectral_anomaly.normalize import SpectrumNormalizer
from spectral_anomaly.train import TrainingData, fits_on_device, validation_subset

AE_HYPER = {"kind": "autoencoder", "n_bins": 8, "hidden": [16], "latent_dim": 2, "activation": "tanh"}
VAE_HYPER = {"kind": "vae", "n_bins": 8, "hidden": [16], "latent_dim": 2, "activation": "tanh", "sigma_x": 0.3}


def train_model(hyperparameters, X_train, X_validation, *, seed=0, scoring=None, **training):
    """A detector fitted on spectra taken as they are (a normalization of no steps)."""
    spec = {key: value for key, value in hyperparameters.items() if key != "n_bins"}
    detector = build_detector(spec, normalization=SpectrumNormalizer([]).fit(X_train), seed=seed,
                              training=training, scoring=scoring)
    return detector.fit(X_train, X_validation)


@pytest.mark.parametrize(("n_bytes", "free_bytes", "expected"), [
    (4 * 10**9, 80 * 10**9, True),      # 1M x 1000 float32 on an 80 GB GPU: stays on the device
    (40 * 10**9, 80 * 10**9, True),     # exactly half the free memory still fits
    (40 * 10**9 + 1, 80 * 10**9, False),
    (12 * 10**9, 16 * 10**9, False),    # more than half of a small GPU: batches from pinned host memory
    (0, 0, True),
])
def test_training_data_stays_on_the_device_only_within_half_its_free_memory(n_bytes, free_bytes, expected):
    assert fits_on_device(n_bytes, free_bytes=free_bytes) is expected


def test_validation_subset_is_bounded_seeded_and_absent_for_small_splits():
    assert validation_subset(500, 1000, seed=0) is None
    assert validation_subset(1000, 1000, seed=0) is None
    assert validation_subset(10_000, None, seed=0) is None
    rows = validation_subset(10_000, 1000, seed=4)
    assert len(rows) == 1000 and len(np.unique(rows)) == 1000 and np.all(np.diff(rows) > 0)
    assert rows.min() >= 0 and rows.max() < 10_000
    np.testing.assert_array_equal(rows, validation_subset(10_000, 1000, seed=4))
    assert not np.array_equal(rows, validation_subset(10_000, 1000, seed=5))


def test_bounded_validation_uses_the_subset(latent_spectra):
    X = latent_spectra
    full = train_model(AE_HYPER, X[:100], X[100:], epochs=2, batch_size=32, learning_rate=1e-2, patience=10,
                       seed=0, device="cpu")
    bounded = train_model(AE_HYPER, X[:100], X[100:], epochs=2, batch_size=32, learning_rate=1e-2, patience=10,
                          seed=0, device="cpu", validation_max_spectra=20)
    # same weights (the validation does not touch them), a different estimate of the same loss
    np.testing.assert_allclose(full.history_["train_loss"], bounded.history_["train_loss"], rtol=1e-6)
    assert not np.allclose(full.history_["validation_loss"], bounded.history_["validation_loss"])
    rows = validation_subset(100, 20, seed=3)
    with torch.inference_mode():
        expected = bounded.network_.training_loss(torch.as_tensor(X[100:][rows])).item()
    assert bounded.best_validation_loss_ == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("hyperparameters", [AE_HYPER, VAE_HYPER], ids=["autoencoder", "vae"])
def test_bf16_training_learns_and_differs_from_fp32(latent_spectra, hyperparameters):
    X = latent_spectra
    runs = {precision: train_model(hyperparameters, X[:160], X[160:], epochs=15, batch_size=32, learning_rate=1e-2,
                                   patience=100, seed=0, device="cpu", precision=precision)
            for precision in ("fp32", "bf16")}
    bf16 = runs["bf16"].history_
    assert bf16["validation_loss"].min() < 0.7 * bf16["validation_loss"].iloc[0]
    assert all(p.dtype == torch.float32 for p in runs["bf16"].network_.parameters()), "weights stay float32"
    assert not np.allclose(bf16["train_loss"], runs["fp32"].history_["train_loss"]), "bf16 autocast was not applied"
    assert bf16["validation_loss"].min() == pytest.approx(runs["fp32"].history_["validation_loss"].min(), rel=0.2)


def test_unknown_precision_is_refused(latent_spectra):
    with pytest.raises(ValueError, match="valid precisions: fp32, bf16"):
        train_model(AE_HYPER, latent_spectra[:50], latent_spectra[50:80], epochs=1, batch_size=32,
                    learning_rate=1e-2, patience=5, seed=0, device="cpu", precision="fp16")


@pytest.mark.parametrize(("kind", "likelihood"), [
    ("autoencoder", None), ("vae", "gaussian"), ("vae", "gaussian_learned"), ("vae", "poisson")])
def test_scores_without_bin_arrays_equal_those_with_them(kind, likelihood):
    torch.manual_seed(0)
    hyperparameters = {"kind": kind, "n_bins": 12, "hidden": [8], "latent_dim": 2}
    if kind == "vae":
        hyperparameters |= {"likelihood": likelihood, "sigma_x": 0.7}
    model = build_network(hyperparameters).eval()
    x = torch.poisson(torch.full((30, 12), 20.0))
    with torch.inference_mode():
        full = model.score_batch(x, mc_samples=8, generator=torch.Generator().manual_seed(1))
        lean = model.score_batch(x, mc_samples=8, generator=torch.Generator().manual_seed(1), bin_arrays=False)
    # a Poisson VAE returns its mean always: its reconstruction error is taken once the mean is normalized
    assert set(full) - set(lean) == (set() if likelihood == "poisson" else {"reconstruction", "pulls"})
    for name, values in lean.items():
        torch.testing.assert_close(values, full[name], rtol=0, atol=0)


def test_fixed_width_gaussian_likelihood_equals_the_general_formula():
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(4, 5, 1, 30, generator=generator, dtype=torch.float64)  # (K, batch, channels, bins)
    target = torch.randn(5, 30, generator=generator, dtype=torch.float64)
    got = Likelihood("gaussian", sigma_x=0.37).log_likelihood(output, target)
    expected = gaussian_log_likelihood(target, output[..., 0, :], 0.37)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)
    # one bin worked out by hand: x = 1, mean = 0, sigma = 2 gives -1/8 - log 2 - log(2 pi) / 2
    one = Likelihood("gaussian", sigma_x=2.0).log_likelihood(torch.zeros(1, 1, 1), torch.ones(1, 1))
    assert one.item() == pytest.approx(-0.125 - math.log(2.0) - 0.5 * math.log(2.0 * math.pi))


def test_vae_monte_carlo_samples_go_through_the_decoder_as_one_batch(latent_spectra):
    detector = train_model({k: v for k, v in VAE_HYPER.items() if k != "n_bins"}, latent_spectra[:100],
                           latent_spectra[100:], epochs=1, batch_size=32, scoring={"mc_samples": 16, "batch_size": 40})
    calls = []
    detector.network_.decoder.register_forward_hook(lambda module, inputs, output: calls.append(tuple(inputs[0].shape)))
    detector.score(latent_spectra[:40])
    assert calls[0] == (16, 40, 2), "the K samples must be decoded in one call"
    assert len(calls) == 2, "one decoder call for the K samples and one for the posterior mean"


def test_training_spectra_are_normalized_once_block_by_block_and_the_input_left_alone(rng, monkeypatch):
    """Training normalizes its spectra once, up front, a few rows at a time into a new tensor."""
    monkeypatch.setattr("spectral_anomaly.train.NORMALIZATION_BLOCK_BYTES", 3 * 8 * 4)  # 3 rows per block
    counts = rng.poisson(30.0, size=(10, 8)).astype(np.float32)
    normalizer = SpectrumNormalizer(["unit_integral", "standardize"]).fit(counts)
    before = counts.copy()
    data = TrainingData.of(normalizer, counts, counts=False)
    np.testing.assert_array_equal(data.normalized.numpy(), normalizer.transform(counts))
    assert data.counts is None
    np.testing.assert_array_equal(counts, before)


def test_a_poisson_vae_trains_on_normalized_spectra_and_raw_counts(rng):
    counts = rng.poisson(30.0, size=(10, 8)).astype(np.float32)
    normalizer = SpectrumNormalizer(["unit_integral", "standardize"]).fit(counts)
    assert build_network({**VAE_HYPER, "likelihood": "poisson"}).needs_counts
    assert not build_network(VAE_HYPER).needs_counts and not build_network(AE_HYPER).needs_counts
    data = TrainingData.of(normalizer, counts, counts=True)
    np.testing.assert_array_equal(data.counts.numpy(), counts)
