"""Find anomalous spectra with an autoencoder, a variational autoencoder and a PCA baseline.

The package holds every stage of the ``spectral_anomaly`` Snakemake workflow; each stage is a
subcommand of the ``spectral-anomaly`` program (see :mod:`spectral_anomaly.cli`).
"""

from __future__ import annotations

__version__ = "0.1.0"
