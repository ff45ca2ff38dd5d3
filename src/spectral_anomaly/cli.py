"""The spectral-anomaly command line program: one subcommand per pipeline stage.

Every stage subcommand reads a run config (--config, a YAML file such as a version's config.yaml)
or the part of it that its stage reads (--settings, JSON, as the workflow passes it), and the files
named on its command line, and writes its outputs atomically. Errors of the project's own kinds
print one line on stderr and exit with status 2; progress goes to stderr through logging, or with
--log FILE (given before the subcommand, as every workflow rule does) into FILE, and then an error
line goes both into FILE and onto stderr, followed by the log's path.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .exceptions import DiskFullError, SpectralAnomalyError

#: help text of every file option of the stage subcommands
FILE_HELP = {
    "output": "the file to write",
    "data": "the dataset's canonical store (.h5), written by the ingest step",
    "split": "the dataset's split (.json), written by the split step",
    "normalization": "the dataset's fitted normalization (.json), written by the normalize step",
    "model_file": "the detector file (.npz): written by train, read by score",
    "history": "the per-epoch training history to write (.csv; header only for detectors fitted in one pass)",
    "summary": "the training summary to write (.json: device, CPU threads, epochs, best epoch, seconds)",
    "scores": "the score table to write (.parquet): one row per spectrum, every score and flag",
    "examples": "the most anomalous spectra to write (.npz) with their reconstructions and pulls",
    "result_dir": "the result version folder (results/<run_name>-<hash>) whose stored results to read",
    "html": "the report page to write (.html, self-contained)",
    "metrics": "the report's metrics to write (.json)",
    "figure_dir": "the folder to write the report's figures into (.png)",
    "hdf5": "the demo spectra to write as HDF5",
    "root": "the demo spectra to write as ROOT",
}


def _add(sub, name: str, help_text: str, *options: str, dataset: bool = True, model: bool = False, settings: bool = True,
         shared: bool = False):
    parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="run config (YAML), e.g. a result version's config.yaml; validated first")
    if settings:
        source.add_argument("--settings", help="the part of the run config this stage reads, as JSON (what the "
                                               "workflow passes: see spectral_anomaly.store.keys.stage_settings)")
    if dataset:
        parser.add_argument("--dataset", required=True, help="dataset name from the config's datasets section")
    if model:
        parser.add_argument("--model", required=True,
                            help="detector name from the config's models section (with several training seeds: "
                                 "<model>-seed<n>)")
    for option in options:
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option, required=True, help=FILE_HELP[option])
    if shared:
        parser.add_argument("--share", default=None,
                            help="JSON list of [written file, shared stage output] pairs: once the stage succeeded, "
                                 "share each written file under its stage key (see spectral_anomaly.store.links)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectral-anomaly", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"spectral_anomaly {__version__}")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--log", metavar="FILE", default=None,
                        help="write progress, warnings and tracebacks into FILE (replacing it); an error line goes "
                             "into FILE and onto stderr, followed by the log's path")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    write_config = sub.add_parser("write-config", help="write the effective config given as JSON into a YAML file",
                                  description="Write the effective config (JSON) into a YAML file with its checksum.")
    write_config.add_argument("--json", required=True, help="the effective config as a JSON string")
    write_config.add_argument("--output", required=True, help=FILE_HELP["output"])
    _add(sub, "demo", "generate the built-in demo spectra as HDF5 and ROOT", "hdf5", "root", dataset=False, shared=True)
    ingest = _add(sub, "ingest", "stream raw files into the canonical store", "output", shared=True)
    ingest.add_argument("--input", nargs="+", required=True, help="raw file(s) of the dataset, concatenated in order")
    ingest.add_argument("--checksums", default="{}",
                        help="JSON mapping of raw file to its sha256, or to {sha256, bytes, mtime_ns} as the workflow "
                             "took them at its start: skips hashing again and refuses a file that changed since")
    _add(sub, "split", "split spectra into train, validation and test", "data", "output", shared=True)
    _add(sub, "normalize", "fit the normalization on the training split", "data", "split", "output", shared=True)
    train = _add(sub, "train", "fit one detector (any kind) on the training split", "data", "split", "normalization",
                 "model_file", "history", "summary", model=True, shared=True)
    train.add_argument("--scores", default=None, help="also score every spectrum with the fitted detector: its score table")
    train.add_argument("--examples", default=None, help="with --scores: the most anomalous spectra with reconstructions")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="CPU threads torch may use (the workflow passes the job's threads); default: torch's own")
    _add(sub, "score", "score every spectrum with a stored detector", "data", "split", "model_file", "scores", "examples",
         model=True)
    _add_apply(sub)
    monitor = sub.add_parser(
        "monitor-report", help="build the monitoring report of an apply run's dataset",
        description="Build the monitoring report of a dataset of an apply run from its stored scores and the "
                    "reference's: scores along the runs with the stored cuts, flagged fractions, the most anomalous "
                    "spectra and the drift test.")
    monitor.add_argument("--config", required=True, help="the apply run's config.yaml (a config with reference:)")
    monitor.add_argument("--dataset", required=True, help="dataset name from the apply config's datasets section")
    for option in ("result_dir", "html", "metrics", "figure_dir"):
        monitor.add_argument(f"--{option.replace('_', '-')}", dest=option, required=True, help=FILE_HELP[option])
    link = sub.add_parser("link", help="link a version's files to the shared stage outputs it reuses",
                          description="Make each link (a path in a result version) a relative symbolic link to its "
                                      "target (a shared stage output), which is made read-only.")
    link.add_argument("--links", required=True, help="JSON list of [link, target] pairs")
    report = _add(sub, "report", "build the HTML report, metrics and figures of a dataset", "result_dir", "html",
                  "metrics", "figure_dir", settings=False)
    report.add_argument("--report-options", default=None,
                        help="JSON of the config's report section, replacing the one in --config (not part of the version hash)")
    report.add_argument("--build-record", default=None,
                        help="also write this record of the report build (.json: time, commit, options, files)")
    manifest = _add(sub, "manifest", "write the manifest of a result version", "result_dir", "output", dataset=False,
                    settings=False)
    manifest.add_argument("--input-checksums", default="{}", help="JSON mapping of raw input path to sha256")
    manifest.add_argument("--front-page", default=None,
                          help="also write the front page of the Snakemake report (snakemake --report), as reStructuredText, "
                               "from the manifest")
    runs = sub.add_parser("runs", help="list the result versions, newest first",
                          description="List the result versions under --results, newest first: name, hash, start and "
                                      "end, datasets, models and the ROC AUC of every dataset and model.")
    runs.add_argument("--results", default="results", help="folder holding the result versions (default: results)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare = sub.add_parser("compare", help="report what changed between two result versions",
                             description="Compare result versions A and B: config differences, metric changes and the "
                                         "spectra whose flags changed. A and B are folder names or unique prefixes.")
    compare.add_argument("a", metavar="A", help="the old result version (folder name or unique prefix)")
    compare.add_argument("b", metavar="B", help="the new result version (folder name or unique prefix)")
    compare.add_argument("--results", default="results", help="folder holding the result versions (default: results)")
    compare.add_argument("--output", default=None,
                         help="write the comparison to this file: .md (Markdown) or .html; default: Markdown on stdout")
    return parser


def _add_apply(sub) -> None:
    apply = sub.add_parser(
        "apply", help="score new spectra with the detectors of a stored result version, flagged at its stored cuts",
        description="Score new spectra with every detector of a stored result version (the reference), flagged at the "
                    "cuts calibrated when it was trained. Nothing is trained or recalibrated, no split is needed, and "
                    "the spectra are read block by block, so files larger than memory are scored in bounded memory.")
    apply.add_argument("--reference", required=True,
                       help="the result version folder the detectors come from, e.g. results/demo-1a2b3c4d5e")
    source = apply.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="raw file(s) of new spectra, read with the reader keys of the "
                                                   "reference dataset (format, dataset, pattern, ...), in order")
    source.add_argument("--data", help="the new spectra as a canonical store (.h5), e.g. written by the ingest step")
    apply.add_argument("--output-dir", required=True,
                       help="folder to write into: data/<dataset>.h5 (with --input), and per model "
                            "scores/<dataset>/<model>.parquet with its .examples.npz")
    apply.add_argument("--dataset", default=None, help="name of the new spectra in the output (default: the reference "
                                                       "dataset's name)")
    apply.add_argument("--reference-dataset", default=None,
                       help="the reference dataset whose detectors score the spectra (needed when the reference has several)")
    apply.add_argument("--models", nargs="+", default=None, help="score with these models only (default: every model "
                                                                 "of the reference)")
    apply.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where the deep detectors run: auto (a CUDA GPU when present), cpu or cuda")
    apply.add_argument("--n-examples", type=int, default=10,
                       help="most anomalous spectra stored per model with their reconstructions (default: 10)")


def run_apply(args: argparse.Namespace) -> None:
    """The ``apply`` subcommand: ingest ``--input`` (or read ``--data``), score at the stored cuts, say what it wrote."""
    from . import stages
    from .store.layout import VersionLayout
    from .text import counted

    summary = stages.run_apply(reference=args.reference, inputs=args.input, data_path=args.data,
                               result_dir=args.output_dir, dataset=args.dataset, reference_dataset=args.reference_dataset,
                               models=args.models, device=args.device, n_examples=args.n_examples)
    layout = VersionLayout(args.output_dir)
    for model, counts in summary["flagged"].items():
        flagged = ", ".join(f"{n} flagged at {column}" for column, n in counts.items())
        print(f"{model}: {counted(summary['n_spectra'], 'spectrum')} scored, {flagged}: "
              f"{layout.scores(summary['dataset'], model)}")


def _with_report_options(config: dict, report_options: str | None) -> dict:
    """``config`` with its report section replaced by ``report_options`` (JSON), validated again."""
    if report_options is None:
        return config
    from .config import validate_config

    return validate_config({**config, "report": json.loads(report_options)}, source="--report-options")


def _stage_config(args: argparse.Namespace) -> dict:
    """The config a stage runs with: the validated --config file, or the workflow's --settings as they are."""
    if getattr(args, "settings", None) is not None:
        return json.loads(args.settings)
    from .config import load_run_config

    return load_run_config(args.config)


