"""Tests of the raw-file readers (pandas HDF5, h5py arrays, ROOT TH1), ingestion, the canonical store and the demo."""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectral_anomaly.demo import (
    ANOMALY_KINDS,
    generate_demo_spectra,
    write_demo_hdf5,
    write_demo_root,
)
from spectral_anomaly.exceptions import (
    ConfigError,
    FormatVersionError,
    InputFileError,
    InvalidSpectraError,
    ObjectNotFoundError,
)
from spectral_anomaly.ingest import ingest_to_store
from spectral_anomaly.io import read_raw_spectra
from spectral_anomaly.store.canonical import CanonicalSpectra, read_canonical, write_canonical
from spectral_anomaly.store.integrity import checksum_path

PANDAS = {"format": "pandas_hdf5", "key": "data"}


def ingest_dataset(name, dataset, *, path):
    """Ingest one file through the streaming ingestion and read the store back."""
    output = Path(tempfile.mkdtemp()) / "store.h5"
    ingest_to_store(name, dataset, paths=[path], output=output)
    return read_canonical(output)


def _to_hdf(frame: pd.DataFrame, path, key: str = "data") -> None:
    with warnings.catch_warnings():  # PyTables warns when it pickles object columns; that is the point
        warnings.simplefilter("ignore")
        frame.to_hdf(path, key=key)


def _message(info: pytest.ExceptionInfo) -> str:
    return str(info.value)


# --------------------------------------------------------------------------------------------
# pandas HDF5
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pandas_file(tmp_path, poisson_spectra):
    path = tmp_path / "spectra.h5"
    frame = pd.DataFrame(poisson_spectra)
    _to_hdf(frame, path)
    _to_hdf(pd.DataFrame({"run": np.arange(len(frame)) + 100, "weight": np.linspace(0, 1, len(frame))}), path, "meta")
    return path, frame


def test_pandas_hdf5_reads_back_the_same_values(pandas_file):
    path, frame = pandas_file
    raw = read_raw_spectra(path, PANDAS)
    np.testing.assert_array_equal(raw.counts, frame.to_numpy())
    np.testing.assert_array_equal(raw.bin_edges, np.arange(frame.shape[1] + 1))
    assert list(raw.metadata["entry"]) == list(range(len(frame)))
    assert set(raw.metadata["source_object"]) == {"data"}


def test_pandas_hdf5_metadata_key_and_bin_range(pandas_file):
    path, frame = pandas_file
    raw = read_raw_spectra(path, {**PANDAS, "metadata_key": "meta", "bin_range": [10.0, 26.0]})
    np.testing.assert_array_equal(raw.metadata["run"], np.arange(len(frame)) + 100)
    np.testing.assert_allclose(raw.metadata["weight"], np.linspace(0, 1, len(frame)))
    np.testing.assert_allclose(raw.bin_edges, np.linspace(10.0, 26.0, frame.shape[1] + 1))


def test_pandas_hdf5_keeps_bin_order_with_mixed_dtype_columns(tmp_path, poisson_spectra):
    """One integer column among float columns: pandas stores it in a separate block; bins must keep their order."""
    frame = pd.DataFrame(poisson_spectra)
    frame[3] = frame[3].astype(np.int64)
    path = tmp_path / "mixed.h5"
    _to_hdf(frame, path)
    raw = read_raw_spectra(path, PANDAS)
    np.testing.assert_array_equal(raw.counts, frame.to_numpy(dtype=np.float64))


def test_pandas_hdf5_refuses_string_column(tmp_path, poisson_spectra):
    frame = pd.DataFrame(poisson_spectra)
    frame["name"] = [f"spectrum {i}" for i in range(len(frame))]
    path = tmp_path / "strings.h5"
    _to_hdf(frame, path)
    with pytest.raises(InvalidSpectraError, match="(?i)pickl") as info:
        read_raw_spectra(path, PANDAS)
    assert "data" in _message(info)


