"""What the deep detectors (autoencoder, VAE) share: a PyTorch network trained over epochs and scored in batches.

A :class:`DeepDetector` normalizes raw spectra with the fitted normalization, trains its network
with :func:`spectral_anomaly.train.train_network` on the configured device, and scores in batches
under ``torch.inference_mode()``. The networks (:mod:`.autoencoder`, :mod:`.vae`) take normalized
spectra, and the raw counts as well where their likelihood needs them (Poisson).

Scores are deterministic for a seed and do not depend on the batch: a detector that estimates its
scores by Monte Carlo (the VAE) draws each spectrum's samples from that spectrum and ``scoring.seed``
(:mod:`.draws`). Batches hold at most :data:`MAX_BATCH_ELEMENTS`
spectra x samples x bins, which bounds memory for wide spectra (16,384 bins).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, ClassVar

import numpy as np
import torch

from ..device import describe_device, resolve_device
from .base import Detector, file_variance_pulls, pull_summaries

log = logging.getLogger(__name__)

#: spectra x Monte-Carlo samples x bins in one scoring batch: its largest tensors stay near 64 MB, so wide
#: spectra (16,384 bins, K = 16) are scored in smaller batches than ``scoring.batch_size``
MAX_BATCH_ELEMENTS = 1 << 24
#: the network's settings taken from the config section besides those of ``network_keys``
TRAINING_DEFAULTS = {"epochs": 1000, "batch_size": 64, "learning_rate": 1e-3, "patience": 20, "min_delta": 0.0,
                     "precision": "fp32", "compile": False, "validation_max_spectra": 20000, "device": "auto"}
SCORING_DEFAULTS = {"mc_samples": 16, "seed": 0, "batch_size": 1024}


def scoring_batch_size(batch_size: int, *, mc_samples: int, n_bins: int) -> int:
    """``batch_size``, or fewer spectra where ``mc_samples`` x ``n_bins`` would make a batch's tensors large."""
    return max(1, min(batch_size, MAX_BATCH_ELEMENTS // max(1, mc_samples * n_bins)))


def build_network(hyperparameters: dict[str, Any]) -> torch.nn.Module:
    """An untrained network from its hyperparameters (``kind``, ``n_bins``, ``latent_dim``, ...); keys the
    network does not take (training options such as ``beta``) are ignored."""
    from . import detector_class

    cls = detector_class(hyperparameters["kind"])
    return cls.network_class(**{key: hyperparameters[key] for key in (*cls.network_keys, "n_bins") if key in hyperparameters})


def _host_columns(out: dict[str, torch.Tensor], *, bins: bool) -> dict[str, np.ndarray]:
    """The network's scoring outputs on the host: values in float64, bin indices as int64. The per-bin
    arrays (``reconstruction``, ``normalized``) only where ``bins`` says the pulls are taken on the host;
    the network's own ``pulls`` never: their summaries were taken where the network ran."""
    skipped = {"pulls"} if bins else {"pulls", "reconstruction", "normalized"}
    return {name: (value.double() if value.is_floating_point() else value.long()).cpu().numpy()
            for name, value in out.items() if name not in skipped}


class DeepDetector(Detector):
    """A PyTorch network behind the detector contract; subclasses name the network and its config keys."""

    #: the :class:`torch.nn.Module` of this kind, built from the ``network_keys`` of its config and ``n_bins``
    network_class: ClassVar[type]
    network_keys: ClassVar[tuple[str, ...]]
    #: whether scoring takes ``scoring.mc_samples`` latent draws per spectrum
    monte_carlo: ClassVar[bool] = False
    #: whether the network's likelihood gives the pulls (``chi2``, ``max_abs_pull``); otherwise
    #: :meth:`_model_pulls` does, from the reconstruction
    network_pulls: ClassVar[bool] = True

    def __init__(self, *, normalization, training: dict | None = None, scoring: dict | None = None, seed: int = 0,
                 checkpoint_path: Any = None, **params: Any) -> None:
        super().__init__(normalization=normalization, **params)
        self.training = {**TRAINING_DEFAULTS, **(training or {})}
        self.scoring = {**SCORING_DEFAULTS, **(scoring or {})}
        self.seed = seed
        self.checkpoint_path = checkpoint_path

    @classmethod
    def from_config(cls, params: dict, *, normalization, training: dict | None = None, scoring: dict | None = None,
                    seed: int = 0, checkpoint_path: Any = None, **_context: Any) -> DeepDetector:
        return cls(normalization=normalization, training=training, scoring=scoring, seed=seed,
                   checkpoint_path=checkpoint_path, **params)

    @property
    def kl_weights(self) -> tuple[float, int]:
        """The KL weight ``beta`` and its warm-up epochs (a VAE's; no KL term otherwise)."""
        return 1.0, 0

    def hyperparameters(self, n_bins: int) -> dict[str, Any]:
        """What builds the network: its config keys and the number of bins."""
        return {**{key: self.params[key] for key in self.network_keys if key in self.params}, "n_bins": int(n_bins)}

    @property
    def device(self) -> str:
        if not hasattr(self, "_device"):
            self._device = resolve_device(self.training["device"])
        return self._device

    # --- fitting ---------------------------------------------------------------------------------

    def fit(self, train: np.ndarray, validation: np.ndarray) -> DeepDetector:
        """Train the network on the normalized training spectra, early-stopping on the validation spectra."""
        from ..train import TrainingData, seed_everything, train_network

        self.check_binning(train.shape[1], what="the training spectra")
        self._label_free_choices(train, validation)
        train, validation = self._augmented(train, validation, seed=self.seed)
        seed_everything(self.seed)  # the initial weights are drawn from the seeded global generator
        network = self.network_class(**self.hyperparameters(train.shape[1]))
        counts = network.needs_counts
        started = time.perf_counter()
        result = train_network(
            network, TrainingData.of(self.normalization, train, counts=counts),
            TrainingData.of(self.normalization, validation, counts=counts),
            options=self.training, kl_weights=self.kl_weights, seed=self.seed, device=self.device,
            checkpoint_path=self.checkpoint_path,
            settings={"hyperparameters": {**self.params, "n_bins": int(train.shape[1])},
                      "normalization": self.normalization.to_dict()},
        )
        self.network_, self.history_ = result.model, result.history
        self.resumed_from_epoch_ = result.resumed_from_epoch
        self.best_epoch_, self.best_validation_loss_ = result.best_epoch, result.best_validation_loss
        self.training_seconds_ = time.perf_counter() - started
        return self

    def history(self):
        return self.history_

    def fit_summary(self) -> dict[str, Any]:
        return {"device": describe_device(self.device), "threads": torch.get_num_threads(),
                "epochs_trained": int(len(self.history_)),
                "best_epoch": int(self.best_epoch_), "best_validation_loss": float(self.best_validation_loss_)}

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, X: np.ndarray, *, variances: np.ndarray | None = None) -> dict[str, np.ndarray]:
        if isinstance(X, (str, os.PathLike)):  # a canonical store, scored block by block
            return self._score_store(X)
        self.check_binning(X.shape[1])
        self.network_.to(self.device).eval()
        return super().score(X, variances=variances)

    def _draws(self, X: np.ndarray) -> torch.Tensor | None:
        """Each spectrum's own Monte-Carlo draws (K, n, latent_dim), for a detector that takes them."""
        if not self.monte_carlo:
            return None
        from .draws import standard_normal_draws

        draws = standard_normal_draws(X, seed=int(self.scoring["seed"]), samples=int(self.scoring["mc_samples"]),
                                      size=int(self.network_.latent_dim))
        return torch.from_numpy(draws).to(self.device)

    def _block_rows(self, n_bins: int) -> int:
        """Score one batch per block: the batch's normalization then stays in the CPU cache."""
        return scoring_batch_size(int(self.scoring["batch_size"]), mc_samples=int(self.scoring["mc_samples"]),
                                  n_bins=n_bins)

    def _score_block(self, X: np.ndarray, variances: np.ndarray | None) -> dict[str, np.ndarray]:
        network, device = self.network_, self.device
        with torch.inference_mode():  # the batch is normalized where the network runs, in float32
            spectra = torch.as_tensor(X, dtype=torch.float32, device=device)
            normalized = self.normalization.transform(spectra)
            out = network.score_batch(normalized, spectra if network.needs_counts else None,
                                      mc_samples=int(self.scoring["mc_samples"]), draws=self._draws(X),
                                      bin_arrays=variances is not None or not self.network_pulls)
            if network.needs_counts:  # the Poisson mean is in counts: its squared residuals are taken once normalized
                residuals = (self.normalization.transform(out["reconstruction"]) - normalized).double()
                out["reconstruction_error"] = (residuals**2).sum(dim=1)
            if variances is None and not self.network_pulls and not self.normalization.takes_counts:
                out["normalized"] = normalized  # pulls in normalized units need them; Poisson pulls do not
            columns = _host_columns(out, bins=variances is not None or not self.network_pulls)
        reconstruction = columns.pop("reconstruction", None)
        if variances is not None:
            counts_in = np.asarray(X, dtype=np.float64)
            columns.update(pull_summaries(file_variance_pulls(counts_in, self._in_input_units(reconstruction, counts_in),
                                                              variances)))
        elif not self.network_pulls:
            columns.update(pull_summaries(self._model_pulls(X, columns.pop("normalized", None), reconstruction)))
        return {name: columns[name] for name in (*self.score_columns, "max_pull_bin", "latent")}

    def _model_pulls(self, X: np.ndarray, normalized: np.ndarray | None, reconstruction: np.ndarray) -> np.ndarray:
        """Per-bin pulls of raw spectra ``X`` from their normalized values (None where the spectra are counts)
        and the network's reconstruction (normalized units), for a detector whose network has no likelihood
        (``network_pulls`` false)."""
        raise NotImplementedError(f"{type(self).__name__} declares network_pulls but gives no _model_pulls")

    def _in_input_units(self, reconstruction: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The network's reconstruction (in its target's units) in the input's units."""
        if self.network_.needs_counts:
            return np.asarray(reconstruction, dtype=np.float64)
        return self.normalization.inverse_transform(reconstruction, original=counts)

    def _reconstruct(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions and the network's own pulls at the posterior mean (one sample, seed 0)."""
        network, device = self.network_.to(self.device).eval(), self.device
        with torch.inference_mode():
            spectra = torch.as_tensor(X, dtype=torch.float32, device=device)
            normalized = self.normalization.transform(spectra)
            out = network.score_batch(normalized, spectra if network.needs_counts else None,
                                      mc_samples=1, generator=torch.Generator(device=device).manual_seed(0))
        counts_in = np.asarray(X, dtype=np.float64)
        reconstruction = out["reconstruction"].double().cpu().numpy()
        pulls = out["pulls"].double().cpu().numpy() if self.network_pulls else self._model_pulls(
            X, normalized.double().cpu().numpy(), reconstruction)
        return self._in_input_units(reconstruction, counts_in), pulls

    # --- files -----------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"hyperparameters": self.hyperparameters(self.normalization.n_bins_), "training": self.training,
                "scoring": self.scoring, "seed": self.seed, "fit": self.fit_summary(),
                "history": self.history_.to_dict(orient="list")}
        state = {name: tensor.detach().cpu().numpy() for name, tensor in self.network_.state_dict().items()}
        return meta, state

    @classmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, context: dict[str, Any]) -> DeepDetector:
        import pandas as pd

        from ..normalize import SpectrumNormalizer

        training = {**meta["training"], **({"device": context["device"]} if context.get("device") else {})}
        scoring = {**meta["scoring"], **(context.get("scoring") or {})}
        detector = cls(normalization=SpectrumNormalizer.from_dict(meta["normalization"]), training=training,
                       scoring=scoring, seed=meta["seed"], **meta["params"])
        network = cls.network_class(**meta["hyperparameters"])
        network.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in arrays.items()})
        detector.network_ = network.eval()
        detector.history_ = pd.DataFrame(meta["history"])
        fit = meta["fit"]
        detector.best_epoch_, detector.best_validation_loss_ = fit["best_epoch"], fit["best_validation_loss"]
        return detector
