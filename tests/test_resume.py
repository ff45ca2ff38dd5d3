"""Tests of resuming a killed training job and of the warmed-up KL weight (beta) of the VAE."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spectral_anomaly.exceptions import ConfigError, InputFileError
from spectral_anomaly.models import build_detector
from spectral_anomaly.models.vae import VariationalAutoencoder
from spectral_anomaly.normalize import SpectrumNormalizer

# A workload of some tens of ms per epoch on two CPU cores, so the child can be killed mid-training.
KILL_HYPER = {"kind": "vae", "hidden": [64], "latent_dim": 4, "activation": "tanh", "sigma_x": 0.3,
              "beta": 0.5, "beta_warmup_epochs": 5}
KILL_OPTIONS = {"epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "patience": 100, "seed": 4, "device": "cpu"}
SMALL_VAE = {"kind": "vae", "hidden": [16], "latent_dim": 2, "activation": "tanh", "sigma_x": 0.3}


def train_model(spec, X_train, X_validation, *, checkpoint_path=None, seed=0, **training):
    """A VAE detector fitted on spectra taken as they are (a normalization of no steps)."""
    detector = build_detector(spec, normalization=SpectrumNormalizer([]).fit(X_train), training=training, seed=seed,
                              checkpoint_path=checkpoint_path)
    return detector.fit(X_train, X_validation)


def kill_test_spectra() -> np.ndarray:
    """2000 spectra of 64 bins from a 3-D latent structure plus noise (the same in every process)."""
    generator = np.random.default_rng(0)
    z = generator.normal(size=(2000, 3))
    mixing = generator.normal(size=(3, 64))
    return (np.tanh(z @ mixing) + 0.05 * generator.normal(size=(2000, 64))).astype(np.float32)


def train_kill_test_model(checkpoint_path=None):
    X = kill_test_spectra()
    return train_model(KILL_HYPER, X[:1600], X[1600:], checkpoint_path=checkpoint_path, **KILL_OPTIONS)


CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from test_resume import train_kill_test_model
train_kill_test_model(sys.argv[3])
"""


def _checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) if path.exists() else 0


def _assert_same_training(result, reference):
    """Same weights, best epoch and history (every column but ``seconds``) as the reference run."""
    state, expected = result.network_.state_dict(), reference.network_.state_dict()
    assert state.keys() == expected.keys()
    for name in state:
        assert torch.equal(state[name], expected[name]), name
    assert (result.best_epoch_, result.best_validation_loss_) == (reference.best_epoch_, reference.best_validation_loss_)
    columns = [c for c in reference.history_.columns if c != "seconds"]
    assert list(result.history_.columns) == list(reference.history_.columns)
    assert result.history_[columns].to_dict("records") == reference.history_[columns].to_dict("records")


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread here and in the child: the same arithmetic in both, and no spinning
    OpenMP threads, which slow these small trainings many times over when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 1
    torch.set_num_threads(threads)


def test_killed_training_resumes_after_its_last_epoch_and_ends_as_if_never_killed(tmp_path, caplog, one_thread):
    checkpoint, errors = tmp_path / "vae.pt.checkpoint", tmp_path / "child.err"
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(one_thread), str(Path(__file__).parent), str(checkpoint)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_epoch(checkpoint) < 3:
            assert child.poll() is None, f"training ended before it could be killed: {errors.read_text()}"
            assert time.monotonic() < deadline, "no checkpoint of epoch 3 within 120 s"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)  # no clean-up of any kind runs in the child
        child.wait()
    assert child.returncode == -signal.SIGKILL
    killed_at = _checkpoint_epoch(checkpoint)
    assert 3 <= killed_at < KILL_OPTIONS["epochs"], "the child must be killed in the middle of training"

    with caplog.at_level(logging.INFO, logger="spectral_anomaly.train"):
        resumed = train_kill_test_model(checkpoint)
    assert f"resuming from epoch {killed_at} of {checkpoint}" in caplog.text
    assert resumed.resumed_from_epoch_ == killed_at
    assert not any(f"epoch {e:4d}/" in caplog.text for e in range(1, killed_at + 1)), "finished epochs ran again"
    assert not checkpoint.exists(), "the checkpoint must be deleted when training ends"

    reference = train_kill_test_model()
    assert reference.resumed_from_epoch_ == 0
    assert len(reference.history_) == KILL_OPTIONS["epochs"]
    _assert_same_training(resumed, reference)


class _Interrupt(Exception):
    """Stands in for a kill: raised from the log line of one epoch, before that epoch's checkpoint."""


class _InterruptAtEpoch(logging.Handler):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("epoch") and record.args[0] == self.epoch:
            raise _Interrupt


