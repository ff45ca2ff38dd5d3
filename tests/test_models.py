"""Tests of the anomaly models: VAE ELBO and KL, autoencoder, PCA baseline, training and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from spectral_anomaly.exceptions import FormatVersionError, TrainingError
from spectral_anomaly.models import build_detector, load_detector
from spectral_anomaly.models.autoencoder import Autoencoder
from spectral_anomaly.models.pca import PCABaseline
from spectral_anomaly.models.vae import (
    VariationalAutoencoder,
    gaussian_log_likelihood,
    kl_to_standard_normal,
)
from spectral_anomaly.normalize import SpectrumNormalizer
from spectral_anomaly.store.formats import FORMAT_VERSIONS
from spectral_anomaly.store.integrity import checksum_path

# --------------------------------------------------------------------------------------------
# KL divergence and Gaussian likelihood
# --------------------------------------------------------------------------------------------

MU = np.array([[0.0, 0.5, -1.2], [2.0, -0.3, 0.0]])
LOGVAR = np.array([[0.0, -0.7, 0.4], [1.1, 0.0, -2.5]])


def test_kl_matches_closed_form_computed_by_hand():
    sigma2 = np.exp(LOGVAR)
    expected = 0.5 * (MU**2 + sigma2 - np.log(sigma2) - 1.0).sum(axis=1)
    got = kl_to_standard_normal(torch.tensor(MU), torch.tensor(LOGVAR)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # one value worked out on paper: mu=0.5, log sigma^2=-0.7 gives 0.5*(0.25 + e^-0.7 + 0.7 - 1)
    single = kl_to_standard_normal(torch.tensor([[0.5]]), torch.tensor([[-0.7]])).item()
    assert single == pytest.approx(0.5 * (0.25 + math.exp(-0.7) + 0.7 - 1.0), rel=1e-7)


def test_kl_matches_torch_distributions():
    mu, logvar = torch.tensor(MU), torch.tensor(LOGVAR)
    sigma = (0.5 * logvar).exp()
    expected = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected, rtol=1e-10, atol=1e-12)


def test_kl_is_zero_only_for_the_prior_and_positive_otherwise():
    zero = kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4))
    assert torch.equal(zero, torch.zeros(3))
    shifted = kl_to_standard_normal(torch.full((1, 2), 0.3), torch.zeros(1, 2))
    narrow = kl_to_standard_normal(torch.zeros(1, 2), torch.full((1, 2), -0.5))
    wide = kl_to_standard_normal(torch.zeros(1, 2), torch.full((1, 2), 0.5))
    for kl in (shifted, narrow, wide):
        assert kl.item() > 1e-3


def test_gaussian_log_likelihood_matches_torch_normal():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    mean = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    for sigma in (0.3, 1.0, 2.5):
        expected = Normal(mean, sigma).log_prob(x).sum(-1)
        torch.testing.assert_close(gaussian_log_likelihood(x, mean, sigma), expected, rtol=1e-12, atol=1e-12)


def test_gaussian_log_likelihood_includes_normalization_constant():
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5]], dtype=torch.float64)
    sigma, n = 0.5, 4
    # a perfect reconstruction leaves only the constant -n log sigma - n/2 log 2 pi
    expected = -n * math.log(sigma) - 0.5 * n * math.log(2 * math.pi)
    assert gaussian_log_likelihood(x, x.clone(), sigma).item() == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(0.0)


# --------------------------------------------------------------------------------------------
# A VAE small enough to check by hand
# --------------------------------------------------------------------------------------------

SIGMA_X = 0.5
W_MU, B_MU = np.array([0.5, -0.25]), 0.1
W_LOGVAR, B_LOGVAR = np.array([0.2, 0.1]), -0.3
W_DEC, B_DEC = np.array([1.5, -0.5]), np.array([0.2, 0.3])  # decoder: xhat = W_DEC * z + B_DEC
X_HAND = np.array([[1.0, 2.0], [-0.5, 0.4], [0.0, 0.0]])


@pytest.fixture
def hand_vae() -> VariationalAutoencoder:
    model = VariationalAutoencoder(n_bins=2, hidden=[], latent_dim=1, activation="relu", sigma_x=SIGMA_X)
    decoder = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert len(decoder) == 1, "a VAE without hidden layers has a single linear decoder layer"
    with torch.no_grad():
        model.to_mu.weight.copy_(torch.tensor(W_MU[None]))
        model.to_mu.bias.fill_(B_MU)
        model.to_logvar.weight.copy_(torch.tensor(W_LOGVAR[None]))
        model.to_logvar.bias.fill_(B_LOGVAR)
        decoder[0].weight.copy_(torch.tensor(W_DEC).reshape(2, 1))
        decoder[0].bias.copy_(torch.tensor(B_DEC))
    return model.eval()


def _hand_elbo(x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """The ELBO parts for the hand VAE, with eps of shape (K, batch)."""
    mu = x @ W_MU + B_MU
    logvar = x @ W_LOGVAR + B_LOGVAR
    sigma = np.exp(0.5 * logvar)
    z = mu + sigma * eps  # (K, batch)
    xhat = z[..., None] * W_DEC + B_DEC  # (K, batch, 2)
    n = x.shape[1]
    ll = -0.5 * (((x - xhat) / SIGMA_X) ** 2).sum(-1) - n * np.log(SIGMA_X) - 0.5 * n * np.log(2 * np.pi)
    expected_ll = ll.mean(axis=0)
    kl = 0.5 * (mu**2 + np.exp(logvar) - logvar - 1.0)
    return {"mu": mu, "expected_ll": expected_ll, "kl": kl, "elbo": expected_ll - kl}


@pytest.mark.parametrize("mc_samples", [1, 5])
def test_elbo_terms_of_hand_vae(hand_vae, mc_samples):
    seed = 2024
    eps = torch.randn((mc_samples, len(X_HAND), 1), generator=torch.Generator().manual_seed(seed))
    expected = _hand_elbo(X_HAND, eps[..., 0].double().numpy())
    x = torch.tensor(X_HAND, dtype=torch.float32)
    with torch.inference_mode():
        terms = hand_vae.elbo_terms(x, mc_samples=mc_samples, generator=torch.Generator().manual_seed(seed))
    np.testing.assert_allclose(terms["mu"][:, 0].numpy(), expected["mu"], rtol=1e-6)
    np.testing.assert_allclose(terms["kl"].numpy(), expected["kl"], rtol=1e-5)
    np.testing.assert_allclose(terms["expected_log_likelihood"].numpy(), expected["expected_ll"], rtol=1e-5)
    np.testing.assert_allclose(terms["elbo"].numpy(), expected["elbo"], rtol=1e-5)
    assert np.all(expected["kl"] > 0), "the hand posterior is not the prior, so its KL must be positive"


def test_score_batch_of_hand_vae(hand_vae):
    seed, mc_samples = 11, 3
    eps = torch.randn((mc_samples, len(X_HAND), 1), generator=torch.Generator().manual_seed(seed))
    expected = _hand_elbo(X_HAND, eps[..., 0].double().numpy())
    x = torch.tensor(X_HAND, dtype=torch.float32)
    with torch.inference_mode():
        scores = hand_vae.score_batch(x, mc_samples=mc_samples, generator=torch.Generator().manual_seed(seed))
    np.testing.assert_allclose(scores["negative_elbo"].numpy(), -expected["elbo"], rtol=1e-5)
    np.testing.assert_allclose(scores["elbo"].numpy(), expected["elbo"], rtol=1e-5)
    np.testing.assert_allclose(scores["reconstruction_nll"].numpy(), -expected["expected_ll"], rtol=1e-5)
    np.testing.assert_allclose(scores["kl"].numpy(), expected["kl"], rtol=1e-5)
    np.testing.assert_allclose(scores["latent_radius"].numpy(), np.abs(expected["mu"]), rtol=1e-6)
    # the negative ELBO is the reconstruction NLL plus the KL (higher = more anomalous)
    np.testing.assert_allclose(
        scores["negative_elbo"].numpy(), (scores["reconstruction_nll"] + scores["kl"]).numpy(), rtol=1e-6
    )
    # the reconstruction is decoded from the posterior mean
    recon = expected["mu"][:, None] * W_DEC + B_DEC
    np.testing.assert_allclose(scores["reconstruction"].numpy(), recon, rtol=1e-6)
    np.testing.assert_allclose(scores["reconstruction_error"].numpy(), ((recon - X_HAND) ** 2).sum(1), rtol=1e-5)


def test_score_batch_is_deterministic_for_a_seed_and_uses_the_samples(hand_vae):
    x = torch.tensor(X_HAND, dtype=torch.float32)
    with torch.inference_mode():
        first = hand_vae.score_batch(x, mc_samples=16, generator=torch.Generator().manual_seed(5))
        second = hand_vae.score_batch(x, mc_samples=16, generator=torch.Generator().manual_seed(5))
        other = hand_vae.score_batch(x, mc_samples=16, generator=torch.Generator().manual_seed(6))
    for name in first:
        assert torch.equal(first[name], second[name]), name
    # a different seed draws different samples, so the Monte-Carlo estimate changes
    assert not torch.equal(first["negative_elbo"], other["negative_elbo"])


# --------------------------------------------------------------------------------------------
# Autoencoder
# --------------------------------------------------------------------------------------------


def test_autoencoder_reconstruction_error_is_sum_of_squared_residuals():
    torch.manual_seed(0)
    model = Autoencoder(n_bins=6, hidden=[5], latent_dim=2, activation="tanh").eval()
    x = torch.randn(4, 6)
    with torch.inference_mode():
        scores = model.score_batch(x)
        expected = ((model(x) - x) ** 2).sum(dim=1)
        loss = model.training_loss(x)
    torch.testing.assert_close(scores["reconstruction_error"], expected)
    torch.testing.assert_close(scores["reconstruction"], model(x).detach())
    assert scores["latent"].shape == (4, 2)
    torch.testing.assert_close(loss, expected.mean())


# --------------------------------------------------------------------------------------------
# PCA baseline
# --------------------------------------------------------------------------------------------


@pytest.fixture
def correlated_data():
    generator = np.random.default_rng(3)
    mixing = generator.normal(size=(3, 10))
    X = generator.normal(size=(120, 3)) * [3.0, 2.0, 1.0] @ mixing + 0.2 * generator.normal(size=(120, 10)) + 5.0
    X2 = generator.normal(size=(30, 3)) @ mixing + 0.5 * generator.normal(size=(30, 10)) + 5.0
    return X, X2


def test_pca_score_samples_agrees_with_sklearn(correlated_data):
    from sklearn.decomposition import PCA

    X, X2 = correlated_data
    ours = PCABaseline(n_components=3).fit(X)
    reference = PCA(n_components=3, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.score_samples(X2), reference.score_samples(X2), rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-6)


def test_pca_reconstruction_error_agrees_with_sklearn(correlated_data):
    from sklearn.decomposition import PCA

    X, X2 = correlated_data
    ours = PCABaseline(n_components=3).fit(X)
    reference = PCA(n_components=3, svd_solver="full").fit(X)
    expected = ((reference.inverse_transform(reference.transform(X2)) - X2) ** 2).sum(axis=1)
    np.testing.assert_allclose(ours.reconstruction_error(X2), expected, rtol=1e-6)


def test_pca_fit_in_blocks_gives_sklearn_axes_variances_and_noise(correlated_data):
    """Blocks of 7 rows of spectra far from zero (offset 1e5): the full SVD's numbers, signs included."""
    from sklearn.decomposition import PCA

    X = correlated_data[0] + 1e5
    reference = PCA(n_components=3, svd_solver="full").fit(X)
    ours = PCABaseline(n_components=3).fit(X, block_rows=7)
    np.testing.assert_allclose(ours.mean_, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.explained_variance_, reference.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.components_, reference.components_, atol=1e-6)
    assert ours.noise_variance_ == pytest.approx(reference.noise_variance_, rel=1e-6)


