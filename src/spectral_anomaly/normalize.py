"""Normalization of spectra: an ordered list of steps, fitted on training spectra only.

Steps (names as written in the config):

- ``unit_integral``: divide each spectrum by its total counts (a spectrum of zero total is left as
  zeros). Not fitted; inverting it needs each spectrum's total. It must be the first step.
- ``log1p``: ``log(1 + x)``, which tames the dynamic range of falling spectra; inverse ``expm1``.
- ``log``: ``log(max(x, LOG_FLOOR))`` for positive values that are not counts (fluxes, rates), so a
  multiplicative change becomes an additive one; values below :data:`LOG_FLOOR` (zeros) count as it,
  negative values are refused. Inverse ``exp``.
- ``sqrt``: the Anscombe transform ``2 sqrt(x + 3/8)`` of counts, which makes Poisson noise of every
  bin about unit-variance whatever its rate (variance stabilization); use it on raw counts, as the
  first step. Negative values are refused. Inverse ``(z / 2)^2 - 3/8``.
- ``standardize_spectrum``: per spectrum, subtract its mean over its bins and divide by its standard
  deviation over its bins, so only the shape is left (a flat spectrum becomes zeros). Not fitted;
  inverting it needs each spectrum's mean and spread, taken from the original spectra.
- ``standardize``: per bin, subtract the training mean and divide by the training standard
  deviation (a bin that never varies in training is only centred).
- ``center_maxabs``: subtract the training mean spectrum and divide by the largest absolute
  deviation from it over all training spectra and bins (one number), so values lie in [-1, 1].

Each step is fitted on the output of the steps before it. :class:`SpectrumNormalizer` follows
the scikit-learn convention: ``fit`` returns self, learned state ends in ``_``. Fitting reads the
training spectra a block at a time (one pass per fitted step; means and variances are combined
across blocks exactly, by Chan's formula), so a million spectra never exist as one float64 copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from .exceptions import ConfigError, InvalidSpectraError
from .store.atomic import write_json
from .store.formats import FORMAT_VERSIONS, read_versioned_json

STEPS = ("unit_integral", "log1p", "log", "sqrt", "standardize_spectrum", "standardize", "center_maxabs")
FITTED_STEPS = ("standardize", "center_maxabs")
#: steps whose inverse needs numbers of each spectrum (its total, its mean and spread): inverting them
#: takes the original spectra
PER_SPECTRUM_STEPS = ("unit_integral", "standardize_spectrum")
#: what ``steps: auto`` chooses, by what the training spectra are: counts, whose totals follow the exposure
#: (live time, luminosity) rather than the shape, are divided by them; other values (fluxes, rates, magnitudes
#: converted to flux) are compared by their shape alone. Then every bin is standardized.
AUTO_STEPS = {"counts": ("unit_integral", "standardize"), "values": ("standardize_spectrum", "standardize")}
#: steps that say the spectra are counts (Poisson-distributed per bin): models without a noise model of
#: their own take Poisson uncertainties then
COUNT_STEPS = ("unit_integral", "log1p", "sqrt")
#: ``log`` takes values below this as this (zeros, which positive quantities reach by rounding)
LOG_FLOOR = 1e-6
#: bytes of float64 spectra held at a time while fitting (and by callers that stream spectra)
BLOCK_BYTES = 64 << 20
#: normalized values are clipped to +-this: a value a million training standard deviations out says
#: nothing more about the shape than one at the limit, and larger ones would overflow float32 in the
#: models' squares and sums (a spectrum far outside the training data)
NORMALIZED_LIMIT = 1e6


def block_rows(n_bins: int, *, itemsize: int = 8) -> int:
    """Spectra of ``n_bins`` per block of about :data:`BLOCK_BYTES`."""
    return max(1, BLOCK_BYTES // max(1, n_bins * itemsize))


class SpectrumNormalizer:
    """An ordered, invertible chain of normalization steps."""

    def __init__(self, steps: list[str] | tuple[str, ...] = ("unit_integral", "standardize")) -> None:
        self.steps = steps

    @property
    def takes_counts(self) -> bool:
        """Whether the chain treats the spectra as counts (it has one of :data:`COUNT_STEPS`)."""
        return any(step in COUNT_STEPS for step in self.steps)

    def _check_steps(self) -> list[str]:
        steps = list(self.steps)
        for step in steps:
            if step not in STEPS:
                raise ConfigError(f"unknown normalization step {step!r}; valid steps: {', '.join(STEPS)}")
        if "unit_integral" in steps[1:]:
            raise ConfigError(
                f"normalization steps {steps}: unit_integral must come first, since it divides raw counts "
                "by their total (and undoing it needs that total)"
            )
        return steps

    def fit(self, X: np.ndarray, rows: np.ndarray | None = None) -> SpectrumNormalizer:
        """Fit every step on the training spectra ``X`` (or only ``X[rows]``) and return self.

        The spectra are read :func:`block_rows` at a time, once per fitted step, and each block is
        passed through the steps fitted before; ``X`` itself is neither copied whole nor changed.
        """
        steps = self._check_steps()
        rows = np.arange(len(X)) if rows is None else np.asarray(rows)
        if len(rows) == 0:
            raise InvalidSpectraError("cannot fit a normalization on zero training spectra")
        size = block_rows(X.shape[1])
        self.params_: list[dict[str, Any]] = []
        self._constant_cache: dict[tuple, dict[str, Any]] = {}

        def blocks() -> Iterator[np.ndarray]:  # the training spectra through the steps fitted so far
            for start in range(0, len(rows), size):
                Z = np.asarray(X[rows[start : start + size]], dtype=np.float64)
                for index, step in enumerate(steps[: len(self.params_)]):
                    Z = _forward(step, self._constants(index, np, Z), Z, np)
                yield Z

        for step in steps:
            self.params_.append(_fit_step(step, blocks) if step in FITTED_STEPS else {})
        if steps and steps[-1] not in FITTED_STEPS:
            for _ in blocks():  # a pass through the whole chain, so that it checks every training value
                pass
        self.n_bins_ = int(X.shape[1])
        return self

    def transform(self, X: Any, *, dtype: Any = np.float32) -> Any:
        """Normalize spectra ``(n, n_bins)``: a NumPy array into a new array of ``dtype``, a tensor into a tensor.

        This is the one normalization of the pipeline: fitting, training and scoring of every detector
        go through it. NumPy spectra are normalized in float64 and returned as ``dtype`` (float32, as the
        models take them). A torch tensor (a batch on the device a network runs on) is normalized in its
        own dtype on its own device by the same code, through the array-API namespace of the tensor.
        Values are clipped to +-:data:`NORMALIZED_LIMIT`.
        """
        self._check_fitted(X)
        xp = array_api_compat.array_namespace(X)
        if array_api_compat.is_numpy_namespace(xp):
            Z = np.array(X, dtype=np.float64)
        else:
            Z = X if xp.isdtype(X.dtype, "real floating") else xp.astype(X, xp.float32)
        for index, step in enumerate(self.steps):
            Z = _forward(step, self._constants(index, xp, Z), Z, xp)
        if Z is X:  # no step: the caller's array is not ours to change
            Z = xp.clip(Z, -NORMALIZED_LIMIT, NORMALIZED_LIMIT)
        elif array_api_compat.is_numpy_namespace(xp):
            np.clip(Z, -NORMALIZED_LIMIT, NORMALIZED_LIMIT, out=Z)
        else:
            Z = Z.clamp_(-NORMALIZED_LIMIT, NORMALIZED_LIMIT)  # in place: scoring batches are large
        return Z.astype(dtype, copy=False) if array_api_compat.is_numpy_namespace(xp) else Z

    def _constants(self, index: int, xp: Any, Z: Any) -> dict[str, Any]:
        """Step ``index``'s fitted mean and scale as arrays of ``Z``'s namespace, dtype and device (cached)."""
        params = self.params_[index]
        if "mean" not in params:
            return params
        key = (index, xp.__name__, str(Z.dtype), str(array_api_compat.device(Z)))
        cache = self.__dict__.setdefault("_constant_cache", {})
        if key not in cache:
            scale = params["std"] if "std" in params else params["scale"]
            as_array = lambda values: xp.asarray(  # noqa: E731
                np.asarray(values, dtype=np.float64), dtype=Z.dtype, device=array_api_compat.device(Z))
            cache[key] = {"mean": as_array(params["mean"]), "scale": as_array(scale)}
        return cache[key]

    def inverse_transform(self, Z: np.ndarray, *, original: np.ndarray | None = None,
                          totals: np.ndarray | None = None) -> np.ndarray:
        """Map normalized spectra back to input units.

        Steps that work per spectrum (:data:`PER_SPECTRUM_STEPS`) are undone with the numbers of the
        spectra ``Z`` came from: pass those, in input units, as ``original``; for a chain whose only
        such step is ``unit_integral``, their ``totals`` are enough.
        """
        self._check_fitted(Z)
        X = np.asarray(Z, dtype=np.float64)
        if original is not None and totals is None and "unit_integral" in self.steps[:1]:
            totals = np.asarray(original, dtype=np.float64).sum(axis=1)  # the first step's input is the original
        replay = original is not None and "standardize_spectrum" in self.steps
        inputs = self._step_inputs(original) if replay else None
        for index in reversed(range(len(self.steps))):
            step, params = self.steps[index], self.params_[index]
            if step in PER_SPECTRUM_STEPS:
                if (inputs is None and step != "unit_integral") or (step == "unit_integral" and totals is None):
                    needs = "the original spectra (original=...) or their totals (totals=...)" if step == "unit_integral" \
                        else "the original spectra (original=...)"
                    raise ValueError(f"the inverse of {step} needs {needs}")
                before = inputs[index] if inputs is not None else None
                if step == "unit_integral":
                    X = X * np.asarray(totals, dtype=np.float64).reshape(-1, 1)
                else:
                    X = X * _row_spread(before, np)[0] + before.mean(axis=1, keepdims=True)
            else:
                X = _inverse(step, params, X)
        return X

    def _step_inputs(self, original: np.ndarray) -> list[np.ndarray]:
        """What each step up to the last ``standardize_spectrum`` received when ``original`` was normalized."""
        last = max(i for i, step in enumerate(self.steps) if step == "standardize_spectrum")
        Z, inputs = np.array(original, dtype=np.float64), []
        for index, step in enumerate(self.steps[: last + 1]):
            inputs.append(Z)
            Z = _forward(step, self._constants(index, np, Z), Z, np)
        return inputs

    def _check_fitted(self, X: np.ndarray) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("SpectrumNormalizer is not fitted; call fit() first")
        if X.ndim != 2 or X.shape[1] != self.n_bins_:
            raise InvalidSpectraError(f"expected spectra of shape (n, {self.n_bins_}), got {X.shape}")

    def to_dict(self) -> dict[str, Any]:
        choice = getattr(self, "choice_", None)
        return {"steps": list(self.steps), "n_bins": self.n_bins_, "params": self.params_,
                **({"choice": choice} if choice else {})}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> SpectrumNormalizer:
        normalizer = cls(steps=list(payload["steps"]))
        normalizer._check_steps()
        normalizer.n_bins_ = int(payload["n_bins"])
        normalizer.params_ = payload["params"]
        if payload.get("choice"):
            normalizer.choice_ = payload["choice"]
        return normalizer


def choose_steps(X: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """The steps of ``steps: auto`` for the training spectra ``X[rows]`` and why (:data:`AUTO_STEPS`)."""
    rows = np.asarray(rows)
    size = block_rows(X.shape[1])
    not_counts = 0
    for start in range(0, len(rows), size):
        block = np.asarray(X[rows[start : start + size]], dtype=np.float64)
        not_counts += int(((block < 0) | (block != np.round(block))).any(axis=1).sum())
    if not_counts == 0:
        return {"asked": "auto", "value": list(AUTO_STEPS["counts"]),
                "reason": f"the {len(rows)} training spectra are counts (non-negative whole numbers): each is divided "
                          "by its total, which follows the exposure rather than the shape; then each bin is standardized"}
    return {"asked": "auto", "value": list(AUTO_STEPS["values"]),
            "reason": f"{not_counts} of the {len(rows)} training spectra hold negative or fractional values, so they are "
                      "not counts: each spectrum is standardized over its own bins, so that only shapes are compared; "
                      "then each bin is standardized"}


def check_training_variation(
    normalizer: SpectrumNormalizer, X: np.ndarray, rows: np.ndarray, *, dataset: str,
) -> int:
    """Refuse training spectra in which no bin varies after normalization; return how many bins never vary.

    Spectra that are all zero, all identical, or identical once normalized (e.g. one bin divided by
    its own total) leave every model nothing to learn, and every likelihood a zero variance: the run
    stops here, before any training, rather than report non-finite or meaningless scores. Bins that
    never vary while others do are only logged (they are centred and carry no information).
    """
    rows = np.asarray(rows)
    size = block_rows(X.shape[1])
    empty = 0

    def blocks() -> Iterator[np.ndarray]:
        nonlocal empty
        for start in range(0, len(rows), size):
            block = np.asarray(X[rows[start : start + size]], dtype=np.float64)
            empty += int((block == 0).all(axis=1).sum())
            yield normalizer.transform(block).astype(np.float64)

    n, _, squares = moments(blocks())
    constant = squares <= 1e-12 * max(float(squares.max(initial=0.0)), 1e-300)
    if n and (constant.all() or not squares.any()):
        zeros = f"; {empty} of them are all zero" if empty else ""
        raise InvalidSpectraError(
            f"dataset {dataset!r}: its {n} training spectra are identical after normalization "
            f"({' -> '.join(normalizer.steps) or 'none'}): none of the {X.shape[1]} bins varies{zeros}, so there is "
            "no normal variation to learn. Check the input (file, key, selected columns) and train_selection, or "
            "choose normalization steps that keep the differences between spectra"
        )
    return int(constant.sum())


def moments(blocks: Iterator[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, per-column mean and per-column sum of squared deviations over row blocks.

    Each block's mean and squared deviations are taken about its own mean and merged with Chan's
    formula, which is as accurate as one pass over all rows at once (no large-mean cancellation).
    """
    n, mean, squares = 0, np.zeros(0), np.zeros(0)
    for Z in blocks:
        if len(Z) == 0:
            continue
        block_mean = Z.mean(axis=0)
        block_squares = ((Z - block_mean) ** 2).sum(axis=0)
        if n == 0:
            n, mean, squares = len(Z), block_mean, block_squares
            continue
        total, delta = n + len(Z), block_mean - mean
        mean = mean + delta * (len(Z) / total)
        squares = squares + block_squares + delta**2 * (n * len(Z) / total)
        n = total
    return n, mean, squares


