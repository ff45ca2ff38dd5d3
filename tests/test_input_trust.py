"""An input file cannot make the pipeline read another file, and odd file names work.

HDF5 can keep a dataset's bytes in other files (external storage), reach objects in other files
(external links) and map datasets of other files (virtual datasets). Each is refused by default with
a message naming the object and where it points, and no store is left behind.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from spectral_anomaly.exceptions import InputFileError
from spectral_anomaly.ingest import ingest_to_store
from spectral_anomaly.store.canonical import read_canonical

ARRAY = {"format": "hdf5_array", "dataset": "spectra"}


@pytest.fixture
def spectra() -> np.ndarray:
    return np.random.default_rng(0).poisson(20.0, size=(40, 16)).astype(np.float32)


@pytest.fixture
def other_file(tmp_path, spectra):
    """A second HDF5 file the crafted inputs point into."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["spectra"] = spectra
        handle["meta/run"] = np.arange(len(spectra))
    return path


def _write(path, build):
    with h5py.File(path, "w") as handle:
        build(handle)
    return path


def _virtual(handle, name, source, dataset, shape, dtype):
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    layout[...] = h5py.VirtualSource(str(source), dataset, shape=shape)
    handle.create_virtual_dataset(name, layout)


CRAFTED = {
    "external storage": (
        lambda h, other, X: h.create_dataset("spectra", shape=X.shape, dtype="f4",
                                             external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]),
        ARRAY, "keeps its data in external file(s) /etc/passwd"),
    "external link": (
        lambda h, other, X: h.__setitem__("spectra", h5py.ExternalLink(str(other), "spectra")),
        ARRAY, "is an HDF5 external link to"),
    "dangling external link": (
        lambda h, other, X: h.__setitem__("spectra", h5py.ExternalLink("missing.h5", "spectra")),
        ARRAY, "external link to missing.h5:spectra"),
    "external link to a group": (
        lambda h, other, X: h.__setitem__("group", h5py.ExternalLink(str(other), "/")),
        {**ARRAY, "dataset": "group/spectra"}, "lies behind '/group'"),
    "soft link through an external link": (
        lambda h, other, X: (h.__setitem__("elsewhere", h5py.ExternalLink(str(other), "/")),
                             h.__setitem__("spectra", h5py.SoftLink("/elsewhere/spectra"))),
        ARRAY, "lies behind '/elsewhere'"),
    "external link among the metadata": (
        lambda h, other, X: (h.__setitem__("spectra", X), h.__setitem__("meta/run", h5py.ExternalLink(str(other), "meta/run"))),
        {**ARRAY, "metadata_group": "meta"}, "'/meta/run' is an HDF5 external link"),
    "virtual dataset": (
        lambda h, other, X: _virtual(h, "spectra", other, "spectra", X.shape, "f4"),
        ARRAY, "is an HDF5 virtual dataset over"),
    "virtual bin edges": (
        lambda h, other, X: (h.__setitem__("spectra", X), _virtual(h, "edges", other, "meta/run", (17,), "i8")),
        {**ARRAY, "bin_edges_dataset": "edges"}, "'/edges' is an HDF5 virtual dataset"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_inputs_pointing_to_other_files_are_refused(case, tmp_path, other_file, spectra):
    build, dataset, expected = CRAFTED[case]
    raw = _write(tmp_path / "crafted.h5", lambda handle: build(handle, other_file, spectra))
    store = tmp_path / "store" / "d.h5"
    with pytest.raises(InputFileError) as info:
        ingest_to_store("d", {**dataset, "path": str(raw)}, paths=[raw], output=store)
    message = str(info.value)
    assert expected in message and str(raw) in message and "\n" not in message
    assert "may not point to other files" in message
    assert not store.parent.exists() or not any(store.parent.iterdir()), "nothing is left behind"


def test_a_pandas_file_with_an_external_block_is_refused(tmp_path, other_file, spectra):
    path = tmp_path / "frame.h5"
    pd.DataFrame(spectra).to_hdf(path, key="data", format="fixed")
    with h5py.File(path, "a") as handle:
        del handle["data/block0_values"]
        handle["data/block0_values"] = h5py.ExternalLink(str(other_file), "spectra")
    with pytest.raises(InputFileError, match="'/data/block0_values' is an HDF5 external link"):
        ingest_to_store("d", {"format": "pandas_hdf5", "key": "data"}, paths=[path], output=tmp_path / "s.h5")


@pytest.mark.parametrize("name", ["run{1}.h5", "100%_dose.h5", "run%b%%x.h5", "with space.h5", "spektrum-ä-π.h5"])
@pytest.mark.parametrize("store", ["auto", "copy"])
def test_odd_file_names_are_ingested_and_linked(name, store, tmp_path, spectra):
    folder = tmp_path / "odd {folder} 50%"
    folder.mkdir()
    raw = _write(folder / name, lambda handle: handle.__setitem__("spectra", spectra))
    out = tmp_path / "d.h5"
    summary = ingest_to_store("d", {**ARRAY, "path": str(raw)}, paths=[raw], output=out, store=store)
    assert summary["linked"] is (store == "auto")
    stored = read_canonical(out)
    np.testing.assert_array_equal(stored.X, spectra)
    assert stored.metadata["source_file"].iloc[0] == str(raw)


def test_an_input_rewritten_after_the_workflow_hashed_it_is_refused(tmp_path, spectra):
    from spectral_anomaly.store.provenance import input_fingerprint

    raw = _write(tmp_path / "raw.h5", lambda handle: handle.__setitem__("spectra", spectra))
    fingerprint = input_fingerprint(raw, cache_file=tmp_path / "cache.json")  # as the workflow takes it at start
    _write(raw, lambda handle: handle.__setitem__("spectra", spectra * 2))  # rewritten before its ingest job ran
    with pytest.raises(InputFileError, match="changed since the workflow started"):
        ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "d.h5", checksums={str(raw): fingerprint})
    assert not (tmp_path / "d.h5").exists()


