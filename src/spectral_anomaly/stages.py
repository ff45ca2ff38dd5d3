"""One function per pipeline stage: read the stage's input files, run it, write its outputs.

The ``spectral-anomaly`` subcommands (:mod:`.cli`) are thin wrappers around these functions, and
every Snakemake rule calls one subcommand, so each stage can be run and tested on its own.
Heavy libraries (torch, scikit-learn, matplotlib) are imported only inside the stages that need them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path, write_json
from .config import check_model_shapes, dataset_config, model_config, model_instances, split_instance
from .data import evaluate_metadata_expression, read_canonical
from .exceptions import InvalidSpectraError
from .formats import FORMAT_VERSIONS, read_versioned_json, write_versioned_csv

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def run_demo(config: dict[str, Any], *, hdf5_path: PathLike, root_path: PathLike) -> None:
    """Generate the demo spectra and write them as HDF5 and as ROOT."""
    from .demo import generate_demo_spectra, write_demo_hdf5, write_demo_root

    demo = generate_demo_spectra(**config["demo"])
    log.info("demo: %d spectra x %d bins, %d anomalous", *demo.counts.shape, int((demo.metadata["anomaly_kind"] != 0).sum()))
    with atomic_path(hdf5_path) as tmp:
        write_demo_hdf5(demo, tmp)
    with atomic_path(root_path) as tmp:
        write_demo_root(demo, tmp)


def run_ingest(
    config: dict[str, Any], dataset: str, *, input_paths: list[PathLike], output: PathLike,
    checksums: dict[str, str] | None = None,
) -> None:
    """Stream the dataset's raw files into its canonical store."""
    from .ingest import STEPS_NEEDING_COUNTS, ingest_to_store

    require_counts = any(step in STEPS_NEEDING_COUNTS for step in config["normalization"]["steps"]) or any(
        spec.get("likelihood") == "poisson" for spec in config["models"].values())
    ingest_to_store(dataset, dataset_config(config, dataset), paths=input_paths, output=output,
                    checksums=checksums, require_counts=require_counts, store=config["ingest"]["store"])


def run_split(config: dict[str, Any], dataset: str, *, data_path: PathLike, output: PathLike) -> None:
    from .split import make_split, write_split

    spectra = read_canonical(data_path, load_X=False)
    options = config["split"]
    selection = dataset_config(config, dataset).get("train_selection")
    trainable = (
        evaluate_metadata_expression(spectra.metadata, selection, dataset=dataset, key="train_selection")
        if selection else None
    )
    split = make_split(
        spectra.n_spectra, labels=spectra.labels, validation_fraction=options["validation_fraction"],
        test_fraction=options["test_fraction"], seed=options["seed"], train_on=options["train_on"],
        trainable=trainable, dataset=dataset,
    )
    log.info("dataset %s: %s", dataset, ", ".join(f"{name} {len(idx)}" for name, idx in split.items()))
    write_split(split, output, dataset=dataset, seed=options["seed"], train_on=options["train_on"])


def run_normalize(config: dict[str, Any], dataset: str, *, data_path: PathLike, split_path: PathLike, output: PathLike) -> None:
    from .normalize import SpectrumNormalizer, check_training_variation, write_normalizer
    from .split import read_split

    spectra = read_canonical(data_path)
    check_model_shapes(config, dataset=dataset, n_bins=spectra.n_bins)
    train = read_split(split_path)["train"]
    try:
        normalizer = SpectrumNormalizer(steps=config["normalization"]["steps"]).fit(spectra.X, rows=train)
    except InvalidSpectraError as error:
        raise InvalidSpectraError(f"dataset {dataset!r}: {error}") from None
    constant = check_training_variation(normalizer, spectra.X, train, dataset=dataset)
    if constant:
        log.warning("dataset %s: %d of %d bins never %s in the training spectra after normalization; they carry "
                    "no information for the models", dataset, constant, spectra.n_bins, "varies" if constant == 1 else "vary")
    log.info("dataset %s: normalization %s fitted on %d training spectra", dataset, " -> ".join(normalizer.steps), len(train))
    write_normalizer(normalizer, output, dataset=dataset)


def model_hyperparameters(spec: dict[str, Any], *, n_bins: int, normalization: dict[str, Any]) -> dict[str, Any]:
    """Everything that defines a deep model before training, from its config section."""
    keys = ["kind", "architecture", "hidden", "conv_channels", "kernel_size", "latent_dim", "activation"]
    if spec["kind"] == "vae":
        keys += ["likelihood", "sigma_x", "sigma_floor", "beta", "beta_warmup_epochs"]
    return {**{key: spec[key] for key in keys}, "n_bins": n_bins, "normalization": normalization}


