"""Tests of the normalization chain: each step, invertibility, fitting on training data only, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectral_anomaly.exceptions import (
    ConfigError,
    FormatVersionError,
    InputFileError,
    InvalidSpectraError,
)
from spectral_anomaly.normalize import (
    LOG_FLOOR,
    STEPS,
    SpectrumNormalizer,
    read_normalizer,
    write_normalizer,
)
from spectral_anomaly.store.atomic import write_json
from spectral_anomaly.store.formats import FORMAT_VERSIONS

CHAINS = [
    ["unit_integral"],
    ["log1p"],
    ["standardize"],
    ["center_maxabs"],
    ["unit_integral", "standardize"],
    ["log1p", "standardize"],
    ["unit_integral", "log1p", "center_maxabs"],
    ["unit_integral", "log1p", "standardize", "center_maxabs"],
    ["sqrt", "standardize_spectrum", "standardize"],
    ["log", "standardize_spectrum"],
    ["unit_integral", "log", "standardize"],
    ["standardize_spectrum", "center_maxabs"],
]


@pytest.mark.parametrize("steps", CHAINS, ids=["+".join(c) for c in CHAINS])
def test_inverse_transform_roundtrip(poisson_spectra, steps):
    X = poisson_spectra
    normalizer = SpectrumNormalizer(steps).fit(X[:30])
    for data in (X[:30], X[30:]):  # training spectra and spectra the fit never saw
        Z = normalizer.transform(data)
        assert Z.dtype == np.float32
        assert Z.shape == data.shape
        back = normalizer.inverse_transform(Z, original=data)
        np.testing.assert_allclose(back, data, rtol=1e-5, atol=1e-3)
        if "standardize_spectrum" not in steps:  # totals undo unit_integral alone
            np.testing.assert_allclose(normalizer.inverse_transform(Z, totals=data.sum(axis=1)), data, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("steps", [s for s in CHAINS if s[0] != "unit_integral"])
def test_every_step_changes_the_data(poisson_spectra, steps):
    Z = SpectrumNormalizer(steps).fit(poisson_spectra).transform(poisson_spectra)
    assert not np.allclose(Z, poisson_spectra, rtol=1e-3)


def test_unit_integral_gives_rows_summing_to_one(poisson_spectra):
    X = poisson_spectra.copy()
    X[5] = 0.0  # a spectrum without counts is left as zeros, not NaN
    Z = SpectrumNormalizer(["unit_integral"]).fit(X).transform(X)
    sums = Z.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(np.delete(sums, 5), 1.0, rtol=1e-6)
    assert np.all(Z[5] == 0.0)
    np.testing.assert_allclose(Z[0], X[0] / X[0].sum(), rtol=1e-6)


def test_inverse_of_unit_integral_needs_totals(poisson_spectra):
    normalizer = SpectrumNormalizer(["unit_integral"]).fit(poisson_spectra)
    with pytest.raises(ValueError, match="totals"):
        normalizer.inverse_transform(normalizer.transform(poisson_spectra))


def test_standardize_spectrum_leaves_each_spectrum_mean_zero_and_unit_std_over_its_bins(poisson_spectra):
    X = poisson_spectra.copy()
    X[3] = 5.0  # a flat spectrum has no shape: zeros, not NaN
    normalizer = SpectrumNormalizer(["standardize_spectrum"]).fit(X)
    Z = normalizer.transform(X).astype(np.float64)
    np.testing.assert_allclose(np.delete(Z.mean(axis=1), 3), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.delete(Z.std(axis=1), 3), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(Z[3], 0.0)
    # only the shape is left: scaling and offsetting a spectrum changes nothing
    np.testing.assert_allclose(normalizer.transform(3.0 * X[:5] + 2.0), Z[:5], atol=1e-5)
    with pytest.raises(ValueError, match="original"):
        normalizer.inverse_transform(Z)


def test_sqrt_is_the_anscombe_transform_and_stabilizes_poisson_variance():
    rng = np.random.default_rng(0)
    rates = np.array([3.0, 30.0, 300.0, 3000.0])
    X = rng.poisson(rates, size=(20000, 4)).astype(np.float64)
    Z = SpectrumNormalizer(["sqrt"]).fit(X).transform(X).astype(np.float64)
    np.testing.assert_allclose(Z, 2.0 * np.sqrt(X + 0.375), rtol=1e-6)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, atol=0.03)  # the raw spread grows as sqrt(rate)


def test_log_floors_zeros_and_takes_the_natural_log():
    X = np.array([[1.0, np.e, 0.0, 10.0], [2.0, 1e-9, 4.0, 0.5]])
    Z = SpectrumNormalizer(["log"]).fit(X).transform(X, dtype=np.float64)
    np.testing.assert_allclose(Z, np.log(np.maximum(X, LOG_FLOOR)))


@pytest.mark.parametrize("step", ["log", "sqrt"])
def test_log_and_sqrt_refuse_negative_values_naming_the_step(step):
    X = np.array([[1.0, 2.0, 3.0], [1.0, -0.5, 2.0]])
    with pytest.raises(InvalidSpectraError, match=f"normalization step {step} needs .*negative values"):
        SpectrumNormalizer([step]).fit(X)


def test_standardize_gives_zero_mean_unit_std_per_bin_on_training_data(poisson_spectra):
    Z = SpectrumNormalizer(["standardize"]).fit(poisson_spectra).transform(poisson_spectra).astype(np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-5)


def test_standardize_constant_bin_is_only_centred(poisson_spectra):
    X = poisson_spectra.copy()
    X[:, 3] = 7.0
    normalizer = SpectrumNormalizer(["standardize"]).fit(X)
    Z = normalizer.transform(X)
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z[:, 3], 0.0)
    np.testing.assert_allclose(normalizer.inverse_transform(Z), X, rtol=1e-5)


def test_center_maxabs_uses_the_lecture_formula(poisson_spectra):
    X = poisson_spectra
    Z = SpectrumNormalizer(["center_maxabs"]).fit(X).transform(X)
    mean = X.mean(axis=0)
    expected = (X - mean) / np.abs(X - mean).max()
    np.testing.assert_allclose(Z, expected, rtol=1e-6, atol=1e-7)
    assert np.abs(Z).max() == pytest.approx(1.0, rel=1e-7)


def test_fit_uses_only_the_spectra_passed(poisson_spectra):
    train = poisson_spectra[:20]
    other = poisson_spectra[20:] * 3.0 + 50.0  # a clearly different population
    normalizer = SpectrumNormalizer(["standardize"]).fit(train)
    expected = (other - train.mean(axis=0)) / train.std(axis=0)
    np.testing.assert_allclose(normalizer.transform(other), expected, rtol=1e-5, atol=1e-5)
    # fitting on everything would give different parameters, so different output
    fitted_on_all = SpectrumNormalizer(["standardize"]).fit(np.vstack([train, other]))
    assert not np.allclose(fitted_on_all.transform(other), normalizer.transform(other), atol=1e-2)
    # the fitted data itself is not stored or modified
    np.testing.assert_array_equal(train, poisson_spectra[:20])

    maxabs = SpectrumNormalizer(["center_maxabs"]).fit(train)
    expected = (other - train.mean(axis=0)) / np.abs(train - train.mean(axis=0)).max()
    np.testing.assert_allclose(maxabs.transform(other), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", CHAINS, ids=["+".join(c) for c in CHAINS])
def test_fitting_in_blocks_equals_fitting_at_once(poisson_spectra, steps, monkeypatch):
    """Spectra far from zero (mean 1e6, spread 1) in blocks of 7 rows: the same parameters as one block."""
    X = poisson_spectra.astype(np.float64) + 1e6
    at_once = SpectrumNormalizer(steps).fit(X).to_dict()
    monkeypatch.setattr("spectral_anomaly.normalize.BLOCK_BYTES", 7 * X.shape[1] * 8)
    in_blocks = SpectrumNormalizer(steps).fit(X).to_dict()
    for once, blocks in zip(at_once["params"], in_blocks["params"]):
        assert once.keys() == blocks.keys()
        for key in once:
            np.testing.assert_allclose(blocks[key], once[key], rtol=1e-10, atol=1e-9)
    if "standardize" in steps and steps[-1] == "standardize":
        Z = SpectrumNormalizer(steps).fit(X).transform(X).astype(np.float64)
        np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-5)


def test_fit_on_rows_equals_fit_on_their_copy(poisson_spectra, monkeypatch):
    monkeypatch.setattr("spectral_anomaly.normalize.BLOCK_BYTES", 5 * poisson_spectra.shape[1] * 8)
    rows = np.array([0, 3, 4, 9, 17, 18, 25, 31, 32, 38])
    steps = ["unit_integral", "log1p", "standardize", "center_maxabs"]
    on_rows = SpectrumNormalizer(steps).fit(poisson_spectra, rows=rows).to_dict()
    on_copy = SpectrumNormalizer(steps).fit(poisson_spectra[rows]).to_dict()
    assert on_rows == on_copy
    with pytest.raises(InvalidSpectraError, match="zero training spectra"):
        SpectrumNormalizer(steps).fit(poisson_spectra, rows=np.array([], dtype=int))


def test_fit_returns_self_and_default_chain(poisson_spectra):
    normalizer = SpectrumNormalizer()
    assert normalizer.fit(poisson_spectra) is normalizer
    assert list(normalizer.steps) == ["unit_integral", "standardize"]


@pytest.mark.parametrize("steps", [["unit_integral", "standardize"], ["log1p", "center_maxabs"]])
def test_to_dict_from_dict_roundtrip(poisson_spectra, steps):
    normalizer = SpectrumNormalizer(steps).fit(poisson_spectra[:30])
    payload = json.loads(json.dumps(normalizer.to_dict()))  # must survive JSON
    restored = SpectrumNormalizer.from_dict(payload)
    assert list(restored.steps) == steps
    X = poisson_spectra[30:]
    np.testing.assert_array_equal(restored.transform(X), normalizer.transform(X))
    Z = normalizer.transform(X)
    np.testing.assert_allclose(
        restored.inverse_transform(Z, totals=X.sum(1)), normalizer.inverse_transform(Z, totals=X.sum(1)), rtol=1e-12
    )


def test_write_read_normalizer_roundtrip(poisson_spectra, tmp_path):
    normalizer = SpectrumNormalizer(["unit_integral", "log1p", "standardize"]).fit(poisson_spectra)
    path = tmp_path / "normalization" / "toy.json"
    write_normalizer(normalizer, path, dataset="toy")
    payload = json.loads(path.read_text())
    assert payload["format_version"] == FORMAT_VERSIONS["normalization"]
    assert payload["dataset"] == "toy"
    restored = read_normalizer(path)
    np.testing.assert_array_equal(restored.transform(poisson_spectra), normalizer.transform(poisson_spectra))
    assert sorted(p.name for p in path.parent.iterdir()) == [".toy.json.xxh128", "toy.json"], \
        "no temporary file may be left behind, and the file carries its checksum"


def test_read_normalizer_errors(poisson_spectra, tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_normalizer(tmp_path / "missing.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"steps": [')
    with pytest.raises(InputFileError, match="corrupt"):
        read_normalizer(corrupt)
    newer = tmp_path / "newer.json"
    write_normalizer(SpectrumNormalizer(["standardize"]).fit(poisson_spectra), newer, dataset="toy")
    payload = json.loads(newer.read_text())
    payload["format_version"] = FORMAT_VERSIONS["normalization"] + 1
    newer.write_text(json.dumps(payload))
    with pytest.raises(InputFileError, match="damaged"):  # edited by hand: its checksum no longer matches
        read_normalizer(newer)
    write_json(newer, payload)  # as a newer version of the package would write it, checksum included
    with pytest.raises(FormatVersionError):
        read_normalizer(newer)


def test_unknown_step_raises_config_error_naming_valid_steps(poisson_spectra):
    with pytest.raises(ConfigError) as info:
        SpectrumNormalizer(["unit_integral", "zscore"]).fit(poisson_spectra)
    message = str(info.value)
    assert "zscore" in message
    for step in STEPS:
        assert step in message
    with pytest.raises(ConfigError, match="zscore"):
        SpectrumNormalizer.from_dict({"steps": ["zscore"], "n_bins": 16, "params": [{}]})


def test_log1p_refuses_values_at_or_below_minus_one(poisson_spectra):
    X = poisson_spectra.copy()
    X[2, 4] = -1.0
    with pytest.raises(InvalidSpectraError, match="log1p"):
        SpectrumNormalizer(["log1p"]).fit(X)
    fitted = SpectrumNormalizer(["log1p"]).fit(poisson_spectra)
    bad = poisson_spectra[:3].copy()
    bad[0, 0] = -5.0
    with pytest.raises(InvalidSpectraError, match="log1p"):
        fitted.transform(bad)
    # log1p after centring sees negative values
    with pytest.raises(InvalidSpectraError, match="log1p"):
        SpectrumNormalizer(["center_maxabs", "standardize", "log1p"]).fit(poisson_spectra)


def test_transform_checks_fitted_and_shape(poisson_spectra):
    with pytest.raises(RuntimeError, match="not fitted"):
        SpectrumNormalizer(["standardize"]).transform(poisson_spectra)
    fitted = SpectrumNormalizer(["standardize"]).fit(poisson_spectra)
    with pytest.raises(InvalidSpectraError, match="16"):
        fitted.transform(poisson_spectra[:, :10])


def test_unit_integral_must_be_the_first_step():
    X = np.random.default_rng(0).poisson(50, size=(20, 8)).astype(np.float64)
    with pytest.raises(ConfigError, match="unit_integral must come first"):
        SpectrumNormalizer(steps=["log1p", "unit_integral"]).fit(X)


def test_auto_steps_divide_counts_by_their_total_and_compare_other_values_by_shape(tmp_path):
    from spectral_anomaly.normalize import AUTO_STEPS, choose_steps

    counts = np.random.default_rng(0).poisson(50.0, size=(40, 8)).astype(np.float32)
    flux = counts * 0.013 + 0.5
    rows = np.arange(40)
    chosen = choose_steps(counts, rows)
    assert chosen["value"] == list(AUTO_STEPS["counts"]) == ["unit_integral", "standardize"]
    assert "counts" in chosen["reason"]
    other = choose_steps(flux, rows)
    assert other["value"] == ["standardize_spectrum", "standardize"] and "40 of the 40" in other["reason"]
    negative = counts.copy()
    negative[3, 2] = -1.0
    assert choose_steps(negative, rows)["value"] == ["standardize_spectrum", "standardize"]
    # the choice travels with the fitted normalization
    normalizer = SpectrumNormalizer(other["value"]).fit(flux)
    normalizer.choice_ = other
    write_normalizer(normalizer, tmp_path / "n.json", dataset="d")
    assert read_normalizer(tmp_path / "n.json").choice_ == other


def test_a_config_without_normalization_steps_chooses_them_from_the_training_spectra(tmp_path, tiny_demo_config):
    from spectral_anomaly import stages

    config = tiny_demo_config()
    assert config["normalization"]["steps"] == "auto"
    stages.run_demo(config, hdf5_path=tmp_path / "raw.h5", root_path=tmp_path / "raw.root")
    stages.run_ingest(config, "d", input_paths=[tmp_path / "raw.h5"], output=tmp_path / "data.h5")
    stages.run_split(config, "d", data_path=tmp_path / "data.h5", output=tmp_path / "split.json")
    stages.run_normalize(config, "d", data_path=tmp_path / "data.h5", split_path=tmp_path / "split.json",
                         output=tmp_path / "norm.json")
    normalizer = read_normalizer(tmp_path / "norm.json")
    assert normalizer.steps == ["unit_integral", "standardize"]  # the demo spectra are counts
    assert normalizer.choice_["asked"] == "auto" and "counts" in normalizer.choice_["reason"]
