"""Training augmentation: stretched (gain) and thinned (fewer counts) variants of the training spectra."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_anomaly.augment import augment_spectra, stretch
from spectral_anomaly.exceptions import ConfigError
from spectral_anomaly.models import build_detector
from spectral_anomaly.normalize import SpectrumNormalizer


def _peaks(n: int, *, centre: float = 30.0, seed: int = 0) -> np.ndarray:
    bins = np.arange(100) + 0.5
    shape = np.exp(-0.5 * ((bins - centre) / 3.0) ** 2) + 0.01
    return np.random.default_rng(seed).poisson(2000 * shape / shape.sum(), size=(n, 100)).astype(np.float32)


def test_a_stretch_moves_a_peak_by_the_gain_and_keeps_the_counts():
    X = np.zeros((2, 100))
    X[:, 30] = 1000.0  # a peak in bin 30, i.e. at 30.5 on an axis whose zero is the first bin's lower edge
    Y = stretch(X, np.array([1.02, 0.98]))
    centroids = (Y * (np.arange(100) + 0.5)).sum(axis=1) / Y.sum(axis=1)
    np.testing.assert_allclose(centroids, [30.5 * 1.02, 30.5 * 0.98], rtol=2e-4)  # up to the binning
    np.testing.assert_allclose(Y.sum(axis=1), 1000.0)
    np.testing.assert_allclose(stretch(X, np.ones(2)), X)


def test_thinning_keeps_a_share_of_the_counts_and_keeps_them_whole():
    X = _peaks(400)
    out = augment_spectra(X, {"copies": 1, "count_scale": 0.3}, seed=0)
    assert out.shape == (800, 100)
    np.testing.assert_array_equal(out[:400], X)  # the originals first, unchanged
    kept = out[400:].sum(axis=1) / X.sum(axis=1)
    assert 0.27 < kept.min() and kept.max() <= 1.0 and kept.mean() < 0.7
    np.testing.assert_array_equal(out[400:], np.round(out[400:]))
    np.testing.assert_array_equal(augment_spectra(X, {"copies": 1, "count_scale": 0.3}, seed=0), out)  # seeded


def test_thinning_refuses_values_that_are_not_counts():
    with pytest.raises(ConfigError, match="count_scale.*not whole numbers"):
        augment_spectra(np.full((3, 5), 0.5, dtype=np.float32), {"copies": 1, "count_scale": 0.5}, seed=0)


def test_an_autoencoder_trained_with_gain_augmentation_takes_a_gain_shift_as_normal():
    train, validation = _peaks(600), _peaks(150, seed=1)
    shifted = _peaks(200, centre=30.0 * 1.03, seed=2)  # the next run: its gain 3 % higher
    normalizer = SpectrumNormalizer(["unit_integral", "standardize"]).fit(train)
    errors = {}
    for copies in (0, 3):
        detector = build_detector({"kind": "autoencoder", "hidden": [32], "latent_dim": 2,
                                   "augment": {"copies": copies, "gain": 0.04}}, normalization=normalizer,
                                  training={"epochs": 60, "patience": 10, "device": "cpu", "batch_size": 64})
        detector.fit(train, validation)
        errors[copies] = np.median(detector.score(shifted)["reconstruction_error"]) / np.median(
            detector.score(validation)["reconstruction_error"])
    assert errors[0] > 1.5, errors  # without augmentation the shifted run looks anomalous
    assert errors[3] < 0.7 * errors[0], errors