def test_pca_with_fewer_spectra_than_bins_matches_sklearn():
    X = np.random.default_rng(5).normal(size=(6, 10))
    from sklearn.decomposition import PCA

    reference = PCA(n_components=3, svd_solver="full").fit(X)
    ours = PCABaseline(n_components=3).fit(X, block_rows=4)
    assert ours.noise_variance_ == pytest.approx(reference.noise_variance_, rel=1e-8)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-8)


def test_pca_detector_fit_returns_self_and_save_load_roundtrip(correlated_data, tmp_path):
    X, X2 = correlated_data
    detector = build_detector({"kind": "pca", "n_components": 3}, normalization=SpectrumNormalizer(["standardize"]).fit(X))
    assert detector.fit(X, None) is detector
    path = tmp_path / "pca.npz"
    detector.save(path)
    loaded = load_detector(path)
    assert loaded.latent_dim == 3
    before, after = detector.score(X2), loaded.score(X2)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_pca_negative_log_likelihood_splits_into_hotelling_t2_and_the_residual(correlated_data):
    """-2 log p(x) = const + T^2 + Q / sigma^2: the two data terms, each a score of its own."""
    X, X2 = correlated_data
    detector = build_detector({"kind": "pca", "n_components": 3}, normalization=SpectrumNormalizer(["standardize"]).fit(X))
    scores = detector.fit(X, None).score(X2)
    assert {"hotelling_t2", "reconstruction_error"} <= set(scores) and set(detector.score_columns) <= set(scores)
    rest = 2 * scores["pca_nll"] - scores["hotelling_t2"] - scores["reconstruction_error"] / detector.pca_.noise_variance_
    np.testing.assert_allclose(rest, rest[0], rtol=1e-9)  # the same constant for every spectrum
    latent = np.column_stack([scores[f"latent_{j}"] for j in range(3)]) if "latent_0" in scores else scores["latent"]
    np.testing.assert_allclose(scores["hotelling_t2"], (latent**2 / detector.pca_.explained_variance_).sum(axis=1))
    assert scores["hotelling_t2"].min() >= 0


