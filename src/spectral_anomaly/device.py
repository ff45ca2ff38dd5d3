"""The one place where ``device: auto | cpu | cuda`` is turned into a torch device."""

from __future__ import annotations

import glob
import logging
import os

from .exceptions import ConfigError
from .text import counted

log = logging.getLogger(__name__)
DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: files that exist where a GPU is present: NVIDIA's driver lists each GPU, AMD's ROCm has one device file
GPU_DEVICE_FILES = ("/proc/driver/nvidia/gpus/*", "/dev/nvidia[0-9]*", "/dev/kfd")
#: values of CUDA_VISIBLE_DEVICES (or HIP_VISIBLE_DEVICES) that hide every GPU
HIDDEN = ("", "-1")


def gpu_visible() -> bool:
    """Whether this machine shows its processes a GPU, told without importing torch (the workflow asks it
    while planning): a GPU device file exists (:data:`GPU_DEVICE_FILES`) and ``CUDA_VISIBLE_DEVICES``
    and ``HIP_VISIBLE_DEVICES``, where set, do not hide every GPU."""
    for variable in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        if os.environ.get(variable, "unset").strip() in HIDDEN:
            return False
    return any(glob.glob(pattern) for pattern in GPU_DEVICE_FILES)


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
        log.info("device: cpu (%s)", counted(torch.get_num_threads(), "thread"))
    return device


def set_torch_threads(threads: int) -> None:
    """Let torch compute on ``threads`` CPU threads in this process: a training job's share of the cores.

    Called once at the start of a job, before any model is built; it sets a process-wide value, so
    library code never calls it.
    """
    import torch

    if threads < 1:
        raise ConfigError(f"CPU threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def describe_device(device: str) -> str:
    """A human-readable name of the device, e.g. ``cuda (NVIDIA H100 80GB HBM3)``."""
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({counted(torch.get_num_threads(), 'thread')})"
