"""Peak memory and speed of ``spectral-anomaly apply`` on new files of growing size.

Trains a reference once through Snakemake (synthetic Poisson spectra, --n-bins bins, an autoencoder,
a VAE and PCA, a few epochs), then scores new float32 HDF5 files of each --sizes-gb with
``spectral-anomaly apply`` (ingest, score with every stored detector at the stored cuts, store the most
anomalous examples), each in a fresh process that reports its own peak resident memory. Scoring streams
the new spectra block by block, so the peak should stay nearly flat as the file grows: the ratio of
each run's peak to the smallest run's, measured in the same session, says so whatever the machine.

    .venv/bin/python benchmarks/apply_benchmark.py                      # 0.25, 1 and 4 GB of new spectra
    .venv/bin/python benchmarks/apply_benchmark.py --sizes-gb 0.1 0.5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from performance_benchmark import write_scaling_input  # noqa: E402  (the same synthetic spectra)

BIN = Path(sys.executable).parent
#: run in a fresh interpreter: the apply subcommand, then this process's peak RSS (KiB on Linux) on stdout
CHILD = ("import resource, sys\nfrom spectral_anomaly.cli import main\nrc = main(sys.argv[1:])\n"
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")


def reference_config(input_path: Path, *, epochs: int) -> dict:
    return {
        "run_name": "reference",
        "datasets": {"synthetic": {"format": "hdf5_array", "path": str(input_path), "dataset": "spectra",
                                   "bin_edges_dataset": "bin_edges", "metadata_group": "metadata",
                                   "anomaly_label": "anomalous != 0"}},
        "models": {"ae": {"kind": "autoencoder", "hidden": [128, 32], "latent_dim": 4},
                   "vae": {"kind": "vae", "hidden": [128, 32], "latent_dim": 4},
                   "pca": {"kind": "pca", "n_components": 4}},
        "normalization": {"steps": ["unit_integral", "standardize"]},
        "training": {"epochs": epochs, "batch_size": 256, "device": "cpu"},
        "scoring": {"mc_samples": 4},
    }


def train_reference(workdir: Path, *, n_spectra: int, n_bins: int, epochs: int) -> Path:
    input_path = workdir / "reference.h5"
    write_scaling_input(input_path, n_spectra, n_bins)
    config = workdir / "reference.yaml"
    config.write_text(yaml.safe_dump(reference_config(input_path, epochs=epochs)))
    result = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                             "--configfile", str(config), "--cores", "2"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training the reference failed:\n{result.stderr[-3000:]}")
    (version,) = [p for p in (workdir / "results").iterdir() if p.name.startswith("reference-")]
    return version


def apply_run(workdir: Path, reference: Path, *, size_gb: float, n_bins: int) -> dict:
    """Write ``size_gb`` of new spectra, score them with ``spectral-anomaly apply``: seconds and peak RSS."""
    n_spectra = int(size_gb * 1e9 / (4 * n_bins))
    new_file = workdir / f"new_{size_gb:g}GB.h5"
    started = time.perf_counter()
    write_scaling_input(new_file, n_spectra, n_bins)
    write_seconds = time.perf_counter() - started
    out = workdir / f"apply_{size_gb:g}GB"
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "python"), "-c", CHILD, "--quiet", "apply", "--reference", str(reference),
                             "--input", str(new_file), "--output-dir", str(out), "--device", "cpu"],
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"apply on {size_gb:g} GB failed:\n{result.stderr[-3000:]}")
    peak_kib = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("peak_rss_kib")))
    new_file.unlink()
    shutil.rmtree(out)
    return {"size_gb": size_gb, "n_spectra": n_spectra, "write_seconds": round(write_seconds, 1),
            "apply_seconds": round(seconds, 1), "spectra_per_second": round(n_spectra / seconds),
            "peak_rss_mib": round(peak_kib / 1024)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 1.0, 4.0],
                        help="sizes of the new files, in GB of float32 spectra (default %(default)s)")
    parser.add_argument("--n-bins", type=int, default=500, help="bins per spectrum (default %(default)s)")
    parser.add_argument("--reference-spectra", type=int, default=20_000, help="spectra the reference is trained on")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the reference's deep models")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new one in /tmp, deleted)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="spectral_anomaly_apply_", dir=args.workdir))
    try:
        started = time.perf_counter()
        reference = train_reference(workdir, n_spectra=args.reference_spectra, n_bins=args.n_bins, epochs=args.epochs)
        print(f"reference trained in {time.perf_counter() - started:.0f} s: {args.reference_spectra:,} spectra x "
              f"{args.n_bins} bins, AE + VAE (4 Monte-Carlo samples) + PCA", flush=True)
        runs = []
        for size in sorted(args.sizes_gb):
            runs.append(apply_run(workdir, reference, size_gb=size, n_bins=args.n_bins))
            run = runs[-1]
            run["peak_ratio_to_smallest"] = round(run["peak_rss_mib"] / runs[0]["peak_rss_mib"], 2)
            print(f"  {size:5g} GB ({run['n_spectra']:>10,} spectra): apply {run['apply_seconds']:7.1f} s "
                  f"({run['spectra_per_second']:,} spectra/s, three detectors), peak RSS {run['peak_rss_mib']:6,} MiB "
                  f"({run['peak_ratio_to_smallest']:.2f} x the smallest)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(["benchmarks/apply_benchmark.py", *(argv or sys.argv[1:])]),
                                         "cores": os.cpu_count(), "load_average": os.getloadavg(), "runs": runs,
                                         "numpy": np.__version__}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