def test_score_columns_come_from_the_registry_and_every_one_is_evaluated():
    from spectral_anomaly.columns import RESERVED_COLUMNS, SCORE_COLUMNS, SIGNED_COPIES
    from spectral_anomaly.models import DETECTORS

    for kind, entry in DETECTORS.items():
        assert entry.score_columns, kind
        for column in entry.score_columns:
            assert column in RESERVED_COLUMNS, (kind, column)  # an input column of that name is kept apart
            assert column in SCORE_COLUMNS or SIGNED_COPIES.get(column) in entry.score_columns, (kind, column)
    assert "elbo_deviance" in SCORE_COLUMNS and "hotelling_t2" in SCORE_COLUMNS


# --------------------------------------------------------------------------------------------
# Training, scoring and model files (through the detector contract)
# --------------------------------------------------------------------------------------------

AE_SPEC = {"kind": "autoencoder", "hidden": [16], "latent_dim": 2, "activation": "tanh"}
VAE_SPEC = {"kind": "vae", "hidden": [16], "latent_dim": 2, "activation": "tanh", "sigma_x": 0.3}


def _fit(spec, X, *, seed=0, epochs=15, learning_rate=1e-2, patience=100, normalizer=None):
    normalizer = normalizer or SpectrumNormalizer(["standardize"]).fit(X[:160])
    detector = build_detector(spec, normalization=normalizer, seed=seed, scoring={"mc_samples": 4, "seed": 9},
                              training={"epochs": epochs, "batch_size": 32, "learning_rate": learning_rate,
                                        "patience": patience, "device": "cpu"})
    return detector.fit(X[:160], X[160:])


