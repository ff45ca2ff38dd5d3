"""Multi-layer perceptrons for encoders and decoders."""

from __future__ import annotations

from torch import nn

from ..exceptions import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softsign": nn.Softsign,
}


def build_mlp(sizes: list[int], *, activation: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, ``activation`` between them (not after the last)."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; valid activations: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
