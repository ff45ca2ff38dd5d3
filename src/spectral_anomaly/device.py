"""The one place where ``device: auto | cpu | cuda`` is turned into a torch device."""

from __future__ import annotations

import logging

from .exceptions import ConfigError

log = logging.getLogger(__name__)
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str) -> str:
    """Return ``'cuda'`` or ``'cpu'``: ``auto`` takes CUDA when a GPU is visible, else the CPU.

    ``cuda`` without a visible GPU is an error rather than a silent fallback, so a job meant for a
    GPU node never trains for hours on a CPU by mistake.
    """
    import torch

    if requested not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {requested!r}; valid devices: {', '.join(DEVICE_CHOICES)}")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise ConfigError(
            "device 'cuda' was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "use device: auto to fall back to the CPU, or run on a GPU node"
        )
    device = "cuda" if requested == "cuda" or (requested == "auto" and available) else "cpu"
    if device == "cuda":
        log.info("device: cuda (%s)", torch.cuda.get_device_name(0))
    else:
        log.info("device: cpu (%d threads)", torch.get_num_threads())
    return device


def describe_device(device: str) -> str:
    """A human-readable name of the device, e.g. ``cuda (NVIDIA H100 80GB HBM3)``."""
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"
