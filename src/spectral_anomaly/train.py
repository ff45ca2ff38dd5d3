"""Training of the deep detectors' networks: one short loop, with what it needs beside it.

:func:`train_network` is the loop: an epoch draws a seeded permutation of the training spectra,
steps Adam over its batches, computes the validation loss, keeps the best weights, stops early,
and writes a resume checkpoint. The helpers below it keep the loop short:

- :class:`TrainingData`: normalized spectra (and the raw counts where the likelihood needs them)
  in one tensor each, normalized once up front (no DataLoader: it is slower for in-memory data);
- :func:`batch_source`: where batches come from: the device, when the spectra fit in half of a
  GPU's free memory (:func:`fits_on_device`), or pinned host memory with asynchronous copies;
- :func:`_make_optimizer` (Adam's fused kernel where the torch build has it), :func:`_autocast`
  (``precision: bf16``), :func:`validation_loss` (large batches under ``torch.inference_mode()``
  on at most ``validation_max_spectra`` spectra, a seeded subset, the same every epoch);
- resuming: :func:`start_or_resume` and :func:`.store.resume.write_resume_checkpoint` hold the whole
  training state after every epoch, so a killed job continues where it stopped.

The loop never waits for the device inside an epoch (losses are summed on the device and read once
per epoch). Each epoch logs its losses and time. The VAE's KL term is weighted by ``beta``, warmed
up linearly over ``beta_warmup_epochs``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .exceptions import TrainingError
from .store.resume import (
    describe_data,
    remove_resume_checkpoint,
    resume_training,
    write_resume_checkpoint,
)
from .text import counted

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
#: share of the device's free memory that the training spectra may take to be kept on the device
DEVICE_MEMORY_SHARE = 0.5
#: spectra per batch of the validation loss (forward only, so much larger than a training batch)
VALIDATION_BATCH_SIZE = 4096
#: bytes of spectra normalized at a time: small enough that the temporaries stay in the CPU cache
NORMALIZATION_BLOCK_BYTES = 4 << 20


@dataclass
class TrainingResult:
    """The trained network (best validation epoch), its per-epoch history and a summary."""

    model: torch.nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_validation_loss: float
    optimizer_state: dict[str, Any]
    resumed_from_epoch: int = 0  # the last epoch of the checkpoint this run continued from; 0: none


@dataclass
class TrainingData:
    """Spectra a network trains on: normalized, and the raw counts where its likelihood needs them."""

    normalized: torch.Tensor
    counts: torch.Tensor | None = None

    @classmethod
    def of(cls, normalizer: Any, X: np.ndarray, *, counts: bool) -> TrainingData:
        """``X`` normalized once, in blocks that stay in the CPU cache, into one float32 tensor."""
        rows = max(1, NORMALIZATION_BLOCK_BYTES // max(1, 4 * X.shape[1]))
        normalized = torch.empty(X.shape, dtype=torch.float32)
        for start in range(0, len(X), rows):
            normalized[start : start + rows] = torch.from_numpy(normalizer.transform(X[start : start + rows]))
        return cls(normalized, torch.as_tensor(np.asarray(X), dtype=torch.float32) if counts else None)

    def __len__(self) -> int:
        return len(self.normalized)

    @property
    def nbytes(self) -> int:
        return self.normalized.nbytes + (0 if self.counts is None else self.counts.nbytes)

    def rows(self, rows: np.ndarray | None) -> TrainingData:
        """The spectra of ``rows`` (all for None)."""
        if rows is None:
            return self
        index = torch.as_tensor(rows)
        return TrainingData(self.normalized[index], None if self.counts is None else self.counts[index])

    def to(self, device: str) -> TrainingData:
        return TrainingData(self.normalized.to(device), None if self.counts is None else self.counts.to(device))



def train_network(
    network: torch.nn.Module, train: TrainingData, validation: TrainingData, *, options: dict[str, Any],
    seed: int, device: str, kl_weights: tuple[float, int] = (1.0, 0), checkpoint_path: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> TrainingResult:
    """Train ``network`` with Adam on mini-batches of ``train``; early-stop on ``validation``.

    Build the network after :func:`seed_everything` of the same seed, so its initial weights follow
    the seed too.

    ``options``: the config's ``training`` section (epochs, batch_size, learning_rate, patience,
    min_delta, precision, compile, validation_max_spectra). The seed fixes the initial weights, the
    batch order and the Monte-Carlo draws, so the same data and seed give the same network on the same
    device and thread count. The KL weight of training batches is ``beta * min(1, epoch / warmup)``
    (``kl_weights = (beta, warmup)``); the validation loss always uses the full ``beta``. Training stops
    after ``patience`` epochs without validation gain, counted from the end of the warm-up, and returns
    the weights of the best epoch. A non-finite loss stops it with :class:`TrainingError`.

    With ``checkpoint_path``, the training state is written there after every epoch; a run that finds
    a checkpoint of the same ``settings``, options and data there continues after its epoch and returns
    what an uninterrupted run would (apart from the ``seconds`` column). The file is deleted at the end.
    """
    beta, warmup = kl_weights
    epochs, batch_size = int(options["epochs"]), int(options["batch_size"])
    network.to(device)
    resume = _Resume(checkpoint_path, settings={**(settings or {}), "data": fingerprint(train, validation),
                                                "training": {**_run_options(options), "seed": seed, "device": str(device)}})
    validation = validation.rows(validation_subset(len(validation), options["validation_max_spectra"] or None,
                                                   seed=seed + 3))
    gather, train, validation = batch_source(train, validation, batch_size=batch_size, device=device)
    loss_function = torch.compile(network.training_loss) if options["compile"] else network.training_loss
    optimizer = _make_optimizer(network, float(options["learning_rate"]))
    generators = {"order_generator": torch.Generator().manual_seed(seed),
                  "noise_generator": torch.Generator(device=device).manual_seed(seed + 1)}
    state = resume.start(network, optimizer, **generators)
    for epoch in range(state.first_epoch, epochs + 1):
        started = time.perf_counter()
        kl_weight = beta * min(1.0, epoch / warmup) if warmup > 0 else beta
        network.train()
        order = torch.randperm(len(train), generator=generators["order_generator"]).to(train.normalized.device)
        running = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no wait per step
        for start in range(0, len(train), batch_size):
            rows = order[start : start + batch_size]
            with _autocast(device, options["precision"]):
                loss = loss_function(*gather(rows), generator=generators["noise_generator"], kl_weight=kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach().double() * len(rows)
        train_loss = float(running) / len(train)
        validation_loss = _validation_loss(network, validation, batch_size=max(batch_size, VALIDATION_BATCH_SIZE),
                                           seed=seed + 2, kl_weight=beta, device=device, precision=options["precision"])
        if not (math.isfinite(train_loss) and math.isfinite(validation_loss)):
            resume.remove()  # resuming would only diverge again
            raise TrainingError(
                f"loss became non-finite at epoch {epoch} (train {train_loss}, validation {validation_loss}); "
                f"try a lower learning_rate than {options['learning_rate']} or check the normalization"
            )
        state.record(network, epoch=epoch, train_loss=train_loss, validation_loss=validation_loss, kl_weight=kl_weight,
                     seconds=time.perf_counter() - started, min_delta=float(options["min_delta"]), warmup=warmup,
                     epochs=epochs)
        if state.epochs_since_best >= int(options["patience"]):
            log.info("early stop: no validation improvement for %s; best epoch %d (%.4f)",
                     counted(int(options["patience"]), "epoch"), state.best_epoch, state.best_loss)
            break
        if epoch < epochs:
            resume.save(network, optimizer, **generators, state=state)
    network.load_state_dict(state.best_state)
    network.eval()
    resume.remove()
    return TrainingResult(model=network, history=pd.DataFrame(state.rows), best_epoch=state.best_epoch,
                          best_validation_loss=state.best_loss, optimizer_state=optimizer.state_dict(),
                          resumed_from_epoch=state.first_epoch - 1)


# --- the loop's state, and resuming it --------------------------------------------------------------


@dataclass
class _LoopState:
    """What the loop carries from epoch to epoch (and a resume checkpoint holds)."""

    first_epoch: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_since_best: int = 0

    def record(self, network: torch.nn.Module, *, epoch: int, train_loss: float, validation_loss: float,
               kl_weight: float, seconds: float, min_delta: float, warmup: int, epochs: int) -> None:
        """Add the epoch to the history; keep the weights if the validation loss improved."""
        improved = validation_loss < self.best_loss - min_delta
        if improved:
            self.best_loss, self.best_epoch, self.epochs_since_best = validation_loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        elif epoch > warmup:  # patience counts only the epochs after the warm-up
            self.epochs_since_best += 1
        self.rows.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": validation_loss,
                          "kl_weight": kl_weight, "seconds": seconds, "best": improved})
        log.info("epoch %4d/%d  train_loss %12.4f  validation_loss %12.4f  kl_weight %.3g  %6.2f s%s",
                 epoch, epochs, train_loss, validation_loss, kl_weight, seconds, "  *" if improved else "")


class _Resume:
    """The resume checkpoint of one training run (nothing at all without a ``path``)."""

    def __init__(self, path: str | os.PathLike[str] | None, *, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings

    def start(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, **generators: torch.Generator) -> _LoopState:
        """A fresh state, or the one of a checkpoint of the same settings (restoring weights and generators)."""
        if self.path is None or not os.path.exists(self.path):
            return _LoopState()
        saved = resume_training(self.path, settings=self.settings, model=network, optimizer=optimizer, **generators)
        device = next(network.parameters()).device
        log.info("resuming from epoch %d of %s (continuing at epoch %d)", saved["epoch"], self.path, saved["epoch"] + 1)
        return _LoopState(first_epoch=saved["epoch"] + 1, rows=saved["history"], best_loss=saved["best_validation_loss"],
                          best_epoch=saved["best_epoch"], best_state={k: v.to(device) for k, v in saved["best_state"].items()},
                          epochs_since_best=saved["epochs_since_best"])

    def save(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, *, state: _LoopState,
             **generators: torch.Generator) -> None:
        if self.path is not None:
            write_resume_checkpoint(self.path, settings=self.settings, model=network, optimizer=optimizer, **generators,
                                    epoch=state.rows[-1]["epoch"], history=state.rows, best_validation_loss=state.best_loss,
                                    best_epoch=state.best_epoch, best_state=state.best_state,
                                    epochs_since_best=state.epochs_since_best)

    def remove(self) -> None:
        if self.path is not None:
            remove_resume_checkpoint(self.path)


def fingerprint(train: TrainingData, validation: TrainingData) -> dict[str, Any]:
    """Sizes and a hash of the training and validation spectra (and counts): a checkpoint resumes only on them."""
    described = describe_data(train.normalized.numpy(), validation.normalized.numpy())
    if train.counts is not None:
        described["counts_xxh3_128"] = describe_data(train.counts.numpy(), validation.counts.numpy())["xxh3_128"]
    return described


def _run_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that determine a training run (a checkpoint of other ones is not resumed)."""
    keys = ("epochs", "batch_size", "learning_rate", "patience", "min_delta", "precision", "validation_max_spectra")
    return {key: options[key] for key in keys}