def test_pandas_hdf5_wrong_key_lists_available_keys(pandas_file):
    path, _ = pandas_file
    with pytest.raises(ObjectNotFoundError) as info:
        read_raw_spectra(path, {**PANDAS, "key": "dta"})
    message = _message(info)
    assert "dta" in message and "'data'" in message and "'meta'" in message
    assert isinstance(info.value, KeyError)


def test_missing_file_raises_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_raw_spectra(tmp_path / "nothing.h5", PANDAS)
    with pytest.raises(InputFileError, match="not found"):
        read_raw_spectra(tmp_path / "nothing.root", {"format": "root_th1", "pattern": "*"})


def test_unknown_format_raises_config_error(pandas_file):
    with pytest.raises(ConfigError, match="hdf5_array"):
        read_raw_spectra(pandas_file[0], {"format": "fits"})


def test_random_bytes_raise_input_file_error(tmp_path, rng):
    path = tmp_path / "random.h5"
    path.write_bytes(rng.bytes(4096))
    with pytest.raises(InputFileError, match="random.h5"):
        read_raw_spectra(path, PANDAS)
    with pytest.raises(InputFileError, match="random.h5"):
        read_raw_spectra(path, {"format": "hdf5_array", "dataset": "spectra"})
    with pytest.raises(InputFileError, match="random.h5"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "*"})


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_hdf5_raises_input_file_error(tmp_path, pandas_file, fraction):
    path, _ = pandas_file
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputFileError, match="truncated"):
        read_raw_spectra(truncated, PANDAS)


@pytest.mark.parametrize("signature", [b"TREE", b"HEAP", b"SNOD"])
def test_damaged_hdf5_structure_raises_input_file_error(tmp_path, pandas_file, signature):
    """A file of the right size whose internal index (B-tree, local heap, symbol table) is damaged."""
    path, _ = pandas_file
    data = bytearray(path.read_bytes())
    where = data.find(signature)
    assert where >= 0, f"no {signature!r} block in the test file"
    data[where : where + 4] = b"XXXX"
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="damaged.h5"):
        read_raw_spectra(damaged, PANDAS)


def test_truncated_copy_of_real_hdf5_raises_input_file_error(tmp_path, shared_file):
    source = shared_file("ipaml_spectra/spectra_data.hf5")
    data = source.read_bytes()
    truncated = tmp_path / "spectra_data.hf5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        read_raw_spectra(truncated, PANDAS)


# --------------------------------------------------------------------------------------------
# h5py 2-D datasets
# --------------------------------------------------------------------------------------------


