"""Encoder and decoder networks: multi-layer perceptrons and 1-D convolutions over the bins.

Encoders map spectra ``(batch, n_bins)`` to features ``(batch, width)``; decoders map latent codes
``(..., latent_dim)`` to ``(..., channels, n_bins)`` (one channel per predicted quantity: a mean,
or a mean and a width). The convolutional pair halves the binning at every layer (stride 2) and
mirrors it back with transposed convolutions, so neighbouring bins share weights: peaks are
learned once, wherever they sit.
"""

from __future__ import annotations

import torch
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
ARCHITECTURES = ("mlp", "conv")


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def build_mlp(sizes: list[int], *, activation: str, final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation_layer(activation))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Sequential):
    """``n_bins -> hidden[0] -> ... -> hidden[-1]`` with an activation after every layer."""

    def __init__(self, *, n_bins: int, hidden: list[int], activation: str) -> None:
        super().__init__(*build_mlp([n_bins, *hidden], activation=activation, final_activation=True))
        self.out_features = hidden[-1] if hidden else n_bins


class MLPDecoder(nn.Sequential):
    """``latent_dim -> reversed(hidden) -> channels * n_bins``, reshaped to ``(..., channels, n_bins)``."""

    def __init__(self, *, latent_dim: int, n_bins: int, hidden: list[int], activation: str, channels: int = 1) -> None:
        super().__init__(*build_mlp([latent_dim, *reversed(hidden), channels * n_bins], activation=activation))
        self.channels, self.n_bins = channels, n_bins

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z).unflatten(-1, (self.channels, self.n_bins))


def _conv_lengths(n_bins: int, n_layers: int) -> list[int]:
    """Lengths after each stride-2 layer (odd kernel, 'same' padding): ceil(L / 2) each time."""
    lengths = [n_bins]
    for _ in range(n_layers):
        lengths.append((lengths[-1] + 1) // 2)
    return lengths


class ConvEncoder(nn.Module):
    """Stride-2 1-D convolutions ``1 -> conv_channels[0] -> ...``, flattened."""

    def __init__(self, *, n_bins: int, conv_channels: list[int], kernel_size: int, activation: str) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {kernel_size}")
        layers: list[nn.Module] = []
        for c_in, c_out in zip([1, *conv_channels[:-1]], conv_channels):
            layers += [nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2), activation_layer(activation)]
        self.net = nn.Sequential(*layers)
        self.out_features = conv_channels[-1] * _conv_lengths(n_bins, len(conv_channels))[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(-2)).flatten(-2)


class ConvDecoder(nn.Module):
    """A linear layer to the encoder's smallest length, then stride-2 transposed convolutions back."""

    def __init__(
        self, *, latent_dim: int, n_bins: int, conv_channels: list[int], kernel_size: int, activation: str, channels: int = 1
    ) -> None:
        super().__init__()
        self.n_bins, self.width = n_bins, conv_channels[-1]
        self.length = _conv_lengths(n_bins, len(conv_channels))[-1]
        self.project = nn.Sequential(nn.Linear(latent_dim, self.width * self.length), activation_layer(activation))
        widths = [*reversed(conv_channels), channels]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.ConvTranspose1d(c_in, c_out, kernel_size=4, stride=2, padding=1))  # doubles the length
            if i < len(widths) - 2:
                layers.append(activation_layer(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        leading = z.shape[:-1]
        h = self.project(z.reshape(-1, z.shape[-1])).unflatten(-1, (self.width, self.length))
        out = self.net(h)[..., : self.n_bins]
        return out.reshape(*leading, *out.shape[-2:])


def build_encoder(architecture: str, *, n_bins: int, hidden: list[int], conv_channels: list[int],
                  kernel_size: int, activation: str) -> nn.Module:
    """An encoder of the given architecture; its ``out_features`` is the feature width."""
    if architecture == "mlp":
        return MLPEncoder(n_bins=n_bins, hidden=hidden, activation=activation)
    if architecture == "conv":
        return ConvEncoder(n_bins=n_bins, conv_channels=conv_channels, kernel_size=kernel_size, activation=activation)
    raise ConfigError(f"unknown architecture {architecture!r}; valid architectures: {', '.join(ARCHITECTURES)}")


def build_decoder(architecture: str, *, latent_dim: int, n_bins: int, hidden: list[int], conv_channels: list[int],
                  kernel_size: int, activation: str, channels: int) -> nn.Module:
    """A decoder of the given architecture producing ``(..., channels, n_bins)``."""
    if architecture == "mlp":
        return MLPDecoder(latent_dim=latent_dim, n_bins=n_bins, hidden=hidden, activation=activation, channels=channels)
    if architecture == "conv":
        return ConvDecoder(latent_dim=latent_dim, n_bins=n_bins, conv_channels=conv_channels, kernel_size=kernel_size,
                           activation=activation, channels=channels)
    raise ConfigError(f"unknown architecture {architecture!r}; valid architectures: {', '.join(ARCHITECTURES)}")
