"""The fitted normalization as the first layer of a deep model, so the model takes raw spectra.

A model file then needs nothing else to score new data, and likelihoods on raw counts (Poisson)
see the counts while the encoder sees normalized spectra. The layer mirrors
:class:`spectral_anomaly.normalize.SpectrumNormalizer` (same steps, same fitted numbers) in torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


#: normalized values are clipped to +-this before the networks: a value a million training standard
#: deviations out says nothing more about the shape than one at the limit, and larger ones would
#: overflow float32 in the networks' squares and sums (a spectrum far outside the training data)
NORMALIZED_LIMIT = 1e6


class NormalizationLayer(nn.Module):
    """Applies (and inverts) a fitted normalization; ``None`` means the identity.

    The output is clipped to +-:data:`NORMALIZED_LIMIT`, which normal spectra never reach.
    """

    def __init__(self, normalization: dict[str, Any] | None) -> None:
        super().__init__()
        self.steps = list(normalization["steps"]) if normalization else []
        for i, (step, params) in enumerate(zip(self.steps, normalization["params"] if normalization else [])):
            if "mean" in params:
                self.register_buffer(f"mean_{i}", torch.tensor(params["mean"], dtype=torch.float32))
            if step == "standardize":
                self.register_buffer(f"scale_{i}", torch.tensor(params["std"], dtype=torch.float32))
            elif step == "center_maxabs":
                self.register_buffer(f"scale_{i}", torch.tensor(float(params["scale"]), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / scale is computed as x * (1 / scale) + (-mean / scale): one pass over the
        # spectra instead of two (the per-bin factors are computed per call from the stored buffers)
        for i, step in enumerate(self.steps):
            if step == "unit_integral":
                totals = x.sum(dim=-1, keepdim=True)
                x = x * torch.where(totals == 0, torch.ones_like(totals), totals).reciprocal()
            elif step == "log1p":
                x = torch.log1p(x)
            else:
                inverse_scale = getattr(self, f"scale_{i}").reciprocal()
                x = torch.addcmul(-getattr(self, f"mean_{i}") * inverse_scale, x, inverse_scale)
        return x.clamp(-NORMALIZED_LIMIT, NORMALIZED_LIMIT)

    def inverse(self, z: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
        """Map normalized spectra back to input units; ``totals`` are the spectra's total counts."""
        for i, step in reversed(list(enumerate(self.steps))):
            if step == "unit_integral":
                z = z * totals.unsqueeze(-1)
            elif step == "log1p":
                z = torch.expm1(z)
            else:
                z = z * getattr(self, f"scale_{i}") + getattr(self, f"mean_{i}")
        return z
