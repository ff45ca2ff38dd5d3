# Shared helpers: the result version, raw input paths and the final targets.
# Input functions are named here, not written as lambdas in the rules.
import json
import re
import sys

# Jobs call the spectral-anomaly program installed beside the Python running Snakemake, so the
# pipeline works from an unactivated virtual environment (.venv/bin/snakemake) too.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

from spectral_anomaly.config import check_report_options, model_instances
from spectral_anomaly.io import expand_input_paths
from spectral_anomaly.provenance import cached_sha256, canonical_json, result_version_name, versioned_config

DEMO_PREFIX = "demo://"
DEMO_FILES = {"spectra.h5", "spectra.root"}
DATASETS = list(config["datasets"])
MODELS = model_instances(config)  # each model once per training seed
RESULTS_DIR = config["results_dir"]


def raw_input_files():
    """Raw files of every dataset: the configured path, or every match of a glob pattern."""
    files = {}
    for name, dataset in config["datasets"].items():
        path = dataset["path"]
        if path.startswith(DEMO_PREFIX):
            if path[len(DEMO_PREFIX):] not in DEMO_FILES:
                raise ValueError(
                    f"dataset {name!r}: unknown demo file {path!r}; valid: "
                    + ", ".join(DEMO_PREFIX + f for f in sorted(DEMO_FILES))
                )
            files[name] = [f"{{OUT}}/demo/{path[len(DEMO_PREFIX):]}"]
            continue
        files[name] = expand_input_paths(path)
        for file in files[name]:
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f"dataset {name!r}: input file {file!r} not found (working directory {os.getcwd()})"
                )
    return files


def raw_input_checksums():
    """sha256 of every raw input file that is not generated demo data (cached by size and mtime)."""
    cache = os.path.join(RESULTS_DIR, ".checksum-cache.json")
    return {
        file: cached_sha256(file, cache_file=cache)
        for files in RAW_FILES.values()
        for file in files
        if not file.startswith("{OUT}")
    }


RAW_FILES = raw_input_files()
INPUT_CHECKSUMS = raw_input_checksums()
VERSION = result_version_name(config, INPUT_CHECKSUMS)
OUT = f"{RESULTS_DIR}/{VERSION}"
check_report_options(config)
RUN_CONFIG = f"{OUT}/config.yaml"


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),
    model="|".join(re.escape(m) for m in MODELS),


def raw_inputs(wildcards):
    """The raw files of a dataset: the generated demo file, or the configured file(s)."""
    return [file.format(OUT=OUT) for file in RAW_FILES[wildcards.dataset]]


def raw_input_checksums_json(wildcards):
    """Checksums of the dataset's raw files, computed once at start, so ingestion need not hash again."""
    return json.dumps({f: INPUT_CHECKSUMS[f] for f in RAW_FILES[wildcards.dataset] if f in INPUT_CHECKSUMS})


def effective_config_json():
    """The config that determines the results (all but the report section), written as the version's config.yaml.

    The report options are left out, so changing them leaves config.yaml, and with it every
    ingest, train and score job, untouched: only the report and manifest jobs rerun.
    """
    return canonical_json(versioned_config(config))


def report_options_json():
    """The report section, a param of the report and manifest rules only (changing it reruns just those)."""
    return canonical_json(config["report"])


def report_front_page():
    """The front page of `snakemake --report`: the version's manifest as rst once the run has written it."""
    front_page = f"{OUT}/manifest.rst"
    return os.path.abspath(front_page) if os.path.isfile(front_page) else "workflow/report/workflow.rst"


def input_checksums_json():
    return json.dumps(INPUT_CHECKSUMS)


def train_gpus():
    """GPUs a training job asks for (the `gpu` resource, `--gpus` on SLURM): 0 where the config
    sets training.device: cpu, else 1. Override per run with --set-resources train:gpu=N."""
    return 0 if config.get("training", {}).get("device", "auto") == "cpu" else 1


def report_outputs(dataset):
    return [f"{OUT}/reports/{dataset}.html", f"{OUT}/reports/{dataset}.metrics.json"]


def score_tables(wildcards):
    return expand(f"{OUT}/scores/{wildcards.dataset}/{{model}}.parquet", model=[*MODELS, "pca"])


def score_examples(wildcards):
    return expand(f"{OUT}/scores/{wildcards.dataset}/{{model}}.examples.npz", model=[*MODELS, "pca"])


def training_histories(wildcards):
    return expand(f"{OUT}/models/{wildcards.dataset}/{{model}}.history.csv", model=MODELS)


def training_summaries(wildcards):
    return expand(f"{OUT}/models/{wildcards.dataset}/{{model}}.summary.json", model=MODELS)


def all_reports(wildcards=None):
    return [path for dataset in DATASETS for path in report_outputs(dataset)]


def final_targets():
    return [*all_reports(), f"{OUT}/manifest.json"]
