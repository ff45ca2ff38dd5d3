# Shared helpers: the result version, raw input paths and the final targets.
# Input functions are named here, not written as lambdas in the rules.
import json

from spectral_anomaly.provenance import cached_sha256, canonical_json, result_version_name

DEMO_PREFIX = "demo://"
DEMO_FILES = {"spectra.h5", "spectra.root"}
DATASETS = list(config["datasets"])
MODELS = list(config["models"])
RESULTS_DIR = config["results_dir"]


def raw_input_checksums():
    """sha256 of every raw input file that is not generated demo data (cached by size and mtime)."""
    checksums = {}
    for name, dataset in config["datasets"].items():
        path = dataset["path"]
        if path.startswith(DEMO_PREFIX):
            if path[len(DEMO_PREFIX):] not in DEMO_FILES:
                raise ValueError(
                    f"dataset {name!r}: unknown demo file {path!r}; valid: "
                    + ", ".join(DEMO_PREFIX + f for f in sorted(DEMO_FILES))
                )
            continue
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dataset {name!r}: input file {path!r} not found (working directory {os.getcwd()})")
        checksums[path] = cached_sha256(path, cache_file=os.path.join(RESULTS_DIR, ".checksum-cache.json"))
    return checksums


INPUT_CHECKSUMS = raw_input_checksums()
VERSION = result_version_name(config, INPUT_CHECKSUMS)
OUT = f"{RESULTS_DIR}/{VERSION}"
RUN_CONFIG = f"{OUT}/config.yaml"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),


def raw_input(wildcards):
    """The raw file of a dataset: the generated demo file, or the configured path."""
    path = config["datasets"][wildcards.dataset]["path"]
    if path.startswith(DEMO_PREFIX):
        return f"{OUT}/demo/{path[len(DEMO_PREFIX):]}"
    return path


def effective_config_json():
    return canonical_json(config)


def input_checksums_json():
    return json.dumps(INPUT_CHECKSUMS)


def report_outputs(dataset):
    return [f"{OUT}/reports/{dataset}.html", f"{OUT}/reports/{dataset}.metrics.json"]


def score_tables(wildcards):
    return expand(f"{OUT}/scores/{wildcards.dataset}/{{model}}.parquet", model=[*MODELS, "pca"])


def score_examples(wildcards):
    return expand(f"{OUT}/scores/{wildcards.dataset}/{{model}}.examples.npz", model=[*MODELS, "pca"])


def training_histories(wildcards):
    return expand(f"{OUT}/models/{wildcards.dataset}/{{model}}.history.csv", model=MODELS)


def all_reports(wildcards=None):
    return [path for dataset in DATASETS for path in report_outputs(dataset)]


def final_targets():
    return [*all_reports(), f"{OUT}/manifest.json"]