@pytest.mark.parametrize("spec", [AE_SPEC, VAE_SPEC], ids=["autoencoder", "vae"])
def test_training_reduces_validation_loss(latent_spectra, spec):
    detector = _fit(spec, latent_spectra)
    history = detector.history()
    assert list(history.columns) == ["epoch", "train_loss", "validation_loss", "kl_weight", "seconds", "best"]
    assert history["epoch"].tolist() == list(range(1, 16))
    assert detector.best_validation_loss_ < 0.7 * history["validation_loss"].iloc[0]
    assert detector.best_validation_loss_ == pytest.approx(history["validation_loss"].min())
    assert detector.best_epoch_ == int(history.loc[history["validation_loss"].idxmin(), "epoch"])
    assert np.isfinite(history["train_loss"]).all()


def test_early_stopping_on_a_plateau(latent_spectra):
    # learning rate 0: the weights never change, so the validation loss is flat after epoch 1
    history = _fit(AE_SPEC, latent_spectra, epochs=50, learning_rate=0.0, patience=2).history()
    assert len(history) == 3, "patience 2 must stop two epochs after the last improvement"
    assert history["best"].tolist() == [True, False, False]


def test_returned_network_holds_best_epoch_weights(latent_spectra):
    detector = _fit(AE_SPEC, latent_spectra, epochs=8)
    normalized = torch.tensor(detector.normalization.transform(latent_spectra[160:]))
    with torch.inference_mode():
        loss = detector.network_.training_loss(normalized).item()
    assert loss == pytest.approx(detector.best_validation_loss_, rel=1e-5)


