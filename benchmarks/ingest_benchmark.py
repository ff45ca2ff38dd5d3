"""Benchmark ingestion of a large HDF5 file: throughput against plain h5py, and peak memory.

What it measures
----------------
1. Writes (or reuses) ``<workdir>/spectra_<N>x<B>.h5``: N x B float32 spectra in a dataset
   ``spectra``, uncompressed and chunked by whole rows (10,000 by default), holding finite,
   non-negative integer-valued counts. Defaults: N = 1,000,000, B = 500, i.e. 2 GB.
   It is generated one block of 10,000 rows (20 MB at the default size) at a time.
2. Reads the same bytes with plain h5py, row slices into one preallocated buffer, once before
   and once after the ingest (the page cache warms up between them), and keeps the faster read
   as the reference throughput.
3. Runs ``spectral_anomaly.ingest.ingest_to_store`` in a separate child process, so that its
   peak resident memory is measured alone, writing the canonical store into the workdir
   (``--repeat`` runs it several times, interleaved with fresh-process reference reads, and keeps
   the fastest of each; 5 times by default). The child reports the wall time of the
   ``ingest_to_store`` call itself and its own peak RSS (``ru_maxrss`` of ``RUSAGE_SELF``); the parent adds the child's total wall time, imports
   included. The store is then checked (shape, first and last rows equal to the input).
   For context only (no target): the time of a sha256 of the input, which the ingest computes
   to record the input's checksum, so it bounds how fast any ingest can be.
4. Prints a table and writes a JSON with every number: ingest throughput (input bytes / ingest
   seconds, GB = 10^9 bytes), its ratio to the reference read, peak RSS in MiB, and PASS/FAIL
   against the targets: ratio >= 0.7 and peak RSS < 1024 MiB.

Reads are from a warm page cache (the input was just written or read), so the reference
measures h5py, not the disk; before measuring, ``os.sync()`` writes out what generating the input
left in the page cache. On a virtual machine that hands idle memory back to the host (virtio
balloon free page reporting, as on the development VMs), touching memory that has been free for a
while costs 1.5-3 s per GB, memory freed a moment ago almost nothing: an ingest that needs many GB
is much slower on its first run than on an immediate repeat; ``--repeat 1`` shows the single
run that one workflow job sees.

Run it
------
From the repository root::

    .venv/bin/python benchmarks/ingest_benchmark.py                       # 1,000,000 x 500 (2 GB)
    .venv/bin/python benchmarks/ingest_benchmark.py --n-spectra 50000     # quick check (100 MB)
    .venv/bin/python benchmarks/ingest_benchmark.py --workdir /scratch/bench --keep   # reuse the input next time
    .venv/bin/python benchmarks/ingest_benchmark.py --repeat 1           # one run, as one workflow job
    .venv/bin/python benchmarks/ingest_benchmark.py --pass-checksum      # ingest without hashing the input
    .venv/bin/python benchmarks/ingest_benchmark.py --check              # exit 1 on a missed target

Exit status: 0 when the benchmark ran (whatever the numbers), 1 when ``--check`` is given and a
target is missed, 2 when it could not measure (too little disk space, the ingest failed, the store
is wrong). The big files are deleted at the end unless ``--keep`` is given; the JSON stays.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DATASET_NAME = "spectra"
STORE_DATASET = "benchmark"
COMPLETE_ATTR = "benchmark_complete"
DISK_FACTOR_GENERATE = 2.5  # input + canonical store + headroom
DISK_FACTOR_REUSE = 1.25  # canonical store + headroom
TARGET_RATIO = 0.7
TARGET_RSS_MIB = 1024.0
RESULT_MARKER = "INGEST_BENCHMARK_RESULT "
REPO_ROOT = Path(__file__).resolve().parent.parent

# Runs in the child process. argv[1] is a JSON object with name, dataset, path, output, checksum.
# ingest_to_store took ``path=`` (one file) up to commit 4b33b29 and ``paths=`` (a list) since.
CHILD_CODE = f"""
import inspect, json, logging, resource, sys, time
start = time.perf_counter()
import spectral_anomaly
from spectral_anomaly.ingest import ingest_to_store
import_seconds = time.perf_counter() - start
rss_after_import_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logging.basicConfig(level=logging.INFO, format="  [ingest child] %(message)s", stream=sys.stderr)
job = json.loads(sys.argv[1])
accepted = inspect.signature(ingest_to_store).parameters
kwargs = {{"paths": [job["path"]]}} if "paths" in accepted else {{"path": job["path"]}}
if job["checksum"] is not None:
    if "checksums" not in accepted:
        sys.exit("ingest_to_store takes no checksums= here; run without --pass-checksum")
    kwargs["checksums"] = {{job["path"]: job["checksum"]}}
