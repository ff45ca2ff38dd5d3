"""The fast paths of training and scoring: device placement, bounded validation, bf16, lean scoring.

They must change speed, not results: scores without per-bin arrays equal those with them, the
fixed-width Gaussian likelihood equals the general formula, and bf16 training still learns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_anomaly.models import build_model
from spectral_anomaly.models.likelihoods import Likelihood, gaussian_log_likelihood
from spectral_anomaly.normalize import SpectrumNormalizer
from spectral_anomaly.score import score_deep_model
from spectral_anomaly.train import _normalized, fits_on_device, train_model, validation_subset

AE_HYPER = {"kind": "autoencoder", "n_bins": 8, "hidden": [16], "latent_dim": 2, "activation": "tanh"}
VAE_HYPER = {"kind": "vae", "n_bins": 8, "hidden": [16], "latent_dim": 2, "activation": "tanh", "sigma_x": 0.3}


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
    np.testing.assert_allclose(full.history["train_loss"], bounded.history["train_loss"], rtol=1e-6)
    assert not np.allclose(full.history["validation_loss"], bounded.history["validation_loss"])
    rows = validation_subset(100, 20, seed=3)
    with torch.inference_mode():
        expected = bounded.model.training_loss(torch.as_tensor(X[100:][rows])).item()
    assert bounded.best_validation_loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("hyperparameters", [AE_HYPER, VAE_HYPER], ids=["autoencoder", "vae"])
def test_bf16_training_learns_and_differs_from_fp32(latent_spectra, hyperparameters):
    X = latent_spectra
    runs = {precision: train_model(hyperparameters, X[:160], X[160:], epochs=15, batch_size=32, learning_rate=1e-2,
                                   patience=100, seed=0, device="cpu", precision=precision)
            for precision in ("fp32", "bf16")}
    bf16 = runs["bf16"].history
    assert bf16["validation_loss"].min() < 0.7 * bf16["validation_loss"].iloc[0]
    assert all(p.dtype == torch.float32 for p in runs["bf16"].model.parameters()), "weights stay float32"
    assert not np.allclose(bf16["train_loss"], runs["fp32"].history["train_loss"]), "bf16 autocast was not applied"
    assert bf16["validation_loss"].min() == pytest.approx(runs["fp32"].history["validation_loss"].min(), rel=0.2)


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
    model = build_model(hyperparameters).eval()
    x = torch.poisson(torch.full((30, 12), 20.0))
    with torch.inference_mode():
        full = model.score_batch(x, mc_samples=8, generator=torch.Generator().manual_seed(1))
        lean = model.score_batch(x, mc_samples=8, generator=torch.Generator().manual_seed(1), bin_arrays=False)
    assert set(full) - set(lean) == {"reconstruction", "reconstruction_counts", "pulls"}
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


def test_vae_monte_carlo_samples_go_through_the_decoder_as_one_batch():
    torch.manual_seed(0)
    model = build_model({**VAE_HYPER}).eval()
    calls = []
    model.decoder.register_forward_hook(lambda module, inputs, output: calls.append(tuple(inputs[0].shape)))
    with torch.inference_mode():
        score_deep_model(model, np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32), mc_samples=16,
                         seed=0, device="cpu", batch_size=40)
    assert calls[0] == (16, 40, 2), "the K samples must be decoded in one call"
    assert len(calls) == 2, "one decoder call for the K samples and one for the posterior mean"


@pytest.mark.parametrize("hyperparameters", [
    AE_HYPER,
    VAE_HYPER,
    {**VAE_HYPER, "likelihood": "gaussian_learned"},
], ids=["ae", "vae", "vae-learned-width"])
def test_spectra_normalized_once_give_the_loss_of_normalizing_every_batch(hyperparameters, rng):
    """Training normalizes its spectra once, up front, where the loss needs nothing but normalized spectra."""
    counts = rng.poisson(30.0, size=(64, 8)).astype(np.float32)
    normalization = SpectrumNormalizer(["unit_integral", "log1p", "standardize"]).fit(counts).to_dict()
    model = build_model({**hyperparameters, "normalization": normalization})
    x = torch.as_tensor(counts)
    assert model.trains_on_normalized
    per_batch = model.training_loss(x, generator=torch.Generator().manual_seed(3))
    once = model.training_loss(model.normalize(x), generator=torch.Generator().manual_seed(3), normalized_input=True)
    torch.testing.assert_close(once, per_batch, rtol=0, atol=0)


def test_block_wise_normalization_equals_the_layer_and_leaves_the_input_alone(rng, monkeypatch):
    """Spectra are normalized a few rows at a time into a new tensor; the caller's array is untouched."""
    monkeypatch.setattr("spectral_anomaly.train.NORMALIZATION_BLOCK_BYTES", 3 * 8 * 4)  # 3 rows per block
    counts = rng.poisson(30.0, size=(10, 8)).astype(np.float32)
    normalization = SpectrumNormalizer(["unit_integral", "standardize"]).fit(counts).to_dict()
    model = build_model({**AE_HYPER, "normalization": normalization})
    x = torch.as_tensor(counts)  # shares memory with counts
    before = counts.copy()
    normalized = _normalized(model, x)
    with torch.no_grad():
        torch.testing.assert_close(normalized, model.normalize(x), rtol=0, atol=0)
    np.testing.assert_array_equal(counts, before)


def test_a_poisson_vae_trains_on_raw_counts():
    model = build_model({**VAE_HYPER, "likelihood": "poisson"})
    assert not model.trains_on_normalized
