"""Every real third-party file in ``../shared/data`` that the readers support, read end to end.

The expected shapes and values come from ``shared/data/README.md`` or from an independent read of
the same file in the test itself (uproot, h5py, pandas, numpy), never from the reader under test.
Tests skip with a clear reason when the shared data folder (not part of the repository) is missing.
"""

from __future__ import annotations

import importlib.abc
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectral_anomaly.exceptions import (
    InvalidSpectraError,
    ObjectNotFoundError,
    SpectralAnomalyError,
)
from spectral_anomaly.ingest import ingest_to_store
from spectral_anomaly.io import expand_input_paths, read_raw_spectra
from spectral_anomaly.store.canonical import read_canonical

uproot = pytest.importorskip("uproot")
h5py = pytest.importorskip("h5py")

LECTURE = "ipaml_spectra/spectra_data.hf5"
CMS = "cms_dqm_pixel_zerobias2017B/data_small_train.csv"
GAMMA = "gamma_nai_baldr/measurements.h5"
QUASAR_TRAIN = "sdss_quasar_cs229/quasar_train.csv"
QUASAR_TEST = "sdss_quasar_cs229/quasar_test.csv"
ROOT_DIR = "root_skhep_testdata"

CMS_ALL_BINS = {"format": "csv", "bin_columns": "bin_[0-9]+"}
CMS_IN_RANGE = {"format": "csv", "bin_columns": "bin_([1-9]|[1-9][0-9]|100)"}
GAMMA_SPECTRA = {"format": "pandas_hdf5", "key": "spectra", "metadata_key": "info"}
QUASAR = {"format": "csv", "header": False, "bin_centres_row": True}


def root(shared_file, name: str) -> Path:
    return shared_file(f"{ROOT_DIR}/{name}")


def h5py_frame_numeric(path: Path, key: str) -> dict[str, np.ndarray]:
    """Numeric columns of a pandas fixed-format frame read with plain h5py (nothing unpickled)."""
    columns: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        group = handle[key]
        for i in range(int(group.attrs["nblocks"])):
            values = group[f"block{i}_values"]
            if values.dtype.kind not in "biuf":
                continue
            items = [v.decode() if isinstance(v, bytes) else str(v) for v in group[f"block{i}_items"][()]]
            array = values[()]
            for j, name in enumerate(items):
                columns[name] = array[:, j]
    return columns


def assert_valid_edges(edges: np.ndarray, n_bins: int) -> None:
    edges = np.asarray(edges)
    assert edges.shape == (n_bins + 1,)
    assert np.all(np.isfinite(edges))
    assert np.all(np.diff(edges) > 0)


def uproot_scalar_numeric_branches(tree) -> list[str]:
    """Names of the branches uproot reads as one plain number per entry (no jagged, no arrays)."""
    from uproot.interpretation.numerical import AsDtype

    names = []
    for name, branch in tree.items():
        interpretation = branch.interpretation
        if isinstance(interpretation, AsDtype) and interpretation.to_dtype.shape == () \
                and interpretation.to_dtype.kind in "biuf":
            names.append(name)
    return names


# ============================================================================================
# ipaml lecture spectra (pandas fixed format, synthetic)
# ============================================================================================


def test_lecture_spectra_shape_and_values(shared_file):
    path = shared_file(LECTURE)
    raw = read_raw_spectra(path, {"format": "pandas_hdf5", "key": "data"})
    counts = np.asarray(raw.counts)
    # README: (200, 500), values 151 .. 2031, mean 412.9
    assert counts.shape == (200, 500)
    assert counts.min() == pytest.approx(151.0, abs=0.5)
    assert counts.max() == pytest.approx(2031.0, abs=0.5)
    assert counts.mean() == pytest.approx(412.9, abs=0.05)
    with h5py.File(path, "r") as handle:
        expected = handle["data/block0_values"][()]
    np.testing.assert_array_equal(counts, expected)
    assert_valid_edges(raw.bin_edges, 500)
    assert len(raw.metadata) == 200
    assert list(raw.metadata["entry"]) == list(range(200))


def test_lecture_spectra_ingest(shared_file, tmp_path):
    path = shared_file(LECTURE)
    out = tmp_path / "lecture.h5"
    summary = ingest_to_store("lecture", {"format": "pandas_hdf5", "key": "data"}, paths=[path], output=out)
    assert summary["n_spectra"] == 200 and summary["n_bins"] == 500
    store = read_canonical(out)
    with h5py.File(path, "r") as handle:
        expected = handle["data/block0_values"][()]
    assert store.X.dtype == np.float32 and store.X.shape == (200, 500)
    np.testing.assert_allclose(store.X, expected, rtol=1e-6)
    assert store.labels is None


