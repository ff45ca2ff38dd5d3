"""Resume a killed training job: the whole training state after every epoch, checked before use.

:func:`~.train.train_network` writes a resume checkpoint after every epoch (atomically; by the
workflow beside the model file as ``<model>.npz.checkpoint``) and deletes it when training ends.
It is a plain dict of simple values and tensors: model and optimizer state, the epoch, the
history so far, the best epoch and its weights, and the random generator states, so a resumed
run ends with the same weights and history as one that was never interrupted. It also holds the
settings that determine the run (hyperparameters, training options and a fingerprint of the
data); a checkpoint written with other settings, or one that cannot be read, is refused with a
message naming the file, never silently continued.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from ..exceptions import ConfigError, InputFileError
from .atomic import atomic_path

CHECKPOINT_KIND = "spectral_anomaly training checkpoint"
CHECKPOINT_VERSION = 1
#: what a resume checkpoint holds besides its kind, version and settings
STATE_KEYS = ("epoch", "model", "optimizer", "history", "best_validation_loss", "best_epoch", "best_state",
              "epochs_since_best", "order_rng", "noise_rng", "torch_rng")


def describe_data(X_train: np.ndarray, X_validation: np.ndarray) -> dict[str, Any]:
    """Sizes and a hash of shapes, dtypes and values: a checkpoint is only resumed on the same data.

    XXH3 (128 bits) rather than sha256: it tells data apart as surely for this purpose and runs at
    memory speed, so hashing a large training set costs milliseconds, not a second per job.
    """
    digest = xxhash.xxh3_128()
    for array in (X_train, X_validation):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape} {array.dtype.str};".encode())
        digest.update(array.data)
    return {"n_train": len(X_train), "n_validation": len(X_validation), "xxh3_128": digest.hexdigest()}


def write_resume_checkpoint(
    path: str | os.PathLike[str], *, settings: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    order_generator: torch.Generator, noise_generator: torch.Generator, **progress: Any,
) -> None:
    """Write ``settings``, the model, optimizer and generator states and ``progress`` atomically to ``path``.

    ``progress`` holds the loop's own variables: ``epoch``, ``history``, ``best_validation_loss``,
    ``best_epoch``, ``best_state`` and ``epochs_since_best``.
    """
    checkpoint = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "settings": settings, **progress,
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "order_rng": order_generator.get_state(), "noise_rng": noise_generator.get_state(),
                  "torch_rng": torch.get_rng_state()}
    if noise_generator.device.type == "cuda":
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state(noise_generator.device)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def resume_training(
    path: str | os.PathLike[str], *, settings: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    order_generator: torch.Generator, noise_generator: torch.Generator,
) -> dict[str, Any]:
    """Restore the model, optimizer and generators from the checkpoint at ``path``; return the checkpoint.

    The checkpoint must have been written with the same ``settings`` (see :func:`read_resume_checkpoint`).
    Its ``best_state`` stays on the CPU.
    """
    checkpoint = read_resume_checkpoint(path, settings=settings)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    order_generator.set_state(checkpoint["order_rng"])
    noise_generator.set_state(checkpoint["noise_rng"])
    torch.set_rng_state(checkpoint["torch_rng"])
    if "cuda_rng" in checkpoint:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"], noise_generator.device)
    return checkpoint


def read_resume_checkpoint(path: str | os.PathLike[str], *, settings: dict[str, Any]) -> dict[str, Any]:
    """Load the checkpoint at ``path`` (tensors on the CPU) if it was written with the same ``settings``.

    Raises :class:`InputFileError` for a file that is not a readable checkpoint of this version and
    :class:`ConfigError` listing the differing settings; both say to delete the file to start afresh.
    """
    afresh = f"delete {path} to train from epoch 1"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputFileError(f"{path}: not a readable training checkpoint ({error}); {afresh}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
        raise InputFileError(f"{path}: not a training checkpoint of spectral_anomaly; {afresh}")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise InputFileError(f"{path}: training checkpoint of format version {checkpoint.get('version')!r}, "
                             f"this version resumes only version {CHECKPOINT_VERSION}; {afresh}")
    missing = [key for key in ("settings", *STATE_KEYS) if key not in checkpoint]
    if "settings" not in missing and not isinstance(checkpoint["settings"], dict):
        missing.append("settings")
    if missing:
        raise InputFileError(f"{path}: training checkpoint lacks {', '.join(missing)}; {afresh}")
    differences = []
    for group, now in settings.items():
        then = checkpoint["settings"].get(group) or {}
        for key in sorted(set(then) | set(now)):
            if (key in then, then.get(key)) != (key in now, now.get(key)):
                differences.append(f"{group}.{key}: {_shown(then, key)} there, {_shown(now, key)} now")
    if differences:
        raise ConfigError(f"{path}: training checkpoint was written with other settings ({'; '.join(differences)}); "
                          f"{afresh} with the current settings, or restore the old settings to resume it")
    return checkpoint


def _shown(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "(absent)"


def remove_resume_checkpoint(path: str | os.PathLike[str]) -> None:
    """Delete the checkpoint at ``path`` if there is one."""
    Path(path).unlink(missing_ok=True)
