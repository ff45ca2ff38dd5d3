"""Training throughput of a deep detector at 1 and at 2 CPU threads, measured in one process.

Fits the autoencoder of performance_benchmark.py (MLP 500-256-64-8) as ``stages.run_train`` does,
after ``spectral_anomaly.device.set_torch_threads`` (what a train job's ``--threads`` calls), on the
same synthetic spectra at each thread count, interleaved, best of ``--repeat``. Prints spectra per
second per epoch at each count and their ratio (2 threads over 1).

Run from the repository root:  .venv/bin/python benchmarks/threads_benchmark.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from performance_benchmark import VALIDATION_SHARE, machine, pipeline_training, synthetic_spectra  # noqa: E402


def spectra_per_second(seconds: float, *, n_spectra: int, epochs: int) -> float:
    """Training spectra processed per second of fitting, counted once per epoch."""
    return n_spectra * epochs / seconds


def measure(args: argparse.Namespace, workdir: Path) -> dict[int, float]:
    """Best spectra per second per epoch at each thread count of ``args.threads``."""
    from spectral_anomaly.device import set_torch_threads
    from spectral_anomaly.normalize import SpectrumNormalizer

    X_train, _ = synthetic_spectra(args.n_spectra, args.n_bins, seed=1)
    X_validation, _ = synthetic_spectra(int(args.n_spectra * VALIDATION_SHARE), args.n_bins, seed=2)
    normalizer = SpectrumNormalizer(steps=["unit_integral", "standardize"]).fit(X_train)
    options = {"batch_size": args.batch_size, "device": "cpu", "precision": "fp32", "compile": False, "workdir": workdir}
    pipeline_training("autoencoder", X_train[:4096], X_validation[:1024], normalizer, epochs=1, **options)  # warm-up
    best = {threads: 0.0 for threads in args.threads}
    for _ in range(args.repeat):
        for threads in args.threads:
            set_torch_threads(threads)
            seconds, _ = pipeline_training("autoencoder", X_train, X_validation, normalizer, epochs=args.epochs, **options)
            best[threads] = max(best[threads], spectra_per_second(seconds, n_spectra=len(X_train), epochs=args.epochs))
    return best


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-spectra", type=int, default=50_000, help="training spectra (default %(default)s)")
    parser.add_argument("--n-bins", type=int, default=500, help="bins per spectrum (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="fits per thread count, best kept (default %(default)s)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as workdir:
        best = measure(args, Path(workdir))
    print(f"autoencoder, {args.n_spectra} x {args.n_bins}, batch {args.batch_size}, {args.epochs} epochs, "
          f"best of {args.repeat}")
    for threads, rate in best.items():
        print(f"  {threads} thread{'' if threads == 1 else 's'}: {rate:,.0f} spectra/s per epoch")
    first = args.threads[0]
    for threads in args.threads[1:]:
        print(f"  ratio {threads} / {first} threads: {best[threads] / best[first]:.2f}")


if __name__ == "__main__":
    main()