# ============================================================================================
# CMS DQM pixel per-lumisection histograms (CSV with header)
# ============================================================================================


@pytest.fixture(scope="module")
def cms_table(shared_data_dir) -> pd.DataFrame:
    path = shared_data_dir / CMS
    if not path.is_file():
        pytest.skip(f"shared test data file {path} is missing")
    return pd.read_csv(path)


def test_cms_all_bins_row_sums_equal_entries(shared_file, cms_table):
    raw = read_raw_spectra(shared_file(CMS), CMS_ALL_BINS)
    counts = np.asarray(raw.counts)
    assert counts.shape == (834, 102)  # README: bin_0 .. bin_101
    expected = cms_table[[f"bin_{i}" for i in range(102)]].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts.sum(axis=1), cms_table["entries"].to_numpy(dtype=np.float64))
    assert counts.min() == 0 and counts.max() == 9393  # README: counts 0 .. 9393
    assert_valid_edges(raw.bin_edges, 102)


def test_cms_in_range_bins_keep_metadata(shared_file, cms_table):
    raw = read_raw_spectra(shared_file(CMS), {**CMS_IN_RANGE, "bin_range": [0.0, 80000.0]})
    counts = np.asarray(raw.counts)
    assert counts.shape == (834, 100)
    np.testing.assert_array_equal(counts, cms_table[[f"bin_{i}" for i in range(1, 101)]].to_numpy(dtype=np.float64))
    # README: 100 bins over [0, 80000] electrons
    np.testing.assert_allclose(raw.bin_edges, np.linspace(0.0, 80000.0, 101))
    for column in ("run", "lumi", "y", "good", "good_pixel", "entries", "hname", "bin_0", "bin_101"):
        assert column in raw.metadata.columns, column
    for column in ("bin_1", "bin_50", "bin_100"):
        assert column not in raw.metadata.columns
    np.testing.assert_array_equal(raw.metadata["run"].to_numpy(), cms_table["run"].to_numpy())
    np.testing.assert_array_equal(raw.metadata["lumi"].to_numpy(), cms_table["lumi"].to_numpy())
    # the flow bins left out of the spectrum still account for every entry
    total = counts.sum(axis=1) + raw.metadata["bin_0"].to_numpy() + raw.metadata["bin_101"].to_numpy()
    np.testing.assert_array_equal(total, raw.metadata["entries"].to_numpy())


def test_cms_ingest_labels_runs_and_selection_columns(shared_file, tmp_path, cms_table):
    out = tmp_path / "cms.h5"
    dataset = {**CMS_IN_RANGE, "anomaly_label": "y == 0", "train_selection": "run == 297050 and y == 1"}
    summary = ingest_to_store("cms", dataset, paths=[shared_file(CMS)], output=out)
    assert summary["n_spectra"] == 834 and summary["n_bins"] == 100
    assert summary["n_anomalous"] == 63  # README: y has 771 good and 63 bad
    store = read_canonical(out)
    assert store.X.shape == (834, 100) and store.X.dtype == np.float32
    np.testing.assert_array_equal(store.X, cms_table[[f"bin_{i}" for i in range(1, 101)]].to_numpy(np.float32))
    assert store.labels is not None and int(store.labels.sum()) == 63
    np.testing.assert_array_equal(store.labels, (cms_table["y"].to_numpy() == 0).astype(np.int8))
    # README: 297047 (28 LS), 297048 (15), 297049 (15), 297050 (776)
    per_run = store.metadata["run"].value_counts().to_dict()
    assert {int(k): int(v) for k, v in per_run.items()} == {297047: 28, 297048: 15, 297049: 15, 297050: 776}
    # the columns that train_selection and anomaly_label refer to are in the store
    for column in ("run", "lumi", "y", "good", "good_pixel"):
        assert column in store.metadata.columns
    assert int((store.metadata["good"] == 1).sum()) == 709  # README: golden JSON 709 good / 125 bad
    assert int((store.metadata["good_pixel"] == 1).sum()) == 776  # README: 776 / 58
    selected = store.metadata.eval("run == 297050 and y == 1")
    assert int(selected.sum()) == 771
    assert set(store.metadata["source_file"]) == {str(shared_file(CMS))}
    assert store.source_sha256 and list(store.source_sha256) == [str(shared_file(CMS))]


# ============================================================================================
# Gamma NaI (pandas HDF5 written by PyRIID, with pickled object columns)
# ============================================================================================


