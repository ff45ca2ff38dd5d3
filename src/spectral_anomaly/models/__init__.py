"""Anomaly models: a deterministic autoencoder, a variational autoencoder and a PCA baseline.

The deep models are PyTorch modules built from plain hyperparameters by :func:`build_model`, so a
checkpoint (a dict of simple values plus a state dict) is enough to rebuild one. The PCA
baseline (:mod:`.pca`) is a scikit-learn-style estimator and imports no torch.
"""

from __future__ import annotations

from typing import Any

MODEL_KINDS = ("autoencoder", "vae")


def build_model(hyperparameters: dict[str, Any]) -> Any:
    """Build an untrained model from ``hyperparameters`` (``kind``, ``n_bins``, ``hidden``, ...)."""
    from ..exceptions import ConfigError

    kind = hyperparameters["kind"]
    if kind == "autoencoder":
        from .autoencoder import Autoencoder

        return Autoencoder(**{k: v for k, v in hyperparameters.items() if k != "kind"})
    if kind == "vae":
        from .vae import VariationalAutoencoder

        return VariationalAutoencoder(**{k: v for k, v in hyperparameters.items() if k != "kind"})
    raise ConfigError(f"unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}")