def _train_small(X, checkpoint_path=None, *, interrupt_at=None, hyperparameters=SMALL_VAE, **options):
    options = {"epochs": 12, "batch_size": 32, "learning_rate": 1e-2, "patience": 100, "seed": 1, "device": "cpu", **options}
    logger = logging.getLogger("spectral_anomaly.train")
    handler, level = _InterruptAtEpoch(interrupt_at), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return train_model(hyperparameters, X[:160], X[160:], checkpoint_path=checkpoint_path, **options)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_resumed_run_keeps_the_early_stopping_count(latent_spectra, tmp_path):
    # learning rate 0: the validation loss never improves after epoch 1; with warm-up 3 and patience 4 the
    # run stops at epoch 7. Interrupted after epoch 5 (two epochs without gain), it must still stop at 7.
    hyper, options = {**SMALL_VAE, "beta": 2.0, "beta_warmup_epochs": 3}, {"learning_rate": 0.0, "patience": 4}
    checkpoint = tmp_path / "m.pt.checkpoint"
    with pytest.raises(_Interrupt):
        _train_small(latent_spectra, checkpoint, interrupt_at=6, hyperparameters=hyper, **options)
    assert _checkpoint_epoch(checkpoint) == 5
    resumed = _train_small(latent_spectra, checkpoint, hyperparameters=hyper, **options)
    reference = _train_small(latent_spectra, hyperparameters=hyper, **options)
    assert resumed.resumed_from_epoch_ == 5 and len(reference.history_) == 7
    _assert_same_training(resumed, reference)
    assert not checkpoint.exists()


@pytest.fixture
def stale_checkpoint(latent_spectra, tmp_path) -> Path:
    """A checkpoint left by a run of ``SMALL_VAE`` with the default options, interrupted after epoch 3."""
    path = tmp_path / "m.pt.checkpoint"
    with pytest.raises(_Interrupt):
        _train_small(latent_spectra, path, interrupt_at=4)
    assert _checkpoint_epoch(path) == 3
    return path


@pytest.mark.parametrize(("change", "named"), [
    ({"hyperparameters": {**SMALL_VAE, "latent_dim": 3}}, "hyperparameters.latent_dim: 2 there, 3 now"),
    ({"hyperparameters": {**SMALL_VAE, "beta": 0.5}}, "hyperparameters.beta: (absent) there, 0.5 now"),
    ({"learning_rate": 1e-3}, "training.learning_rate: 0.01 there, 0.001 now"),
    ({"epochs": 20}, "training.epochs: 12 there, 20 now"),
    ({"data_offset": 1.0}, "data.xxh3_128"),
], ids=["latent_dim", "beta", "learning_rate", "epochs", "data"])
def test_checkpoint_of_other_settings_is_refused(latent_spectra, stale_checkpoint, change, named):
    X = latent_spectra + change.pop("data_offset", 0.0)
    with pytest.raises(ConfigError) as error:
        _train_small(X, stale_checkpoint, **change)
    message = str(error.value)
    assert str(stale_checkpoint) in message and named in message
    assert f"delete {stale_checkpoint} to train from epoch 1" in message
    assert stale_checkpoint.exists(), "a refused checkpoint is left for the user to inspect or delete"


@pytest.mark.parametrize("damage", ["truncated", "text", "other_dict"])
def test_unreadable_checkpoint_is_refused(latent_spectra, stale_checkpoint, damage):
    if damage == "truncated":  # e.g. a partial copy
        stale_checkpoint.write_bytes(stale_checkpoint.read_bytes()[: os.path.getsize(stale_checkpoint) // 2])
    elif damage == "text":
        stale_checkpoint.write_text("not a checkpoint\n")
    else:  # a readable torch file that is no training checkpoint, e.g. the final model file
        torch.save({"format_version": 1, "state_dict": {}}, stale_checkpoint)
    with pytest.raises(InputFileError) as error:
        _train_small(latent_spectra, stale_checkpoint)
    assert str(error.value).startswith(f"{stale_checkpoint}: not a")
    assert f"delete {stale_checkpoint} to train from epoch 1" in str(error.value)


def test_kl_weight_warms_up_for_training_batches_and_is_full_for_validation(latent_spectra, monkeypatch):
    calls = []
    original = VariationalAutoencoder.training_loss

    def spy(self, x, *args, kl_weight=1.0, **options):
        calls.append((self.training, kl_weight))
        return original(self, x, *args, kl_weight=kl_weight, **options)

    monkeypatch.setattr(VariationalAutoencoder, "training_loss", spy)
    result = _train_small(latent_spectra, hyperparameters={**SMALL_VAE, "beta": 0.5, "beta_warmup_epochs": 4}, epochs=6)
    ramp = [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert result.history_["kl_weight"].tolist() == ramp
    assert [w for training, w in calls if training] == [w for w in ramp for _ in range(5)]  # 160 spectra / batch 32
    assert [w for training, w in calls if not training] == [0.5] * 6  # one validation batch per epoch

    calls.clear()
    plain = _train_small(latent_spectra, hyperparameters={**SMALL_VAE, "beta": 0.5}, epochs=3)
    assert plain.history_["kl_weight"].tolist() == [0.5] * 3 and {w for _, w in calls} == {0.5}
    default = _train_small(latent_spectra, epochs=2)
    assert default.history_["kl_weight"].tolist() == [1.0, 1.0], "without beta the KL keeps its full weight"


@pytest.mark.parametrize(("warmup", "expected_epochs"), [(0, 3), (5, 7)])
def test_early_stopping_waits_for_the_end_of_the_warmup(latent_spectra, warmup, expected_epochs):
    # learning rate 0: the validation loss (always with the full beta) is flat after epoch 1
    hyper = {**SMALL_VAE, "beta": 1.0, "beta_warmup_epochs": warmup}
    result = _train_small(latent_spectra, hyperparameters=hyper, epochs=50, learning_rate=0.0, patience=2)
    assert len(result.history_) == expected_epochs, "patience 2 counts only epochs after the warm-up"
    assert result.best_epoch_ == 1
    assert result.history_["best"].tolist() == [True] + [False] * (expected_epochs - 1)