class _BlockRiid(importlib.abc.MetaPathFinder):
    """Import hook that records (and refuses) any attempt to import ``riid``: unpickling the
    ``other_info`` or object columns of ``info`` would need it."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "riid" or fullname.startswith("riid."):
            self.attempts.append(fullname)
            raise ImportError(f"test guard: import of {fullname} (unpickling third-party data) is forbidden")
        return None  # noqa: RET501, PLR1711 - not ours: let the next finder look


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail loudly if anything calls ``pickle.load(s)`` or imports ``riid`` during the test."""
    calls: list[str] = []

    def forbidden(name):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"pickle.{name} was called while reading third-party data")

        return fail

    monkeypatch.setattr(pickle, "loads", forbidden("loads"))
    monkeypatch.setattr(pickle, "load", forbidden("load"))
    guard = _BlockRiid()
    monkeypatch.setattr(sys, "meta_path", [guard, *sys.meta_path])
    assert "riid" not in sys.modules
    yield
    assert calls == [], f"pickle called: {calls}"
    assert guard.attempts == [], f"riid import attempted: {guard.attempts}"
    assert "riid" not in sys.modules


def test_gamma_spectra_with_info_metadata(shared_file, no_unpickling):
    path = shared_file(GAMMA)
    raw = read_raw_spectra(path, GAMMA_SPECTRA)
    counts = np.asarray(raw.counts)
    assert counts.shape == (23, 1024)  # README
    assert counts.min() == 0 and counts.max() == 3196
    with h5py.File(path, "r") as handle:
        expected = handle["spectra/block0_values"][()]
    np.testing.assert_array_equal(counts, expected)
    info = h5py_frame_numeric(path, "info")
    for column in ("live_time", "real_time", "total_counts", "distance_cm"):
        assert column in raw.metadata.columns
        np.testing.assert_array_equal(raw.metadata[column].to_numpy(), info[column])
    np.testing.assert_allclose(counts.sum(axis=1), raw.metadata["total_counts"].to_numpy(), rtol=1e-9)
    assert raw.metadata["live_time"].iloc[0] == pytest.approx(611.7, abs=0.05)  # README: background, 611.7 s
    assert_valid_edges(raw.bin_edges, 1024)


def test_gamma_pickled_key_is_refused_without_unpickling(shared_file, no_unpickling):
    with pytest.raises(InvalidSpectraError, match="(?i)unpickl"):
        read_raw_spectra(shared_file(GAMMA), {"format": "pandas_hdf5", "key": "other_info"})


def test_gamma_info_as_spectra_key_is_refused(shared_file, no_unpickling):
    # `info` mixes numeric and pickled object blocks: it is not a spectra table
    with pytest.raises(InvalidSpectraError, match="(?i)unpickl"):
        read_raw_spectra(shared_file(GAMMA), {"format": "pandas_hdf5", "key": "info"})


def test_gamma_ingest(shared_file, tmp_path, no_unpickling):
    path = shared_file(GAMMA)
    out = tmp_path / "gamma.h5"
    summary = ingest_to_store("gamma", {**GAMMA_SPECTRA, "anomaly_label": "distance_cm > 0"}, paths=[path], output=out)
    # README: row 0 is background only; rows 1-22 hold a source
    assert summary["n_spectra"] == 23 and summary["n_bins"] == 1024 and summary["n_anomalous"] == 22
    store = read_canonical(out)
    with h5py.File(path, "r") as handle:
        expected = handle["spectra/block0_values"][()]
    np.testing.assert_allclose(store.X, expected, rtol=1e-6)
    assert list(store.labels) == [0] + [1] * 22
    info = h5py_frame_numeric(path, "info")
    np.testing.assert_allclose(store.metadata["total_counts"].to_numpy(), info["total_counts"])
    np.testing.assert_allclose(store.X.sum(axis=1, dtype=np.float64), info["total_counts"], rtol=1e-6)
    assert store.metadata["live_time"].iloc[0] == pytest.approx(611.7, abs=0.05)


# ============================================================================================
# SDSS quasar spectra (headerless CSV, first row = wavelength grid)
# ============================================================================================


@pytest.mark.parametrize(("name", "n_spectra"), [(QUASAR_TRAIN, 200), (QUASAR_TEST, 50)])
def test_quasar_csv_with_bin_centres_row(shared_file, name, n_spectra):
    path = shared_file(name)
    raw = read_raw_spectra(path, QUASAR)
    counts = np.asarray(raw.counts)
    assert counts.shape == (n_spectra, 450)  # README
    table = np.loadtxt(path, delimiter=",")
    np.testing.assert_allclose(counts, table[1:])
    edges = raw.bin_edges
    assert_valid_edges(edges, 450)
    # README: wavelength grid 1150 .. 1599 A, 450 px
    assert edges[0] == pytest.approx(1149.5) and edges[-1] == pytest.approx(1599.5)
    np.testing.assert_allclose(0.5 * (edges[1:] + edges[:-1]), table[0])
    assert table[0][0] == pytest.approx(1150.0) and table[0][-1] == pytest.approx(1599.0)
    if name == QUASAR_TRAIN:  # README: flux -6.7 .. 23.1
        assert counts.min() == pytest.approx(-6.7, abs=0.05)
        assert counts.max() == pytest.approx(23.1, abs=0.05)
    assert len(raw.metadata) == n_spectra


