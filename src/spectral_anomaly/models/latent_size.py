"""The size of a latent space, chosen from the training and validation spectra alone (``auto``).

A detector's latent space should hold the directions in which normal spectra really vary and no
more: a larger one also learns to reproduce what is unusual, a smaller one misses normal variation.
Both are judged here by held-out likelihood, without anomaly labels. Probabilistic PCA is fitted on
the normalized training spectra for k = 1, 2, ... components, and each fit's log-likelihood of the
normalized validation spectra is computed (k = 0 is an isotropic Gaussian). The size is the
smallest k after which one more component raises that held-out log-likelihood by less than
:data:`NATS_PER_COMPONENT` nats per spectrum (odds of e to 1 per spectrum), or by less than
:data:`RELATIVE_GAIN` of the largest gain of any component: a component that does not make unseen
normal spectra clearly more likely describes noise or the training set, not the spectra. The
relative test matters after per-bin standardization, which gives bins of different noise levels
the same spread: the noise then looks structured, and each of its directions gains a few nats. Every deep detector and
the PCA baseline of a run that asks for ``auto`` gets the same size from the same spectra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the held-out log-likelihood gain, in nats per validation spectrum, that keeps one more component
NATS_PER_COMPONENT = 1.0
#: ... and this share of the largest gain of any component
RELATIVE_GAIN = 0.05
#: the largest size considered
MAX_LATENT_SIZE = 32
#: bytes of float64 training spectra the choice looks at, at most (a seeded subsample of larger sets)
MAX_BYTES = 64 << 20


def held_out_log_likelihoods(fit: np.ndarray, held_out: np.ndarray, largest: int) -> np.ndarray:
    """Mean probabilistic-PCA log-likelihood of the ``held_out`` rows for 0 .. ``largest`` components fitted on ``fit``.

    One SVD of the centred fit rows gives every size at once: for k components the model has the k
    leading axes with their variances and, off them, an isotropic noise variance equal to the mean of
    the remaining eigenvalues (Tipping and Bishop's maximum-likelihood solution).
    """
    n, d = fit.shape
    mean = fit.mean(axis=0)
    _, singular, axes = np.linalg.svd(fit - mean, full_matrices=False)
    variances = singular**2 / max(n - 1, 1)
    residual = held_out - mean
    squared = (residual**2).sum(axis=1)
    projected = (residual @ axes[:largest].T) ** 2  # (n_held_out, largest)
    total = variances.sum()
    result = []
    for k in range(0, largest + 1):
        noise = max((total - variances[:k].sum()) / (d - k), 1e-300)
        in_subspace = (projected[:, :k] / variances[:k]).sum(axis=1)
        off_subspace = (squared - projected[:, :k].sum(axis=1)) / noise
        log_det = np.log(variances[:k]).sum() + (d - k) * np.log(noise)
        result.append(float(np.mean(-0.5 * (d * np.log(2.0 * np.pi) + log_det + in_subspace + off_subspace))))
    return np.asarray(result)


def choose_latent_size(normalization: Any, train: np.ndarray, validation: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """The latent size for ``auto`` and why: ``{"value", "reason", "held_out_log_likelihood"}``."""
    rng = np.random.default_rng(seed)
    limit = max(2, MAX_BYTES // (8 * train.shape[1]))
    rows = np.sort(rng.choice(len(train), limit, replace=False)) if len(train) > limit else slice(None)
    fit = normalization.transform(np.asarray(train[rows])).astype(np.float64)
    held_out = normalization.transform(np.asarray(validation[: limit])).astype(np.float64)
    largest = int(min(MAX_LATENT_SIZE, fit.shape[1] - 1, len(fit) - 2))
    if len(held_out) == 0 or largest < 2:
        return {"value": 1, "reason": "too few spectra to judge by held-out likelihood: the smallest size",
                "held_out_log_likelihood": []}
    likelihoods = held_out_log_likelihoods(fit, held_out, largest)
    gains = np.diff(likelihoods)  # gains[k - 1]: what component k adds
    enough = np.maximum(NATS_PER_COMPONENT, RELATIVE_GAIN * gains.max(initial=0.0))
    small = np.flatnonzero(gains[1:] < enough)  # component 1 is always kept
    value = int(small[0]) + 1 if len(small) else largest
    shown = ", ".join(f"{g:+.2f}" for g in gains[: value + 1])
    reason = (f"held-out probabilistic-PCA log-likelihood of {len(held_out)} validation spectra: components "
              f"1..{min(value + 1, largest)} add {shown} nats per spectrum; {value} kept, since the next adds less "
              f"than {enough:.3g} (at least {NATS_PER_COMPONENT:g} nat and {RELATIVE_GAIN:.0%} of the largest gain)"
              if len(small) else f"every component up to {largest} adds at least {enough:.3g} nats per validation spectrum")
    return {"value": value, "reason": reason, "held_out_log_likelihood": [round(float(v), 4) for v in likelihoods[: value + 2]]}
