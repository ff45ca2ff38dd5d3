"""How close the pipeline runs to the hardware: training, scoring, store I/O, end to end, scaling.

Every section compares the pipeline's own code, called as the workflow calls it, with a minimal
reference on the same data in the same process, and prints the ratio (pipeline speed over
reference speed: 1.0 = as fast as the reference, higher = faster):

``training``  fitting a deep detector (``models.build_detector(...).fit``, with the resume checkpoint written every epoch, the validation
              loss, logging, bf16 where selected) against a minimal loop over one in-memory tensor
              of the same architecture, batch size, data and number of epochs (plain float32 Adam,
              index permutation, no validation, no checkpoint), for the AE and the VAE. Optional:
              PyOD's AutoEncoder of the same size.
``scoring``   ``Detector.score`` (the VAE with the configured K = 16 Monte-Carlo samples)
              against a bare forward pass of the same model computing the same score and nothing
              else (AE: reconstruction error; VAE: the K-sample ELBO), and PyOD's
              ``decision_function`` on an AutoEncoder of the same size.
``io``        the canonical store's read (``data.read_canonical``) and write (the ``copy`` store of
              ``ingest.ingest_to_store``) against plain h5py on the same bytes, with peak memory, each
              in a fresh child process.
``endtoend``  ``snakemake --cores 2`` on the default demo config, split into fixed costs (Snakemake
              start, Python and torch imports of every job) and work.
``scaling``   the whole pipeline through Snakemake at 10k, 100k and 1M spectra, with a fixed small
              number of epochs: time per spectrum and peak memory at each size.
``wide``      the whole pipeline through Snakemake on 1,000 wide spectra (16,384 and 20,000 bins, the
              size of real TH1s) against the same run at 500 bins: time, its ratio and peak memory.

Run from the repository root:  .venv/bin/python benchmarks/performance_benchmark.py
(about 15 minutes on a 2-core machine; ``--help`` for the options, ``--sections`` to pick some).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SECTIONS = ("training", "scoring", "io", "endtoend", "scaling", "wide")
HIDDEN, LATENT = [256, 64], 8  # the MLP 500 -> 256 -> 64 -> 8 -> 64 -> 256 -> 500
MC_SAMPLES = 16  # the default scoring.mc_samples
SCORE_BATCH = 1024  # the default scoring.batch_size
VALIDATION_SHARE = 0.2 / 0.6  # validation spectra per training spectrum under the default split fractions
VENV_BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------------
# data and models
# ------------------------------------------------------------------------------------------------

def synthetic_spectra(n_spectra: int, n_bins: int, *, seed: int, anomaly_fraction: float = 0.0,
                      block: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts of smooth spectra (falling background plus a peak of varying size and place),
    float32, and 0/1 labels (an extra narrow peak in ``anomaly_fraction`` of them)."""
    rng = np.random.default_rng(seed)
    centres = (np.arange(n_bins) + 0.5) / n_bins
    X = np.empty((n_spectra, n_bins), dtype=np.float32)
    labels = (rng.random(n_spectra) < anomaly_fraction).astype(np.int8)
    for start in range(0, n_spectra, block):
        n = min(block, n_spectra - start)
        slope = rng.uniform(2.0, 6.0, (n, 1))
        peak = rng.uniform(0.1, 0.6, (n, 1)) * np.exp(-0.5 * ((centres - rng.uniform(0.3, 0.7, (n, 1))) / 0.05) ** 2)
        shape = np.exp(-slope * centres) + peak
        anomalous = labels[start : start + n, None] == 1
        shape = shape + anomalous * 0.5 * np.exp(-0.5 * ((centres - rng.uniform(0.1, 0.9, (n, 1))) / 0.01) ** 2)
        totals = rng.uniform(5_000, 20_000, (n, 1))
        X[start : start + n] = rng.poisson(totals * shape / shape.sum(axis=1, keepdims=True))
    return X, labels


def model_spec(kind: str) -> dict[str, Any]:
    """A model section of the config, as the schema fills it in, of the benchmark's size."""
    spec = {"kind": kind, "architecture": "mlp", "hidden": HIDDEN, "conv_channels": [16, 32], "kernel_size": 5,
            "latent_dim": LATENT, "activation": "relu"}
    if kind == "vae":
        spec |= {"likelihood": "gaussian", "sigma_x": 1.0, "sigma_floor": 1e-3, "beta": 1.0, "beta_warmup_epochs": 0}
    return spec


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def minimal_network(kind: str, n_bins: int):
    """The same MLP as the pipeline's model, as plain torch modules (no normalization layer)."""
    from torch import nn

    def mlp(sizes: list[int], final: bool) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if final or i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return layers

    encoder = nn.Sequential(*mlp([n_bins, *HIDDEN], final=True))
    decoder = nn.Sequential(*mlp([LATENT, *reversed(HIDDEN), n_bins], final=False))
    if kind == "autoencoder":
        return nn.Sequential(encoder, nn.Linear(HIDDEN[-1], LATENT), decoder)
    return nn.ModuleDict({"encoder": encoder, "mu": nn.Linear(HIDDEN[-1], LATENT),
                          "logvar": nn.Linear(HIDDEN[-1], LATENT), "decoder": decoder})