def test_quasar_glob_gives_both_files(shared_data_dir, tmp_path):
    folder = shared_data_dir / "sdss_quasar_cs229"
    if not folder.is_dir():
        pytest.skip(f"shared test data folder {folder} is missing")
    paths = expand_input_paths(str(folder / "quasar_*.csv"))
    assert paths == [str(folder / "quasar_test.csv"), str(folder / "quasar_train.csv")]  # name order
    out = tmp_path / "quasar.h5"
    summary = ingest_to_store("quasar", QUASAR, paths=paths, output=out)
    assert summary["n_spectra"] == 250 and summary["n_bins"] == 450
    store = read_canonical(out)
    assert store.X.shape == (250, 450)
    expected = np.concatenate([np.loadtxt(p, delimiter=",")[1:] for p in paths])
    np.testing.assert_allclose(store.X, expected, rtol=1e-6)
    assert list(store.metadata["source_file"]) == [paths[0]] * 50 + [paths[1]] * 200
    assert list(store.metadata["entry"]) == list(range(50)) + list(range(200))
    assert store.bin_edges[0] == pytest.approx(1149.5) and store.bin_edges[-1] == pytest.approx(1599.5)
    assert sorted(store.source_sha256) == sorted(paths)


def test_glob_with_no_match_is_an_input_error(tmp_path):
    with pytest.raises(SpectralAnomalyError, match="no file matches"):
        expand_input_paths(str(tmp_path / "quasar_*.csv"))


# ============================================================================================
# ROOT: uproot-histograms.root (TH1F one / two / three)
# ============================================================================================


def test_root_histograms_each(shared_file):
    path = root(shared_file, "uproot-histograms.root")
    with uproot.open(path) as handle:
        expected = {name: (handle[name].values(), handle[name].axis().edges()) for name in ("one", "two", "three")}
    ranges = {"one": (-3.0, 3.0), "two": (-10.0, 10.0), "three": (-3.0, 3.0)}  # README
    for name, (low, high) in ranges.items():
        raw = read_raw_spectra(path, {"format": "root_th1", "pattern": name})
        assert raw.counts.shape == (1, 10)
        np.testing.assert_allclose(raw.bin_edges, np.linspace(low, high, 11))
        np.testing.assert_array_equal(raw.counts[0], expected[name][0])
        assert list(raw.metadata["source_object"]) == [name]
        assert raw.variances is None  # these TH1F store no Sumw2
    three = read_raw_spectra(path, {"format": "root_th1", "pattern": "three"})
    assert three.counts.sum() == pytest.approx(5.0)  # README: sum 5


def test_root_histograms_same_binning_pair_and_mixed_binning(shared_file):
    path = root(shared_file, "uproot-histograms.root")
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "*e"})  # one, three: both [-3, 3]
    assert list(raw.metadata["source_object"]) == ["one", "three"]
    assert raw.counts.shape == (2, 10)
    with pytest.raises(InvalidSpectraError, match="binning"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "*"})  # two is [-10, 10]


def test_root_flow_bins(shared_file):
    path = root(shared_file, "uproot-histograms.root")
    with uproot.open(path) as handle:
        expected = handle["one"].values(flow=True)
        inner_edges = handle["one"].axis().edges()
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "one", "flow": True})
    assert raw.counts.shape == (1, 12)
    np.testing.assert_array_equal(raw.counts[0], expected)
    assert_valid_edges(raw.bin_edges, 12)
    np.testing.assert_allclose(raw.bin_edges[1:-1], inner_edges)
    assert raw.bin_edges[0] < -3.0 and raw.bin_edges[-1] > 3.0


def test_root_flow_bins_keep_variances(shared_file):
    path = root(shared_file, "uproot-from-geant4.root")
    with uproot.open(path) as handle:
        expected = handle["edep_inner"].variances(flow=True)
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "edep_inner", "flow": True})
    assert raw.counts.shape == (1, 202)
    assert raw.variances is not None and raw.variances.shape == (1, 202)
    np.testing.assert_allclose(raw.variances[0], expected)
    assert_valid_edges(raw.bin_edges, 202)


# ============================================================================================
# ROOT: uproot-hepdata-example.root (hpx; TNtuple ntuple)
# ============================================================================================


