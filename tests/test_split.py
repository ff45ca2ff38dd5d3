"""Tests of the seeded train / validation / test split."""

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
from spectral_anomaly.split import make_split, read_split, split_labels, write_split
from spectral_anomaly.store.formats import FORMAT_VERSIONS


def _check_partition(split: dict[str, np.ndarray], n: int) -> None:
    parts = [split["train"], split["validation"], split["test"]]
    everything = np.concatenate(parts)
    assert len(everything) == n, "every spectrum is in exactly one part"
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    for part in parts:
        assert part.dtype.kind == "i"
        np.testing.assert_array_equal(part, np.sort(part))


@pytest.mark.parametrize("n, validation_fraction, test_fraction", [(1000, 0.2, 0.1), (37, 0.15, 0.25), (500, 0.1, 0.0)])
def test_split_is_disjoint_covering_with_requested_fractions(n, validation_fraction, test_fraction):
    split = make_split(n, labels=None, validation_fraction=validation_fraction, test_fraction=test_fraction, seed=4)
    _check_partition(split, n)
    assert len(split["validation"]) == round(validation_fraction * n)
    assert len(split["test"]) == round(test_fraction * n)
    assert len(split["train"]) == n - round(validation_fraction * n) - round(test_fraction * n)


def test_split_is_reproducible_for_a_seed_and_changes_with_it():
    kwargs = dict(labels=None, validation_fraction=0.2, test_fraction=0.2)
    first = make_split(300, seed=1, **kwargs)
    second = make_split(300, seed=1, **kwargs)
    other = make_split(300, seed=2, **kwargs)
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["train"], other["train"])


def test_split_is_shuffled_not_contiguous():
    split = make_split(1000, labels=None, validation_fraction=0.2, test_fraction=0.2, seed=0)
    # a seeded random split draws test spectra from the whole range, not only from the end
    assert split["test"].min() < 100 and split["test"].max() > 900


def test_train_on_normal_puts_every_anomaly_in_test():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.1).astype(np.int8)
    split = make_split(400, labels=labels, validation_fraction=0.2, test_fraction=0.1, seed=3, train_on="normal")
    _check_partition(split, 400)
    anomalies = np.flatnonzero(labels == 1)
    assert np.isin(anomalies, split["test"]).all()
    assert not np.isin(anomalies, split["train"]).any()
    assert not np.isin(anomalies, split["validation"]).any()
    n_normal = int((labels == 0).sum())
    assert len(split["validation"]) == round(0.2 * n_normal)
    # the test part also holds its share of normal spectra, to measure false positives
    assert (labels[split["test"]] == 0).sum() == round(0.1 * n_normal)


def test_train_on_all_mixes_anomalies_into_training():
    labels = np.zeros(400, dtype=np.int8)
    labels[::5] = 1
    split = make_split(400, labels=labels, validation_fraction=0.2, test_fraction=0.1, seed=3, train_on="all")
    _check_partition(split, 400)
    assert labels[split["train"]].sum() > 0


def test_train_on_normal_without_labels_raises_config_error():
    with pytest.raises(ConfigError, match="anomaly_label"):
        make_split(100, labels=None, validation_fraction=0.2, test_fraction=0.1, seed=0, train_on="normal", dataset="toy")


def test_invalid_split_settings():
    with pytest.raises(ConfigError, match="train_on"):
        make_split(100, labels=None, validation_fraction=0.2, test_fraction=0.1, seed=0, train_on="good")
    with pytest.raises(ConfigError, match="below 1"):
        make_split(100, labels=None, validation_fraction=0.6, test_fraction=0.4, seed=0)
    with pytest.raises(InvalidSpectraError):
        make_split(2, labels=None, validation_fraction=0.2, test_fraction=0.1, seed=0)


def test_split_labels_names_every_spectrum():
    split = make_split(50, labels=None, validation_fraction=0.2, test_fraction=0.2, seed=0)
    names = split_labels(50, split)
    for name in ("train", "validation", "test"):
        assert (names == name).sum() == len(split[name])
        assert set(names[split[name]]) == {name}


def test_write_read_split_roundtrip(tmp_path):
    labels = np.zeros(80, dtype=np.int8)
    labels[:7] = 1
    split = make_split(80, labels=labels, validation_fraction=0.25, test_fraction=0.25, seed=9, train_on="normal")
    path = tmp_path / "splits" / "toy.json"
    write_split(split, path, dataset="toy", seed=9, train_on="normal")
    payload = json.loads(path.read_text())
    assert payload["format_version"] == FORMAT_VERSIONS["split"]
    assert payload["seed"] == 9 and payload["train_on"] == "normal" and payload["dataset"] == "toy"
    restored = read_split(path)
    assert set(restored) == {"train", "validation", "test"}
    for name in restored:
        np.testing.assert_array_equal(restored[name], split[name])
        assert restored[name].dtype == np.int64


def test_read_split_errors(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_split(tmp_path / "missing.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{")
    with pytest.raises(InputFileError):
        read_split(corrupt)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"format_version": FORMAT_VERSIONS["split"] + 1, "train": [], "validation": [], "test": []}))
    with pytest.raises(FormatVersionError):
        read_split(newer)
