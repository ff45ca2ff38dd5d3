"""Every path of a result version, in one place.

A version is a folder ``<results_dir>/<run_name>-<hash>/``::

    config.yaml                          the effective config (the report section left out)
    manifest.json, manifest.rst          provenance, and the front page of snakemake --report
    demo/spectra.h5, demo/spectra.root   the built-in demo data, where a dataset uses it
    data/<dataset>.h5                    canonical store (this and the files below up to the reports are
                                         written by the version's own jobs, or links to the shared stage
                                         outputs of an earlier version with the same keys, see StageLayout)
    splits/<dataset>.json                train / validation / test indices
    normalization/<dataset>.json         fitted on the training split
    models/<dataset>/<model>.npz         a detector (every kind), with .history.csv and .summary.json
    scores/<dataset>/<model>.parquet     one row per spectrum, with .examples.npz (the most anomalous)
    reports/<dataset>.html, .metrics.json, .build.json, reports/<dataset>/<figure>.png
    logs/..., benchmarks/...             what Snakemake records of each job

The workflow's rules, the stages, ``runs`` / ``compare``, the manifest and the benchmarks take their
paths from :class:`VersionLayout`; rules pass ``"{dataset}"`` and ``"{model}"`` to get patterns.
"""

from __future__ import annotations

import os
from pathlib import Path

PathLike = str | os.PathLike[str]

#: the version's files that the manifest and its front page describe, written last
MANIFEST, FRONT_PAGE = "manifest.json", "manifest.rst"
#: folders of a version that record how the jobs ran (Snakemake writes them), not results
RUN_RECORD_FOLDERS = ("logs", "benchmarks")


class VersionLayout:
    """The paths of the files of the result version in ``folder``."""

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"VersionLayout({str(self.folder)!r})"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST

    @property
    def front_page(self) -> Path:
        return self.folder / FRONT_PAGE

    def demo(self, name: str) -> Path:
        """A generated demo file, ``spectra.h5`` or ``spectra.root``."""
        return self.folder / "demo" / name

    def store(self, dataset: str) -> Path:
        return self.folder / "data" / f"{dataset}.h5"

    def split(self, dataset: str) -> Path:
        return self.folder / "splits" / f"{dataset}.json"

    def normalization(self, dataset: str) -> Path:
        return self.folder / "normalization" / f"{dataset}.json"

    def model(self, dataset: str, model: str) -> Path:
        return self.folder / "models" / dataset / f"{model}.npz"

    def history(self, dataset: str, model: str) -> Path:
        return self.folder / "models" / dataset / f"{model}.history.csv"

    def summary(self, dataset: str, model: str) -> Path:
        return self.folder / "models" / dataset / f"{model}.summary.json"

    def scores(self, dataset: str, model: str) -> Path:
        return self.folder / "scores" / dataset / f"{model}.parquet"

    def examples(self, dataset: str, model: str) -> Path:
        return self.folder / "scores" / dataset / f"{model}.examples.npz"

    def report(self, dataset: str) -> Path:
        return self.folder / "reports" / f"{dataset}.html"

    def metrics(self, dataset: str) -> Path:
        return self.folder / "reports" / f"{dataset}.metrics.json"

    def build_record(self, dataset: str) -> Path:
        """When, with what and from which files the dataset's report was (last) built."""
        return self.folder / "reports" / f"{dataset}.build.json"

    def figures(self, dataset: str) -> Path:
        """The folder of the report's figures."""
        return self.folder / "reports" / dataset

    def figure(self, dataset: str, name: str) -> Path:
        return self.figures(dataset) / f"{name}.png"

    def log(self, *parts: str) -> Path:
        """A job's log: ``log("train", dataset, model)`` is ``logs/train/<dataset>/<model>.log``."""
        return self.folder / "logs" / Path(*parts[:-1], f"{parts[-1]}.log")

    def benchmark(self, *parts: str) -> Path:
        """A job's Snakemake benchmark record, named like its log."""
        return self.folder / "benchmarks" / Path(*parts[:-1], f"{parts[-1]}.tsv")

    def is_run_record(self, path: PathLike) -> bool:
        """Whether ``path`` (inside the version) is a job log or benchmark record rather than a result."""
        relative = Path(path).relative_to(self.folder) if Path(path).is_absolute() else Path(path)
        return relative.parts[0] in RUN_RECORD_FOLDERS


#: the folder of the results folder that holds the stage outputs shared by the versions
STAGES_FOLDER = ".stages"


class StageLayout:
    """Where each stage's output lies: ``<results_dir>/.stages/``, named by the stage's key.

    A stage's output depends only on its own settings and its inputs (:mod:`.keys`), so versions that
    differ in, say, a training key share the stores, splits and normalizations they have in common:
    each version folder links the stage outputs it used (:class:`VersionLayout` paths are symbolic
    links into this folder), and a stage reruns only when its own key changes.
    """

    def __init__(self, results_dir: PathLike) -> None:
        self.folder = Path(results_dir) / STAGES_FOLDER

    def demo(self, key: str, name: str) -> Path:
        return self.folder / "demo" / key / name

    def store(self, dataset: str, key: str) -> Path:
        return self.folder / "data" / f"{dataset}-{key}.h5"

    def split(self, dataset: str, key: str) -> Path:
        return self.folder / "splits" / f"{dataset}-{key}.json"

    def normalization(self, dataset: str, key: str) -> Path:
        return self.folder / "normalization" / f"{dataset}-{key}.json"

    def model(self, dataset: str, model: str, key: str) -> Path:
        return self.folder / "models" / dataset / f"{model}-{key}.npz"

    def history(self, dataset: str, model: str, key: str) -> Path:
        return self.folder / "models" / dataset / f"{model}-{key}.history.csv"

    def summary(self, dataset: str, model: str, key: str) -> Path:
        return self.folder / "models" / dataset / f"{model}-{key}.summary.json"

    def scores(self, dataset: str, model: str, key: str) -> Path:
        return self.folder / "scores" / dataset / f"{model}-{key}.parquet"

    def examples(self, dataset: str, model: str, key: str) -> Path:
        return self.folder / "scores" / dataset / f"{model}-{key}.examples.npz"

    def log(self, *parts: str) -> Path:
        return self.folder / "logs" / Path(*parts[:-1], f"{parts[-1]}.log")

    def benchmark(self, *parts: str) -> Path:
        return self.folder / "benchmarks" / Path(*parts[:-1], f"{parts[-1]}.tsv")