@pytest.fixture
def h5py_file(tmp_path, poisson_spectra):
    import h5py

    path = tmp_path / "array.h5"
    edges = np.geomspace(1.0, 1000.0, poisson_spectra.shape[1] + 1)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("detector/spectra", data=poisson_spectra.astype(np.int32))
        handle.create_dataset("detector/edges", data=edges)
        handle.create_dataset("flat", data=np.arange(10.0))
        handle.create_dataset("cube", data=np.zeros((2, 3, 4)))
        meta = handle.create_group("meta")
        meta.create_dataset("run", data=np.arange(len(poisson_spectra)) + 7)
        meta.create_dataset("quality", data=np.array([b"good", b"bad"] * (len(poisson_spectra) // 2)))
    return path, edges


def test_hdf5_array_reads_values_edges_and_metadata(h5py_file, poisson_spectra):
    path, edges = h5py_file
    raw = read_raw_spectra(
        path, {"format": "hdf5_array", "dataset": "/detector/spectra", "bin_edges_dataset": "detector/edges",
               "metadata_group": "meta"}
    )
    np.testing.assert_array_equal(raw.counts, poisson_spectra)
    np.testing.assert_array_equal(raw.bin_edges, edges)
    np.testing.assert_array_equal(raw.metadata["run"], np.arange(len(poisson_spectra)) + 7)
    assert list(raw.metadata["quality"][:3]) == ["good", "bad", "good"]
    assert list(raw.metadata["entry"]) == list(range(len(poisson_spectra)))


@pytest.mark.parametrize("name, shape", [("flat", "(10,)"), ("cube", "(2, 3, 4)")])
def test_hdf5_array_refuses_non_2d_dataset_naming_shape(h5py_file, name, shape):
    with pytest.raises(InvalidSpectraError) as info:
        read_raw_spectra(h5py_file[0], {"format": "hdf5_array", "dataset": name})
    assert shape in _message(info) and name in _message(info)


def test_hdf5_array_missing_dataset_lists_available(h5py_file):
    with pytest.raises(ObjectNotFoundError) as info:
        read_raw_spectra(h5py_file[0], {"format": "hdf5_array", "dataset": "detector/spectrum"})
    assert "detector/spectra" in _message(info)


def test_hdf5_array_wrong_number_of_edges(h5py_file):
    with pytest.raises(InvalidSpectraError, match="17"):
        read_raw_spectra(h5py_file[0], {"format": "hdf5_array", "dataset": "detector/spectra", "bin_edges_dataset": "flat"})


# --------------------------------------------------------------------------------------------
# ROOT TH1
# --------------------------------------------------------------------------------------------


@pytest.fixture
def root_file(tmp_path, rng):
    import uproot

    path = tmp_path / "histograms.root"
    edges = np.linspace(0.0, 10.0, 6)
    counts = rng.poisson(30.0, size=(3, 5)).astype(np.float64)
    with uproot.recreate(path) as handle:
        for i, row in enumerate(counts):
            handle[f"h_{i}"] = (row, edges)
        handle["other/g_0"] = (np.ones(5), edges)
        handle["wide"] = (np.ones(7), np.linspace(0.0, 7.0, 8))
        tree = handle.mktree("meta", {"run": np.int64, "lumi": np.int32, "weight": np.float64})
        tree.extend({"run": np.array([11, 12, 13]), "lumi": np.array([1, 2, 3], dtype=np.int32),
                     "weight": np.array([0.5, 1.5, 2.5])})
    return path, counts, edges


def test_root_reads_pattern_edges_and_tree_metadata(root_file):
    path, counts, edges = root_file
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "h_*", "metadata_tree": "meta"})
    np.testing.assert_array_equal(raw.counts, counts)
    np.testing.assert_array_equal(raw.bin_edges, edges)
    assert list(raw.metadata["source_object"]) == ["h_0", "h_1", "h_2"]
    assert list(raw.metadata["run"]) == [11, 12, 13]
    assert list(raw.metadata["lumi"]) == [1, 2, 3]
    np.testing.assert_allclose(raw.metadata["weight"], [0.5, 1.5, 2.5])


def test_root_pattern_in_subdirectory(root_file):
    raw = read_raw_spectra(root_file[0], {"format": "root_th1", "pattern": "other/*"})
    assert list(raw.metadata["source_object"]) == ["other/g_0"]
    np.testing.assert_array_equal(raw.counts, np.ones((1, 5)))


def test_root_differing_binning_raises(root_file):
    with pytest.raises(InvalidSpectraError, match="binning") as info:
        read_raw_spectra(root_file[0], {"format": "root_th1", "pattern": "*"})
    assert "wide" in _message(info)


def test_root_pattern_matching_nothing_lists_histograms(root_file):
    with pytest.raises(ObjectNotFoundError) as info:
        read_raw_spectra(root_file[0], {"format": "root_th1", "pattern": "spectrum_*"})
    message = _message(info)
    for name in ("h_0", "h_1", "h_2", "other/g_0", "wide"):
        assert repr(name) in message
    assert "'meta'" not in message, "only histograms are listed, not the tree"


def test_root_metadata_tree_errors(root_file):
    with pytest.raises(ObjectNotFoundError, match="'meta'"):
        read_raw_spectra(root_file[0], {"format": "root_th1", "pattern": "h_*", "metadata_tree": "metadata"})
    with pytest.raises(InvalidSpectraError, match="3 entries"):
        read_raw_spectra(root_file[0], {"format": "root_th1", "pattern": "h_[01]", "metadata_tree": "meta"})


# --------------------------------------------------------------------------------------------
# Real third-party files
# --------------------------------------------------------------------------------------------


def test_real_lecture_spectra(shared_file):
    raw = read_raw_spectra(shared_file("ipaml_spectra/spectra_data.hf5"), PANDAS)
    assert raw.counts.shape == (200, 500)
    assert raw.counts.min() == pytest.approx(151.0) and raw.counts.max() == pytest.approx(2031.0)
    assert np.all(np.isfinite(raw.counts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pd.read_hdf(shared_file("ipaml_spectra/spectra_data.hf5"), "data").to_numpy()
    np.testing.assert_array_equal(raw.counts, expected)


def test_real_gamma_spectra_with_info_metadata(shared_file):
    raw = read_raw_spectra(
        shared_file("gamma_nai_baldr/measurements.h5"), {"format": "pandas_hdf5", "key": "spectra", "metadata_key": "info"}
    )
    assert raw.counts.shape == (23, 1024)
    assert "total_counts" in raw.metadata.columns
    np.testing.assert_allclose(raw.counts.sum(axis=1), raw.metadata["total_counts"].to_numpy(), rtol=1e-12)
    # the pickled object columns of 'info' (description, timestamp, ...) are skipped, not unpickled
    for pickled in ("description", "timestamp", "tag"):
        assert pickled not in raw.metadata.columns


def test_real_gamma_pickled_key_is_refused(shared_file):
    with pytest.raises(InvalidSpectraError, match="(?i)unpickl"):
        read_raw_spectra(shared_file("gamma_nai_baldr/measurements.h5"), {"format": "pandas_hdf5", "key": "other_info"})


def test_real_root_histograms_one(shared_file):
    raw = read_raw_spectra(shared_file("root_skhep_testdata/uproot-histograms.root"), {"format": "root_th1", "pattern": "one"})
    assert raw.counts.shape == (1, 10)
    np.testing.assert_allclose(raw.bin_edges, np.linspace(-3.0, 3.0, 11))
    assert list(raw.metadata["source_object"]) == ["one"]


def test_real_root_same_binning_family(shared_file):
    import uproot

    path = shared_file("root_skhep_testdata/uproot-issue-880.root")
    pattern = "hpK*"
    with uproot.open(path) as handle:
        expected = [
            name for name, cls in handle.classnames(recursive=True, cycle=False).items()
            if cls.startswith("TH1") and name.startswith("hpK")
        ]
        for name in expected:  # the family: 400 bins over [0, 400]
            edges = handle[name].axis().edges()
            assert len(edges) == 401 and edges[0] == 0.0 and edges[-1] == 400.0
        expected_counts = np.array([handle[name].values() for name in expected])
    assert len(expected) >= 5
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": pattern})
    assert list(raw.metadata["source_object"]) == expected
    assert raw.counts.shape == (len(expected), 400)
    np.testing.assert_allclose(raw.bin_edges, np.linspace(0.0, 400.0, 401))
    np.testing.assert_array_equal(raw.counts, expected_counts)


# --------------------------------------------------------------------------------------------
# Ingestion and the canonical store
# --------------------------------------------------------------------------------------------


@pytest.fixture
def labelled_file(tmp_path, poisson_spectra):
    import h5py

    path = tmp_path / "labelled.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("spectra", data=poisson_spectra)
        group = handle.create_group("metadata")
        group.create_dataset("run", data=np.repeat([1, 2], len(poisson_spectra) // 2))
        group.create_dataset("quality", data=np.array([b"good", b"bad", b"good", b"good"] * (len(poisson_spectra) // 4)))
    return path


LABELLED = {"format": "hdf5_array", "dataset": "spectra", "metadata_group": "metadata"}


def test_ingest_evaluates_anomaly_label(labelled_file, poisson_spectra):
    spectra = ingest_dataset("toy", {**LABELLED, "anomaly_label": "quality == 'bad'"}, path=labelled_file)
    expected = np.array([0, 1, 0, 0] * (len(poisson_spectra) // 4), dtype=np.int8)
    np.testing.assert_array_equal(spectra.labels, expected)
    assert spectra.X.dtype == np.float32
    np.testing.assert_array_equal(spectra.X, poisson_spectra.astype(np.float32))
    assert list(spectra.metadata["spectrum_id"]) == list(range(len(poisson_spectra)))
    assert spectra.source_sha256 == {str(labelled_file): hashlib.sha256(labelled_file.read_bytes()).hexdigest()}
    unlabelled = ingest_dataset("toy", LABELLED, path=labelled_file)
    assert unlabelled.labels is None


def test_ingest_unknown_label_column_lists_columns(labelled_file):
    with pytest.raises(ConfigError) as info:
        ingest_dataset("toy", {**LABELLED, "anomaly_label": "qualty == 'bad'"}, path=labelled_file)
    message = _message(info)
    assert "qualty" in message
    for column in ("run", "quality", "entry", "source_file"):
        assert column in message


def test_ingest_non_boolean_label_raises_config_error(labelled_file):
    with pytest.raises(ConfigError):
        ingest_dataset("toy", {**LABELLED, "anomaly_label": "run + 1"}, path=labelled_file)


@pytest.fixture
def nan_file(tmp_path, poisson_spectra):
    import h5py

    X = poisson_spectra.copy()
    X[3, 5] = np.nan
    X[10, 0] = np.inf
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("spectra", data=X)
        handle.create_dataset("metadata/run", data=np.arange(len(X)))
    return path, X


def test_ingest_refuses_nonfinite_by_default(nan_file):
    path, _ = nan_file
    with pytest.raises(InvalidSpectraError, match="NaN") as info:
        ingest_dataset("toy", LABELLED, path=path)
    assert "nan.h5" in _message(info) and "2 spectra" in _message(info)


def test_ingest_drops_nonfinite_when_asked(nan_file):
    path, X = nan_file
    spectra = ingest_dataset("toy", {**LABELLED, "nonfinite": "drop", "anomaly_label": "run % 2 == 1"}, path=path)
    kept = np.delete(np.arange(len(X)), [3, 10])
    assert spectra.n_dropped_nonfinite == 2
    assert spectra.n_spectra == len(X) - 2
    np.testing.assert_array_equal(spectra.X, X[kept].astype(np.float32))
    np.testing.assert_array_equal(spectra.metadata["run"], kept)
    np.testing.assert_array_equal(spectra.metadata["entry"], kept)  # the position in the file is kept
    np.testing.assert_array_equal(spectra.labels, (kept % 2 == 1).astype(np.int8))
    assert list(spectra.metadata["spectrum_id"]) == list(range(len(kept)))


def test_canonical_store_roundtrip(tmp_path, labelled_file):
    spectra = ingest_dataset("toy", {**LABELLED, "anomaly_label": "quality == 'bad'"}, path=labelled_file)
    spectra.n_dropped_nonfinite = 4
    path = tmp_path / "data" / "toy.h5"
    write_canonical(spectra, path)
    assert sorted(p.name for p in path.parent.iterdir()) == [".toy.h5.xxh128", "toy.h5"], "no temporary file may be left behind"
    restored = read_canonical(path)
    assert restored.dataset == "toy"
    assert restored.X.dtype == np.float32
    np.testing.assert_array_equal(restored.X, spectra.X)
    np.testing.assert_array_equal(restored.bin_edges, spectra.bin_edges)
    np.testing.assert_array_equal(restored.labels, spectra.labels)
    assert restored.source_sha256 == spectra.source_sha256
    assert restored.n_dropped_nonfinite == 4
    assert list(restored.metadata.columns) == list(spectra.metadata.columns)
    for column in spectra.metadata.columns:
        assert list(restored.metadata[column]) == list(spectra.metadata[column]), column
    assert list(restored.metadata["quality"][:2]) == ["good", "bad"]
    no_x = read_canonical(path, load_X=False)
    assert no_x.X.shape == spectra.X.shape
    np.testing.assert_array_equal(no_x.labels, spectra.labels)


def test_canonical_store_without_labels_and_errors(tmp_path):
    spectra = CanonicalSpectra(
        dataset="plain", X=np.ones((3, 4), np.float32), bin_edges=np.arange(5.0),
        metadata=pd.DataFrame({"spectrum_id": np.arange(3), "name": ["a", "b", "c"]}),
    )
    path = tmp_path / "plain.h5"
    write_canonical(spectra, path)
    restored = read_canonical(path)
    assert restored.labels is None
    assert list(restored.metadata["name"]) == ["a", "b", "c"]
    with pytest.raises(InputFileError, match="not found"):
        read_canonical(tmp_path / "missing.h5")
    import h5py

    with h5py.File(path, "r+") as handle:
        handle.attrs["format_version"] = 99
    checksum_path(path).unlink()  # edited in place: the checksum recorded when it was written no longer applies
    with pytest.raises(FormatVersionError, match="99"):
        read_canonical(path)


# --------------------------------------------------------------------------------------------
# Demo data
# --------------------------------------------------------------------------------------------

DEMO_ARGS = dict(n_spectra=60, n_bins=64, anomaly_fraction=0.2)


def test_demo_is_reproducible_with_requested_shape():
    first = generate_demo_spectra(seed=5, **DEMO_ARGS)
    second = generate_demo_spectra(seed=5, **DEMO_ARGS)
    other = generate_demo_spectra(seed=6, **DEMO_ARGS)
    np.testing.assert_array_equal(first.counts, second.counts)
    np.testing.assert_array_equal(first.bin_edges, second.bin_edges)
    pd.testing.assert_frame_equal(first.metadata, second.metadata)
    assert not np.array_equal(first.counts, other.counts)
    assert first.counts.shape == (60, 64)
    assert first.bin_edges.shape == (65,)
    assert np.all(np.diff(first.bin_edges) > 0)
    assert len(first.metadata) == 60
    assert {"run", "lumisection", "anomaly_kind", "expected_counts"} <= set(first.metadata.columns)


def test_demo_counts_are_non_negative_integers_with_every_anomaly_kind():
    demo = generate_demo_spectra(seed=2, **DEMO_ARGS)
    assert np.all(demo.counts >= 0)
    np.testing.assert_array_equal(demo.counts, np.round(demo.counts))
    assert demo.counts.sum(axis=1).min() > 0
    kinds = demo.metadata["anomaly_kind"].to_numpy()
    assert set(kinds) == set(ANOMALY_KINDS)
    assert (kinds != 0).sum() == round(0.2 * 60)


def test_demo_hdf5_and_root_copies_ingest_identically(tmp_path):
    demo = generate_demo_spectra(seed=3, **DEMO_ARGS)
    write_demo_hdf5(demo, tmp_path / "demo.h5")
    write_demo_root(demo, tmp_path / "demo.root")
    from_hdf5 = ingest_dataset(
        "demo_h5",
        {"format": "hdf5_array", "dataset": "spectra", "bin_edges_dataset": "bin_edges", "metadata_group": "metadata",
         "anomaly_label": "anomaly_kind != 0"},
        path=tmp_path / "demo.h5",
    )
    from_root = ingest_dataset(
        "demo_root",
        {"format": "root_th1", "pattern": "spectra/spectrum_*", "metadata_tree": "metadata",
         "anomaly_label": "anomaly_kind != 0"},
        path=tmp_path / "demo.root",
    )
    np.testing.assert_array_equal(from_hdf5.X, from_root.X)
    np.testing.assert_array_equal(from_hdf5.X, demo.counts.astype(np.float32))
    np.testing.assert_array_equal(from_hdf5.bin_edges, from_root.bin_edges)
    np.testing.assert_array_equal(from_hdf5.bin_edges, demo.bin_edges)
    np.testing.assert_array_equal(from_hdf5.labels, from_root.labels)
    np.testing.assert_array_equal(from_hdf5.labels, (demo.metadata["anomaly_kind"] != 0).astype(np.int8))
    ignored = {"source_file", "source_object"}
    columns = set(from_hdf5.metadata.columns) - ignored
    assert columns == set(from_root.metadata.columns) - ignored
    for column in columns:
        np.testing.assert_array_equal(from_hdf5.metadata[column].to_numpy(), from_root.metadata[column].to_numpy(), err_msg=column)
    for column in demo.metadata.columns:
        np.testing.assert_array_equal(from_root.metadata[column].to_numpy(), demo.metadata[column].to_numpy(), err_msg=column)
