"""The quality benchmark's datasets that are derived from shared files or generated (see quality.py).

- ``gamma_nai_derived``: Poisson resamples of the NaI background measurement (normal) plus the
  measured source runs (anomalous), from ``../shared/data/gamma_nai_baldr/measurements.h5``.
- ``macho_hard``: ``../shared/data/macho_lightcurves/folded.csv`` without the eclipsing binaries,
  for the harder variant of its protocol (normal RR Lyrae, anomalous Cepheids).
- ``drifting_demo``: runs of demo spectra whose conditions drift from run to run, with subtle
  anomalies (:func:`spectral_anomaly.demo.generate_drifting_runs`).

Each writer writes one file atomically (temporary name, then rename) and returns a description.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
GAMMA_H5 = DATA_ROOT / "gamma_nai_baldr" / "measurements.h5"
MACHO_CSV = DATA_ROOT / "macho_lightcurves" / "folded.csv"


def _pandas_block_columns(group) -> dict[str, np.ndarray]:
    """Numeric columns of a fixed-format pandas group, read with h5py; pickled blocks are skipped unread."""
    columns: dict[str, np.ndarray] = {}
    for i in range(int(group.attrs.get("nblocks", 0))):
        values = group[f"block{i}_values"]
        if values.dtype.kind not in "biuf" or values.ndim != 2:  # object (pickled) blocks: never read
            continue
        names = [name.decode() if isinstance(name, bytes) else str(name) for name in group[f"block{i}_items"][()]]
        array = values[()]
        for j, name in enumerate(names):
            columns[name] = array[:, j]
    return columns


def _source_names(handle) -> list[str]:
    """Name of the source of each measurement (e.g. 'Cs137 @ 111.8cm') from the one-hot key ``sources``."""
    group = handle["sources"]
    one_hot = group["block0_values"][()]
    codes = group["block0_items_label2"][()]
    levels = [name.decode() for name in group["block0_items_level2"][()]]
    return [levels[codes[column]] for column in one_hot.argmax(axis=1)]


def write_gamma_derived(path: Path, *, n_resamples: int, seed: int) -> dict[str, Any]:
    """Write the derived gamma dataset (Poisson resamples of the background plus the source runs).

    Rows ``0 .. n_resamples - 1``: ``Poisson(background * t / T_background)`` with ``t`` the median
    live time of the source runs; then the 22 source runs as measured. Returns a description.
    """
    import h5py

    with h5py.File(GAMMA_H5, "r") as handle:
        spectra = handle["spectra/block0_values"][()].astype(np.float64)
        info = _pandas_block_columns(handle["info"])
        names = _source_names(handle)
    live_time = np.asarray(info["live_time"], dtype=np.float64)
    distance = np.asarray(info["distance_cm"], dtype=np.float64)
    background_rows = [i for i, name in enumerate(names) if name == "Background"]
    if background_rows != [0]:
        raise RuntimeError(f"{GAMMA_H5}: expected row 0 to be the only background measurement, found {background_rows}")
    sources = np.arange(1, len(spectra))
    target_live_time = float(np.median(live_time[sources]))
    scale = target_live_time / live_time[0]
    rng = np.random.default_rng(seed)
    resamples = rng.poisson(spectra[0] * scale, size=(n_resamples, spectra.shape[1]))

    X = np.concatenate([resamples, spectra[sources]]).astype(np.float32)
    names_all = ["Background (resample)"] * n_resamples + [names[i] for i in sources]
    metadata = {
        "is_source": np.r_[np.zeros(n_resamples, np.int8), np.ones(len(sources), np.int8)],
        "is_resample": np.r_[np.ones(n_resamples, np.int8), np.zeros(len(sources), np.int8)],
        "live_time": np.r_[np.full(n_resamples, target_live_time), live_time[sources]],
        "measurement_row": np.r_[np.zeros(n_resamples, np.int64), sources],
        "resample_index": np.r_[np.arange(n_resamples), np.full(len(sources), -1)].astype(np.int64),
        "distance_cm": np.r_[np.zeros(n_resamples), distance[sources]],
        "isotope": np.array([name.split(" @ ")[0] for name in names_all], dtype=object),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as out:
        out.create_dataset("spectra", data=X)  # contiguous, uncompressed
        group = out.create_group("metadata")
        for column, values in metadata.items():
            if values.dtype == object:
                group.create_dataset(column, data=values.astype(str).astype("S"))
            else:
                group.create_dataset(column, data=values)
        out.attrs["description"] = (
            f"DERIVED from {GAMMA_H5.name}: {n_resamples} Poisson resamples (seed {seed}) of the background "
            f"measurement (row 0, live time {live_time[0]:.2f} s) scaled to {target_live_time:.2f} s, "
            f"then the {len(sources)} measured source runs")
    os.replace(tmp, path)
    return {
        "derived": True, "path": str(path), "source_file": str(GAMMA_H5), "n_resamples": n_resamples, "seed": seed,
        "background_live_time_s": float(live_time[0]), "background_total_counts": float(spectra[0].sum()),
        "target_live_time_s": target_live_time, "scale": scale,
        "resample_mean_total_counts": float(resamples.sum(axis=1).mean()),
        "n_source_runs": int(len(sources)),
        "source_total_counts": {"min": float(spectra[sources].sum(1).min()), "max": float(spectra[sources].sum(1).max())},
        "source_live_time_s": {"min": float(live_time[sources].min()), "max": float(live_time[sources].max())},
    }


def write_macho_hard(path: Path) -> dict[str, Any]:
    """Write the MACHO light curves without the eclipsing binaries (class EB): RR Lyrae and Cepheids only."""
    import pandas as pd

    table = pd.read_csv(MACHO_CSV)
    kept = table[table["class"] != "EB"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.csv")
    kept.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return {"derived": True, "path": str(path), "source_file": str(MACHO_CSV), "rows": int(len(kept)),
            "classes": {str(k): int(v) for k, v in kept["class"].value_counts().items()}}


def write_drifting_demo(path: Path, *, seed: int, n_runs: int = 6, spectra_per_run: int = 1000) -> dict[str, Any]:
    """Write the drifting demo runs as HDF5 (the demo's layout: ``spectra``, ``bin_edges``, ``metadata/``)."""
    from spectral_anomaly.demo import generate_drifting_runs, write_demo_hdf5

    demo = generate_drifting_runs(seed=seed, n_runs=n_runs, spectra_per_run=spectra_per_run)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    write_demo_hdf5(demo, tmp)
    os.replace(tmp, path)
    runs = demo.metadata.groupby("run")[["gain", "resolution", "count_level", "slope_factor"]].first()
    return {"generated": True, "path": str(path), "seed": seed, "n_runs": n_runs, "spectra_per_run": spectra_per_run,
            "n_bins": int(demo.counts.shape[1]), "runs": runs.round(4).reset_index().to_dict(orient="records"),
            "anomalies": {str(k): int(v) for k, v in demo.metadata["anomaly_kind"].value_counts().items()}}