@pytest.mark.parametrize("store", ["auto", "copy"])
def test_an_input_rewritten_while_it_is_ingested_is_refused(store, tmp_path, spectra, monkeypatch):
    import os

    from spectral_anomaly import ingest

    raw = _write(tmp_path / "raw.h5", lambda handle: handle.__setitem__("spectra", spectra))
    scan = ingest._scan

    def scan_then_append(*args, **kwargs):
        kept = scan(*args, **kwargs)
        with open(raw, "ab") as stream:  # another process appends to the file while it is read
            stream.write(b"\0" * 16)
        os.utime(raw, ns=(0, 12345))
        return kept

    monkeypatch.setattr(ingest, "_scan", scan_then_append)
    with pytest.raises(InputFileError, match="changed while it was being ingested; nothing was written"):
        ingest_to_store("d", ARRAY, paths=[raw], output=tmp_path / "d.h5", store=store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h5"], "no store, no temporary file"


def test_an_edited_run_config_of_a_version_is_refused(tmp_path):
    from spectral_anomaly import stages
    from spectral_anomaly.config import load_run_config

    config = {"run_name": "t", "datasets": {"d": {"format": "hdf5_array", "path": "x.h5", "dataset": "spectra"}},
              "models": {"ae": {"kind": "autoencoder"}}}
    path = tmp_path / "config.yaml"
    stages.run_write_config(config, output=path)
    assert load_run_config(path)["run_name"] == "t"
    path.write_text(path.read_text().replace("x.h5", "/etc/passwd"))
    with pytest.raises(InputFileError, match="config.yaml: damaged: its content no longer matches the checksum"):
        load_run_config(path)


def test_an_external_link_is_refused_without_opening_its_target(tmp_path, spectra):
    """The link is read, never followed: a target that blocks on open (a FIFO) cannot hang the pipeline."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "blocks.h5")
    raw = _write(tmp_path / "raw.h5", lambda handle: (handle.__setitem__("spectra", spectra),
                                                       handle.__setitem__("meta/run", h5py.ExternalLink("blocks.h5", "/x"))))
    code = ("import sys; from spectral_anomaly.io import read_raw_spectra\n"
            "read_raw_spectra(sys.argv[1], {'format': 'hdf5_array', 'dataset': 'spectra', 'metadata_group': 'meta'})")
    run = subprocess.run([sys.executable, "-c", code, str(raw)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "'/meta/run' is an HDF5 external link to blocks.h5:/x" in run.stderr


def test_object_names_that_are_not_utf8_are_read_with_replacement_characters(tmp_path, spectra):
    import uproot

    from spectral_anomaly.io import read_raw_spectra

    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as handle:
        handle["spectra"] = spectra
        handle.create_group("meta").create_dataset(b"r\xe9", data=np.arange(len(spectra)))  # a Latin-1 name
        handle["meta/note"] = np.array([b"caf\xe9"] * len(spectra))
    raw = read_raw_spectra(path, {**ARRAY, "metadata_group": "meta"})
    assert "r\ufffd" in raw.metadata.columns and set(raw.metadata["note"]) == {"caf\ufffd"}

    root = tmp_path / "latin.root"
    with uproot.recreate(root) as handle:
        for i, row in enumerate(spectra[:3]):
            handle[f"spectrum_X{i}"] = (row, np.arange(spectra.shape[1] + 1.0))
    root.write_bytes(root.read_bytes().replace(b"spectrum_X", b"spectrum_\xe9"))  # a Latin-1 name
    ingest_to_store("d", {"format": "root_th1", "pattern": "spectrum_*"}, paths=[root], output=tmp_path / "s.h5")
    assert read_canonical(tmp_path / "s.h5").metadata["source_object"].tolist() == [f"spectrum_\ufffd{i}" for i in range(3)]