#: the smallest spread a fitted step divides by: float32, in which the models run, cannot take the
#: reciprocal of much less (and spreads this small come from data in unsuitable units)
SMALLEST_SCALE = 2.0**-100


def _fit_step(step: str, blocks: Callable[[], Iterator[np.ndarray]]) -> dict[str, Any]:
    n, mean, squares = moments(blocks())
    if step == "standardize":
        std = np.sqrt(squares / n)
        std = np.where(std > 1e-12 * max(float(std.max()), 1e-300), std, 1.0)
        _check_scale(step, float(std.min()), int(std.argmin()))
        return {"mean": mean.tolist(), "std": std.tolist()}
    scale = max((float(np.abs(Z - mean).max()) for Z in blocks()), default=0.0)
    _check_scale(step, scale, None)
    return {"mean": mean.tolist(), "scale": scale if scale > 0 else 1.0}


def _check_scale(step: str, scale: float, bin_index: int | None) -> None:
    if 0.0 < scale < SMALLEST_SCALE:
        where = f"bin {bin_index} of the training spectra varies" if bin_index is not None else "the training spectra vary"
        raise InvalidSpectraError(
            f"normalization step {step}: {where} by only {scale:.3g}, below the {SMALLEST_SCALE:.3g} that float32 "
            "arithmetic can divide by; rescale the input (e.g. to other units), or put unit_integral first"
        )