def run_versions(args: argparse.Namespace) -> None:
    """The ``runs`` and ``compare`` subcommands: read result versions, run no stage."""
    from .store import versions

    if args.command == "runs":
        print(versions.run_runs(args.results, as_json=args.json))
        return
    text = versions.run_compare(args.a, args.b, results_dir=args.results, output=args.output)
    if args.output is None:
        print(text)


def run(args: argparse.Namespace) -> None:
    if args.command in ("runs", "compare"):
        run_versions(args)
        return
    from . import stages

    if args.command == "apply":
        run_apply(args)
        return
    if args.command == "monitor-report":
        from .apply_config import validate_apply_config
        from .config import read_config_file

        config = validate_apply_config(read_config_file(args.config), source=args.config)
        stages.run_monitor_report(config, args.dataset, result_dir=args.result_dir, html_path=args.html,
                                  metrics_path=args.metrics, figure_dir=args.figure_dir)
        return
    if args.command == "write-config":
        stages.run_write_config(json.loads(args.json), output=args.output)
        return
    if args.command == "link":
        from .store.links import link_files

        link_files([(link, target) for link, target in json.loads(args.links)])
        return
    config = _stage_config(args)
    if args.command == "demo":
        stages.run_demo(config, hdf5_path=args.hdf5, root_path=args.root)
    elif args.command == "ingest":
        stages.run_ingest(config, args.dataset, input_paths=args.input, output=args.output,
                          checksums=json.loads(args.checksums))
    elif args.command == "split":
        stages.run_split(config, args.dataset, data_path=args.data, output=args.output)
    elif args.command == "normalize":
        stages.run_normalize(config, args.dataset, data_path=args.data, split_path=args.split, output=args.output)
    elif args.command == "train":
        stages.run_train(config, args.dataset, args.model, data_path=args.data, split_path=args.split,
                         normalization_path=args.normalization, model_path=args.model_file,
                         history_path=args.history, summary_path=args.summary, scores_path=args.scores,
                         examples_path=args.examples, threads=args.threads)
    elif args.command == "score":
        stages.run_score(config, args.dataset, args.model, data_path=args.data, split_path=args.split,
                         model_path=args.model_file, scores_path=args.scores, examples_path=args.examples)
    elif args.command == "report":
        config = _with_report_options(config, args.report_options)
        stages.run_report(config, args.dataset, result_dir=args.result_dir, html_path=args.html,
                          metrics_path=args.metrics, figure_dir=args.figure_dir, build_record=args.build_record)
    elif args.command == "manifest":
        stages.run_manifest(config, result_dir=args.result_dir, input_checksums=json.loads(args.input_checksums),
                            output=args.output, front_page=args.front_page)
    if getattr(args, "share", None):
        from .store.links import share_files

        share_files([(path, target) for path, target in json.loads(args.share)])