def test_training_is_reproducible_for_a_seed(latent_spectra):
    torch.manual_seed(1)  # a different global state before each run: fitting must seed everything itself
    first = _fit(VAE_SPEC, latent_spectra, epochs=5, seed=3)
    torch.manual_seed(2)
    second = _fit(VAE_SPEC, latent_spectra, epochs=5, seed=3)
    state1, state2 = first.network_.state_dict(), second.network_.state_dict()
    assert state1.keys() == state2.keys()
    for name in state1:
        assert torch.equal(state1[name], state2[name]), name
    scores1, scores2 = first.score(latent_spectra), second.score(latent_spectra)
    assert scores1.keys() == scores2.keys()
    for name in scores1:
        np.testing.assert_array_equal(scores1[name], scores2[name], err_msg=name)
    assert set(first.score_columns) | {"latent_0", "latent_1", "max_pull_bin"} == set(scores1)
    assert scores1["negative_elbo"].shape == (200,)
    assert np.all(scores1["kl"] > 0), "a trained VAE's posterior is not the prior; its KL must be non-zero"


def test_autoencoder_scores_are_batch_consistent_and_match_the_network(latent_spectra):
    detector = _fit(AE_SPEC, latent_spectra, epochs=2)
    a = detector.score(latent_spectra)
    detector.scoring["batch_size"] = 37
    b = detector.score(latent_spectra)
    for name in a:  # the autoencoder draws nothing: another batch size changes at most rounding
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        z = torch.tensor(detector.normalization.transform(latent_spectra))
        direct = ((detector.network_(z) - z) ** 2).sum(1).double().numpy()
    np.testing.assert_allclose(a["reconstruction_error"], direct, rtol=1e-5)


POISSON_VAE_SPEC = {"kind": "vae", "hidden": [16], "latent_dim": 2, "activation": "tanh", "likelihood": "poisson"}


