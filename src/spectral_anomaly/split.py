"""Seeded train / validation / test split of one dataset's spectra."""

from __future__ import annotations

import os

import numpy as np

from .exceptions import ConfigError, InvalidSpectraError
from .store.atomic import write_json
from .store.formats import FORMAT_VERSIONS, read_versioned_json

SPLIT_NAMES = ("train", "validation", "test")


def make_split(
    n_spectra: int,
    *,
    labels: np.ndarray | None,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    train_on: str = "all",
    trainable: np.ndarray | None = None,
    dataset: str = "",
) -> dict[str, np.ndarray]:
    """Split spectrum indices into train, validation and test, reproducibly for a seed.

    Only spectra in the training pool go to train and validation: with ``train_on='normal'``
    those labelled normal, and where ``trainable`` (a boolean mask, from the dataset's
    ``train_selection``) is given, only those it marks. Every other spectrum goes to test,
    alongside the held-out share of the pool.
    """
    if train_on not in ("all", "normal"):
        raise ConfigError(f"split.train_on must be 'all' or 'normal', got {train_on!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"split: validation_fraction + test_fraction = {validation_fraction + test_fraction} leaves no "
            "training spectra; their sum must be below 1"
        )
    rng = np.random.default_rng(seed)
    if train_on == "normal":
        if labels is None:
            raise ConfigError(
                f"dataset {dataset!r}: split.train_on is 'normal' but the dataset has no anomaly_label; "
                "configure one or use train_on: all"
            )
        in_pool = labels == 0
    else:
        in_pool = np.ones(n_spectra, dtype=bool)
    if trainable is not None:
        in_pool &= trainable
    pool, always_test = rng.permutation(np.flatnonzero(in_pool)), np.flatnonzero(~in_pool)
    n_val = int(round(validation_fraction * len(pool)))
    n_test = int(round(test_fraction * len(pool)))
    n_train = len(pool) - n_val - n_test
    if n_train < 2 or n_val < 1:
        raise InvalidSpectraError(
            f"dataset {dataset!r}: {len(pool)} spectra available for training give {n_train} training and "
            f"{n_val} validation spectra; at least 2 and 1 are needed"
        )
    return {
        "train": np.sort(pool[:n_train]),
        "validation": np.sort(pool[n_train : n_train + n_val]),
        "test": np.sort(np.concatenate([pool[n_train + n_val :], always_test])),
    }


def split_labels(n_spectra: int, split: dict[str, np.ndarray]) -> np.ndarray:
    """One of 'train', 'validation' or 'test' per spectrum."""
    names = np.empty(n_spectra, dtype=object)
    for name in SPLIT_NAMES:
        names[split[name]] = name
    return names


def write_split(split: dict[str, np.ndarray], path: str | os.PathLike[str], *, dataset: str, seed: int, train_on: str) -> None:
    payload = {
        "format_version": FORMAT_VERSIONS["split"],
        "dataset": dataset,
        "seed": seed,
        "train_on": train_on,
        **{name: split[name].tolist() for name in SPLIT_NAMES},
    }
    write_json(path, payload)


def read_split(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    payload = read_versioned_json(path, kind="split", step="split")
    return {name: np.asarray(payload[name], dtype=np.int64) for name in SPLIT_NAMES}
