"""The ``spectral-anomaly`` command line program: one subcommand per pipeline stage.

Every subcommand reads the effective run config (``--config``) and the files named on its
command line, and writes its outputs atomically. Errors of the project's own kinds print one
line on stderr and exit with status 2; progress goes to stderr through :mod:`logging`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .exceptions import SpectralAnomalyError


def _add(sub, name: str, help_text: str, *options: str, dataset: bool = True, model: bool = False):
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--config", required=True, help="effective run config (YAML) written by the workflow")
    if dataset:
        parser.add_argument("--dataset", required=True, help="dataset name from the config's datasets section")
    if model:
        parser.add_argument("--model", required=True, help="model name from the config's models section")
    for option in options:
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option, required=True)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectral-anomaly", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"spectral_anomaly {__version__}")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    write_config = sub.add_parser("write-config", help="write the effective config given as JSON into a YAML file")
    write_config.add_argument("--json", required=True, help="the effective config as a JSON string")
    write_config.add_argument("--output", required=True)
    _add(sub, "demo", "generate the built-in demo spectra as HDF5 and ROOT", "hdf5", "root", dataset=False)
    ingest = _add(sub, "ingest", "stream raw files into the canonical store", "output")
    ingest.add_argument("--input", nargs="+", required=True, help="raw file(s) of the dataset, concatenated in order")
    ingest.add_argument("--checksums", default="{}", help="JSON mapping of raw file to sha256, to skip hashing again")
    _add(sub, "split", "split spectra into train, validation and test", "data", "output")
    _add(sub, "normalize", "fit the normalization on the training split", "data", "split", "output")
    _add(sub, "train", "train one model", "data", "split", "normalization", "model_file", "history", "summary", model=True)
    _add(sub, "score", "score every spectrum with a trained model", "data", "split", "model_file", "scores", "examples", model=True)
    _add(sub, "baseline", "fit and score the PCA baseline", "data", "split", "normalization", "model_file", "scores", "examples")
    _add(sub, "report", "build the HTML report, metrics and figures of a dataset", "result_dir", "html", "metrics", "figure_dir")
    manifest = _add(sub, "manifest", "write the manifest of a result version", "result_dir", "output", dataset=False)
    manifest.add_argument("--input-checksums", default="{}", help="JSON mapping of raw input path to sha256")
    return parser


def run(args: argparse.Namespace) -> None:
    from . import stages
    from .config import load_run_config

    if args.command == "write-config":
        stages.run_write_config(json.loads(args.json), output=args.output)
        return
    config = load_run_config(args.config)
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
                         history_path=args.history, summary_path=args.summary)
    elif args.command == "score":
        stages.run_score(config, args.dataset, args.model, data_path=args.data, split_path=args.split,
                         model_path=args.model_file, scores_path=args.scores, examples_path=args.examples)
    elif args.command == "baseline":
        stages.run_baseline(config, args.dataset, data_path=args.data, split_path=args.split,
                            normalization_path=args.normalization, model_path=args.model_file,
                            scores_path=args.scores, examples_path=args.examples)
    elif args.command == "report":
        stages.run_report(config, args.dataset, result_dir=args.result_dir, html_path=args.html,
                          metrics_path=args.metrics, figure_dir=args.figure_dir)
    elif args.command == "manifest":
        stages.run_manifest(config, result_dir=args.result_dir, input_checksums=json.loads(args.input_checksums),
                            output=args.output)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        run(args)
    except SpectralAnomalyError as error:
        print(f"spectral-anomaly {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