kwargs["output"] = job["output"]
call = "ingest_to_store(name, dataset_config, " + ", ".join(k + "=..." for k in kwargs) + ")"
start = time.perf_counter()
ingest_to_store(job["name"], job["dataset"], **kwargs)
ingest_seconds = time.perf_counter() - start
print({RESULT_MARKER!r} + json.dumps({{
    "call": call,
    "import_seconds": import_seconds,
    "ingest_seconds": ingest_seconds,
    "rss_after_import_kib": rss_after_import_kib,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "package_version": spectral_anomaly.__version__,
    "package_file": spectral_anomaly.__file__,
}}), flush=True)
"""


class BenchmarkError(RuntimeError):
    """The benchmark could not measure (not a missed target)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark spectral_anomaly ingestion of an N x B float32 HDF5 array: throughput against "
            "a plain h5py read of the same bytes, and peak resident memory of the ingest process."
        ),
    )
    parser.add_argument("--n-spectra", type=int, default=1_000_000, help="number of spectra N (rows); default %(default)s")
    parser.add_argument("--n-bins", type=int, default=500, help="number of bins B (columns); default %(default)s")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=10_000,
        help="rows per HDF5 chunk of the generated file, 0 for a contiguous dataset; default %(default)s",
    )
    parser.add_argument(
        "--read-rows",
        type=int,
        default=10_000,
        help="rows per slice in the plain h5py reference read (size of its buffer); default %(default)s",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help=(
            "folder for the input file and the canonical store; an input of the right shape found "
            "there is reused. Default: a new temporary folder under the system temp dir (/tmp)"
        ),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="run the fresh-process reference read and the ingest child this many times, interleaved, and keep the fastest of each (peak RSS: the largest); default %(default)s",
    )
    parser.add_argument(
        "--pass-checksum",
        action="store_true",
        help=(
            "pass the input's sha256 to ingest_to_store (checksums=), as the workflow does from its "
            "checksum cache, so the timed ingest does not hash the input; default: the ingest hashes it"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the input file and the canonical store (to reuse them)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results; default <workdir>/ingest_benchmark.json")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.n_spectra < 1 or args.n_bins < 1:
        parser.error("--n-spectra and --n-bins must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.chunk_rows < 0 or args.read_rows < 1:
        parser.error("--chunk-rows must be 0 (contiguous) or more, --read-rows at least 1")
    if args.chunk_rows and args.chunk_rows * args.n_bins * 4 >= 4 * 1024**3:
        parser.error("--chunk-rows x --n-bins x 4 bytes must stay below HDF5's 4 GiB chunk limit")
    return args


# ---------------------------------------------------------------------------------------------
# input file


def mean_counts_per_bin(n_bins: int) -> np.ndarray:
    """A falling spectrum with a peak on top: expected counts per bin, between about 3 and 300."""
    x = np.linspace(0.0, 1.0, n_bins, dtype=np.float64)
    lam = 3.0 + 250.0 * np.exp(-x / 0.2) + 60.0 * np.exp(-0.5 * ((x - 0.6) / 0.02) ** 2)
    return lam.astype(np.float32)


def existing_input_is_usable(path: Path, *, n_spectra: int, n_bins: int) -> bool:
    """True when ``path`` is a complete input file written by this script with the right shape."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as handle:
            data = handle.get(DATASET_NAME)
            return (
                isinstance(data, h5py.Dataset)
                and data.shape == (n_spectra, n_bins)
                and data.dtype == np.float32
                and bool(handle.attrs.get(COMPLETE_ATTR, False))
            )
    except OSError:
        return False


def generate_input(path: Path, *, n_spectra: int, n_bins: int, chunk_rows: int) -> float:
    """Write the input file chunk by chunk (to a temporary name, then rename); return seconds taken.

    Counts are a Gaussian approximation of Poisson counts around :func:`mean_counts_per_bin`,
    rounded to integers and clipped at zero: finite, non-negative, integer-valued float32. This is
    about 5 times faster to draw than ``Generator.poisson`` (0.06 s against 0.31 s per 10,000 x 500).
    """
    lam = mean_counts_per_bin(n_bins)
    sigma = np.sqrt(lam)
    rng = np.random.default_rng(0)
    block = min(n_spectra, chunk_rows or 10_000)
    tmp = path.with_name(f".{path.name}.tmp")
    start = time.perf_counter()
    try:
        with h5py.File(tmp, "w") as handle:
            data = handle.create_dataset(
                DATASET_NAME,
                shape=(n_spectra, n_bins),
                dtype=np.float32,
                chunks=(min(n_spectra, chunk_rows), n_bins) if chunk_rows else None,
            )
            for first in range(0, n_spectra, block):
                rows = min(block, n_spectra - first)
                values = rng.standard_normal((rows, n_bins), dtype=np.float32)
                values *= sigma
                values += lam
                np.rint(values, out=values)
                np.maximum(values, 0.0, out=values)
                data[first : first + rows] = values
            handle.attrs[COMPLETE_ATTR] = True
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - start


def dataset_layout(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        data = handle[DATASET_NAME]
        return {
            "shape": list(data.shape),
            "dtype": str(data.dtype),
            "chunks": list(data.chunks) if data.chunks else None,
            "compression": data.compression,
            "file_bytes": path.stat().st_size,
        }


def check_disk_space(workdir: Path, *, data_bytes: int, generating: bool) -> dict[str, Any]:
    """Refuse (BenchmarkError) when the workdir's file system has too little free space."""
    factor = DISK_FACTOR_GENERATE if generating else DISK_FACTOR_REUSE
    needed = int(factor * data_bytes)
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise BenchmarkError(
            f"{workdir}: {free / 1e9:.2f} GB free, but this run needs about {needed / 1e9:.2f} GB "
            f"({factor}x the {data_bytes / 1e9:.2f} GB of spectra: "
            f"{'input file + ' if generating else ''}canonical store + headroom). "
            "Free some space, choose another --workdir, or run smaller (--n-spectra)."
        )
    return {"free_bytes": free, "needed_bytes": needed}


# ---------------------------------------------------------------------------------------------
# measurements


def flush_page_cache_writes() -> float:
    """``os.sync()``: write dirty pages to disk; return the seconds it took."""
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def reference_read(path: Path, *, read_rows: int) -> dict[str, float]:
    """Read the whole dataset with plain h5py, ``read_rows`` rows at a time into one buffer."""
    start = time.perf_counter()
    with h5py.File(path, "r") as handle:
        data = handle[DATASET_NAME]
        n_spectra, n_bins = data.shape
        buffer = np.empty((min(read_rows, n_spectra), n_bins), dtype=np.float32)
        for first in range(0, n_spectra, read_rows):
            rows = min(read_rows, n_spectra - first)
            data.read_direct(buffer, source_sel=np.s_[first : first + rows], dest_sel=np.s_[:rows])
    seconds = time.perf_counter() - start
    nbytes = n_spectra * n_bins * 4
    return {"seconds": seconds, "gb_per_s": nbytes / seconds / 1e9}


# Runs reference_read itself in a fresh process (imports happen before its timer starts).
REFERENCE_CHILD_CODE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from ingest_benchmark import reference_read
print(json.dumps(reference_read(Path(sys.argv[2]), read_rows=int(sys.argv[3]))))
"""


def reference_read_child(path: Path, *, read_rows: int) -> dict[str, float]:
    """The same plain-h5py read as :func:`reference_read`, in a fresh Python process like the ingest.

    The ingest runs in a child process (to measure its memory alone); reading in a fresh process
    too compares like with like: both pay for a new process's first touch of its buffers.
    """
    completed = subprocess.run(
        [sys.executable, "-c", REFERENCE_CHILD_CODE, str(Path(__file__).resolve().parent), str(path), str(read_rows)],
        stdout=subprocess.PIPE, text=True, check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"the reference-read child process failed with status {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def sha256_read(path: Path) -> dict[str, Any]:
    """Time a sha256 of the input file: the ingest records it, so it bounds the ingest's speed."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    with open(path, "rb") as stream:
        while chunk := stream.read(16 * 1024 * 1024):
            digest.update(chunk)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "gb_per_s": path.stat().st_size / seconds / 1e9, "sha256": digest.hexdigest()}


def run_ingest_child(input_path: Path, store_path: Path, *, checksum: str | None) -> dict[str, Any]:
    """Run ``ingest_to_store`` in a fresh Python process; return its timings and peak RSS.

    ``checksum``: the input's sha256, passed as ``checksums=`` so that the ingest does not hash the
    input again (as the workflow does with its cached checksums); None lets the ingest hash it.
    """
    job = {
        "name": STORE_DATASET,
        "dataset": {"format": "hdf5_array", "path": str(input_path), "dataset": DATASET_NAME},
        "path": str(input_path),
        "output": str(store_path),
        "checksum": checksum,
    }
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall_seconds = time.perf_counter() - start
    children_maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if completed.returncode != 0:
        how = f"was killed by signal {-completed.returncode}" if completed.returncode < 0 else f"exited with status {completed.returncode}"
        hint = " (SIGKILL: out of memory?)" if completed.returncode == -9 else ""
        tail = f"; its stdout ends:\n{completed.stdout[-2000:]}" if completed.stdout.strip() else ""
        raise BenchmarkError(f"the ingest child process {how}{hint}; its messages are above{tail}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        raise BenchmarkError(f"the ingest child printed no result line; stdout:\n{completed.stdout[-2000:]}")
    result = json.loads(lines[-1][len(RESULT_MARKER) :])
    result["child_wall_seconds"] = wall_seconds
    result["rusage_children_maxrss_kib"] = children_maxrss_kib
    return result


def check_store(store_path: Path, input_path: Path, *, n_spectra: int, n_bins: int) -> dict[str, Any]:
    """Require the canonical store's ``X`` to have the input's shape, and its first and last rows."""
    with h5py.File(store_path, "r") as store, h5py.File(input_path, "r") as source:
        X = store.get("X")
        if not isinstance(X, h5py.Dataset) or X.shape != (n_spectra, n_bins) or X.dtype != np.float32:
            got = (X.shape, X.dtype) if isinstance(X, h5py.Dataset) else "no dataset X"
            raise BenchmarkError(f"{store_path}: expected X float32 {(n_spectra, n_bins)}, found {got}")
        rows = min(1000, n_spectra)
        for sel in (np.s_[:rows], np.s_[n_spectra - rows :]):
            if not np.array_equal(X[sel], source[DATASET_NAME][sel]):
                raise BenchmarkError(f"{store_path}: X rows {sel} differ from the input")
        layout = {"chunks": list(X.chunks) if X.chunks else None, "compression": X.compression}
    return {**layout, "file_bytes": store_path.stat().st_size}


# ---------------------------------------------------------------------------------------------
# report


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        memory_gib = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(memory_gib, 1) if memory_gib else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def print_table(result: dict[str, Any]) -> None:
    p, r, t = result["parameters"], result["results"], result["targets"]
    hashed = "(passed to the ingest)" if r["checksum_passed"] else "(the ingest hashes too)"
    best = f" (best of {p['repeat']})" if p["repeat"] > 1 else ""
    times = ", ".join(f"{run['ingest_seconds']:.2f}" for run in r["ingest_runs"])
    all_runs = f"  (all runs: {times} s)" if p["repeat"] > 1 else ""
    origin = "reused" if p["input_reused"] else f"generated in {p['generate_seconds']:.1f} s"
    rows = [
        ("input", f"{p['n_spectra']:,} x {p['n_bins']} float32 = {p['data_bytes'] / 1e9:.3f} GB, chunks {p['input_layout']['chunks']}"),
        ("input file", f"{origin}: {p['input_path']}"),
        ("h5py reference read, before", f"{r['reference_before']['seconds']:8.3f} s  {r['reference_before']['gb_per_s']:7.2f} GB/s"),
        ("h5py reference read, after", f"{r['reference_after']['seconds']:8.3f} s  {r['reference_after']['gb_per_s']:7.2f} GB/s"),
        ("h5py reference (best)", f"{r['reference_in_process_gb_per_s']:20.2f} GB/s  (warm, in this process)"),
        ("h5py reference, fresh process", ", ".join(f"{read['seconds']:.3f}" for read in r["reference_child_runs"]) + " s"),
        ("  best", f"{r['reference_gb_per_s']:20.2f} GB/s  (like the ingest: a new process)"),
        ("sha256 of input (context)", f"{r['sha256_input']['seconds']:8.3f} s  {r['sha256_input']['gb_per_s']:7.2f} GB/s  {hashed}"),
        (f"ingest_to_store call{best}", f"{r['ingest_seconds']:8.3f} s  {r['ingest_gb_per_s']:7.2f} GB/s{all_runs}"),
        ("ingest child, total wall", f"{r['child_wall_seconds']:8.3f} s  (imports {r['child_import_seconds']:.2f} s)"),
        ("ratio ingest / reference", f"{r['ratio_to_reference']:8.3f}    target >= {t['ratio_min']}  {'PASS' if r['ratio_pass'] else 'FAIL'}"),
        ("  ratio to the warm read", f"{r['ratio_to_in_process_reference']:8.3f}    (for context)"),
        ("peak RSS of ingest child", f"{r['peak_rss_mib']:8.1f} MiB  target < {t['peak_rss_mib_max']:.0f}  {'PASS' if r['rss_pass'] else 'FAIL'}"),
        ("  RSS after imports", f"{r['rss_after_import_mib']:8.1f} MiB  (RUSAGE_CHILDREN: {r['rusage_children_maxrss_mib']:.1f} MiB)"),
        ("canonical store", f"{result['store']['file_bytes'] / 1e9:.3f} GB, chunks {result['store']['chunks']}, checked"),
        ("call", r["ingest_call"]),
        ("code measured", f"spectral_anomaly {r['package_version']} from {Path(r['package_file']).parent} (git {result['git']})"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print(f"Ingest benchmark  {result['date']}  {result['machine']['cpu']} ({result['machine']['cpu_count']} cores)")
    print("-" * (width + 60))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 60))
    print(f"overall: {'PASS' if r['pass'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    made_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spectral_anomaly_ingest_bench_")) if made_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or workdir / "ingest_benchmark.json"
    input_path = workdir / f"spectra_{args.n_spectra}x{args.n_bins}.h5"
    store_path = workdir / "store" / f"{STORE_DATASET}.h5"
    data_bytes = args.n_spectra * args.n_bins * 4
    print(f"workdir: {workdir}")

    try:
        store_path.unlink(missing_ok=True)  # a store kept from an earlier run would skew the disk check
        reused = existing_input_is_usable(input_path, n_spectra=args.n_spectra, n_bins=args.n_bins)
        disk = check_disk_space(workdir, data_bytes=data_bytes, generating=not reused)
        generate_seconds = None
        if reused:
            print(f"reusing {input_path}")
        else:
            print(f"generating {input_path} ({data_bytes / 1e9:.3f} GB) ...", flush=True)
            generate_seconds = generate_input(
                input_path, n_spectra=args.n_spectra, n_bins=args.n_bins, chunk_rows=args.chunk_rows
            )
            print(f"  done in {generate_seconds:.1f} s")

        # Flush what generating (or an earlier run) left to write, so the ingest does not pay for it.
        sync_seconds = flush_page_cache_writes()
        print(f"os.sync() before measuring: {sync_seconds:.2f} s")
        print("h5py reference read (before) ...", flush=True)
        before = reference_read(input_path, read_rows=args.read_rows)
        print(f"  {before['seconds']:.3f} s, {before['gb_per_s']:.2f} GB/s")
        checksum = sha256_read(input_path)
        print(f"sha256 of the input (context): {checksum['seconds']:.3f} s")
        runs, child_reads = [], []
        for run in range(1, args.repeat + 1):  # fresh-process reads interleaved with the ingest runs
            child_reads.append(reference_read_child(input_path, read_rows=args.read_rows))
            print(f"h5py reference read in a fresh process (run {run}): {child_reads[-1]['seconds']:.3f} s")
            store_path.unlink(missing_ok=True)
            print(f"ingest_to_store in a child process (run {run} of {args.repeat}) ...", flush=True)
            runs.append(run_ingest_child(input_path, store_path, checksum=checksum["sha256"] if args.pass_checksum else None))
            print(f"  {runs[-1]['ingest_seconds']:.3f} s, peak RSS {runs[-1]['peak_rss_kib'] / 1024:.0f} MiB")
        child = min(runs, key=lambda run: run["ingest_seconds"])
        print("h5py reference read (after) ...", flush=True)
        after = reference_read(input_path, read_rows=args.read_rows)
        print(f"  {after['seconds']:.3f} s, {after['gb_per_s']:.2f} GB/s")
        store = check_store(store_path, input_path, n_spectra=args.n_spectra, n_bins=args.n_bins)

        in_process_gbps = max(before["gb_per_s"], after["gb_per_s"])
        reference_gbps = max(read["gb_per_s"] for read in child_reads)
        ingest_gbps = data_bytes / child["ingest_seconds"] / 1e9
        ratio = ingest_gbps / reference_gbps
        peak_rss_mib = max(run["peak_rss_kib"] for run in runs) / 1024
        results = {
            "reference_before": before,
            "reference_after": after,
            "reference_child_runs": child_reads,
            "reference_gb_per_s": reference_gbps,
            "reference_in_process_gb_per_s": in_process_gbps,
            "ratio_to_in_process_reference": ingest_gbps / in_process_gbps,
            "sha256_input": checksum,
            "ingest_runs": [
                {
                    "ingest_seconds": run["ingest_seconds"],
                    "child_wall_seconds": run["child_wall_seconds"],
                    "child_import_seconds": run["import_seconds"],
                    "peak_rss_mib": run["peak_rss_kib"] / 1024,
                }
                for run in runs
            ],
            "ingest_call": child["call"],
            "checksum_passed": args.pass_checksum,
            "ingest_seconds": child["ingest_seconds"],
            "ingest_gb_per_s": ingest_gbps,
            "child_wall_seconds": child["child_wall_seconds"],
            "child_import_seconds": child["import_seconds"],
            "ratio_to_reference": ratio,
            "peak_rss_mib": peak_rss_mib,
            "rss_after_import_mib": child["rss_after_import_kib"] / 1024,
            "rusage_children_maxrss_mib": child["rusage_children_maxrss_kib"] / 1024,
            "package_file": child["package_file"],
            "package_version": child["package_version"],
            "ratio_pass": ratio >= TARGET_RATIO,
            "rss_pass": peak_rss_mib < TARGET_RSS_MIB,
        }
        results["pass"] = results["ratio_pass"] and results["rss_pass"]
        result = {
            "benchmark": "ingest",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": [sys.executable, *sys.argv] if argv is None else ["ingest_benchmark.py", *argv],
            "pythonpath": os.environ.get("PYTHONPATH"),
            "git": git_commit(),
            "machine": machine_info(),
            "parameters": {
                "n_spectra": args.n_spectra,
                "n_bins": args.n_bins,
                "data_bytes": data_bytes,
                "read_rows": args.read_rows,
                "repeat": args.repeat,
                "input_path": str(input_path),
                "input_reused": reused,
                "generate_seconds": generate_seconds,
                "sync_seconds_before_measuring": sync_seconds,
                "input_layout": dataset_layout(input_path),
                "disk": disk,
            },
            "targets": {"ratio_min": TARGET_RATIO, "peak_rss_mib_max": TARGET_RSS_MIB},
            "results": results,
            "store": store,
            "units": "GB = 1e9 bytes; MiB = 2**20 bytes; seconds are wall clock; page cache warm",
        }
    except BenchmarkError as error:
        print(f"ingest_benchmark: {error}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            input_path.unlink(missing_ok=True)
            store_path.unlink(missing_ok=True)
            for folder in (store_path.parent, workdir if made_workdir else None):
                if folder is not None and folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()  # the JSON, written below, may recreate the workdir

    print_table(result)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {json_path}")
    if not args.keep:
        print("input file and canonical store deleted (--keep keeps them)")
    return 1 if args.check and not results["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