# --- batches, devices, precision -------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so a run is reproducible on the same device."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _make_optimizer(network: torch.nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    try:  # the fused kernel is faster on both CPU and CUDA where this torch build has it
        return torch.optim.Adam(network.parameters(), lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(network.parameters(), lr=learning_rate)


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


def batch_source(train: TrainingData, validation: TrainingData, *, batch_size: int, device: str):
    """``(gather, train, validation)``: ``gather(rows)`` gives the batch ``(normalized, counts)`` on the device.

    On the CPU, or on a GPU whose free memory holds the spectra twice, the spectra move to the device
    and batches are gathered there (``index_select``: much faster than ``train[rows]`` on the CPU);
    otherwise they stay in pinned host memory and each batch is copied over while the last one trains.
    """
    on_device = torch.device(device).type != "cuda" or fits_on_device(
        train.nbytes + validation.nbytes, free_bytes=torch.cuda.mem_get_info(torch.device(device))[0])
    if on_device:
        train, validation = train.to(device), validation.to(device)
        select = functools.partial(torch.index_select, dim=0)
        return (lambda rows: (select(train.normalized, index=rows),
                              None if train.counts is None else select(train.counts, index=rows))), train, validation
    log.info("training spectra (%.2f GB) exceed half the free GPU memory: batches are copied from pinned host memory",
             train.nbytes / 1e9)
    normalized = _HostBatches(train.normalized, batch_size=batch_size, device=device)
    counts = None if train.counts is None else _HostBatches(train.counts, batch_size=batch_size, device=device)
    return (lambda rows: (normalized(rows), None if counts is None else counts(rows))), train, validation


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
        torch.index_select(self.data, 0, rows.cpu(), out=buffer)
        batch = buffer.to(self.device, non_blocking=True)
        self.events[i] = torch.cuda.Event()
        self.events[i].record()
        return batch


def _autocast(device: str, precision: str):
    """bf16 autocast on ``device`` for ``precision: bf16``, else a context that changes nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _validation_loss(network: torch.nn.Module, data: TrainingData, *, batch_size: int, seed: int, kl_weight: float,
                     device: str, precision: str = "fp32") -> float:
    """Mean per-spectrum loss over ``data`` in eval mode, with the same Monte-Carlo draws every epoch."""
    generator = torch.Generator(device=device).manual_seed(seed)
    network.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode(), _autocast(device, precision):
        for start in range(0, len(data), batch_size):
            normalized = data.normalized[start : start + batch_size].to(device, non_blocking=True)
            counts = None if data.counts is None else data.counts[start : start + batch_size].to(device, non_blocking=True)
            loss = network.training_loss(normalized, counts, generator=generator, kl_weight=kl_weight)
            total += loss.double() * len(normalized)
    return float(total) / len(data)
