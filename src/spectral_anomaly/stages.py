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

from .config import check_bin_count, check_model_shapes, dataset_config, model_config, model_instances, split_instance
from .exceptions import InvalidSpectraError
from .store.atomic import atomic_path, write_json
from .store.canonical import evaluate_metadata_expression, read_canonical
from .store.formats import FORMAT_VERSIONS, read_versioned_json, write_versioned_csv
from .store.layout import VersionLayout
from .text import counted

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def run_demo(config: dict[str, Any], *, hdf5_path: PathLike, root_path: PathLike) -> None:
    """Generate the demo spectra and write them as HDF5 and as ROOT."""
    from .demo import generate_demo_spectra, write_demo_hdf5, write_demo_root

    demo = generate_demo_spectra(**config["demo"])
    n_spectra, n_bins = demo.counts.shape
    log.info("demo: %s x %s, %d anomalous", counted(n_spectra, "spectrum"), counted(n_bins, "bin"),
             int((demo.metadata["anomaly_kind"] != 0).sum()))
    with atomic_path(hdf5_path) as tmp:
        write_demo_hdf5(demo, tmp)
    with atomic_path(root_path) as tmp:
        write_demo_root(demo, tmp)


def run_ingest(
    config: dict[str, Any], dataset: str, *, input_paths: list[PathLike], output: PathLike,
    checksums: dict[str, str] | None = None,
) -> None:
    """Stream the dataset's raw files into its canonical store.

    ``config`` is a run config or the ingest stage's settings (:func:`.store.keys.stage_settings`), which
    carry whether the spectra must be counts as ``require_counts``.
    """
    from .ingest import ingest_to_store
    from .store.keys import requires_counts

    require_counts = config["require_counts"] if "require_counts" in config else requires_counts(config)
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
    from .normalize import SpectrumNormalizer, check_training_variation, choose_steps, write_normalizer
    from .split import read_split

    spectra = read_canonical(data_path)
    check_bin_count(dataset, spectra.n_bins)
    train = read_split(split_path)["train"]
    steps, choice = config["normalization"]["steps"], None
    if steps == "auto":
        choice = choose_steps(spectra.X, train)
        steps = choice["value"]
        log.info("dataset %s: normalization %s (%s)", dataset, " -> ".join(steps), choice["reason"])
    try:
        normalizer = SpectrumNormalizer(steps=steps).fit(spectra.X, rows=train)
    except InvalidSpectraError as error:
        raise InvalidSpectraError(f"dataset {dataset!r}: {error}") from None
    if choice:
        normalizer.choice_ = choice
    constant = check_training_variation(normalizer, spectra.X, train, dataset=dataset)
    if constant:
        log.warning("dataset %s: %d of %d bins never %s in the training spectra after normalization; they carry "
                    "no information for the models", dataset, constant, spectra.n_bins, "varies" if constant == 1 else "vary")
    log.info("dataset %s: normalization %s fitted on %s", dataset, " -> ".join(normalizer.steps),
             counted(len(train), "training spectrum"))
    write_normalizer(normalizer, output, dataset=dataset)