#: how each logged line starts: time and level
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_TIME_FORMAT = "%H:%M:%S"


#: libraries whose INFO lines describe themselves, not the run (numexpr, imported by pandas, notes its thread count)
QUIET_LIBRARIES = ("numexpr",)


def configure_logging(*, quiet: bool, log_file: str | None) -> logging.Handler | None:
    """Send logging to stderr, or into ``log_file`` (emptied first) with Python's warnings too; the
    libraries in :data:`QUIET_LIBRARIES` log warnings only. Set before any subcommand imports pandas.

    Returns the log file's handler, for :func:`close_log` to remove once the command is done.
    """
    level = logging.WARNING if quiet else logging.INFO
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    if log_file is None:
        logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_TIME_FORMAT, stream=sys.stderr)
        return None
    folder = os.path.dirname(log_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    open(log_file, "w").close()
    # appending, so that what a job's shell sends into the same file (>> FILE) is kept in order
    handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_TIME_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler


def close_log(handler: logging.Handler | None) -> None:
    """Stop logging into the log file of :func:`configure_logging`."""
    if handler is not None:
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(handler)
        handler.close()


def report_error(line: str, *, log_file: str | None) -> None:
    """Print an error line on stderr; with a log file, also append it there and name the file on stderr."""
    print(line, file=sys.stderr)
    if log_file is None:
        return
    try:
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError:  # a full disk can refuse the log too; the line is on stderr already
        pass
    print(f"log: {log_file}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = configure_logging(quiet=args.quiet, log_file=args.log)
    try:
        run(args)
    except SpectralAnomalyError as error:
        report_error(f"spectral-anomaly {args.command}: error: {error}", log_file=args.log)
        if isinstance(error, DiskFullError):
            # a library file handle whose flush failed (h5py) can crash the interpreter's clean-up: exit now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except Exception as error:
        if args.log is None:
            raise
        logging.getLogger(__name__).exception("spectral-anomaly %s failed", args.command)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report_error(f"spectral-anomaly {args.command}: {type(error).__name__}: {message}", log_file=args.log)
        return 1
    finally:
        close_log(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
