"""CSV headers: a repeated column name and a file without data rows get their own clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_anomaly.exceptions import InvalidSpectraError
from spectral_anomaly.io import count_bins, read_raw_spectra

CSV = {"format": "csv", "bin_columns": "bin_[0-9]+"}


def test_a_repeated_column_name_is_refused_naming_it_and_its_columns(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("run,bin_0,bin_1,bin_1,y\n1,2,3,4,0\n2,3,4,5,1\n")
    for action in (read_raw_spectra, count_bins):
        with pytest.raises(InvalidSpectraError) as info:
            action(path, CSV)
        message = str(info.value)
        assert str(path) in message and "'bin_1' in columns 3, 4" in message and "own name" in message


@pytest.mark.parametrize("text", ["run,bin_0,bin_1\n", "run,bin_0,bin_1\n\n\n"])
def test_a_header_without_rows_is_refused_as_such(text, tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(text)
    with pytest.raises(InvalidSpectraError, match="holds a header of 3 columns but no data rows") as info:
        read_raw_spectra(path, CSV)
    assert "non-numeric" not in str(info.value)


def test_a_regex_with_braces_selects_the_bins(tmp_path):
    path = tmp_path / "braces.csv"
    path.write_text("run,bin_1,bin_22,bin_333,bin_4444\n1,1,2,3,4\n2,5,6,7,8\n")
    dataset = {"format": "csv", "bin_columns": "bin_[0-9]{1,3}"}
    raw = read_raw_spectra(path, dataset)
    np.testing.assert_array_equal(raw.counts, [[1, 2, 3], [5, 6, 7]])
    assert "bin_4444" in raw.metadata.columns
    assert count_bins(path, dataset) == 3


@pytest.mark.parametrize("blank", ["\n", "   \n", "\r\n", "\t\n\n"])
def test_blank_lines_before_the_header_do_not_hide_it_from_the_checks(blank, tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text(blank + "bin_0,bin_1,bin_2,y,y\n1,2,3,0,0\n")
    with pytest.raises(InvalidSpectraError, match="'y' in columns 4, 5"):
        read_raw_spectra(path, CSV)
    path.write_text(blank + "bin_0,bin_1,bin_2,y\n1,2,3,0\n")
    assert count_bins(path, CSV) == read_raw_spectra(path, CSV).n_bins == 3
