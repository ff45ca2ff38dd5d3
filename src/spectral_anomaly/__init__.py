"""Find anomalous spectra with an autoencoder, a variational autoencoder and a PCA baseline.

The package holds every stage of the ``spectral_anomaly`` Snakemake workflow; each stage is a
subcommand of the ``spectral-anomaly`` program (see :mod:`spectral_anomaly.cli`).
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_detector(path, **context):
    """The fitted detector stored at ``path`` (a model file ``models/<dataset>/<model>.npz`` of a result
    version), with its normalization and the flag cuts calibrated at training time. ``context`` may give
    the ``device`` to score on. See :class:`spectral_anomaly.models.base.Detector` for ``score`` and ``flag``."""
    from .models import load_detector as load

    return load(path, **context)


__all__ = ["__version__", "load_detector"]
