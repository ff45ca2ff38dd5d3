"""The built-in demo data: detector-like gamma spectra with a labelled minority of anomalies.

Normal spectra are a falling exponential background plus three photopeaks (662, 1173 and
1332 keV) whose amplitudes vary independently, with a total of 20k-60k expected counts, drawn
as Poisson counts. A fraction of spectra carries one injected anomaly of one of
:data:`ANOMALY_KINDS`. Everything is drawn from one seeded generator, so a seed gives the same
file bytes for bytes in content. The same spectra are written twice: as an HDF5 file with a
plain 2-D dataset and as a ROOT file of TH1D histograms with a metadata TTree, so that both
readers are exercised and can be compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: anomaly code -> name; code 0 is a normal spectrum
ANOMALY_KINDS: dict[int, str] = {
    0: "normal",
    1: "extra_peak",
    2: "shifted_peak",
    3: "broadened_peak",
    4: "distorted_background",
    5: "dead_or_hot_bins",
    6: "low_statistics",
}
ENERGY_MAX_KEV = 3000.0
PEAKS_KEV = (662.0, 1173.0, 1332.0)
#: Gaussian width of each peak: a NaI-like resolution of about 7 % FWHM at 662 keV
PEAK_SIGMA_KEV = tuple(0.07 / 2.355 * np.sqrt(662.0 * e) for e in PEAKS_KEV)
SPECTRA_PER_RUN = 250


@dataclass(frozen=True)
class DemoSpectra:
    """Generated counts ``(n_spectra, n_bins)``, bin edges in keV and per-spectrum metadata."""

    counts: np.ndarray
    bin_edges: np.ndarray
    metadata: pd.DataFrame


def _gaussian(centres: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((centres - mean) / sigma) ** 2)


def _expected_spectrum(rng: np.random.Generator, centres: np.ndarray, *, gain: float = 1.0) -> tuple[np.ndarray, dict]:
    """One normal spectrum shape (unit integral) and the parameters it was drawn with; ``gain`` scales
    every peak's energy and width (a detector whose gain drifted)."""
    params = {
        "slope_kev": rng.uniform(450.0, 650.0),
        "amplitudes": rng.uniform(0.2, 1.0, size=len(PEAKS_KEV)),
        "sigmas": np.array(PEAK_SIGMA_KEV) * gain,
        "means": np.array(PEAKS_KEV) * gain,
    }
    return _shape(centres, params), params


def _shape(centres: np.ndarray, params: dict) -> np.ndarray:
    background = np.exp(-centres / params["slope_kev"]) + 0.02
    background /= background.sum()
    peaks = sum(
        a * _gaussian(centres, m, s) / (s * np.sqrt(2 * np.pi)) * (centres[1] - centres[0])
        for a, m, s in zip(params["amplitudes"], params["means"], params["sigmas"])
    )
    shape = background + 0.15 * peaks
    return shape / shape.sum()


def _inject(kind: int, rng: np.random.Generator, centres: np.ndarray, params: dict, shape: np.ndarray) -> np.ndarray:
    """Return the expected shape of a spectrum carrying anomaly ``kind``."""
    name = ANOMALY_KINDS[kind]
    if name == "extra_peak":
        mean = rng.uniform(150.0, 2800.0)
        sigma = 0.07 / 2.355 * np.sqrt(662.0 * mean)
        extra = _gaussian(centres, mean, sigma)
        return shape + rng.uniform(0.04, 0.10) * extra / extra.sum()
    if name in ("shifted_peak", "broadened_peak"):
        changed = {**params, "means": params["means"].copy(), "sigmas": params["sigmas"].copy()}
        peak = rng.integers(len(PEAKS_KEV))
        changed["amplitudes"] = params["amplitudes"].copy()
        changed["amplitudes"][peak] = max(changed["amplitudes"][peak], 0.6)
        if name == "shifted_peak":
            changed["means"][peak] += rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.0) * params["sigmas"][peak]
        else:
            changed["sigmas"][peak] *= rng.uniform(2.0, 3.0)
        return _shape(centres, changed)
    if name == "distorted_background":
        changed = {**params, "slope_kev": params["slope_kev"] * rng.choice([0.45, 2.2])}
        return _shape(centres, changed)
    if name == "dead_or_hot_bins":
        bins = rng.choice(len(centres), size=int(rng.integers(2, 6)), replace=False)
        distorted = shape.copy()
        distorted[bins] = 0.0 if rng.random() < 0.5 else distorted[bins] * rng.uniform(4.0, 10.0)
        return distorted
    raise ValueError(f"anomaly kind {kind} changes the shape only through the counts")


