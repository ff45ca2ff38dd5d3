"""Monte-Carlo draws that belong to a spectrum, so that its score does not depend on its batch.

A VAE's ELBO is estimated from K latent draws per spectrum. Drawn from one generator advanced batch
by batch, a spectrum's draws (and so its score) would depend on which spectra were scored before it
and on the batch size. Here each spectrum's draws are a function of ``scoring.seed`` and of the
spectrum itself: its float32 bins are hashed (XXH3-64, seeded with ``scoring.seed``) into a key, and
the key drives a counter-based generator (SplitMix64; two 32-bit uniforms per 64-bit output, turned
into two standard normals by the Box-Muller transform). A spectrum scored alone, in a batch of 100 or
1024, or inside another file gets the same draws; identical spectra get identical draws.
"""

from __future__ import annotations

import numpy as np
import xxhash

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def spectrum_keys(X: np.ndarray, *, seed: int) -> np.ndarray:
    """A 64-bit key per row of ``X`` from its float32 bytes and ``seed``."""
    rows = np.ascontiguousarray(X, dtype=np.float32)
    seed = int(seed) % (1 << 64)
    return np.fromiter((xxhash.xxh3_64_intdigest(row.tobytes(), seed=seed) for row in rows), dtype=np.uint64,
                       count=len(rows))


def _splitmix64(state: np.ndarray) -> np.ndarray:
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def standard_normal_draws(X: np.ndarray, *, seed: int, samples: int, size: int) -> np.ndarray:
    """Standard normal draws of shape ``(samples, n, size)``: for row i of ``X``, a function of that row and ``seed``."""
    n, count = len(X), samples * size
    pairs = (count + 1) // 2
    with np.errstate(over="ignore"):  # the generator's arithmetic is modulo 2^64 by design
        states = spectrum_keys(X, seed=seed)[:, None] + np.arange(1, pairs + 1, dtype=np.uint64)[None, :] * _GOLDEN
        bits = _splitmix64(states)
    scale = 1.0 / 4294967296.0
    u1 = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) * scale  # in (0, 1): the log is finite
    u2 = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * scale
    radius, angle = np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2
    normals = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :count]
    return normals.reshape(n, samples, size).transpose(1, 0, 2).astype(np.float32)