def _forward(step: str, constants: dict[str, Any], Z: Any, xp: Any) -> Any:
    """One step applied to ``Z`` (a NumPy array or a tensor, through its array-API namespace ``xp``)."""
    if step == "unit_integral":
        totals = xp.sum(Z, axis=1, keepdims=True)
        return Z / xp.where(totals == 0, xp.ones_like(totals), totals)
    if step == "log1p":
        if bool(xp.any(Z <= -1)):
            raise InvalidSpectraError(
                "normalization step log1p needs values above -1 (counts); found values <= -1. "
                "Put log1p before steps that centre the data, or drop it"
            )
        return xp.log1p(Z)
    if step in ("log", "sqrt"):
        if bool(xp.any(Z < 0)):
            what = "positive values (fluxes, rates)" if step == "log" else "counts (values >= 0)"
            raise InvalidSpectraError(
                f"normalization step {step} needs {what}; found negative values. "
                f"Put {step} before steps that centre the data, or drop it"
            )
        if step == "log":
            return xp.log(xp.clip(Z, LOG_FLOOR, None))
        return 2.0 * xp.sqrt(Z + 0.375)
    if step == "standardize_spectrum":
        spread, mean = _row_spread(Z, xp)
        return (Z - mean) / spread
    centred = Z - constants["mean"]
    centred /= constants["scale"]  # in place on the new array: one allocation per step
    return centred