@pytest.mark.parametrize("spec", [VAE_SPEC, POISSON_VAE_SPEC], ids=["gaussian", "poisson"])
def test_a_vae_scores_a_spectrum_the_same_alone_in_any_batch_and_inside_other_data(latent_spectra, spec):
    X = latent_spectra if spec is VAE_SPEC else np.random.default_rng(4).poisson(
        200.0 * np.exp(latent_spectra)).astype(np.float32)
    detector = _fit(spec, X, epochs=3, normalizer=SpectrumNormalizer(["standardize"]).fit(X[:160]))
    columns = [c for c in detector.score_columns if c in ("negative_elbo", "iw_nll", "kl", "elbo_deviance")]
    reference = {name: detector.score(X)[name] for name in columns}  # batch 1024: one batch
    for batch in (1, 7, 100):
        detector.scoring["batch_size"] = batch
        scores = detector.score(X)
        for name in columns:
            np.testing.assert_allclose(scores[name], reference[name], rtol=1e-5, atol=1e-5, err_msg=f"{name}, batch {batch}")
    # the same spectra shuffled into other data (another file): each keeps its score
    other = np.random.default_rng(1).permutation(np.concatenate([X[::-1] + 1.0, X]))[:300]
    rows = {row.tobytes(): i for i, row in enumerate(X)}
    inside = [(j, rows[row.tobytes()]) for j, row in enumerate(other) if row.tobytes() in rows]
    assert len(inside) > 50
    scores = detector.score(other)
    for name in columns:
        np.testing.assert_allclose(scores[name][[j for j, _ in inside]], reference[name][[i for _, i in inside]],
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    # another scoring seed draws other samples
    detector.scoring["seed"] += 1
    assert not np.allclose(detector.score(X)["negative_elbo"], reference["negative_elbo"])


def test_autoencoder_pulls_of_counts_are_poisson_pearson_residuals_of_the_reconstruction(latent_spectra):
    counts = np.random.default_rng(4).poisson(200.0 * np.exp(latent_spectra)).astype(np.float32)
    detector = _fit(AE_SPEC, counts, epochs=3, normalizer=SpectrumNormalizer(["unit_integral", "standardize"]).fit(counts[:160]))
    scores = detector.score(counts)
    expected = detector.reconstruct(counts)["reconstruction"]
    pearson = (counts - expected) / np.sqrt(np.maximum(expected, 1.0))
    np.testing.assert_allclose(scores["chi2"], (pearson**2).sum(axis=1), rtol=1e-4)
    np.testing.assert_allclose(scores["max_abs_pull"], np.abs(pearson).max(axis=1), rtol=1e-4)
    assert not np.allclose(scores["chi2"], scores["reconstruction_error"], rtol=0.1)
    # a count off by 10 sigma in one bin shows as a pull of about 10
    hot = counts[:1].copy()
    hot[0, 3] += 10.0 * np.sqrt(expected[0, 3])
    assert detector.score(hot)["max_abs_pull"][0] > 8.0


def test_autoencoder_pulls_of_non_counts_use_the_validation_residual_spread(latent_spectra):
    detector = _fit(AE_SPEC, latent_spectra, epochs=5)
    assert not detector.normalization.takes_counts
    validation = latent_spectra[160:]
    pulls = detector.reconstruct(validation)["pulls"]
    np.testing.assert_allclose(np.sqrt((pulls**2).mean(axis=0)), 1.0, rtol=1e-4)  # unit spread on validation, per bin
    scores = detector.score(validation)
    np.testing.assert_allclose(scores["chi2"], (pulls**2).sum(axis=1), rtol=1e-4)


# --------------------------------------------------------------------------------------------
# Localization: the bin of the largest pull
# --------------------------------------------------------------------------------------------

PCA_SPEC = {"kind": "pca", "n_components": 2}
LOCALIZED_SPECS = [AE_SPEC, VAE_SPEC, POISSON_VAE_SPEC, PCA_SPEC]
LOCALIZED_IDS = ["autoencoder", "gaussian-vae", "poisson-vae", "pca"]


def _localized_fit(spec, latent_spectra):
    """A detector of ``spec`` fitted briefly, and the spectra it scores (counts for a Poisson likelihood)."""
    X = latent_spectra if spec is not POISSON_VAE_SPEC else np.random.default_rng(4).poisson(
        200.0 * np.exp(latent_spectra)).astype(np.float32)
    return _fit(spec, X, epochs=3), X


def _clear_argmax(pulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bin of each spectrum's largest |pull|, and whether it stands clear of the runner-up (so that float32
    rounding in another batch cannot swap them)."""
    magnitudes = np.sort(np.abs(pulls), axis=1)
    return np.abs(pulls).argmax(axis=1), magnitudes[:, -1] - magnitudes[:, -2] > 1e-3 * magnitudes[:, -1]


@pytest.mark.parametrize("spec", LOCALIZED_SPECS, ids=LOCALIZED_IDS)
def test_max_pull_bin_is_the_one_strongly_perturbed_bin(latent_spectra, spec):
    detector, X = _localized_fit(spec, latent_spectra)
    hot = np.repeat(X[:1], X.shape[1], axis=0)
    spread = X.std(axis=0)
    for k in range(X.shape[1]):  # spectrum k: bin k pushed far out
        hot[k, k] += 25.0 * spread[k] + (10.0 * np.sqrt(X[0, k]) if spec is POISSON_VAE_SPEC else 0.0)
    scores = detector.score(hot)
    assert scores["max_pull_bin"].dtype.kind == "i"
    np.testing.assert_array_equal(scores["max_pull_bin"], np.arange(X.shape[1]))
    assert "max_pull_bin" not in detector.score_columns  # it locates the anomaly; it does not rank spectra


@pytest.mark.parametrize("spec", LOCALIZED_SPECS, ids=LOCALIZED_IDS)
def test_max_pull_bin_is_the_argmax_of_the_reconstruction_pulls(latent_spectra, spec):
    detector, X = _localized_fit(spec, latent_spectra)
    scores = detector.score(X)
    pulls = detector.reconstruct(X)["pulls"]
    expected, clear = _clear_argmax(pulls)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(scores["max_pull_bin"][clear], expected[clear])
    rows = np.arange(len(X))
    np.testing.assert_allclose(scores["max_abs_pull"], np.abs(pulls)[rows, scores["max_pull_bin"]], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spec", LOCALIZED_SPECS, ids=LOCALIZED_IDS)
def test_max_pull_bin_follows_the_files_variances(latent_spectra, spec):
    detector, X = _localized_fit(spec, latent_spectra)
    variances = np.random.default_rng(3).uniform(0.01, 4.0, size=X.shape)
    variances[:, 6] = 1e-8  # a bin the file says is known almost exactly: every spectrum's largest pull
    variances[:20, 6], variances[:20, 2] = 1.0, 1e-8  # the first twenty: another bin
    scores = detector.score(X, variances=variances)
    np.testing.assert_array_equal(scores["max_pull_bin"], np.where(np.arange(len(X)) < 20, 2, 6))
    assert not np.array_equal(scores["max_pull_bin"], detector.score(X)["max_pull_bin"])
    variances = np.random.default_rng(5).uniform(0.01, 4.0, size=X.shape)
    expected, clear = _clear_argmax(detector.reconstruct(X, variances=variances)["pulls"])
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(detector.score(X, variances=variances)["max_pull_bin"][clear], expected[clear])


def test_pull_summaries_take_the_first_of_tied_bins_and_bin_0_without_pulls():
    from spectral_anomaly.models.base import pull_summaries

    summaries = pull_summaries(np.array([[0.0, 0.0, 0.0], [1.0, -3.0, 3.0], [0.5, 0.0, -2.0]]))
    np.testing.assert_array_equal(summaries["max_pull_bin"], [0, 1, 2])
    np.testing.assert_array_equal(summaries["max_abs_pull"], [0.0, 3.0, 2.0])


@pytest.mark.parametrize("network", ["autoencoder", "vae"])
def test_networks_take_the_first_of_tied_bins_and_bin_0_without_pulls(network):
    """With every weight zero the reconstruction is zero, so the pulls are the inputs (over a fixed sigma)."""
    model = (Autoencoder(n_bins=4, hidden=[3], latent_dim=2) if network == "autoencoder" else
             VariationalAutoencoder(n_bins=4, hidden=[3], latent_dim=2, sigma_x=0.5))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -3.0, 3.0, 0.0], [0.5, 0.0, 0.0, -2.0]])
    with torch.inference_mode():
        scores = model.eval().score_batch(x, bin_arrays=False)
    assert scores["max_pull_bin"].tolist() == [0, 1, 3]
    torch.testing.assert_close(scores["max_abs_pull"], scores["max_abs_pull"].new_tensor([0.0, 3.0, 2.0])
                               / (1.0 if network == "autoencoder" else 0.5))


@pytest.mark.parametrize("spec", [VAE_SPEC, POISSON_VAE_SPEC], ids=["gaussian", "poisson"])
def test_the_importance_weighted_bound_is_tighter_than_the_elbo_for_every_spectrum(latent_spectra, spec):
    X = latent_spectra if spec is VAE_SPEC else np.random.default_rng(4).poisson(
        200.0 * np.exp(latent_spectra)).astype(np.float32)
    detector = _fit(spec, X, epochs=5, normalizer=SpectrumNormalizer(["standardize"]).fit(X[:160]))
    detector.scoring["mc_samples"] = 64
    scores = detector.score(X)
    # both from the same K draws; the ELBO's KL is the closed form, so the bound holds up to Monte-Carlo error
    assert np.all(scores["iw_nll"] <= scores["negative_elbo"] + 1e-3 * np.abs(scores["negative_elbo"]) + 1e-3)
    assert np.mean(scores["iw_nll"] < scores["negative_elbo"]) > 0.95


@pytest.mark.parametrize("spec", [AE_SPEC, VAE_SPEC], ids=["autoencoder", "vae"])
def test_a_saved_detector_loads_with_the_same_scores(latent_spectra, tmp_path, spec):
    detector = _fit(spec, latent_spectra, epochs=4)
    path = tmp_path / "models" / "m.npz"
    detector.save(path)
    loaded = load_detector(path)
    assert type(loaded) is type(detector) and loaded.params == detector.params
    assert loaded.best_epoch_ == detector.best_epoch_
    np.testing.assert_array_equal(loaded.normalization.transform(latent_spectra),
                                  detector.normalization.transform(latent_spectra))
    before, after = detector.score(latent_spectra), loaded.score(latent_spectra)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_a_model_file_of_a_newer_format_is_refused(latent_spectra, tmp_path):
    path = tmp_path / "m.npz"
    _fit(AE_SPEC, latent_spectra, epochs=2).save(path)
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["format_version"] = np.array(FORMAT_VERSIONS["model"] + 1)
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)
    checksum_path(path).unlink()  # edited in place: the checksum recorded when it was written no longer applies
    with pytest.raises(FormatVersionError, match="newer"):
        load_detector(path)


def test_diverging_training_raises_training_error(latent_spectra):
    with pytest.raises(TrainingError, match=r"epoch \d+"):
        _fit(AE_SPEC, latent_spectra, epochs=5, learning_rate=1e30)


def test_nan_in_training_data_raises_training_error_at_epoch_1(latent_spectra):
    X = latent_spectra.copy()
    X[3, 2] = np.nan
    normalizer = SpectrumNormalizer(["standardize"]).fit(latent_spectra[:160])
    with pytest.raises(TrainingError, match=r"epoch 1\b"):
        _fit(AE_SPEC, X, epochs=5, normalizer=normalizer)