def run_train(
    config: dict[str, Any], dataset: str, model: str, *, data_path: PathLike, split_path: PathLike,
    normalization_path: PathLike, model_path: PathLike, history_path: PathLike, summary_path: PathLike,
    scores_path: PathLike | None = None, examples_path: PathLike | None = None,
) -> None:
    """Train one model on one dataset; write the checkpoint, the per-epoch history and a summary.

    With ``scores_path`` and ``examples_path``, also score every spectrum with the trained model in
    the same process, as :func:`run_score` would from the model file (the workflow does this, so
    that torch is imported and the store read once per model rather than twice).
    """
    from .device import describe_device, resolve_device
    from .normalize import read_normalizer
    from .split import read_split
    from .train import save_checkpoint, train_model

    normalizer = read_normalizer(normalization_path)
    spectra, split = read_canonical(data_path), read_split(split_path)
    spec = model_config(config, model)
    training = config["training"]
    device = resolve_device(training["device"])
    hyperparameters = model_hyperparameters(spec, n_bins=spectra.n_bins, normalization=normalizer.to_dict())
    log.info("training %s (%s) on %s: %d training, %d validation spectra, device %s",
             model, spec["kind"], dataset, len(split["train"]), len(split["validation"]), describe_device(device))
    started = time.perf_counter()
    result = train_model(
        hyperparameters, spectra.X[split["train"]], spectra.X[split["validation"]], epochs=training["epochs"],
        batch_size=training["batch_size"], learning_rate=training["learning_rate"], patience=training["patience"],
        min_delta=training["min_delta"], seed=split_instance(config, model)[1], device=device,
        checkpoint_path=f"{model_path}.checkpoint",  # resumes a killed job; deleted when training ends
        precision=training["precision"], compile=training["compile"],
        validation_max_spectra=training["validation_max_spectra"] or None,
    )
    seconds = time.perf_counter() - started
    save_checkpoint(model_path, result=result, hyperparameters=hyperparameters, normalizer=normalizer,
                    training=dict(training), dataset=dataset, model_name=model, device=device,
                    device_name=describe_device(device))
    write_versioned_csv(result.history, history_path, kind="history")
    write_json(summary_path, {
        "format_version": FORMAT_VERSIONS["training_summary"],
        "dataset": dataset, "model": model, "kind": spec["kind"], "device": describe_device(device),
        "epochs_trained": int(len(result.history)), "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss, "training_seconds": round(seconds, 3),
        "n_train": int(len(split["train"])), "n_validation": int(len(split["validation"])),
    })
    log.info("trained %s in %.1f s (%d epochs, best %d)", model, seconds, len(result.history), result.best_epoch)
    if scores_path is not None:
        _score_and_write(config, dataset, model, network=result.model, kind=spec["kind"], spectra=spectra, split=split,
                         device=device, scores_path=scores_path, examples_path=examples_path)


def run_score(
    config: dict[str, Any], dataset: str, model: str, *, data_path: PathLike, split_path: PathLike,
    model_path: PathLike, scores_path: PathLike, examples_path: PathLike,
) -> None:
    """Score every spectrum of the dataset with a trained model file."""
    from .device import resolve_device
    from .split import read_split
    from .train import load_model

    device = resolve_device(config["training"]["device"])
    network, _, checkpoint = load_model(model_path, map_location=device)
    _score_and_write(config, dataset, model, network=network, kind=checkpoint["hyperparameters"]["kind"],
                     spectra=read_canonical(data_path), split=read_split(split_path), device=device,
                     scores_path=scores_path, examples_path=examples_path)


def _score_and_write(
    config: dict[str, Any], dataset: str, model: str, *, network, kind: str, spectra, split: dict, device: str,
    scores_path: PathLike, examples_path: PathLike,
) -> None:
    """Score every spectrum with ``network``; write the score table and the most anomalous examples."""
    from .score import (
        build_score_table,
        reconstruct_deep_model,
        score_deep_model,
        top_spectra,
        write_examples,
        write_scores,
    )
    from .thresholds import add_threshold_flags

    scoring = config["scoring"]
    scores = score_deep_model(network, spectra.X, mc_samples=scoring["mc_samples"], seed=scoring["seed"],
                              device=device, batch_size=scoring["batch_size"], variances=spectra.variances)
    table = build_score_table(spectra, split, scores, model=model, kind=kind)
    table, thresholds = add_threshold_flags(table, false_positive_rates=scoring["false_positive_rates"])
    write_scores(table, scores_path, kind=kind, thresholds=thresholds)
    rows = top_spectra(table, scoring["n_examples"])
    examples = reconstruct_deep_model(network, spectra.X[rows], device=device,
                                      variances=None if spectra.variances is None else spectra.variances[rows])
    write_examples(examples_path, spectra=spectra, table=table, rows=rows, **examples)
    log.info("scored %d spectra of %s with %s", spectra.n_spectra, dataset, model)