def run_train(
    config: dict[str, Any], dataset: str, model: str, *, data_path: PathLike, split_path: PathLike,
    normalization_path: PathLike, model_path: PathLike, history_path: PathLike, summary_path: PathLike,
    scores_path: PathLike | None = None, examples_path: PathLike | None = None, threads: int | None = None,
) -> None:
    """Fit one detector (any kind) on one dataset; write it, its history and summary, and with
    ``scores_path`` and ``examples_path`` its scores of every spectrum (in the same process, as
    :func:`run_score` would from the model file, so the store is read once per detector). The flag
    cuts calibrated then on the validation spectra are saved in the model file, for new data.

    ``threads`` is the number of CPU threads torch uses for a detector trained over epochs (the job's
    share of the cores); None leaves torch's default. Detectors fitted in one pass use numpy's BLAS,
    whose threads follow ``OMP_NUM_THREADS`` (which Snakemake sets to the job's threads)."""
    from .models import build_detector, detector_kind
    from .normalize import read_normalizer
    from .split import read_split

    normalizer = read_normalizer(normalization_path)
    spectra, split = read_canonical(data_path), read_split(split_path)
    spec, seed = model_config(config, model), split_instance(config, model)[1]
    check_model_shapes({**config, "models": {model: spec}}, dataset=dataset, n_bins=spectra.n_bins)
    if threads is not None and detector_kind(spec["kind"]).trained_by_epochs:
        from .device import set_torch_threads

        set_torch_threads(threads)
    detector = build_detector(spec, normalization=normalizer, training=config["training"], scoring=config["scoring"],
                              seed=seed, checkpoint_path=f"{model_path}.checkpoint")  # resumes a killed job
    log.info("fitting %s (%s) on %s: %d training, %s", model, spec["kind"], dataset,
             len(split["train"]), counted(len(split["validation"]), "validation spectrum"))
    started = time.perf_counter()
    detector.fit(spectra.X[split["train"]], spectra.X[split["validation"]])
    for key, choice in detector.choices_.items():
        log.info("%s: %s = %s (%s)", model, key, choice["value"], choice["reason"])
    seconds = time.perf_counter() - started
    if scores_path is not None:  # the cuts calibrated on the validation spectra are stored with the detector
        table = score_and_write_stage(config, dataset, model, detector=detector, spectra=spectra, split=split,
                                      scores_path=scores_path, examples_path=examples_path)
        detector.cuts_ = table.attrs.get("thresholds") or {}
    detector.save(model_path)
    write_versioned_csv(detector.history(), history_path, kind="history")
    fit = detector.fit_summary()
    write_json(summary_path, {
        "format_version": FORMAT_VERSIONS["training_summary"], "dataset": dataset, "model": model, "kind": spec["kind"],
        **fit, "choices": detector.choices_, "training_seconds": round(seconds, 3),
        "n_train": int(len(split["train"])), "n_validation": int(len(split["validation"])),
    })
    log.info("fitted %s in %.1f s (%s, best %d) on %s", model, seconds, counted(fit["epochs_trained"], "epoch"),
             fit["best_epoch"], fit["device"])


def run_score(
    config: dict[str, Any], dataset: str, model: str, *, data_path: PathLike, split_path: PathLike,
    model_path: PathLike, scores_path: PathLike, examples_path: PathLike,
) -> None:
    """Score every spectrum of the dataset with a stored detector (any kind)."""
    from .models import load_detector
    from .split import read_split

    detector = load_detector(model_path, device=config["training"]["device"], scoring=config["scoring"])
    score_and_write_stage(config, dataset, model, detector=detector, spectra=read_canonical(data_path),
                          split=read_split(split_path), scores_path=scores_path, examples_path=examples_path)


def score_and_write_stage(
    config: dict[str, Any], dataset: str, model: str, *, detector, spectra, split: dict, scores_path: PathLike,
    examples_path: PathLike,
) -> Any:
    from .score import score_and_write

    detector.check_binning(spectra.n_bins, what=f"the spectra of dataset {dataset!r}")
    table = score_and_write(detector, spectra, split, model=model, scoring=config["scoring"], scores_path=scores_path,
                            examples_path=examples_path)
    log.info("scored %s of %s with %s", counted(spectra.n_spectra, "spectrum"), dataset, model)
    return table


def run_report(
    config: dict[str, Any], dataset: str, *, result_dir: PathLike, html_path: PathLike, metrics_path: PathLike,
    figure_dir: PathLike, build_record: PathLike | None = None,
) -> None:
    """Build the dataset's HTML report, metrics and figures from stored scores, histories and examples.

    Reads nothing but the version's stored files (no model is loaded, nothing is scored), so the
    report can be rebuilt with other ``report`` options or newer report code at any time. With
    ``build_record``, the build is recorded there (time, commit, package, options, files written), so a
    rebuild never rewrites the training run's manifest.
    """
    from .config import check_report_options
    from .demo import ANOMALY_KINDS
    from .report import FIGURE_NAMES, build_report

    check_report_options(config)
    layout = VersionLayout(result_dir)
    models = model_instances(config)
    spectra = read_canonical(layout.store(dataset), load_X=False)
    devices = {m: read_versioned_json(layout.summary(dataset, m), kind="training_summary", step="train")["device"]
               for m in models}
    data_summary = {"n_spectra": spectra.n_spectra, "n_bins": spectra.n_bins, "sources": list(spectra.source_sha256),
                    "n_dropped_nonfinite": spectra.n_dropped_nonfinite, "devices": devices}
    entry = dataset_config(config, dataset)  # unit of the bin edges where known: bin_unit, else keV for the demo data
    demo = str(entry.get("path", "")).startswith("demo://")
    bin_unit = entry.get("bin_unit") or ("keV" if demo else None)
    build_report(
        dataset=dataset, run_name=layout.folder.name,
        scores={m: layout.scores(dataset, m) for m in models},
        histories={m: layout.history(dataset, m) for m in models},
        examples={m: layout.examples(dataset, m) for m in models},
        run_config=config, html_path=html_path, metrics_path=metrics_path,
        figure_paths={name: Path(figure_dir) / f"{name}.png" for name in FIGURE_NAMES},
        n_top=config["report"]["top_spectra"], data_summary=data_summary, bin_unit=bin_unit,
        kind_column=config["report"].get("kind_column"), kind_names=ANOMALY_KINDS if demo else None,
    )
    if build_record is not None:
        from .store.manifest import report_build_record

        written = [Path(html_path), Path(metrics_path), *(Path(figure_dir) / f"{name}.png" for name in FIGURE_NAMES)]
        write_json(build_record, report_build_record(config, dataset=dataset, files=written, result_dir=layout.folder))


