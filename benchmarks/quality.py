"""Measure anomaly-detection quality (ROC AUC) of every model variant on real labelled data.

What it does
------------
For each dataset it runs the pipeline's stages exactly as the workflow does (every deep detector once
per training seed, ``--seeds``, default 0 1 2), by calling the
stage functions of :mod:`spectral_anomaly.stages` (``run_ingest``, ``run_split``,
``run_normalize`` and ``run_train`` per model, which fits and scores it) on a config from
``benchmarks/quality_configs/`` validated with :func:`spectral_anomaly.config.validate_config`
(which fills the defaults), writing into ``<out>/<dataset>/`` with the workflow's layout of a
result version (:class:`spectral_anomaly.store.layout.VersionLayout`).
It then reads every score table with :func:`spectral_anomaly.score.read_scores` and computes, on
the rows of the ``test`` split (as the report's ``metrics.json`` does), the ROC AUC and the average
precision (PR AUC) of every score column of every model, and the difference of each ROC AUC to
the best ROC AUC of the PCA baseline's scores (``pca_nll``, ``reconstruction_error``, ``chi2``,
``max_abs_pull``). Picking PCA's best score on the test split favours PCA slightly. The ROC AUCs
agree with those of the report's ``metrics.json`` for the columns it evaluates.

Because the ROC AUC saturates at 1 on these data, every score also gets a margin: the robust z
(``(score - median of the test normals) / (their IQR / 1.349)``) of the weakest anomaly, next to the
largest z of a normal spectrum (separated when the first is larger), and the ROC AUC on a harder
subset of the test split (``HARD_SUBSETS``: CMS run 297050 alone, with its 5 bad lumisections;
gamma: only the sources at 223.6 and 316.2 cm).

Datasets
--------
Hard sets, which tell detectors apart (``DATASETS``; ``EVALUATE_ON`` restricts the evaluated rows to
their protocol's):

``macho``
    ``../shared/data/macho_lightcurves/folded.csv``: real MACHO light curves folded into 64 phase bins;
    normal = pulsating stars (RR Lyrae, Cepheids), anomalous = eclipsing binaries; trained on the
    normal stars of ``fold == 0``, evaluated on every star of ``fold == 1`` (the README's protocol).
``macho_hard``
    The harder variant: a DERIVED copy without the eclipsing binaries; normal = RR Lyrae, anomalous =
    Cepheids.
``drifting_demo``
    GENERATED (:func:`spectral_anomaly.demo.generate_drifting_runs`): 6 runs of 1000 spectra whose gain,
    resolution, count level and background slope change from run to run, with subtle anomalies;
    trained on run 300000, evaluated on the others.
``macho_defaults``, ``drifting_demo_defaults``
    The same data with only the dataset keys and the protocol's split in the config: the defaults
    (normalization ``auto``, the recommended detector set, latent sizes ``auto``).

Controls, separated by every detector:

``cms_pixel``
    ``../shared/data/cms_dqm_pixel_zerobias2017B/data_small_train.csv`` (real CMS DQM histograms,
    one per lumisection, 100 bins); label ``y == 0``; trained on the good lumisections of run
    297050 (``train_selection: run == 297050``, ``train_on: normal``).
``gamma_nai_derived``
    A DERIVED dataset written into ``<out>/gamma_nai_derived/derived/gamma_nai_derived.h5`` from
    ``../shared/data/gamma_nai_baldr/measurements.h5`` (pandas keys ``spectra``, ``info`` and
    ``sources`` read with h5py; the pickled key ``other_info`` is never read): ``--n-resamples``
    seeded Poisson resamples of the background measurement (row 0, live time 611.7 s) scaled to
    the median live time of the 22 source runs (about 60 s), labelled normal, plus the 22 measured
    source runs, labelled anomalous. Training is restricted to resamples, so the test split holds
    held-out resamples and every source run. The background measurement itself is left out.

Each table also shows, for reference only, the scores of the raw total counts per spectrum
(``total_counts``): the normalization divides them out, and the Poisson likelihood takes them as given.

Training runs with one torch thread (``--threads``, as the workflow's train rule, ``threads: 1``):
the thread count changes the floating-point summation order and so the training trajectory, and
one thread also suffers least from other jobs on a shared machine. The JSON holds the wall time,
the CPU time and the load average, since wall times on a busy machine say little.

Run it
------
From the repository root::

    .venv/bin/python benchmarks/quality.py --out /tmp/quality            # full run, 3 training seeds, one torch thread
    .venv/bin/python benchmarks/quality.py --quick                       # smoke run, 12-45 s
    .venv/bin/python benchmarks/quality.py --datasets cms_pixel --models ae_mlp vae_mlp_poisson

It prints one markdown table per dataset and writes ``<out>/quality.json`` (``--json``) with every
number, the effective configs, the command line, package version, git commit, machine and date.
Exit status: 0 when it ran, 2 when a stage failed (the error is printed and recorded in the JSON;
the other models and datasets still run).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import quality_data
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = quality_data.DATA_ROOT


def _score_columns(kind: str | None = None) -> tuple[str, ...]:
    from spectral_anomaly.columns import SCORE_COLUMNS as ALL
    from spectral_anomaly.models import DETECTORS

    return ALL if kind is None else tuple(c for c in DETECTORS[kind].score_columns if c in ALL)


CMS_CSV = DATA_ROOT / "cms_dqm_pixel_zerobias2017B" / "data_small_train.csv"
CONFIG_DIR = Path(__file__).resolve().parent / "quality_configs"
#: dataset -> its group: "hard" sets tell detectors apart; "control" sets are separated by every detector
DATASETS = {"macho": "hard", "macho_hard": "hard", "drifting_demo": "hard",
            "macho_defaults": "hard", "drifting_demo_defaults": "hard",
            "cms_pixel": "control", "gamma_nai_derived": "control"}
#: a config of only the dataset keys (defaults for the rest) on the data of another entry
SAME_DATA = {"macho_defaults": "macho", "drifting_demo_defaults": "drifting_demo"}
#: the rows of the test split a dataset's protocol evaluates on (pandas query over the score table)
EVALUATE_ON = {"macho": "fold == 1", "macho_hard": "fold == 1", "drifting_demo": "run != 300000",
               "macho_defaults": "fold == 1", "drifting_demo_defaults": "run != 300000"}
#: stratified bootstrap resamples of the evaluated rows for the ROC AUC's spread
BOOTSTRAP_RESAMPLES = 200

#: score columns evaluated, in table order (higher = more anomalous for every one of them): the table's
#: anomaly_score and every anomaly-sign score the detectors declare (spectral_anomaly.columns.SCORE_COLUMNS)
SCORE_COLUMNS = ("anomaly_score", *_score_columns())
#: the PCA's anomaly-sign scores, of which the best is the reference
PCA_SCORES = _score_columns("pca")
#: a harder subset of each test split, evaluated on its own (pandas query over the score table)
HARD_SUBSETS = {
    "cms_pixel": ("run == 297050", "run 297050 only: its 5 bad lumisections vs its held-out good ones"),
    "gamma_nai_derived": ("is_source == 0 or distance_cm > 200",
                          "sources at 223.6 and 316.2 cm only (10 runs) vs the held-out resamples"),
}
#: --quick: training options and derived-data size for a smoke run
QUICK_TRAINING = {"epochs": 8, "patience": 3}
QUICK_RESAMPLES = 300

log = logging.getLogger("quality")


# --------------------------------------------------------------------------------------- config


def dataset_path(dataset: str, out: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any] | None]:
    """The input file of a dataset, writing it first where it is derived or generated, and its description."""
    derived = out / "derived"
    dataset = SAME_DATA.get(dataset, dataset)
    if dataset == "cms_pixel":
        return CMS_CSV, None
    if dataset == "macho":
        return quality_data.MACHO_CSV, None
    if dataset == "macho_hard":
        path = derived / "macho_hard.csv"
        return path, quality_data.write_macho_hard(path)
    if dataset == "drifting_demo":
        path = derived / "drifting_demo.h5"
        return path, quality_data.write_drifting_demo(path, seed=args.resample_seed)
    path = derived / "gamma_nai_derived.h5"
    n_resamples = args.n_resamples or (QUICK_RESAMPLES if args.quick else 2000)
    return path, quality_data.write_gamma_derived(path, n_resamples=n_resamples, seed=args.resample_seed)


def load_quality_config(dataset: str, *, data_path: Path, quick: bool, device: str | None,
                        models: list[str] | None, results_dir: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """The dataset's benchmark config with its data path (and training seeds) set, validated with defaults filled."""
    from spectral_anomaly.config import validate_config

    source = CONFIG_DIR / f"{dataset}.yaml"
    config = yaml.safe_load(source.read_text())
    config["datasets"][dataset]["path"] = str(data_path)
    config["results_dir"] = str(results_dir)
    config.setdefault("training", {})
    if quick:
        config["training"].update(QUICK_TRAINING)
    if device is not None:
        config["training"]["device"] = device
    if seeds:
        config["training"]["seeds"] = list(seeds)
    if models:
        unknown = sorted(set(models) - set(config["models"]))
        if unknown:
            raise SystemExit(f"{source}: no model(s) {unknown}; configured: {', '.join(config['models'])}")
        config["models"] = {name: spec for name, spec in config["models"].items()
                            if name in models or spec["kind"] == "pca"}  # the PCA is the reference
    return validate_config(config, source=source)