def run_baseline(
    config: dict[str, Any], dataset: str, *, data_path: PathLike, split_path: PathLike, normalization_path: PathLike,
    model_path: PathLike, scores_path: PathLike, examples_path: PathLike,
) -> None:
    """Fit the PCA baseline on the training split and score every spectrum."""
    from .models.pca import PCABaseline
    from .normalize import block_rows, read_normalizer
    from .score import (
        build_score_table,
        file_variance_pulls,
        pca_pulls,
        score_pca,
        top_spectra,
        write_examples,
        write_scores,
    )
    from .split import read_split
    from .thresholds import add_threshold_flags

    normalizer = read_normalizer(normalization_path)
    spectra, split = read_canonical(data_path), read_split(split_path)
    # fitted, normalized and scored block by block: the float64 copies of a million spectra would take gigabytes
    size, train = block_rows(spectra.n_bins), split["train"]
    pca = PCABaseline(n_components=config["pca"]["n_components"]).fit_blocks(
        normalizer.transform(spectra.X[train[start : start + size]]) for start in range(0, len(train), size))
    pca.save(model_path)
    parts = []
    for start in range(0, spectra.n_spectra, size):
        block = slice(start, start + size)
        parts.append(score_pca(pca, normalizer.transform(spectra.X[block]), counts=spectra.X[block], normalizer=normalizer,
                               variances=None if spectra.variances is None else spectra.variances[block]))
    scores = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    table = build_score_table(spectra, split, scores, model="pca", kind="pca")
    table, thresholds = add_threshold_flags(table, false_positive_rates=config["scoring"]["false_positive_rates"])
    write_scores(table, scores_path, kind="pca", thresholds=thresholds)
    rows = top_spectra(table, config["scoring"]["n_examples"])
    Z = normalizer.transform(spectra.X[rows])
    reconstruction = normalizer.inverse_transform(pca.inverse_transform(pca.transform(Z)),
                                                  totals=spectra.X[rows].astype(np.float64).sum(axis=1))
    pulls = (pca_pulls(pca, Z) if spectra.variances is None
             else file_variance_pulls(spectra.X[rows].astype(np.float64), reconstruction, spectra.variances[rows]))
    write_examples(examples_path, spectra=spectra, table=table, rows=rows, reconstruction=reconstruction, pulls=pulls)
    log.info("PCA baseline (%d components) scored %d spectra of %s", len(pca.explained_variance_), spectra.n_spectra, dataset)


def run_report(
    config: dict[str, Any], dataset: str, *, result_dir: PathLike, html_path: PathLike, metrics_path: PathLike,
    figure_dir: PathLike,
) -> None:
    """Build the dataset's HTML report, metrics and figures from stored scores, histories and examples.

    Reads nothing but the version's stored files (no model is loaded, nothing is scored), so the
    report can be rebuilt with other ``report`` options or newer report code at any time.
    """
    from .config import check_report_options
    from .report import FIGURE_NAMES, build_report

    check_report_options(config)
    root = Path(result_dir)
    models = model_instances(config)
    spectra = read_canonical(root / "data" / f"{dataset}.h5", load_X=False)
    devices = {m: read_versioned_json(root / "models" / dataset / f"{m}.summary.json", kind="training_summary",
                                      step="train")["device"] for m in models}
    data_summary = {"n_spectra": spectra.n_spectra, "n_bins": spectra.n_bins, "sources": list(spectra.source_sha256),
                    "n_dropped_nonfinite": spectra.n_dropped_nonfinite, "devices": devices}
    entry = dataset_config(config, dataset)  # unit of the bin edges where known: bin_unit, else keV for the demo data
    bin_unit = entry.get("bin_unit") or ("keV" if str(entry.get("path", "")).startswith("demo://") else None)
    build_report(
        dataset=dataset, run_name=root.name,
        scores={m: root / "scores" / dataset / f"{m}.parquet" for m in [*models, "pca"]},
        histories={m: root / "models" / dataset / f"{m}.history.csv" for m in models},
        examples={m: root / "scores" / dataset / f"{m}.examples.npz" for m in [*models, "pca"]},
        run_config=config, html_path=html_path, metrics_path=metrics_path,
        figure_paths={name: Path(figure_dir) / f"{name}.png" for name in FIGURE_NAMES},
        n_top=config["report"]["top_spectra"], data_summary=data_summary, bin_unit=bin_unit,
    )


def run_write_config(config: dict[str, Any], *, output: PathLike) -> None:
    """Write the effective (validated, defaults filled) config into the result version."""
    import yaml

    from .atomic import write_text

    write_text(output, "# effective config of this result version, written by the workflow\n"
               + yaml.safe_dump(config, sort_keys=False))


def run_manifest(
    config: dict[str, Any], *, result_dir: PathLike, input_checksums: dict[str, str], output: PathLike,
    front_page: PathLike | None = None,
) -> None:
    """Write the version's manifest and, with ``front_page``, the front page of ``snakemake --report``."""
    from .manifest import build_manifest

    manifest = build_manifest(config, result_dir=Path(result_dir), input_checksums=input_checksums)
    if front_page is not None:
        from .atomic import write_text
        from .versions import report_front_page

        write_text(front_page, report_front_page(manifest, result_dir=result_dir))
    write_json(output, manifest)
