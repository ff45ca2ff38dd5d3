"""Memory-mapped rows of plainly stored float32 HDF5 datasets, and the layouts that must be read instead."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import spectral_anomaly.io.hdf5_mapping as hdf5_mapping
from spectral_anomaly.io.hdf5_mapping import mapped_row_blocks, row_regions


@pytest.fixture()
def spectra(rng):
    return rng.normal(size=(1000, 24)).astype(np.float32)


def _mapped(path, spectra):
    with h5py.File(path) as handle:
        regions = row_regions(handle["spectra"])
    if regions is None:
        return None
    return [(start, stop, block.copy()) for start, stop, block in mapped_row_blocks(path, regions, n_bins=spectra.shape[1])]


@pytest.mark.parametrize("chunks", [None, (64, 24), (1000, 24), (7, 24)], ids=["contiguous", "64", "one", "7"])
def test_plain_float32_rows_are_mapped_in_order_and_equal_the_data(tmp_path, spectra, chunks, monkeypatch):
    monkeypatch.setattr(hdf5_mapping, "MAPPED_BLOCK_BYTES", 24 * 4 * 50)  # several blocks per chunk or file
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("spectra", data=spectra, chunks=chunks)
    blocks = _mapped(tmp_path / "a.h5", spectra)
    assert blocks is not None and len(blocks) > 1
    assert [start for start, _, _ in blocks] == sorted(start for start, _, _ in blocks)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(spectra)
    np.testing.assert_array_equal(np.concatenate([block for _, _, block in blocks]), spectra)
    for start, stop, block in blocks:
        np.testing.assert_array_equal(block, spectra[start:stop])


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "gzip", "chunks": (64, 24)},
        {"shuffle": True, "chunks": (64, 24)},
        {"chunks": (64, 8)},  # chunks that split rows
        {"dtype": ">f4"},  # big-endian
        {"dtype": "f8"},
    ],
    ids=["gzip", "shuffle", "split-rows", "big-endian", "float64"],
)
def test_other_layouts_are_not_mapped(tmp_path, spectra, options):
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("spectra", data=spectra, **options)
    assert _mapped(tmp_path / "a.h5", spectra) is None


def test_chunks_never_written_are_not_mapped(tmp_path, spectra):
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("spectra", shape=spectra.shape, dtype="f4", chunks=(64, 24))[:64] = spectra[:64]
    assert _mapped(tmp_path / "a.h5", spectra) is None


def test_a_dataset_reaching_past_the_end_of_its_file_is_not_mapped(tmp_path, spectra):
    """Touching mapped bytes past the end of a file kills the process (SIGBUS): check sizes first."""
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("spectra", data=spectra, chunks=(64, 24))
    with h5py.File(path) as handle:
        dataset = handle["spectra"]
        size = path.stat().st_size
        last = max(dataset.id.get_chunk_info(i).byte_offset for i in range(dataset.id.get_num_chunks()))
        with open(path, "r+b") as stream:
            stream.truncate(last + 10)
        assert path.stat().st_size < size
        assert row_regions(dataset) is None