def test_root_hepdata_hpx(shared_file):
    path = root(shared_file, "uproot-hepdata-example.root")
    with uproot.open(path) as handle:
        expected = handle["hpx"].values()
        has_sumw2 = len(handle["hpx"].member("fSumw2")) > 0
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "hpx"})
    assert raw.counts.shape == (1, 100)  # README: TH1F 100 bins [-4, 4]
    np.testing.assert_allclose(raw.bin_edges, np.linspace(-4.0, 4.0, 101))
    np.testing.assert_array_equal(raw.counts[0], expected)
    assert (raw.variances is not None) == has_sumw2


def test_root_hepdata_ntuple_flat(shared_file):
    path = root(shared_file, "uproot-hepdata-example.root")
    with uproot.open(path) as handle:
        expected = handle["ntuple"].arrays(["px", "py", "pz"], library="np")
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "ntuple", "branches": ["px", "py", "pz"]})
    assert raw.counts.shape == (75000, 3)  # README: 75000 entries
    for j, name in enumerate(("px", "py", "pz")):
        np.testing.assert_array_equal(raw.counts[:, j], expected[name].astype(np.float64))
    assert len(raw.metadata) == 75000


def test_root_hepdata_ntuple_metadata_branches(shared_file):
    path = root(shared_file, "uproot-hepdata-example.root")
    with uproot.open(path) as handle:
        expected_i = handle["ntuple"]["i"].array(library="np")
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "ntuple", "metadata_branches": ["i"]})
    assert raw.counts.shape == (75000, 4)  # px, py, pz, random
    np.testing.assert_array_equal(raw.metadata["i"].to_numpy(), expected_i)


# ============================================================================================
# ROOT: uproot-issue-861.root (16383-bin TH1D in a directory, '@' in names)
# ============================================================================================


ENERGY_861 = "Energy/_F_EnergyCH0@DT5725S_14295"


@pytest.mark.parametrize("pattern", ["Energy/*", ENERGY_861, "*/_F_Energy*@*"])
def test_root_issue_861_energy_histogram(shared_file, pattern):
    path = root(shared_file, "uproot-issue-861.root")
    with uproot.open(path) as handle:
        expected = handle[ENERGY_861].values()
        expected_edges = handle[ENERGY_861].axis().edges()
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": pattern})
    assert raw.counts.shape == (1, 16383)  # README
    assert raw.counts.sum() == pytest.approx(6.8e6, rel=0.01)  # README: 6.8M counts
    np.testing.assert_array_equal(raw.counts[0], expected)
    np.testing.assert_allclose(raw.bin_edges, expected_edges)
    assert raw.bin_edges[0] == 0.0 and raw.bin_edges[-1] == 16383.0
    assert list(raw.metadata["source_object"]) == [ENERGY_861]


def test_root_issue_861_mixed_binning_refused(shared_file):
    path = root(shared_file, "uproot-issue-861.root")
    with pytest.raises(InvalidSpectraError, match="binning"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "*"})  # Energy 16383 bins, Time 8192


def test_root_issue_861_unknown_pattern_lists_histograms(shared_file):
    path = root(shared_file, "uproot-issue-861.root")
    with pytest.raises(ObjectNotFoundError, match="_F_EnergyCH0@DT5725S_14295"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "Energy/nothing*"})


# ============================================================================================
# ROOT: uproot-from-geant4.root (TH1D edep_* with Sumw2; TTree HitStrips)
# ============================================================================================


def test_root_geant4_edep_family_with_variances(shared_file):
    path = root(shared_file, "uproot-from-geant4.root")
    names = ["edep_inner", "edep_middle", "edep_outer"]
    with uproot.open(path) as handle:
        assert all(len(handle[n].member("fSumw2")) > 0 for n in names)  # they store Sumw2
        expected = np.array([handle[n].values() for n in names])
        expected_var = np.array([handle[n].variances() for n in names])
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "edep_*"})
    assert raw.counts.shape == (3, 200)  # README: 200 bins [0, 6]
    np.testing.assert_allclose(raw.bin_edges, np.linspace(0.0, 6.0, 201))
    assert list(raw.metadata["source_object"]) == names
    np.testing.assert_array_equal(raw.counts, expected)
    assert raw.variances is not None and raw.variances.shape == (3, 200)
    np.testing.assert_allclose(raw.variances, expected_var)


def test_root_geant4_ingest_keeps_variances(shared_file, tmp_path):
    path = root(shared_file, "uproot-from-geant4.root")
    with uproot.open(path) as handle:
        expected_var = np.array([handle[n].variances() for n in ("edep_inner", "edep_middle", "edep_outer")])
    out = tmp_path / "geant4.h5"
    ingest_to_store("geant4", {"format": "root_th1", "pattern": "edep_*"}, paths=[path], output=out)
    store = read_canonical(out)
    assert store.X.shape == (3, 200)
    assert store.variances is not None
    np.testing.assert_allclose(store.variances, expected_var, rtol=1e-6)