def run_apply(
    *, reference: PathLike, result_dir: PathLike, inputs: list[PathLike] | None = None, data_path: PathLike | None = None,
    dataset: str | None = None, reference_dataset: str | None = None, models: list[str] | None = None,
    device: str | None = None, n_examples: int = 10,
) -> dict[str, Any]:
    """Score new spectra with every stored detector of the ``reference`` version, flagged at the stored
    cuts (:mod:`.apply`): raw ``inputs``, ingested first into ``result_dir`` with the reference dataset's
    reader keys, or a canonical store ``data_path``. Returns the summary of :func:`.apply.apply_to_store`."""
    from .apply import apply_to_store, open_reference

    opened = open_reference(reference)
    reference_dataset = opened.dataset(reference_dataset)
    dataset, layout = dataset or reference_dataset, VersionLayout(result_dir)
    if inputs:
        from .ingest import ingest_to_store
        from .store.keys import requires_counts

        entry = {key: value for key, value in opened.config["datasets"][reference_dataset].items()
                 if key != "train_selection"}
        data_path = layout.store(dataset)
        ingest_to_store(dataset, {**entry, "path": str(inputs[0])}, paths=inputs, output=data_path,
                        require_counts=requires_counts(opened.config), store=opened.config["ingest"]["store"])
    summary = apply_to_store(data_path, reference=opened, reference_dataset=reference_dataset, dataset=dataset,
                             layout=layout, device=device, n_examples=n_examples, models=models)
    for model, counts in summary["flagged"].items():
        log.info("%s: %s of %d new spectra", model,
                 ", ".join(f"{n} flagged at {column}" for column, n in counts.items()), summary["n_spectra"])
    return summary


def run_monitor_report(
    config: dict[str, Any], dataset: str, *, result_dir: PathLike, html_path: PathLike, metrics_path: PathLike,
    figure_dir: PathLike,
) -> None:
    """The monitoring report of an apply run's dataset (``config``: its validated apply config), from the
    stored new scores and the reference's score tables; nothing is scored."""
    from .apply import open_reference
    from .report.monitoring import build_monitoring_report

    layout, reference = VersionLayout(result_dir), open_reference(config["reference"])
    models, monitoring = config["models"], config["monitoring"]
    entry = config["datasets"][dataset]
    build_monitoring_report(
        dataset=dataset, version_name=layout.folder.name, reference_version=reference.name,
        scores={m: layout.scores(dataset, m) for m in models},
        reference_scores={m: reference.layout.scores(config["reference_dataset"], m) for m in models},
        examples={m: layout.examples(dataset, m) for m in models},
        order_column=monitoring["order_column"], run_column=monitoring["run_column"],
        html_path=Path(html_path), metrics_path=Path(metrics_path), figure_dir=Path(figure_dir),
        bin_unit=entry.get("bin_unit"),
    )


def run_write_config(config: dict[str, Any], *, output: PathLike) -> None:
    """Write the effective (validated, defaults filled) config into the result version."""
    import yaml

    from .store.atomic import write_text

    write_text(output, "# effective config of this result version, written by the workflow\n"
               + yaml.safe_dump(config, sort_keys=False))


def run_manifest(
    config: dict[str, Any], *, result_dir: PathLike, input_checksums: dict[str, str], output: PathLike,
    front_page: PathLike | None = None,
) -> None:
    """Write the version's manifest and, with ``front_page``, the front page of ``snakemake --report``."""
    from .store.manifest import build_manifest

    manifest = build_manifest(config, result_dir=Path(result_dir), input_checksums=input_checksums)
    if front_page is not None:
        from .store.atomic import write_text
        from .store.versions import report_front_page

        write_text(front_page, report_front_page(manifest, result_dir=result_dir))
    write_json(output, manifest)
