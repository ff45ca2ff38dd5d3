"""Physically motivated training augmentation: the same spectra as another run would have recorded them.

A detector trained on one run meets later runs whose normal spectra differ in ways that say nothing
about anomalies: a detector gain a few per cent off, or fewer counts. A detector's ``augment`` adds, for
each training and validation spectrum, ``copies`` variants drawn from those conditions, so that the
network learns them as normal (and early stopping judges it on them):

- ``gain``: every spectrum is stretched along its bins by a factor 1 + g, g uniform in
  [-gain, +gain], about the lower edge of the first bin (an energy scale with its zero there). The
  counts are moved, not resampled: the cumulative counts are interpolated at the stretched bin
  edges, so the total is kept where the stretch keeps the spectrum inside the range.
- ``count_scale``: each spectrum keeps each of its counts with probability p, log-uniform in
  [count_scale, 1] (binomial thinning: a Poisson spectrum of rate r becomes exactly one of rate p r),
  so the network sees the noise of runs with fewer counts. Needs integer counts.

Everything is drawn from a generator seeded with the training seed: the same seed, the same
augmented spectra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import ConfigError


def stretch(X: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each row of counts ``X`` stretched along its bins by its factor (> 1 moves counts to higher bins)."""
    n, n_bins = X.shape
    cumulative = np.zeros((n, n_bins + 1))
    np.cumsum(X, axis=1, dtype=np.float64, out=cumulative[:, 1:])
    source = np.arange(n_bins + 1, dtype=np.float64)[None, :] / factors[:, None]  # where each new edge was
    low = np.clip(np.floor(source).astype(np.int64), 0, n_bins)
    high = np.minimum(low + 1, n_bins)
    fraction = np.clip(source - low, 0.0, 1.0)
    rows = np.arange(n)[:, None]
    moved = cumulative[rows, low] * (1.0 - fraction) + cumulative[rows, high] * fraction
    return np.maximum(np.diff(moved, axis=1), 0.0)


def augment_spectra(X: np.ndarray, options: dict[str, Any], *, seed: int, what: str = "training spectra") -> np.ndarray:
    """``X`` followed by ``options["copies"]`` augmented variants of every row (float32)."""
    copies = int(options.get("copies", 0))
    if copies <= 0 or len(X) == 0:
        return np.asarray(X)
    gain, scale = float(options.get("gain", 0.0)), float(options.get("count_scale", 1.0))
    X = np.asarray(X, dtype=np.float32)
    if scale < 1.0 and not np.array_equal(X, np.round(X)):
        raise ConfigError(f"augment.count_scale thins counts, but the {what} hold values that are not "
                          "whole numbers; set count_scale to 1 (off) for data that are not counts")
    rng = np.random.default_rng([seed, 0xA06])
    variants = [X]
    for _ in range(copies):
        Y = X.astype(np.float64)
        if gain > 0:
            Y = stretch(Y, 1.0 + rng.uniform(-gain, gain, size=len(Y)))
        if scale < 1.0:
            keep = np.exp(rng.uniform(np.log(scale), 0.0, size=(len(Y), 1)))
            Y = rng.binomial(np.rint(Y).astype(np.int64), keep).astype(np.float64)
        variants.append(Y.astype(np.float32))
    return np.concatenate(variants)