def test_root_geant4_hitstrips_flat(shared_file):
    path = root(shared_file, "uproot-from-geant4.root")
    with uproot.open(path) as handle:
        tree = handle["HitStrips"]
        names = uproot_scalar_numeric_branches(tree)
        expected = np.column_stack([tree[n].array(library="np") for n in names]).astype(np.float64)
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "HitStrips"})
    assert raw.counts.shape == (4808, len(names))  # README: 4808 x Event, Laystrip, Energy
    assert len(names) == 3
    np.testing.assert_array_equal(raw.counts, expected)


def test_root_geant4_mixed_binning_refused(shared_file):
    path = root(shared_file, "uproot-from-geant4.root")
    with pytest.raises(InvalidSpectraError, match="binning"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "*"})  # phi_diff has 300 bins


# ============================================================================================
# ROOT: uproot-issue-250.root (4 TH1D 100 bins; TTree B4)
# ============================================================================================


@pytest.mark.parametrize("name", ["Eabs", "Egap", "Labs", "Lgap"])
def test_root_issue_250_histograms(shared_file, name):
    path = root(shared_file, "uproot-issue-250.root")
    with uproot.open(path) as handle:
        h = handle[name]
        expected, edges, variances = h.values(), h.axis().edges(), h.variances()
        has_sumw2 = len(h.member("fSumw2")) > 0
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": name})
    assert raw.counts.shape == (1, 100)  # README: TH1D 100 bins
    np.testing.assert_array_equal(raw.counts[0], expected)
    np.testing.assert_allclose(raw.bin_edges, edges)
    assert has_sumw2
    np.testing.assert_allclose(raw.variances[0], variances)


def test_root_issue_250_tree_flat(shared_file):
    path = root(shared_file, "uproot-issue-250.root")
    with uproot.open(path) as handle:
        arrays = handle["B4"].arrays(["Eabs", "Egap", "Labs", "Lgap"], library="np")
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "B4"})
    assert raw.counts.shape == (1000, 4)  # README
    np.testing.assert_array_equal(raw.counts, np.column_stack([arrays[n] for n in ("Eabs", "Egap", "Labs", "Lgap")]))


# ============================================================================================
# ROOT: uproot-issue-750.root (h_Muon_pt; mixed binnings; TTree tout)
# ============================================================================================


def test_root_issue_750_muon_pt(shared_file):
    path = root(shared_file, "uproot-issue-750.root")
    with uproot.open(path) as handle:
        expected, variances = handle["h_Muon_pt"].values(), handle["h_Muon_pt"].variances()
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "h_Muon_pt"})
    assert raw.counts.shape == (1, 100)  # README: 100 [0, 200]
    np.testing.assert_allclose(raw.bin_edges, np.linspace(0.0, 200.0, 101))
    np.testing.assert_array_equal(raw.counts[0], expected)
    np.testing.assert_allclose(raw.variances[0], variances)


def test_root_issue_750_eta_pair(shared_file):
    path = root(shared_file, "uproot-issue-750.root")
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "h_*_eta"})
    assert list(raw.metadata["source_object"]) == ["h_Muon_eta", "h_Electron_eta"]
    assert raw.counts.shape == (2, 100)


@pytest.mark.parametrize("pattern", ["h_*", "h_*_pt", "h_Muon_*"])
def test_root_issue_750_different_binning_refused(shared_file, pattern):
    # h_Muon_pt [0, 200] vs h_Muon_eta [-5, 5] (same bin count), h_leading_lepton_pt 45 bins
    path = root(shared_file, "uproot-issue-750.root")
    with pytest.raises(InvalidSpectraError, match="one binning"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": pattern})


def test_root_issue_750_tree_flat(shared_file):
    path = root(shared_file, "uproot-issue-750.root")
    with uproot.open(path) as handle:
        tree = handle["tout"]
        names = uproot_scalar_numeric_branches(tree)
        expected = np.column_stack([tree[n].array(library="np") for n in names]).astype(np.float64)
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "tout"})
    assert len(names) == 17 and raw.counts.shape == (312, 17)  # README: 312 x 17 scalar branches
    np.testing.assert_array_equal(raw.counts, expected)


# ============================================================================================
# ROOT: uproot-issue-880.root (200 histograms; unreadable custom-class tree Z)
# ============================================================================================


