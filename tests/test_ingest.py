"""Streaming ingestion: linked and copied stores, checks on the way, nothing partial on failure."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from spectral_anomaly.exceptions import ConfigError, InputFileError, InvalidSpectraError
from spectral_anomaly.ingest import ingest_to_store
from spectral_anomaly.store.canonical import read_canonical

ARRAY = {"format": "hdf5_array", "dataset": "spectra"}


def write_spectra(path, X):
    with h5py.File(path, "w") as handle:
        handle.create_dataset("spectra", data=X, chunks=(min(len(X), 64), X.shape[1]))
    return path


@pytest.fixture()
def counts(rng):
    return rng.poisson(20.0, size=(300, 16)).astype(np.float32)


def test_float32_hdf5_input_is_linked_not_copied(tmp_path, rng):
    counts = rng.poisson(20.0, size=(4000, 64)).astype(np.float32)
    raw = write_spectra(tmp_path / "raw.h5", counts)
    summary = ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "store.h5")
    assert summary["linked"]
    with h5py.File(tmp_path / "store.h5") as handle:
        assert handle["X"].is_virtual
    assert os.path.getsize(tmp_path / "store.h5") < counts.nbytes / 4
    np.testing.assert_array_equal(read_canonical(tmp_path / "store.h5").X, counts)


def test_a_linked_store_refuses_to_read_once_its_input_changed(tmp_path, counts):
    raw = write_spectra(tmp_path / "raw.h5", counts)
    ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "store.h5")
    write_spectra(raw, counts + 1)
    with pytest.raises(InputFileError, match="changed since ingestion.*rerun"):
        read_canonical(tmp_path / "store.h5")
    raw.unlink()
    with pytest.raises(InputFileError, match="no longer exists"):
        read_canonical(tmp_path / "store.h5")


def test_store_copy_keeps_a_chunked_copy(tmp_path, counts):
    raw = write_spectra(tmp_path / "raw.h5", counts)
    summary = ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "store.h5", store="copy")
    assert not summary["linked"]
    raw.unlink()
    with h5py.File(tmp_path / "store.h5") as handle:
        assert not handle["X"].is_virtual and handle["X"].chunks[1] == counts.shape[1]
    np.testing.assert_array_equal(read_canonical(tmp_path / "store.h5").X, counts)


def test_several_files_are_linked_in_order_with_their_file_names(tmp_path, counts):
    first = write_spectra(tmp_path / "run1.h5", counts[:100])
    second = write_spectra(tmp_path / "run2.h5", counts[100:])
    ingest_to_store("d", ARRAY, paths=[first, second], output=tmp_path / "store.h5")
    store = read_canonical(tmp_path / "store.h5")
    np.testing.assert_array_equal(store.X, counts)
    assert store.metadata["source_file"].tolist() == [str(first)] * 100 + [str(second)] * 200
    assert store.metadata["entry"].tolist() == list(range(100)) + list(range(200))


def test_dropping_nonfinite_spectra_falls_back_to_a_copy(tmp_path, counts):
    bad = counts.copy()
    bad[[5, 250], 3] = np.nan
    bad[100, 0] = np.inf
    raw = write_spectra(tmp_path / "raw.h5", bad)
    summary = ingest_to_store("d", {**ARRAY, "nonfinite": "drop"}, paths=[raw], output=tmp_path / "store.h5")
    assert not summary["linked"] and summary["n_dropped_nonfinite"] == 3
    store = read_canonical(tmp_path / "store.h5")
    kept = np.setdiff1d(np.arange(len(bad)), [5, 100, 250])
    np.testing.assert_array_equal(store.X, bad[kept])
    assert store.metadata["entry"].tolist() == kept.tolist()
    assert store.n_dropped_nonfinite == 3


def test_nonfinite_values_stop_ingestion_and_leave_nothing(tmp_path, counts):
    bad = counts.copy()
    bad[42, 1] = np.nan
    raw = write_spectra(tmp_path / "raw.h5", bad)
    with pytest.raises(InvalidSpectraError, match="spectrum 42.*nonfinite: drop"):
        ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "out" / "store.h5")
    assert list((tmp_path / "out").iterdir()) == []


def test_negative_values_are_refused_when_the_normalization_needs_counts(tmp_path, counts):
    bad = counts.copy()
    bad[7, 2] = -1.0
    raw = write_spectra(tmp_path / "raw.h5", bad)
    with pytest.raises(InvalidSpectraError, match="spectrum 7.*negative.*counts"):
        ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "store.h5", require_counts=True)
    ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "store.h5", require_counts=False)
    assert read_canonical(tmp_path / "store.h5").X.min() == -1.0


def test_files_with_different_binning_are_refused(tmp_path, counts):
    first = write_spectra(tmp_path / "a.h5", counts)
    second = write_spectra(tmp_path / "b.h5", counts[:, :8])
    with pytest.raises(InvalidSpectraError, match="share one binning"):
        ingest_to_store("d", ARRAY, paths=[first, second], output=tmp_path / "store.h5")


def test_given_checksums_are_recorded_without_hashing_again(tmp_path, counts):
    raw = write_spectra(tmp_path / "raw.h5", counts)
    ingest_to_store("d", ARRAY, paths=[str(raw)], output=tmp_path / "store.h5", checksums={str(raw): "ab" * 32})
    assert read_canonical(tmp_path / "store.h5").source_sha256 == {str(raw): "ab" * 32}


def test_large_inputs_are_streamed_in_blocks(tmp_path, rng, monkeypatch):
    import spectral_anomaly.ingest as ingest

    monkeypatch.setattr(ingest, "rows_per_chunk", lambda n_bins: 50)  # force many blocks on a small file
    monkeypatch.setattr(ingest, "BLOCK_BYTES", 4096)
    X = rng.poisson(5.0, size=(1000, 8)).astype(np.float64)  # float64: copied, converted block by block
    with h5py.File(tmp_path / "raw.h5", "w") as handle:
        handle["spectra"] = X
    reads = []
    original = ingest._read_block
    monkeypatch.setattr(ingest, "_read_block", lambda raw, a, b, out: reads.append((a, b)) or original(raw, a, b, out))
    summary = ingest_to_store("d", ARRAY, paths=[tmp_path / "raw.h5"], output=tmp_path / "store.h5")
    assert not summary["linked"] and len(reads) > 5
    np.testing.assert_array_equal(read_canonical(tmp_path / "store.h5").X, X.astype(np.float32))


def test_a_label_can_be_a_0_1_column_or_an_expression(tmp_path, counts):
    with h5py.File(tmp_path / "raw.h5", "w") as handle:
        handle["spectra"] = counts
        handle["meta/is_bad"] = (np.arange(len(counts)) % 10 == 0).astype(np.int8)
        handle["meta/run"] = 1000 + np.arange(len(counts)) // 100
    dataset = {**ARRAY, "metadata_group": "meta"}
    for label in ("is_bad", "is_bad == 1"):
        ingest_to_store("d", {**dataset, "anomaly_label": label}, paths=[tmp_path / "raw.h5"], output=tmp_path / "s.h5")
        np.testing.assert_array_equal(read_canonical(tmp_path / "s.h5").labels, np.arange(len(counts)) % 10 == 0)
    with pytest.raises(ConfigError, match="true/false"):
        ingest_to_store("d", {**dataset, "anomaly_label": "run"}, paths=[tmp_path / "raw.h5"], output=tmp_path / "s.h5")


@pytest.mark.parametrize(
    ("value", "require_counts", "expected"),
    [
        (-0.0, True, (False, False, False)),  # negative zero is a count of zero
        (np.finfo(np.float32).max, True, (False, False, True)),  # finite, but a sum over bins would overflow
        (2.0**100, True, (False, False, False)),  # the largest value accepted
        (2.0**101, True, (False, False, True)),
        (-(2.0**101), False, (False, False, True)),
        (-(2.0**101), True, (False, True, True)),
        (np.finfo(np.float32).tiny / 2, True, (False, False, False)),  # subnormal
        (-1e-30, True, (False, True, False)),
        (-1e-30, False, (False, False, False)),
        (np.inf, False, (True, False, False)),
        (-np.inf, True, (True, True, False)),
        (np.nan, True, (True, False, False)),
    ],
)
def test_the_block_check_finds_exactly_the_bad_values(value, require_counts, expected):
    from spectral_anomaly.ingest import _bad_rows

    block = np.ones((5, 7), dtype=np.float32)
    block[3, 2] = value
    nonfinite, negative, huge = _bad_rows(block, require_counts=require_counts)
    assert (nonfinite is not None, negative is not None, huge is not None) == expected
    if nonfinite is not None:
        assert np.flatnonzero(nonfinite).tolist() == [3]
    if huge is not None:
        assert huge == 3
    if negative is not None:
        assert negative == 3