def _row_spread(Z: Any, xp: Any) -> tuple[Any, Any]:
    """Each row's standard deviation over its bins (1 where the row is flat) and its mean, as columns."""
    mean = xp.mean(Z, axis=1, keepdims=True)
    std = xp.sqrt(xp.mean((Z - mean) ** 2, axis=1, keepdims=True))
    flat = std <= 1e-12 * xp.max(xp.abs(Z), axis=1, keepdims=True)
    return xp.where(flat, xp.ones_like(std), std), mean


def _inverse(step: str, params: dict[str, Any], Z: np.ndarray) -> np.ndarray:
    if step == "log1p":
        return np.expm1(Z)
    if step == "log":
        return np.exp(Z)
    if step == "sqrt":
        return (Z / 2.0) ** 2 - 0.375
    if step == "standardize":
        return Z * np.asarray(params["std"]) + np.asarray(params["mean"])
    return Z * params["scale"] + np.asarray(params["mean"])


def write_normalizer(normalizer: SpectrumNormalizer, path: str | os.PathLike[str], *, dataset: str) -> None:
    write_json(path, {"format_version": FORMAT_VERSIONS["normalization"], "dataset": dataset, **normalizer.to_dict()})


def read_normalizer(path: str | os.PathLike[str]) -> SpectrumNormalizer:
    return SpectrumNormalizer.from_dict(read_versioned_json(path, kind="normalization", step="normalize"))