def test_root_issue_880_all_keys_do_not_crash(shared_file):
    # '*' visits every key (including the tree Z that uproot cannot fully read) and must stop on
    # the first binning mismatch with a clear error, not on Z
    path = root(shared_file, "uproot-issue-880.root")
    with pytest.raises(InvalidSpectraError, match="one binning"):
        read_raw_spectra(path, {"format": "root_th1", "pattern": "*"})


def test_root_issue_880_400_bin_family(shared_file):
    path = root(shared_file, "uproot-issue-880.root")
    with uproot.open(path) as handle:
        classes = handle.classnames(recursive=True, cycle=False)
        family = []
        for name, cls in classes.items():
            if cls.startswith("TH1"):
                edges = handle[name].axis().edges()
                if len(edges) == 401 and edges[0] == 0.0 and edges[-1] == 400.0:
                    family.append(name)
        expected = np.array([handle[n].values() for n in family])
    assert len(family) == 8  # README: 8 TH1D with 400 bins [0, 400]
    # every member of the family, selected one by one with a pattern that matches only it
    for name in family:
        raw = read_raw_spectra(path, {"format": "root_th1", "pattern": name})
        assert raw.counts.shape == (1, 400)
    pattern_family = [n for n in family if n.startswith("hpK")]
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": "hpK*"})
    assert list(raw.metadata["source_object"]) == pattern_family
    np.testing.assert_array_equal(raw.counts, expected[[family.index(n) for n in pattern_family]])
    np.testing.assert_allclose(raw.bin_edges, np.linspace(0.0, 400.0, 401))
    assert raw.variances is None


def test_root_issue_880_240_bin_family(shared_file):
    path = root(shared_file, "uproot-issue-880.root")
    with uproot.open(path) as handle:
        family = [
            name for name, cls in handle.classnames(recursive=True, cycle=False).items()
            if cls.startswith("TH1") and len(handle[name].axis().edges()) == 241
            and handle[name].axis().edges()[0] == 0.0 and handle[name].axis().edges()[-1] == pytest.approx(0.6)
        ]
        expected = np.array([handle[n].values() for n in family])
    assert len(family) == 9  # README: 9 with 240 bins [0, 0.6]
    ingest_like = [read_raw_spectra(path, {"format": "root_th1", "pattern": n}).counts[0] for n in family]
    np.testing.assert_array_equal(np.array(ingest_like), expected)


def test_root_issue_880_tree_z_reads_or_refuses_cleanly(shared_file):
    path = root(shared_file, "uproot-issue-880.root")
    try:
        raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "Z"})
    except SpectralAnomalyError:
        return
    with uproot.open(path) as handle:
        tree = handle["Z"]
        names = uproot_scalar_numeric_branches(tree)
        expected = np.column_stack([tree[n].array(library="np") for n in names]).astype(np.float64)
    assert raw.counts.shape == (116, len(names))  # README: 116 entries
    np.testing.assert_array_equal(raw.counts, expected)


# ============================================================================================
# ROOT: uproot-HZZ.root (TTree events with scalar and jagged branches)
# ============================================================================================


def test_root_hzz_met(shared_file):
    path = root(shared_file, "uproot-HZZ.root")
    with uproot.open(path) as handle:
        arrays = handle["events"].arrays(["MET_px", "MET_py"], library="np")
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "events", "branches": ["MET_px", "MET_py"]})
    assert raw.counts.shape == (2421, 2)  # README: 2421 entries
    np.testing.assert_array_equal(raw.counts, np.column_stack([arrays["MET_px"], arrays["MET_py"]]).astype(np.float64))


def test_root_hzz_default_pattern_skips_jagged_branches(shared_file):
    path = root(shared_file, "uproot-HZZ.root")
    with uproot.open(path) as handle:
        tree = handle["events"]
        scalar = uproot_scalar_numeric_branches(tree)
        jagged = [n for n in tree.keys() if n.startswith(("Jet_", "Muon_", "Electron_", "Photon_"))]  # noqa: SIM118
        expected = np.column_stack([tree[n].array(library="np") for n in scalar]).astype(np.float64)
    assert len(jagged) == 23 and not set(jagged) & set(scalar)
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "events"})
    assert raw.counts.shape == (2421, len(scalar))
    np.testing.assert_array_equal(raw.counts, expected)


def test_root_hzz_jagged_branch_pattern_refused(shared_file):
    path = root(shared_file, "uproot-HZZ.root")
    with pytest.raises(ObjectNotFoundError, match="MET_px"):
        read_raw_spectra(path, {"format": "root_tree_flat", "tree": "events", "branches": ["Jet_*"]})


def test_root_hzz_unknown_tree_lists_trees(shared_file):
    path = root(shared_file, "uproot-HZZ.root")
    with pytest.raises(ObjectNotFoundError, match="events"):
        read_raw_spectra(path, {"format": "root_tree_flat", "tree": "event"})


