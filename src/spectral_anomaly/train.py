"""Training of the deep models: one short loop, early stopping, a checkpoint that scores new data.

The loop keeps the training spectra in one tensor on the device and draws a seeded permutation
per epoch (no DataLoader: it is slower for in-memory data). On a GPU the spectra stay on the device
when they fit in half its free memory (:func:`fits_on_device`); otherwise they stay in pinned host
memory and each batch is copied over while the previous one trains. The loop never waits for the
device inside an epoch (losses are summed on the device and read once per epoch), uses Adam's
fused kernel where the torch build has it, and can run under bf16 autocast (``precision: bf16``)
and ``torch.compile`` (``compile: true``). The validation loss is computed in large batches under
``torch.inference_mode()`` on at most ``validation_max_spectra`` spectra (a seeded subset, the
same every epoch). Each epoch logs its losses and time.
The VAE's KL term is weighted by ``beta``, warmed up linearly over ``beta_warmup_epochs``
(hyperparameters; defaults 1 and 0). With a ``checkpoint_path`` the whole training state is
written after every epoch, so a killed job resumes where it stopped (:mod:`.resume`).
The checkpoint is a plain dict of simple values plus state dicts: model hyperparameters and
weights, optimizer state, epochs, best validation loss, the fitted normalization, seed, device and
package version, so :func:`load_model` can rebuild the model anywhere with ``map_location``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from .atomic import atomic_path
from .exceptions import InputFileError, SpectralAnomalyError, TrainingError
from .formats import FORMAT_VERSIONS, check_format_version
from .models import build_model
from .normalize import SpectrumNormalizer
from .resume import (
    describe_data,
    remove_resume_checkpoint,
    resume_training,
    write_resume_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """The trained model (best validation epoch), its per-epoch history and a summary."""

    model: torch.nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_validation_loss: float
    optimizer_state: dict[str, Any]
    resumed_from_epoch: int = 0  # the last epoch of the checkpoint this run continued from; 0: none


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so a run is reproducible on the same device."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _make_optimizer(model: torch.nn.Module, learning_rate: float, device: str) -> torch.optim.Optimizer:
    try:  # the fused kernel is faster on both CPU and CUDA where this torch build has it
        return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=learning_rate)


PRECISIONS = ("fp32", "bf16")
#: share of the device's free memory that the training spectra may take to be kept on the device
DEVICE_MEMORY_SHARE = 0.5
#: spectra per batch of the validation loss (forward only, so much larger than a training batch)
VALIDATION_BATCH_SIZE = 4096


def fits_on_device(n_bytes: int, *, free_bytes: int, share: float = DEVICE_MEMORY_SHARE) -> bool:
    """Whether ``n_bytes`` of training data may live on a device with ``free_bytes`` free.

    At most ``share`` of the free memory is taken, leaving the rest to weights, optimizer state,
    activations and the allocator.
    """
    return n_bytes <= share * free_bytes


def validation_subset(n_validation: int, max_spectra: int | None, *, seed: int) -> np.ndarray | None:
    """Rows of the validation split the per-epoch validation loss uses: ``None`` (all of them) when
    there are at most ``max_spectra`` (or no bound), else a seeded sorted sample of ``max_spectra``."""
    if not max_spectra or n_validation <= max_spectra:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_validation, size=max_spectra, replace=False))


def _autocast(device: str, precision: str):
    """bf16 autocast on ``device`` for ``precision: bf16``, else a context that changes nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _validation_loss(model: torch.nn.Module, X: torch.Tensor, *, batch_size: int, seed: int, kl_weight: float,
                     device: str, precision: str = "fp32", normalized_input: bool = False) -> float:
    """Mean per-spectrum loss over ``X`` in eval mode, with the same Monte-Carlo draws every epoch."""
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode(), _autocast(device, precision):
        for start in range(0, len(X), batch_size):
            batch = X[start : start + batch_size].to(device, non_blocking=True)
            loss = model.training_loss(batch, generator=generator, kl_weight=kl_weight, normalized_input=normalized_input)
            total += loss.double() * len(batch)
    return float(total) / len(X)


#: bytes of spectra normalized at a time: small enough that the allocator reuses the temporaries
#: of one block for the next instead of mapping (and page-faulting) fresh memory for each
NORMALIZATION_BLOCK_BYTES = 4 << 20


