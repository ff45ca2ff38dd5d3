"""Anomaly models: a deterministic autoencoder, a variational autoencoder and a PCA baseline.

The deep models are PyTorch modules built from plain hyperparameters by :func:`build_model`, so a
checkpoint (a dict of simple values plus a state dict) is enough to rebuild one. They take raw
spectra: the fitted normalization (``hyperparameters["normalization"]``) is their first layer.
The PCA baseline (:mod:`.pca`) is a scikit-learn-style estimator and imports no torch.
"""

from __future__ import annotations

import inspect
from typing import Any

MODEL_KINDS = ("autoencoder", "vae")


def build_model(hyperparameters: dict[str, Any]) -> Any:
    """Build an untrained model from ``hyperparameters`` (``kind``, ``n_bins``, ``latent_dim``, ...).

    Keys the model's constructor does not take (training options such as ``beta``) are ignored here.
    """
    from ..exceptions import ConfigError

    kind = hyperparameters["kind"]
    if kind == "autoencoder":
        from .autoencoder import Autoencoder as model_class
    elif kind == "vae":
        from .vae import VariationalAutoencoder as model_class
    else:
        raise ConfigError(f"unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}")
    accepted = inspect.signature(model_class).parameters
    return model_class(**{k: v for k, v in hyperparameters.items() if k in accepted})