def generate_demo_spectra(*, seed: int, n_spectra: int, n_bins: int, anomaly_fraction: float,
                          gain: float = 1.0) -> DemoSpectra:
    """Draw ``n_spectra`` demo spectra of ``n_bins`` bins; about ``anomaly_fraction`` are anomalous.
    ``gain`` (1 = nominal) scales the peaks' energies, as a drifted detector would: with the same seed
    and gain 1 the spectra are the same as without it.

    Anomalies are spread evenly over the six kinds. Metadata columns: ``run``, ``lumisection``,
    ``anomaly_kind`` (0 normal, else a key of :data:`ANOMALY_KINDS`) and ``expected_counts``.
    """
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.0, ENERGY_MAX_KEV, n_bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    n_anomalous = int(round(anomaly_fraction * n_spectra))
    kinds = np.zeros(n_spectra, dtype=np.int32)
    kinds[:n_anomalous] = 1 + np.arange(n_anomalous) % (len(ANOMALY_KINDS) - 1)
    kinds = rng.permutation(kinds)
    counts = np.empty((n_spectra, n_bins), dtype=np.float32)
    expected_counts = np.exp(rng.uniform(np.log(2.0e4), np.log(6.0e4), size=n_spectra))
    for i, kind in enumerate(kinds):
        shape, params = _expected_spectrum(rng, centres, gain=gain)
        if ANOMALY_KINDS[kind] == "low_statistics":
            expected_counts[i] *= rng.uniform(0.02, 0.06)
        elif kind != 0:
            shape = _inject(int(kind), rng, centres, params, shape)
        shape = shape / shape.sum()
        counts[i] = rng.poisson(shape * expected_counts[i])
    metadata = pd.DataFrame(
        {
            "run": (300000 + np.arange(n_spectra) // SPECTRA_PER_RUN).astype(np.int64),
            "lumisection": (1 + np.arange(n_spectra) % SPECTRA_PER_RUN).astype(np.int64),
            "anomaly_kind": kinds.astype(np.int64),
            "expected_counts": expected_counts.astype(np.float64),
        }
    )
    return DemoSpectra(counts=counts, bin_edges=edges, metadata=metadata)


#: anomaly code -> name of the drifting demo's subtle anomalies; code 0 is a normal spectrum
SUBTLE_ANOMALY_KINDS: dict[int, str] = {0: "normal", 1: "weak_extra_peak", 2: "shape_tilt", 3: "dead_bins"}


def generate_drifting_runs(*, seed: int, n_runs: int = 6, spectra_per_run: int = 400, n_bins: int = 128,
                           anomaly_fraction: float = 0.1) -> DemoSpectra:
    """Demo spectra in runs whose conditions drift from run to run, with subtle anomalies.

    The situation of detector monitoring: a model is trained on one run and applied to the next ones,
    whose normal spectra differ from the training run's. Each run draws its conditions: a gain of
    1 +- 2 % (every energy scaled), an energy resolution x0.85-1.25, a total-count level x0.3-3 and a
    background slope x0.85-1.2; run 0 (run number 300000) has the nominal conditions. Within a run,
    normal spectra vary as in :func:`generate_demo_spectra` (peak amplitudes, background slope, totals).
    Anomalies (:data:`SUBTLE_ANOMALY_KINDS`, evenly spread, about ``anomaly_fraction`` of each run) are
    subtle: a weak extra peak holding 1-3 % of the counts, a linear tilt that changes the shape by
    5-10 % at the ends of the range, or 2-4 dead bins. Metadata: ``run``, ``lumisection``,
    ``anomaly_kind``, ``expected_counts`` and the run's ``gain``, ``resolution``, ``count_level``
    and ``slope_factor``.
    """
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.0, ENERGY_MAX_KEV, n_bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    n = n_runs * spectra_per_run
    counts = np.empty((n, n_bins), dtype=np.float32)
    rows: list[dict] = []
    per_run = int(round(anomaly_fraction * spectra_per_run))
    for run in range(n_runs):
        nominal = run == 0
        conditions = {"gain": 1.0 if nominal else rng.uniform(0.98, 1.02),
                      "resolution": 1.0 if nominal else rng.uniform(0.85, 1.25),
                      "count_level": 1.0 if nominal else float(np.exp(rng.uniform(np.log(0.3), np.log(3.0)))),
                      "slope_factor": 1.0 if nominal else rng.uniform(0.85, 1.2)}
        kinds = np.zeros(spectra_per_run, dtype=np.int64)
        kinds[:per_run] = 1 + np.arange(per_run) % (len(SUBTLE_ANOMALY_KINDS) - 1)
        kinds = rng.permutation(kinds)
        for i, kind in enumerate(kinds):
            params = {"slope_kev": rng.uniform(450.0, 650.0) * conditions["slope_factor"],
                      "amplitudes": rng.uniform(0.2, 1.0, size=len(PEAKS_KEV)),
                      "sigmas": np.array(PEAK_SIGMA_KEV) * conditions["resolution"] * conditions["gain"],
                      "means": np.array(PEAKS_KEV) * conditions["gain"]}
            shape = _shape(centres, params)
            name = SUBTLE_ANOMALY_KINDS[int(kind)]
            if name == "weak_extra_peak":
                mean = rng.uniform(150.0, 2800.0)
                extra = _gaussian(centres, mean, 0.07 / 2.355 * np.sqrt(662.0 * mean))
                shape = shape + rng.uniform(0.01, 0.03) * extra / extra.sum()
            elif name == "shape_tilt":
                slope = rng.choice([-1.0, 1.0]) * rng.uniform(0.10, 0.20)
                shape = shape * (1.0 + slope * (centres / ENERGY_MAX_KEV - 0.5))
            elif name == "dead_bins":
                shape = shape.copy()
                shape[rng.choice(n_bins, size=int(rng.integers(2, 5)), replace=False)] = 0.0
            expected = float(np.exp(rng.uniform(np.log(2.0e4), np.log(6.0e4)))) * conditions["count_level"]
            counts[run * spectra_per_run + i] = rng.poisson(shape / shape.sum() * expected)
            rows.append({"run": 300000 + run, "lumisection": i + 1, "anomaly_kind": int(kind),
                         "expected_counts": expected, **conditions})
    metadata = pd.DataFrame(rows).astype({"run": np.int64, "lumisection": np.int64, "anomaly_kind": np.int64})
    return DemoSpectra(counts=counts, bin_edges=edges, metadata=metadata)


def write_demo_hdf5(demo: DemoSpectra, path: str | os.PathLike[str]) -> None:
    """Write the demo as HDF5: ``/spectra`` (2-D counts), ``/bin_edges`` and ``/metadata/<column>``."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.create_dataset("spectra", data=demo.counts)
        handle.create_dataset("bin_edges", data=demo.bin_edges)
        group = handle.create_group("metadata")
        for column in demo.metadata.columns:
            group.create_dataset(column, data=demo.metadata[column].to_numpy())
        handle.attrs["description"] = "spectral_anomaly demo spectra; anomaly_kind codes: " + ", ".join(
            f"{code}={name}" for code, name in ANOMALY_KINDS.items()
        )


def write_demo_root(demo: DemoSpectra, path: str | os.PathLike[str]) -> None:
    """Write the demo as ROOT: TH1D ``spectra/spectrum_<i>`` and a TTree ``metadata``, entry i per histogram i."""
    import uproot

    width = len(str(len(demo.counts) - 1))
    with uproot.recreate(path) as handle:
        for i, row in enumerate(demo.counts):
            handle[f"spectra/spectrum_{i:0{width}d}"] = (row.astype(np.float64), demo.bin_edges)
        columns = {column: demo.metadata[column].to_numpy() for column in demo.metadata.columns}
        tree = handle.mktree("metadata", {column: values.dtype for column, values in columns.items()})
        tree.extend(columns)