# ============================================================================================
# ROOT: uproot-small-flat-tree.root (fixed-size array branches: one spectrum per entry)
# ============================================================================================


FIXED_ARRAYS = ["ArrayFloat32", "ArrayFloat64", "ArrayInt32", "ArrayInt64", "ArrayUInt32", "ArrayUInt64"]


def test_root_small_flat_tree_array_branch(shared_file):
    path = root(shared_file, "uproot-small-flat-tree.root")
    with uproot.open(path) as handle:
        tree = handle["tree"]
        expected = tree["ArrayFloat64"].array(library="np")
        scalars = {n: tree[n].array(library="np") for n in uproot_scalar_numeric_branches(tree)}
    assert expected.shape == (100, 10)  # README: np shape (100, 10)
    raw = read_raw_spectra(path, {"format": "root_tree_array", "tree": "tree", "branch": "ArrayFloat64"})
    assert raw.counts.shape == (100, 10)
    np.testing.assert_array_equal(raw.counts, expected)
    assert_valid_edges(raw.bin_edges, 10)
    # scalar numeric branches become metadata (Int32 ... Float64, the counter N); Str does not
    assert set(scalars) >= {"Int32", "Int64", "UInt32", "UInt64", "Float32", "Float64", "N"}
    for name, values in scalars.items():
        assert name in raw.metadata.columns, name
        np.testing.assert_array_equal(raw.metadata[name].to_numpy(), values)
    assert "Str" not in raw.metadata.columns


@pytest.mark.parametrize("branch", FIXED_ARRAYS)
def test_root_small_flat_tree_every_array_branch(shared_file, branch):
    path = root(shared_file, "uproot-small-flat-tree.root")
    with uproot.open(path) as handle:
        expected = handle["tree"][branch].array(library="np")
    raw = read_raw_spectra(path, {"format": "root_tree_array", "tree": "tree", "branch": branch})
    np.testing.assert_array_equal(raw.counts, expected.astype(np.float64))


def test_root_small_flat_tree_jagged_branch_refused(shared_file):
    path = root(shared_file, "uproot-small-flat-tree.root")
    with pytest.raises(ObjectNotFoundError) as info:
        read_raw_spectra(path, {"format": "root_tree_array", "tree": "tree", "branch": "SliceFloat64"})
    message = str(info.value)
    for name in FIXED_ARRAYS:  # the valid alternatives are listed
        assert name in message, message
    assert "SliceFloat64" in message


def test_root_small_flat_tree_flat_scalars(shared_file):
    path = root(shared_file, "uproot-small-flat-tree.root")
    with uproot.open(path) as handle:
        tree = handle["tree"]
        names = uproot_scalar_numeric_branches(tree)
        expected = np.column_stack([tree[n].array(library="np") for n in names]).astype(np.float64)
    raw = read_raw_spectra(path, {"format": "root_tree_flat", "tree": "tree"})
    assert raw.counts.shape == (100, len(names))
    np.testing.assert_allclose(raw.counts, expected)


# ============================================================================================
# Sumw2: variances where the histogram stores them, None otherwise, for every real TH1 file
# ============================================================================================


SINGLE_HISTOGRAMS = [
    ("uproot-histograms.root", "one"),
    ("uproot-hepdata-example.root", "hpx"),
    ("uproot-issue-861.root", ENERGY_861),
    ("uproot-from-geant4.root", "phi_diff"),
    ("uproot-issue-250.root", "Lgap"),
    ("uproot-issue-750.root", "h_leading_lepton_pt"),
    ("uproot-issue-880.root", "hEg"),
]


@pytest.mark.parametrize(("filename", "name"), SINGLE_HISTOGRAMS)
def test_root_variances_follow_sumw2(shared_file, filename, name):
    path = root(shared_file, filename)
    with uproot.open(path) as handle:
        h = handle[name]
        has_sumw2 = len(h.member("fSumw2")) > 0
        values, edges, variances = h.values(), h.axis().edges(), h.variances()
    raw = read_raw_spectra(path, {"format": "root_th1", "pattern": name})
    np.testing.assert_array_equal(raw.counts[0], values)
    np.testing.assert_allclose(raw.bin_edges, edges)
    if has_sumw2:
        assert raw.variances is not None
        np.testing.assert_allclose(raw.variances[0], variances)
    else:
        assert raw.variances is None


def test_some_real_file_has_sumw2_and_some_has_not(shared_file):
    flags = []
    for filename, name in SINGLE_HISTOGRAMS:
        with uproot.open(root(shared_file, filename)) as handle:
            flags.append(len(handle[name].member("fSumw2")) > 0)
    assert any(flags) and not all(flags)