def _normalized(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """A new tensor (on the host): ``X`` through the model's normalization layer, block by block."""
    layer = copy.deepcopy(model.normalize).cpu()
    block_rows = max(1, NORMALIZATION_BLOCK_BYTES // max(1, X[:1].nbytes))
    out = torch.empty_like(X)  # not in place: X may share its memory with the caller's array
    with torch.no_grad():
        for start in range(0, len(X), block_rows):
            out[start : start + block_rows] = layer(X[start : start + block_rows])
    return out


class _HostBatches:
    """Batches gathered from training spectra in pinned host memory and copied to the GPU asynchronously.

    Two pinned buffers alternate, so the gather of the next batch overlaps the copy and the
    training step of the current one; an event per buffer keeps a buffer from being refilled while
    its copy is still running.
    """

    def __init__(self, data: torch.Tensor, *, batch_size: int, device: str) -> None:
        self.data, self.device = data.pin_memory(), device
        self.buffers = [torch.empty((batch_size, *data.shape[1:]), dtype=data.dtype).pin_memory() for _ in range(2)]
        self.events: list[Any] = [None, None]
        self.turn = 0

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        i, self.turn = self.turn, 1 - self.turn
        if self.events[i] is not None:
            self.events[i].synchronize()
        buffer = self.buffers[i][: len(rows)]
        torch.index_select(self.data, 0, rows, out=buffer)
        batch = buffer.to(self.device, non_blocking=True)
        self.events[i] = torch.cuda.Event()
        self.events[i].record()
        return batch


def train_model(
    hyperparameters: dict[str, Any],
    X_train: np.ndarray,
    X_validation: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    min_delta: float = 0.0,
    seed: int,
    device: str,
    checkpoint_path: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    compile: bool = False,
    validation_max_spectra: int | None = None,
) -> TrainingResult:
    """Build the model from ``hyperparameters`` and train it with Adam on mini-batches.

    The seed fixes the initial weights, the batch order and the Monte-Carlo draws, so the same
    data and seed give the same model on the same device and thread count. The KL weight of
    training batches is ``beta * min(1, epoch / beta_warmup_epochs)``; the validation loss always
    uses the full ``beta``. Training stops after ``patience`` epochs without validation gain,
    counted from the end of the warm-up. The model returned holds the weights of the epoch with
    the lowest validation loss. A non-finite loss stops training with :class:`TrainingError`
    naming the epoch.

    With ``checkpoint_path``, the training state is written there after every epoch; a run that
    finds a checkpoint of the same settings and data there continues after its epoch and returns
    what an uninterrupted run would (apart from the ``seconds`` column). The file is deleted
    when training ends.

    ``precision: bf16`` runs forward and backward passes under bf16 autocast (weights, optimizer
    state and the summed losses stay float32); ``compile`` wraps the loss in ``torch.compile``.
    ``validation_max_spectra`` bounds the spectra of the per-epoch validation loss (a seeded subset).
    """
    beta, warmup = float(hyperparameters.get("beta", 1.0)), int(hyperparameters.get("beta_warmup_epochs", 0))
    seed_everything(seed)
    model = build_model(hyperparameters).to(device)
    subset = validation_subset(len(X_validation), validation_max_spectra, seed=seed + 3)
    validation = torch.as_tensor(X_validation if subset is None else X_validation[subset], dtype=torch.float32)
    train = torch.as_tensor(X_train, dtype=torch.float32)
    normalized_input = bool(getattr(model, "trains_on_normalized", False))
    if normalized_input:  # normalize once here, not in every batch of every epoch
        train, validation = _normalized(model, train), _normalized(model, validation)
    on_device = torch.device(device).type != "cuda" or fits_on_device(
        train.nbytes + validation.nbytes, free_bytes=torch.cuda.mem_get_info(torch.device(device))[0])
    if on_device:
        train, validation = train.to(device), validation.to(device)
        gather = functools.partial(torch.index_select, train, 0)  # much faster than train[rows] on the CPU
    else:
        log.info("training spectra (%.2f GB) exceed half the free GPU memory: batches are copied from pinned host memory",
                 train.nbytes / 1e9)
        gather = _HostBatches(train, batch_size=batch_size, device=device)
    loss_function = functools.partial(torch.compile(model.training_loss) if compile else model.training_loss,
                                      normalized_input=normalized_input)
    optimizer = _make_optimizer(model, learning_rate, device)
    order_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
    best_loss, best_epoch, best_state, since_best, rows, first_epoch = math.inf, 0, None, 0, [], 1
    generators = {"order_generator": order_generator, "noise_generator": noise_generator}
    if checkpoint_path is not None:
        settings = {"hyperparameters": dict(hyperparameters), "data": describe_data(X_train, X_validation),
                    "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                                 "patience": patience, "min_delta": min_delta, "seed": seed, "device": str(device),
                                 "precision": precision, "validation_max_spectra": validation_max_spectra}}
        if os.path.exists(checkpoint_path):
            state = resume_training(checkpoint_path, settings=settings, model=model, optimizer=optimizer, **generators)
            first_epoch, rows, best_loss = state["epoch"] + 1, state["history"], state["best_validation_loss"]
            best_epoch, since_best = state["best_epoch"], state["epochs_since_best"]
            best_state = {k: v.to(device) for k, v in state["best_state"].items()}
            log.info("resuming from epoch %d of %s (continuing at epoch %d)", state["epoch"], checkpoint_path, first_epoch)
    for epoch in range(first_epoch, epochs + 1):
        started = time.perf_counter()
        kl_weight = beta * min(1.0, epoch / warmup) if warmup > 0 else beta
        model.train()
        order = torch.randperm(len(train), generator=order_generator)
        if on_device:
            order = order.to(device)
        running = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no wait per step
        for start in range(0, len(train), batch_size):
            batch_rows = order[start : start + batch_size]
            with _autocast(device, precision):
                loss = loss_function(gather(batch_rows), generator=noise_generator, kl_weight=kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach().double() * len(batch_rows)
        train_loss = float(running) / len(train)
        validation_loss = _validation_loss(model, validation, batch_size=max(batch_size, VALIDATION_BATCH_SIZE),
                                           seed=seed + 2, kl_weight=beta, device=device, precision=precision,
                                           normalized_input=normalized_input)
        seconds = time.perf_counter() - started
        if not (math.isfinite(train_loss) and math.isfinite(validation_loss)):
            if checkpoint_path is not None:  # resuming would only diverge again
                remove_resume_checkpoint(checkpoint_path)
            raise TrainingError(
                f"loss became non-finite at epoch {epoch} (train {train_loss}, validation {validation_loss}); "
                f"try a lower learning_rate than {learning_rate} or check the normalization"
            )
        improved = validation_loss < best_loss - min_delta
        if improved:
            best_loss, best_epoch, since_best = validation_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch > warmup:  # patience counts only the epochs after the warm-up
            since_best += 1
        rows.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": validation_loss,
                     "kl_weight": kl_weight, "seconds": seconds, "best": improved})
        log.info("epoch %4d/%d  train_loss %12.4f  validation_loss %12.4f  kl_weight %.3g  %6.2f s%s",
                 epoch, epochs, train_loss, validation_loss, kl_weight, seconds, "  *" if improved else "")
        if since_best >= patience:
            log.info("early stop: no validation improvement for %d epochs; best epoch %d (%.4f)",
                     patience, best_epoch, best_loss)
            break
        if checkpoint_path is not None and epoch < epochs:
            write_resume_checkpoint(checkpoint_path, settings=settings, model=model, optimizer=optimizer, **generators,
                                    epoch=epoch, history=rows, best_validation_loss=best_loss, best_epoch=best_epoch,
                                    best_state=best_state, epochs_since_best=since_best)
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    if checkpoint_path is not None:
        remove_resume_checkpoint(checkpoint_path)
    return TrainingResult(model=model, history=pd.DataFrame(rows), best_epoch=best_epoch,
                          best_validation_loss=best_loss, optimizer_state=optimizer.state_dict(),
                          resumed_from_epoch=first_epoch - 1)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    result: TrainingResult,
    hyperparameters: dict[str, Any],
    normalizer: SpectrumNormalizer,
    training: dict[str, Any],
    dataset: str,
    model_name: str,
    device: str,
    device_name: str,
) -> None:
    """Write the checkpoint atomically."""
    checkpoint = {
        "format_version": FORMAT_VERSIONS["model"],
        "package_version": __version__,
        "dataset": dataset,
        "model_name": model_name,
        "hyperparameters": hyperparameters,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "optimizer_state": result.optimizer_state,
        "normalization": normalizer.to_dict(),
        "training": training,
        "epochs_trained": int(result.history["epoch"].max()),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "device": device,
        "device_name": device_name,
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; only tensors and plain values are unpickled (``weights_only``)."""
    if not os.path.exists(path):
        raise InputFileError(f"{path}: model file not found; run the workflow's train step")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        check_format_version(checkpoint.get("format_version"), kind="model", path=path)
    except SpectralAnomalyError:
        raise
    except Exception as error:
        raise InputFileError(f"{path}: not a readable model file ({error}); delete it and rerun training") from None
    return checkpoint


def load_model(path: str | os.PathLike[str], *, map_location: str = "cpu") -> tuple[torch.nn.Module, SpectrumNormalizer, dict[str, Any]]:
    """Rebuild the trained model, its normalization and the checkpoint dict from ``path``."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    model = build_model(checkpoint["hyperparameters"])
    model.load_state_dict(checkpoint["state_dict"])
    model.to(map_location).eval()
    return model, SpectrumNormalizer.from_dict(checkpoint["normalization"]), checkpoint