def minimal_loss(kind: str, net, x, *, mc_samples: int = 1):
    """Per-spectrum loss of the minimal network: squared error (AE) or the negative K-sample ELBO (VAE)."""
    import torch

    if kind == "autoencoder":
        return (net(x) - x).pow(2).sum(dim=-1)
    h = net["encoder"](x)
    mu, logvar = net["mu"](h), net["logvar"](h)
    z = mu + (0.5 * logvar).exp() * torch.randn((mc_samples, *mu.shape), device=x.device)
    nll = 0.5 * (net["decoder"](z) - x).pow(2).sum(dim=-1).mean(dim=0)
    return nll + 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)


def minimal_training(kind: str, X, *, epochs: int, batch_size: int, device: str, seed: int = 0) -> tuple[float, list[float]]:
    """Seconds of the minimal float32 loop (build the network and plain Adam, then ``epochs`` epochs),
    and the seconds of each epoch."""
    import torch

    synchronize(device)
    start = time.perf_counter()
    torch.manual_seed(seed)
    net = minimal_network(kind, X.shape[1]).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    epoch_seconds = []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(len(X), device=device)
        for i in range(0, len(X), batch_size):
            loss = minimal_loss(kind, net, X[order[i : i + batch_size]]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        epoch_seconds.append(time.perf_counter() - epoch_start)
    return time.perf_counter() - start, epoch_seconds


def checkpoint_write_seconds(model, workdir: Path, repeat: int = 5) -> float:
    """Seconds of one per-epoch resume checkpoint write of ``model`` with an Adam state (best of ``repeat``)."""
    import torch

    from spectral_anomaly.store.resume import write_resume_checkpoint

    optimizer = torch.optim.Adam(model.parameters())
    for parameter in model.parameters():  # one step, so the optimizer state has its moments as in training
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        write_resume_checkpoint(workdir / "probe.checkpoint", settings={}, model=model, optimizer=optimizer,
                                order_generator=torch.Generator(), noise_generator=torch.Generator(), epoch=1,
                                history=[], best_validation_loss=1.0, best_epoch=1,
                                best_state={k: v.clone() for k, v in model.state_dict().items()}, epochs_since_best=0)
        best = min(best, time.perf_counter() - start)
    return best


def pipeline_training(kind: str, X_train: np.ndarray, X_validation: np.ndarray, normalizer, *, epochs: int,
                      batch_size: int, device: str, precision: str, compile: bool, workdir: Path):
    """Seconds of fitting the kind's detector as ``stages.run_train`` does (from raw spectra, checkpoint
    every epoch), and the fitted detector."""
    from spectral_anomaly.models import build_detector

    checkpoint = workdir / f"{kind}.npz.checkpoint"
    checkpoint.unlink(missing_ok=True)
    detector = build_detector(
        model_spec(kind), normalization=normalizer, seed=0, checkpoint_path=checkpoint,
        training={"epochs": epochs, "batch_size": batch_size, "learning_rate": 1e-3, "patience": 10**6, "device": device,
                  "precision": precision, "compile": compile, "validation_max_spectra": 20_000},
        scoring={"mc_samples": MC_SAMPLES, "batch_size": SCORE_BATCH, "seed": 0})
    synchronize(device)
    start = time.perf_counter()
    detector.fit(X_train, X_validation)
    synchronize(device)
    return time.perf_counter() - start, detector


def bf16_is_fast(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")().startswith("AVX512"))


# ------------------------------------------------------------------------------------------------
# training and scoring
# ------------------------------------------------------------------------------------------------

def run_training_and_scoring(args: argparse.Namespace, sections: set[str], workdir: Path) -> dict[str, Any]:
    import torch

    from spectral_anomaly.normalize import SpectrumNormalizer

    device, n, bs = args.device, args.n_spectra, args.batch_size
    X_train, _ = synthetic_spectra(n, args.n_bins, seed=1)
    X_validation, _ = synthetic_spectra(int(n * VALIDATION_SHARE), args.n_bins, seed=2)
    normalizer = SpectrumNormalizer(steps=["unit_integral", "standardize"]).fit(X_train)
    train_normalized = torch.as_tensor(normalizer.transform(X_train), dtype=torch.float32).to(device)
    out: dict[str, Any] = {"n_train": n, "n_validation": len(X_validation), "n_bins": args.n_bins, "batch_size": bs,
                           "epochs": args.epochs, "device": device, "torch_threads": torch.get_num_threads()}
    precisions = ["fp32"] + (["bf16"] if bf16_is_fast(device) else [])
    # warm-up: the first Adam step and the first kernels of a process are slow; pay them before timing
    for kind in ("autoencoder", "vae"):
        minimal_training(kind, train_normalized[:4096], epochs=1, batch_size=bs, device=device)
        pipeline_training(kind, X_train[:4096], X_validation[:1024], normalizer, epochs=1, batch_size=bs,
                          device=device, precision="fp32", compile=False, workdir=workdir)
    models = {}
    for kind in ("autoencoder", "vae"):
        if "training" not in sections:
            models[kind] = pipeline_training(kind, X_train[:4096], X_validation[:1024], normalizer, epochs=1,
                                             batch_size=bs, device=device, precision="fp32", compile=False,
                                             workdir=workdir)[1]
            continue
        times: dict[str, list[float]] = {"minimal_fp32": [], **{f"pipeline_{p}": [] for p in precisions}}
        epochs: dict[str, list[float]] = {name: [] for name in times}
        for _ in range(args.repeat):  # interleaved, best of each
            seconds, per_epoch = minimal_training(kind, train_normalized, epochs=args.epochs, batch_size=bs, device=device)
            times["minimal_fp32"].append(seconds)
            epochs["minimal_fp32"] += per_epoch
            for precision in precisions:
                seconds, result = pipeline_training(kind, X_train, X_validation, normalizer, epochs=args.epochs,
                                                    batch_size=bs, device=device, precision=precision, compile=False,
                                                    workdir=workdir)
                times[f"pipeline_{precision}"].append(seconds)
                epochs[f"pipeline_{precision}"] += result.history_["seconds"].tolist()
                if precision == "fp32":
                    models[kind] = result
        if args.compile:
            name = "pipeline_bf16_compile" if "bf16" in precisions else "pipeline_fp32_compile"
            seconds, result = pipeline_training(kind, X_train, X_validation, normalizer, epochs=args.epochs,
                                                batch_size=bs, device=device, precision=precisions[-1], compile=True,
                                                workdir=workdir)
            times[name], epochs[name] = [seconds], result.history_["seconds"].tolist()[1:]  # epoch 1 compiles
        write = checkpoint_write_seconds(models[kind].network_.cpu(), workdir)
        models[kind].network_.to(device)
        rates = {name: n * args.epochs / min(values) for name, values in times.items()}
        # per epoch: the best epoch of each, the pipeline's with its checkpoint write added
        epoch_rates = {name: n / (min(values) + (write if name.startswith("pipeline") else 0.0))
                       for name, values in epochs.items()}
        out[f"training_{kind}"] = {
            "seconds": times, "epoch_seconds": epochs, "checkpoint_write_seconds": write,
            "spectra_per_s": rates, "ratio_to_minimal": {name: rate / rates["minimal_fp32"] for name, rate in rates.items()},
            "epoch_spectra_per_s": epoch_rates,
            "epoch_ratio_to_minimal": {name: rate / epoch_rates["minimal_fp32"] for name, rate in epoch_rates.items()},
        }
    if "training" in sections:
        out["training_pyod"] = pyod_training(train_normalized.cpu().numpy(), epochs=1, batch_size=bs, device=device)
    if "scoring" in sections:
        X_all = np.concatenate([X_train, X_validation])[:n]
        all_raw = torch.as_tensor(X_all, dtype=torch.float32).to(device)
        for kind in ("autoencoder", "vae"):
            detector = models[kind]
            pipeline, bare = [], []
            for _ in range(args.repeat):
                synchronize(device)
                start = time.perf_counter()
                detector.score(X_all)
                synchronize(device)
                pipeline.append(time.perf_counter() - start)
                bare.append(bare_scoring(kind, detector, all_raw, device=device))
            rates = {"pipeline": n / min(pipeline), "bare_forward": n / min(bare)}
            out[f"scoring_{kind}"] = {"seconds": {"pipeline": pipeline, "bare_forward": bare}, "spectra_per_s": rates,
                                      "ratio_to_bare_forward": rates["pipeline"] / rates["bare_forward"],
                                      "mc_samples": MC_SAMPLES if kind == "vae" else None, "batch_size": SCORE_BATCH}
        pyod = pyod_scoring(normalizer.transform(X_all).astype(np.float32), repeat=args.repeat, device=device,
                            batch_size=bs)
        if pyod.get("spectra_per_s"):
            pyod["pipeline_ae_over_pyod"] = out["scoring_autoencoder"]["spectra_per_s"]["pipeline"] / pyod["spectra_per_s"]
        out["scoring_pyod"] = pyod
    return out


def bare_scoring(kind: str, detector, X, *, device: str) -> float:
    """Seconds of a bare forward pass of the detector's network over raw spectra ``X`` (a float32 tensor on
    the device) computing the same score and nothing else: normalization ((x - mean) / scale per bin, one
    fused step), encoder, decoder and the AE's squared error, or the VAE's K-sample ELBO (one decoder call
    on K x batch latent codes)."""
    import torch

    model = detector.network_.to(device).eval()
    steps = detector.normalization.to_dict()
    assert steps["steps"] == ["unit_integral", "standardize"], steps["steps"]
    mean = torch.as_tensor(steps["params"][1]["mean"], dtype=torch.float32, device=device)
    scale = torch.as_tensor(steps["params"][1]["std"], dtype=torch.float32, device=device)

    def score(x):
        normalized = (x / x.sum(dim=-1, keepdim=True) - mean) / scale
        if kind == "autoencoder":
            return (model.decoder(model.encoder(normalized))[..., 0, :] - normalized).pow(2).sum(dim=-1)
        mu, logvar = model.encode(normalized)
        z = mu + (0.5 * logvar).exp() * torch.randn((MC_SAMPLES, *mu.shape), device=x.device)
        nll = 0.5 * (model.decoder(z)[..., 0, :] - normalized).pow(2).sum(dim=-1).mean(dim=0)
        return nll + 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)

    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        scores = [score(X[i : i + SCORE_BATCH]).cpu() for i in range(0, len(X), SCORE_BATCH)]
    synchronize(device)
    assert sum(len(s) for s in scores) == len(X)
    return time.perf_counter() - start


def pyod_autoencoder(*, epochs: int, batch_size: int, device: str):
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(hidden_neuron_list=[*HIDDEN, LATENT], batch_norm=False, dropout_rate=0.0, epoch_num=epochs,
                       batch_size=batch_size, lr=1e-3, device=device, verbose=0, random_state=0)


def pyod_missing() -> str | None:
    try:
        import pyod  # noqa: F401
        import pyod.models.auto_encoder  # noqa: F401
    except ImportError as error:
        return f"pyod is not installed ({error}); install the bench extra: .venv/bin/pip install -e '.[bench]'"
    return None


def pyod_training(X: np.ndarray, *, epochs: int, batch_size: int, device: str) -> dict[str, Any]:
    """PyOD's AutoEncoder fit; its fit also scores the training data, which is timed apart and subtracted."""
    reason = pyod_missing()
    if reason:
        print(f"skipping the PyOD training comparison: {reason}")
        return {"skipped": reason}
    detector = pyod_autoencoder(epochs=epochs, batch_size=batch_size, device=device)
    start = time.perf_counter()
    detector.fit(X)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    detector.decision_function(X)
    score_seconds = time.perf_counter() - start
    return {"fit_seconds": fit_seconds, "own_scoring_seconds": score_seconds, "epochs": epochs,
            "spectra_per_s": len(X) * epochs / max(fit_seconds - score_seconds, 1e-9)}


def pyod_scoring(X: np.ndarray, *, repeat: int, device: str, batch_size: int) -> dict[str, Any]:
    """PyOD's ``decision_function`` as a user gets it (in the detector's batch size, here the training
    benchmark's) and, for context, in the pipeline's scoring batch size."""
    reason = pyod_missing()
    if reason:
        print(f"skipping the PyOD scoring comparison: {reason}")
        return {"skipped": reason}
    import pyod

    detector = pyod_autoencoder(epochs=1, batch_size=batch_size, device=device).fit(X[:4096])
    result: dict[str, Any] = {"version": pyod.__version__, "batch_size": batch_size}
    for name, score_batch in (("default", None), ("pipeline_batch", SCORE_BATCH)):
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            detector.decision_function(X, batch_size=score_batch)
            seconds.append(time.perf_counter() - start)
        result[name] = {"seconds": seconds, "spectra_per_s": len(X) / min(seconds),
                        "batch_size": score_batch or batch_size}
    result["spectra_per_s"] = result["default"]["spectra_per_s"]
    return result


# ------------------------------------------------------------------------------------------------
# store I/O
# ------------------------------------------------------------------------------------------------

IO_CHILD = r"""
import json, sys, time
import h5py
import numpy as np
from spectral_anomaly.store.canonical import read_canonical
from spectral_anomaly.ingest import ingest_to_store
job = json.loads(sys.argv[1])
start = time.perf_counter()  # imports are not timed: each child pays its own
if job["what"] == "read_canonical":
    X = read_canonical(job["path"]).X
elif job["what"] == "h5py_read":
    with h5py.File(job["path"], "r") as f:
        X = f[job["dataset"]][()]
elif job["what"] == "copy_store":
    ingest_to_store("bench", {"format": "hdf5_array", "path": job["input"], "dataset": "spectra"}, paths=[job["input"]],
                    output=job["path"], checksums={job["input"]: "0" * 64}, store="copy")
    X = None
elif job["what"] == "h5py_copy":
    with h5py.File(job["input"], "r") as src, h5py.File(job["path"], "w") as dst:
        data = src["spectra"]
        rows = 10_000
        out = dst.create_dataset("X", shape=data.shape, dtype="float32", chunks=(min(rows, data.shape[0]), data.shape[1]))
        buffer = np.empty((rows, data.shape[1]), dtype=np.float32)
        for i in range(0, data.shape[0], rows):
            n = min(rows, data.shape[0] - i)
            data.read_direct(buffer, np.s_[i : i + n], np.s_[:n])
            out[i : i + n] = buffer[:n]
    X = None
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("RESULT " + json.dumps({"seconds": seconds, "maxrss_mib": hwm_kib / 1024,
                              "shape": None if X is None else list(X.shape)}))
"""


def io_child(what: str, **job: Any) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-c", IO_CHILD, json.dumps({"what": what, **job})],
                               capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{what} child failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_io(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ingest_benchmark import generate_input

    n, bins = args.io_spectra, args.n_bins
    data_bytes = n * bins * 4
    free = shutil.disk_usage(workdir).free
    if free < 3.2 * data_bytes:
        reason = f"needs {3.2 * data_bytes / 1e9:.1f} GB free in {workdir}, has {free / 1e9:.1f} GB"
        print(f"skipping the io section: {reason}")
        return {"skipped": reason}
    source = workdir / "io_input.h5"
    generate_input(source, n_spectra=n, n_bins=bins, chunk_rows=10_000)
    store, copy = workdir / "io_store.h5", workdir / "io_h5py_copy.h5"
    runs: dict[str, list[dict[str, Any]]] = {"copy_store": [], "h5py_copy": [], "read_canonical": [], "h5py_read": []}
    # Interleaved; the page cache and the VM's memory warm up in the first round. The order within a
    # round alternates: on a VM a process that follows one that freed gigabytes gets its memory much
    # faster than one that follows a writer of gigabytes.
    for round_ in range(args.repeat + 1):
        for path in (store, copy):
            path.unlink(missing_ok=True)
        writes = [("copy_store", {"input": str(source), "path": str(store)}),
                  ("h5py_copy", {"input": str(source), "path": str(copy)})]
        reads = [("read_canonical", {"path": str(store)}), ("h5py_read", {"path": str(store), "dataset": "X"})]
        for what, job in writes[:: 1 if round_ % 2 == 0 else -1] + reads[:: 1 if round_ % 2 == 0 else -1]:
            runs[what].append(io_child(what, **job))
    best = {name: min(r["seconds"] for r in values) for name, values in runs.items()}
    out = {"n_spectra": n, "n_bins": bins, "gb": data_bytes / 1e9, "runs": runs,
           "gb_per_s": {name: data_bytes / 1e9 / seconds for name, seconds in best.items()},
           "peak_rss_mib": {name: max(r["maxrss_mib"] for r in values) for name, values in runs.items()},
           "write_ratio": best["h5py_copy"] / best["copy_store"], "read_ratio": best["h5py_read"] / best["read_canonical"]}
    for path in (source, store, copy):
        path.unlink(missing_ok=True)
    return out


# ------------------------------------------------------------------------------------------------
# end to end and scaling, through Snakemake
# ------------------------------------------------------------------------------------------------

def snakemake(workdir: Path, configfile: Path, *extra: str) -> tuple[float, subprocess.CompletedProcess]:
    command = [str(VENV_BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile), "--cores", "2", *extra]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False,
                               env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(extra)} failed:\n{completed.stderr[-4000:]}")
    return seconds, completed


def dry_run_jobs(text: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table of a dry run."""
    jobs, table = {}, False
    for line in text.splitlines():
        if line.startswith("Job stats"):
            table = True
            continue
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if table and match and match.group(1) not in ("total", "all"):  # all: a target, not a process
            jobs[match.group(1)] = int(match.group(2))
        elif table and line.strip().startswith("total"):
            break
    return jobs


def job_benchmarks(result_dir: Path) -> list[dict[str, Any]]:
    """Every job's Snakemake benchmark record (wall seconds, peak RSS): benchmarks/<rule>/... .tsv."""
    rows = []
    for path in sorted((result_dir / "benchmarks").rglob("*.tsv")):
        with open(path) as stream:
            record = next(csv.DictReader(stream, delimiter="\t"))
        rows.append({"rule": path.relative_to(result_dir / "benchmarks").parts[0].removesuffix(".tsv"), "job": str(path.relative_to(result_dir)),
                     "seconds": float(record["s"]), "max_rss_mib": float(record["max_rss"]) if record["max_rss"] != "NA" else 0.0})
    return rows


def command_seconds(code: str, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def fixed_costs() -> dict[str, float]:
    """Seconds of a bare Python start, of importing the stage functions (what every job imports), of torch."""
    python = command_seconds("pass")
    package = command_seconds("import spectral_anomaly.cli, spectral_anomaly.stages")
    with_torch = command_seconds("import spectral_anomaly.cli, spectral_anomaly.stages, torch")
    return {"python_start": python, "job_start": package, "torch_import": with_torch - package}


def deep_training_jobs(config_path: Path) -> int:
    """The train jobs of a config whose detectors are trained over epochs (with torch)."""
    import yaml

    from spectral_anomaly.config import model_instances, split_instance, validate_config
    from spectral_anomaly.models import detector_kind

    config = validate_config(yaml.safe_load(config_path.read_text()))
    deep = [m for m in model_instances(config)
            if detector_kind(config["models"][split_instance(config, m)[0]]["kind"]).trained_by_epochs]
    return len(deep) * len(config["datasets"])


def run_endtoend(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    run_dir = workdir / "endtoend"
    run_dir.mkdir()
    config = run_dir / "config.yaml"
    shutil.copy(ROOT / "config" / "config.yaml", config)
    _, dry = snakemake(run_dir, config, "-n")
    jobs = dry_run_jobs(dry.stdout + dry.stderr)
    wall, _ = snakemake(run_dir, config)
    nothing_to_do, _ = snakemake(run_dir, config)  # Snakemake's own start: parse, validate, build the DAG
    (result_dir,) = [p for p in (run_dir / "results").iterdir() if p.is_dir() and not p.name.startswith(".")]
    records = job_benchmarks(result_dir)
    costs = fixed_costs()
    n_jobs = sum(jobs.values())
    torch_jobs = deep_training_jobs(config)  # the only jobs importing torch
    fixed_cpu = n_jobs * costs["job_start"] + torch_jobs * costs["torch_import"]
    return {"wall_seconds": wall, "jobs": jobs, "n_jobs": n_jobs, "torch_importing_jobs": torch_jobs,
            "snakemake_start_seconds": nothing_to_do, "per_job": costs, "fixed_job_seconds_total": fixed_cpu,
            "job_seconds_total": sum(r["seconds"] for r in records), "job_records": records,
            "peak_rss_mib": max(r["max_rss_mib"] for r in records)}


def write_scaling_input(path: Path, n_spectra: int, n_bins: int) -> None:
    import h5py

    block = 100_000
    with h5py.File(path, "w") as handle:
        spectra = handle.create_dataset("spectra", shape=(n_spectra, n_bins), dtype="float32",
                                        chunks=(min(10_000, n_spectra), n_bins))
        label = handle.create_dataset("metadata/anomalous", shape=(n_spectra,), dtype="int8")
        handle.create_dataset("metadata/run", data=np.arange(n_spectra, dtype=np.int64) // 1000)
        handle["bin_edges"] = np.linspace(0.0, 3000.0, n_bins + 1)
        for start in range(0, n_spectra, block):
            n = min(block, n_spectra - start)
            X, labels = synthetic_spectra(n, n_bins, seed=start, anomaly_fraction=0.05)
            spectra[start : start + n] = X
            label[start : start + n] = labels


def scaling_config(path: Path, *, input_path: Path, epochs: int) -> None:
    import yaml

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["run_name"] = "scaling"
    config["datasets"] = {"synthetic": {"format": "hdf5_array", "path": str(input_path), "dataset": "spectra",
                                        "bin_edges_dataset": "bin_edges", "metadata_group": "metadata",
                                        "anomaly_label": "anomalous != 0"}}
    config["models"] = {"ae": model_spec("autoencoder"), "vae": model_spec("vae")}
    config["pca"]["n_components"] = LATENT
    config["training"] |= {"epochs": epochs, "batch_size": 256}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def pipeline_run(run_dir: Path, *, n_spectra: int, n_bins: int, epochs: int) -> dict[str, Any]:
    """The whole pipeline on ``n_spectra`` synthetic spectra of ``n_bins``: wall time, peak RSS, seconds per rule."""
    run_dir.mkdir()
    input_path = run_dir / "input.h5"
    start = time.perf_counter()
    write_scaling_input(input_path, n_spectra, n_bins)
    generate_seconds = time.perf_counter() - start
    config = run_dir / "config.yaml"
    scaling_config(config, input_path=input_path, epochs=epochs)
    wall, _ = snakemake(run_dir, config)
    (result_dir,) = [p for p in (run_dir / "results").iterdir() if p.is_dir() and not p.name.startswith(".")]
    records = job_benchmarks(result_dir)
    per_rule: dict[str, float] = {}
    for record in records:
        per_rule[record["rule"]] = per_rule.get(record["rule"], 0.0) + record["seconds"]
    shutil.rmtree(run_dir)
    return {"wall_seconds": wall, "generate_seconds": generate_seconds,
            "microseconds_per_spectrum": wall / n_spectra * 1e6, "peak_rss_mib": max(r["max_rss_mib"] for r in records),
            "job_seconds_by_rule": per_rule, "job_records": records}


def run_scaling(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": args.scaling_epochs, "n_bins": args.n_bins, "sizes": {}}
    for n in args.scaling_sizes:
        out["sizes"][n] = pipeline_run(workdir / f"scaling_{n}", n_spectra=n, n_bins=args.n_bins, epochs=args.scaling_epochs)
        print(f"  scaling {n:>9,} spectra: {out['sizes'][n]['wall_seconds']:7.1f} s, "
              f"{out['sizes'][n]['microseconds_per_spectrum']:8.1f} us/spectrum, "
              f"peak RSS {out['sizes'][n]['peak_rss_mib']:,.0f} MiB", flush=True)
    return out


def run_wide(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The whole pipeline on wide spectra (e.g. 16,384-bin TH1s) against the same number of --n-bins spectra.

    The ratio of each wide run's wall time to the reference run's, measured back to back, says how the
    pipeline scales with the number of bins on this machine however loaded it is.
    """
    out: dict[str, Any] = {"epochs": args.scaling_epochs, "n_spectra": args.wide_spectra, "reference_bins": args.n_bins,
                           "bins": {}}
    for n_bins in [args.n_bins, *args.wide_bins]:
        run = pipeline_run(workdir / f"wide_{n_bins}", n_spectra=args.wide_spectra, n_bins=n_bins, epochs=args.scaling_epochs)
        out["bins"][n_bins] = run
        run["ratio_to_reference"] = run["wall_seconds"] / out["bins"][args.n_bins]["wall_seconds"]
        print(f"  wide {args.wide_spectra:,} x {n_bins:>6,} bins: {run['wall_seconds']:6.1f} s "
              f"({run['ratio_to_reference']:.2f} x the {args.n_bins}-bin run), peak RSS {run['peak_rss_mib']:,.0f} MiB", flush=True)
    return out


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
            "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def largest_rules(run: dict[str, Any], n: int = 5) -> str:
    """The ``n`` rules with the most summed job seconds of a pipeline run, as ``rule seconds, ...``."""
    ranked = sorted(run["job_seconds_by_rule"].items(), key=lambda item: -item[1])[:n]
    return ", ".join(f"{rule} {seconds:.1f}" for rule, seconds in ranked)


def print_report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"\n== {m['date']}  {m['cpu']}, {m['cores']} cores ({m['cpu_capability']}), torch {m['torch']}, "
          f"load at start {m['load_average_at_start'][0]:.2f}")
    for kind in ("autoencoder", "vae"):
        t = result.get(f"training_{kind}")
        if t:
            print(f"\ntraining {kind}: {result['n_train']:,} x {result['n_bins']}, batch {result['batch_size']}, "
                  f"{result['epochs']} epochs, {result['device']} (pipeline with checkpoint + validation every epoch)")
            print(f"  {'':<24} {'whole run, best of runs':>34}   {'best epoch (+ checkpoint write)':>34}")
            for name, rate in t["spectra_per_s"].items():
                print(f"  {name:<24} {rate:>10,.0f} spectra/s {t['ratio_to_minimal'][name]:5.2f} x minimal   "
                      f"{t['epoch_spectra_per_s'][name]:>10,.0f} spectra/s {t['epoch_ratio_to_minimal'][name]:5.2f} x minimal")
            print(f"  checkpoint write per epoch: {t['checkpoint_write_seconds'] * 1e3:.0f} ms")
    pyod = result.get("training_pyod")
    if pyod and "spectra_per_s" in pyod:
        ref = result["training_autoencoder"]["spectra_per_s"]["minimal_fp32"]
        print(f"  {'pyod AutoEncoder':<24} {pyod['spectra_per_s']:>10,.0f} spectra/s   "
              f"{pyod['spectra_per_s'] / ref:5.2f} x minimal fp32 loop (1 epoch, own scoring subtracted)")
    for kind in ("autoencoder", "vae"):
        s = result.get(f"scoring_{kind}")
        if s:
            k = f", K = {s['mc_samples']}" if s["mc_samples"] else ""
            print(f"\nscoring {kind} (batch {s['batch_size']}{k}): pipeline {s['spectra_per_s']['pipeline']:,.0f} spectra/s, "
                  f"bare forward {s['spectra_per_s']['bare_forward']:,.0f}: {s['ratio_to_bare_forward']:.2f} x")
    pyod = result.get("scoring_pyod")
    if pyod:
        if "skipped" in pyod:
            print(f"  PyOD comparison skipped: {pyod['skipped']}")
        else:
            pipeline = result["scoring_autoencoder"]["spectra_per_s"]["pipeline"]
            for name, what in (("default", "as configured (its batch size)"), ("pipeline_batch", "in batches of")):
                run = pyod[name]
                print(f"  pyod {pyod['version']} AutoEncoder decision_function {what} {run['batch_size']}: "
                      f"{run['spectra_per_s']:,.0f} spectra/s; pipeline AE scoring is "
                      f"{pipeline / run['spectra_per_s']:.2f} x PyOD")
    io = result.get("io")
    if io and "skipped" not in io:
        print(f"\nstore I/O, {io['n_spectra']:,} x {io['n_bins']} float32 ({io['gb']:.1f} GB), best of "
              f"{len(io['runs']['h5py_read'])}, each in a fresh process:")
        for name in ("copy_store", "h5py_copy", "read_canonical", "h5py_read"):
            print(f"  {name:<16} {io['gb_per_s'][name]:6.2f} GB/s   peak RSS {io['peak_rss_mib'][name]:8,.0f} MiB")
        print(f"  write (copy store) {io['write_ratio']:.2f} x h5py;  read (read_canonical) {io['read_ratio']:.2f} x h5py")
    e2e = result.get("endtoend")
    if e2e:
        pj = e2e["per_job"]
        print(f"\nend to end, snakemake --cores 2 on config/config.yaml: {e2e['wall_seconds']:.1f} s wall, "
              f"{e2e['n_jobs']} jobs ({', '.join(f'{r} {c}' for r, c in e2e['jobs'].items())})")
        print(f"  Snakemake start (a run with nothing to do): {e2e['snakemake_start_seconds']:.1f} s")
        print(f"  per job: Python + package imports {pj['job_start']:.2f} s; torch import {pj['torch_import']:.2f} s more "
              f"in {e2e['torch_importing_jobs']} jobs")
        print(f"  fixed job costs {e2e['fixed_job_seconds_total']:.1f} s of {e2e['job_seconds_total']:.1f} s summed job "
              f"time ({e2e['fixed_job_seconds_total'] / e2e['job_seconds_total']:.0%}); peak RSS {e2e['peak_rss_mib']:.0f} MiB")
    scaling = result.get("scaling")
    if scaling:
        print(f"\nscaling, whole pipeline (ingest .. report, AE + VAE + PCA) through snakemake --cores 2, "
              f"{scaling['epochs']} epochs, {scaling['n_bins']} bins:")
        for n, s in scaling["sizes"].items():
            rules = largest_rules(s)
            print(f"  {int(n):>9,} spectra {s['wall_seconds']:7.1f} s  {s['microseconds_per_spectrum']:7.1f} us/spectrum  "
                  f"peak RSS {s['peak_rss_mib']:7,.0f} MiB   (job s: {rules})")
    wide = result.get("wide")
    if wide:
        print(f"\nwide spectra, whole pipeline through snakemake --cores 2, {wide['n_spectra']:,} spectra, "
              f"{wide['epochs']} epochs:")
        for n_bins, s in wide["bins"].items():
            rules = largest_rules(s)
            print(f"  {int(n_bins):>6,} bins {s['wall_seconds']:7.1f} s  {s['ratio_to_reference']:5.2f} x the "
                  f"{wide['reference_bins']}-bin run  peak RSS {s['peak_rss_mib']:7,.0f} MiB   (job s: {rules})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure (default: all)")
    parser.add_argument("--n-spectra", type=int, default=200_000, help="training spectra for training and scoring (default %(default)s)")
    parser.add_argument("--n-bins", type=int, default=500, help="bins per spectrum (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every timed training (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each, interleaved; the best counts (default %(default)s)")
    parser.add_argument("--compile", action="store_true", help="also time the pipeline with torch.compile (adds its compile time)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--io-spectra", type=int, default=1_000_000, help="spectra of the io section (default %(default)s)")
    parser.add_argument("--scaling-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--scaling-epochs", type=int, default=2, help="epochs of every training in the scaling and wide runs")
    parser.add_argument("--wide-bins", type=int, nargs="+", default=[16_384, 20_000],
                        help="bins of the wide-spectra runs, each against a --n-bins run (default %(default)s)")
    parser.add_argument("--wide-spectra", type=int, default=1000, help="spectra of every wide-spectra run (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new one in /tmp, deleted)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sections = set(args.sections)
    workdir = Path(tempfile.mkdtemp(prefix="spectral_anomaly_bench_", dir=args.workdir))
    result: dict[str, Any] = {"command": " ".join(["benchmarks/performance_benchmark.py", *(argv or sys.argv[1:])]),
                              "machine": machine()}
    try:
        if sections & {"training", "scoring"}:
            result |= run_training_and_scoring(args, sections, workdir)
        if "io" in sections:
            result["io"] = run_io(args, workdir)
        if "endtoend" in sections:
            result["endtoend"] = run_endtoend(args, workdir)
        if "scaling" in sections:
            result["scaling"] = run_scaling(args, workdir)
        if "wide" in sections:
            result["wide"] = run_wide(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