# -------------------------------------------------------------------------------------- metrics


def roc_auc_with_error(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """ROC AUC, its Hanley-McNeil standard error and the average precision; NaN scores left out."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    values = np.asarray(scores, dtype=np.float64)
    limit = np.finfo(np.float64).max
    values = np.nan_to_num(values, nan=np.nan, posinf=limit, neginf=-limit)
    keep = ~np.isnan(values)
    labels, values = np.asarray(labels)[keep].astype(np.int64), values[keep]
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return {"roc_auc": None, "roc_auc_se": None, "pr_auc": None, "n_nan": int((~keep).sum())}
    auc = float(roc_auc_score(labels, values))
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = math.sqrt(max(0.0, (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)))
    return {"roc_auc": auc, "roc_auc_se": se, "pr_auc": float(average_precision_score(labels, values)),
            "n_nan": int((~keep).sum())}


def bootstrap_roc_auc_std(labels: np.ndarray, scores: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = 0) -> float | None:
    """Standard deviation of the ROC AUC over stratified bootstrap resamples (normals and anomalies
    resampled separately, so each resample keeps the class counts); NaN scores left out."""
    from scipy.stats import rankdata

    values = np.asarray(scores, dtype=np.float64)
    keep = ~np.isnan(values)
    labels, values = np.asarray(labels)[keep].astype(np.int64), values[keep]
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if len(positive) == 0 or len(negative) == 0:
        return None
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(positive, size=(resamples, len(positive))),
                           rng.choice(negative, size=(resamples, len(negative)))], axis=1)
    ranks = rankdata(values[rows], axis=1)  # ties share their mean rank, as in the AUC's definition
    n_pos, n_neg = len(positive), len(negative)
    aucs = (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(aucs.std(ddof=1))


def separation(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Robust z-scores against the normal spectra: ``z = (score - median of normals) / (normals' IQR / 1.349)``.

    ``weakest_anomaly_z`` is the z of the least anomalous anomaly, ``normal_max_z`` the largest z of a
    normal spectrum. A margin that keeps telling models apart when the ROC AUC is 1: the classes are
    separated when ``weakest_anomaly_z > normal_max_z``, and the further, the larger the margin.
    """
    values = np.asarray(scores, dtype=np.float64)
    normal, anomalous = values[labels == 0], values[labels == 1]
    normal, anomalous = normal[np.isfinite(normal)], anomalous[np.isfinite(anomalous)]
    if len(normal) < 2 or len(anomalous) == 0:
        return {"weakest_anomaly_z": None, "normal_max_z": None}
    q25, q50, q75 = np.percentile(normal, [25, 50, 75])
    width = (q75 - q25) / 1.349
    if width <= 0:
        return {"weakest_anomaly_z": None, "normal_max_z": None}
    return {"weakest_anomaly_z": float((anomalous.min() - q50) / width), "normal_max_z": float((normal.max() - q50) / width)}


def evaluate_table(path: Path, *, subset: str | None = None, evaluate_on: str | None = None) -> dict[str, Any]:
    """AUCs of every score column of one score table on its test split (only the rows of ``evaluate_on``
    where given) and on a query subset of it."""
    from spectral_anomaly.score import read_scores

    table = read_scores(path)
    test = table[table["split"].astype(str) == "test"]
    if evaluate_on:
        test = test.query(evaluate_on)
    labels = test["label"].to_numpy()
    hard = test.query(subset) if subset else None
    scores = {}
    for column in SCORE_COLUMNS:
        if column in test.columns and (column == "anomaly_score" or column != table.attrs["primary_score"]):
            scores[column] = roc_auc_with_error(labels, test[column].to_numpy())
            scores[column]["roc_auc_bootstrap_std"] = bootstrap_roc_auc_std(labels, test[column].to_numpy())
            scores[column].update(separation(labels, test[column].to_numpy()))
            if hard is not None:
                scores[column]["subset_roc_auc"] = roc_auc_with_error(hard["label"].to_numpy(),
                                                                      hard[column].to_numpy())["roc_auc"]
    return {"model_kind": table.attrs["model_kind"], "primary_score": table.attrs["primary_score"],
            "n_test": int(len(test)), "n_test_anomalous": int((labels == 1).sum()), "scores": scores,
            "subset": None if hard is None else {"query": subset, "n": int(len(hard)),
                                                 "n_anomalous": int(hard["label"].sum())},
            "test_rows": test}


# ----------------------------------------------------------------------------------------- runs


def model_names(config: dict[str, Any]) -> list[str]:
    """The trained models of the config: one per model, or one per (model, seed) where the package
    trains several seeds (``spectral_anomaly.config.model_instances``)."""
    try:
        from spectral_anomaly.config import model_instances
    except ImportError:
        return list(config["models"])
    return list(model_instances(config))


def run_dataset(dataset: str, config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run every stage for one dataset and evaluate every score table. Failures are recorded, not raised."""
    from spectral_anomaly import stages
    from spectral_anomaly.config import model_config
    from spectral_anomaly.store.canonical import read_canonical
    from spectral_anomaly.store.layout import VersionLayout

    layout = VersionLayout(out)
    data, split, normalization = layout.store(dataset), layout.split(dataset), layout.normalization(dataset)
    result: dict[str, Any] = {"config": copy.deepcopy(config), "models": {}, "errors": {}, "seconds": {}}

    def timed(name: str, function, *args, **kwargs) -> bool:
        started = time.perf_counter()
        try:
            function(*args, **kwargs)
            return True
        except Exception as error:  # noqa: BLE001 - record and continue with the other models
            result["errors"][name] = f"{type(error).__name__}: {error}"
            result["errors"][name + ".traceback"] = traceback.format_exc()
            print(f"  FAILED {name}: {type(error).__name__}: {error}", file=sys.stderr)
            return False
        finally:
            result["seconds"][name] = round(time.perf_counter() - started, 3)

    path = config["datasets"][dataset]["path"]
    if not (timed("ingest", stages.run_ingest, config, dataset, input_paths=[path], output=data)
            and timed("split", stages.run_split, config, dataset, data_path=data, output=split)
            and timed("normalize", stages.run_normalize, config, dataset, data_path=data, split_path=split,
                      output=normalization)):
        return result
    split_sizes = {k: len(v) for k, v in json.loads(split.read_text()).items() if k in ("train", "validation", "test")}
    result["split"] = split_sizes
    print(f"  split: {split_sizes}", file=sys.stderr)

    tables: dict[str, Path] = {}
    for model in model_names(config):
        print(f"  {model}: fitting ...", file=sys.stderr, flush=True)
        if timed(f"{model}.train", stages.run_train, config, dataset, model, data_path=data, split_path=split,
                 normalization_path=normalization, model_path=layout.model(dataset, model),
                 history_path=layout.history(dataset, model), summary_path=layout.summary(dataset, model),
                 scores_path=layout.scores(dataset, model), examples_path=layout.examples(dataset, model)):
            tables[model] = layout.scores(dataset, model)
            summary = json.loads(layout.summary(dataset, model).read_text())
            result["models"][model] = {"training": summary}
            epochs = f"{summary['epochs_trained']} epochs (best {summary['best_epoch']}), " if summary.get("epochs_trained") else ""
            print(f"  {model}: {epochs}{result['seconds'][f'{model}.train']:.1f} s", file=sys.stderr)

    test_rows = None
    for model, table_path in tables.items():
        try:
            evaluation = evaluate_table(table_path, subset=HARD_SUBSETS.get(dataset, (None,))[0],
                                        evaluate_on=EVALUATE_ON.get(dataset))
        except Exception as error:  # noqa: BLE001
            result["errors"][f"{model}.evaluate"] = f"{type(error).__name__}: {error}"
            continue
        test_rows = evaluation.pop("test_rows")
        entry = result["models"].setdefault(model, {})
        entry.update(evaluation)
        entry["spec"] = dict(model_config(config, model))
    if test_rows is not None:  # reference: the raw totals, which every normalization divides out
        spectra = read_canonical(data)
        totals = spectra.X.astype(np.float64).sum(axis=1)[test_rows["spectrum_id"].to_numpy()]
        labels = test_rows["label"].to_numpy()
        reference = {**roc_auc_with_error(labels, totals), **separation(labels, totals)}
        subset = HARD_SUBSETS.get(dataset)
        if subset:
            hard = test_rows.eval(subset[0]).to_numpy()
            reference["subset_roc_auc"] = roc_auc_with_error(labels[hard], totals[hard])["roc_auc"]
        result["reference"] = {"total_counts": reference}
    result["seed_summary"] = summarize_seeds(config, result["models"])
    result["primary_comparison"] = compare_primaries(result["seed_summary"])
    pca_scores = result["models"].get("pca", {}).get("scores", {})
    candidates = {name: s["roc_auc"] for name, s in pca_scores.items()
                  if name in PCA_SCORES and s["roc_auc"] is not None}
    if candidates:
        best = max(candidates, key=candidates.get)
        result["pca_best"] = {"score": best, "roc_auc": candidates[best]}
    return result


def summarize_seeds(config: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """Per model (over its training seeds) and score: the mean ROC AUC, its spread over the seeds (standard
    deviation; 0 for one seed) and the mean bootstrap standard deviation."""
    from spectral_anomaly.config import split_instance

    grouped: dict[str, list[dict[str, Any]]] = {}
    for instance, entry in models.items():
        if "scores" in entry:
            grouped.setdefault(split_instance(config, instance)[0], []).append(entry)
    summary: dict[str, Any] = {}
    for model, entries in grouped.items():
        scores: dict[str, Any] = {}
        for column in entries[0]["scores"]:
            aucs = [e["scores"][column]["roc_auc"] for e in entries if e["scores"].get(column, {}).get("roc_auc") is not None]
            boots = [e["scores"][column]["roc_auc_bootstrap_std"] for e in entries
                     if e["scores"].get(column, {}).get("roc_auc_bootstrap_std") is not None]
            if aucs:
                scores[column] = {"roc_auc_mean": float(np.mean(aucs)),
                                  "roc_auc_seed_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
                                  "bootstrap_std": float(np.mean(boots)) if boots else None, "n_seeds": len(aucs)}
        summary[model] = {"kind": entries[0]["model_kind"], "primary_score": entries[0]["primary_score"], "scores": scores}
    return summary


def compare_primaries(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The best deep detector's primary score (mean over seeds) against the best PCA's primary score."""
    def primaries(pca: bool) -> dict[str, float]:
        return {model: entry["scores"]["anomaly_score"]["roc_auc_mean"] for model, entry in summary.items()
                if (entry["kind"] == "pca") == pca and "anomaly_score" in entry["scores"]}

    deep, pca = primaries(False), primaries(True)
    if not deep or not pca:
        return None
    best_deep, best_pca = max(deep, key=deep.get), max(pca, key=pca.get)
    return {"best_deep": best_deep, "best_deep_roc_auc": deep[best_deep], "best_pca": best_pca,
            "best_pca_roc_auc": pca[best_pca], "pca_bootstrap_std": summary[best_pca]["scores"]["anomaly_score"]["bootstrap_std"],
            "difference": deep[best_deep] - pca[best_pca]}


# -------------------------------------------------------------------------------------- output


def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _describe(spec: dict[str, Any]) -> str:
    if spec.get("kind") == "pca":
        return "PCA"
    text = f"{'AE' if spec['kind'] == 'autoencoder' else 'VAE'} {spec['architecture']}"
    if spec["kind"] == "vae":
        text += f" {spec['likelihood']}"
        if spec.get("beta_warmup_epochs"):
            text += f", KL warm-up {spec['beta_warmup_epochs']}"
    return text


def markdown_tables(dataset: str, result: dict[str, Any]) -> str:
    """The dataset's results as markdown: one row per (model, score) and a training summary."""
    lines: list[str] = [*compact_table(result), ""]
    best = result.get("pca_best")
    subset = HARD_SUBSETS.get(dataset)
    if best:
        lines.append(f"Test split: {result.get('n_test', '?')} spectra, {result.get('n_test_anomalous', '?')} anomalous. "
                     f"PCA best: `{best['score']}`, ROC AUC {best['roc_auc']:.3f}. "
                     "± is the Hanley-McNeil standard error of the ROC AUC. z: robust z-score against the test "
                     "normals (median, IQR/1.349) of the weakest anomaly / of the most extreme normal spectrum"
                     + (f"; subset: {subset[1]}." if subset else "."))
        lines.append("")
    lines.append("| model | score | ROC AUC | ± | Δ vs PCA best | PR AUC | z weakest anomaly / max normal | ROC AUC subset |")
    lines.append("|---|---|---|---|---|---|---|---|")

    def row(model: str, label: str, values: dict[str, Any]) -> str:
        delta = None if best is None or values["roc_auc"] is None else values["roc_auc"] - best["roc_auc"]
        z = f"{_fmt(values.get('weakest_anomaly_z'), 1)} / {_fmt(values.get('normal_max_z'), 1)}"
        return (f"| {model} | {label} | {_fmt(values['roc_auc'])} | {_fmt(values['roc_auc_se'])} | "
                f"{_fmt(delta, signed=True)} | {_fmt(values['pr_auc'])} | {z} | {_fmt(values.get('subset_roc_auc'))} |")

    for model in ["pca", *[m for m in result["models"] if m != "pca"]]:  # the reference first
        entry = result["models"].get(model)
        if not entry or "scores" not in entry:
            continue
        for column, values in entry["scores"].items():
            label = f"**anomaly_score** (= {entry['primary_score']})" if column == "anomaly_score" else column
            lines.append(row(model, label, values))
    for name, values in result.get("reference", {}).items():
        lines.append(row("(reference)", f"{name} (raw, not normalized)", values))
    lines.append("")
    lines.extend(seed_table(result))
    lines.append("")
    lines.append("| model | variant | epochs trained | best epoch | best validation loss | train s |")
    lines.append("|---|---|---|---|---|---|")
    for model, entry in result["models"].items():
        training = entry.get("training")
        if training and training.get("best_validation_loss") is not None:  # trained over epochs
            lines.append(f"| {model} | {_describe(entry['spec'])} | {training['epochs_trained']} | {training['best_epoch']} | "
                         f"{training['best_validation_loss']:.4g} | {training['training_seconds']:.1f} |")
    if result["errors"]:
        lines.append("")
        for name, message in result["errors"].items():
            if not name.endswith(".traceback"):
                lines.append(f"- FAILED {name}: {message}")
    return "\n".join(lines)


def compact_table(result: dict[str, Any]) -> list[str]:
    """Markdown, one row per model: its primary score's mean ROC AUC over seeds with the seeds' and the
    bootstrap spread, and the best of its other scores (picked on the test split: for reading only)."""
    lines = ["| model | primary score | ROC AUC | seed std | bootstrap std | best other score (test-picked) |",
             "|---|---|---|---|---|---|"]
    for model, entry in (result.get("seed_summary") or {}).items():
        primary = entry["scores"].get("anomaly_score")
        if primary is None:
            continue
        others = {c: v["roc_auc_mean"] for c, v in entry["scores"].items() if c not in ("anomaly_score", entry["primary_score"])}
        best = max(others, key=others.get) if others else None
        lines.append(f"| {model} | {entry['primary_score']} | **{_fmt(primary['roc_auc_mean'])}** | "
                     f"{_fmt(primary['roc_auc_seed_std'])} | {_fmt(primary['bootstrap_std'])} | "
                     + (f"{best} {_fmt(others[best])}" if best else "") + " |")
    return lines


def seed_table(result: dict[str, Any]) -> list[str]:
    """Markdown: every model's scores as mean ROC AUC over the training seeds, the seeds' spread and the
    bootstrap spread; then the best deep primary score against the best PCA primary score."""
    summary = result.get("seed_summary") or {}
    lines = ["| model | score | ROC AUC (mean over seeds) | seed std | bootstrap std | seeds |", "|---|---|---|---|---|---|"]
    for model, entry in summary.items():
        for column, values in entry["scores"].items():
            label = f"**{entry['primary_score']}** (primary)" if column == "anomaly_score" else column
            lines.append(f"| {model} | {label} | {_fmt(values['roc_auc_mean'])} | {_fmt(values['roc_auc_seed_std'])} | "
                         f"{_fmt(values['bootstrap_std'])} | {values['n_seeds']} |")
    comparison = result.get("primary_comparison")
    if comparison:
        lines += ["", f"Best deep primary score: {comparison['best_deep']} {comparison['best_deep_roc_auc']:.3f}; "
                      f"best PCA primary score: {comparison['best_pca']} {comparison['best_pca_roc_auc']:.3f} "
                      f"(bootstrap std {_fmt(comparison['pca_bootstrap_std'])}); difference "
                      f"{comparison['difference']:+.3f}."]
    return lines


def environment() -> dict[str, Any]:
    import h5py
    import sklearn
    import torch

    import spectral_anomaly

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "spectral_anomaly_version": spectral_anomaly.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(), "numpy": np.__version__, "sklearn": sklearn.__version__,
        "h5py": h5py.__version__,
    }




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: a new temporary folder); one subfolder per dataset")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: training {QUICK_TRAINING}, {QUICK_RESAMPLES} gamma resamples")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS),
                        help="datasets to run (default: all; hard sets first, then the controls)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="training seeds of every deep detector (default 0 1 2; 0 with --quick)")
    parser.add_argument("--models", nargs="+", default=None, help="only these model names of the configs (PCA always runs)")
    parser.add_argument("--n-resamples", type=int, default=None,
                        help="Poisson resamples of the gamma background (default 2000; 300 with --quick)")
    parser.add_argument("--resample-seed", type=int, default=0, help="seed of the gamma resamples")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="override training.device of the configs (they say cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, as the workflow's train rule, threads: 1)")
    parser.add_argument("--json", type=Path, default=None, help="JSON output (default <out>/quality.json)")
    parser.add_argument("--verbose", action="store_true", help="log every stage and epoch")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:  # the flag cuts need >= 1/rate validation spectra; irrelevant to the AUCs measured here
        logging.getLogger("spectral_anomaly.thresholds").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="spectral_anomaly_quality_"))
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or out / "quality.json"
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": [sys.executable, *sys.argv] if argv is None else ["quality.py", *argv],
        "date": started_at.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
        "out": str(out), "environment": environment(), "load_average_start": list(os.getloadavg()), "datasets": {},
    }
    print(f"output folder: {out}", file=sys.stderr)
    markdown: list[str] = []
    failed = False
    for dataset in args.datasets:
        print(f"{dataset}:", file=sys.stderr, flush=True)
        dataset_out = out / dataset
        data_path, derived = dataset_path(dataset, dataset_out, args)
        dataset_started = time.perf_counter()
        seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
        config = load_quality_config(dataset, data_path=data_path, quick=args.quick, device=args.device,
                                     models=args.models, results_dir=dataset_out, seeds=seeds)
        result = run_dataset(dataset, config, dataset_out)
        result["seconds"]["total"] = round(time.perf_counter() - dataset_started, 3)
        result["group"] = DATASETS[dataset]
        if derived is not None:
            result["derived_dataset"] = derived
        some = next((e for e in result["models"].values() if "n_test" in e), None)
        if some:
            result["n_test"], result["n_test_anomalous"] = some["n_test"], some["n_test_anomalous"]
        failed |= bool(result["errors"])
        report["datasets"][dataset] = result
        title = f"### {dataset} ({DATASETS[dataset]})" + (
            " (DERIVED: Poisson resamples of the background + measured source runs)" if dataset == "gamma_nai_derived"
            else " (DERIVED or GENERATED, see quality_data.py)" if derived else "")
        markdown.append(f"{title}\n\n{markdown_tables(dataset, result)}\n")
        print(f"  {dataset} done in {result['seconds']['total']:.1f} s", file=sys.stderr)
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    report["load_average_end"] = list(os.getloadavg())
    report["markdown"] = "\n".join(markdown)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(markdown))
    print(f"runtime {report['runtime_s']:.1f} s wall, {report['cpu_s']:.1f} s CPU (load average at start "
          f"{report['load_average_start'][0]:.1f}, at end {report['load_average_end'][0]:.1f}); JSON: {json_path}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
