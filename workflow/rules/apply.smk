# An apply run (a config with `reference:`): new files scored by the detectors of a stored result
# version, flagged at the cuts stored with them, and a monitoring report. Nothing is trained. The run
# writes its own version <results_dir>/<run_name>-<hash> (hash of the reference version, the new files'
# checksums and reader keys, the package), whose config.yaml records the reference version it used.
# Jobs log as a training run's do (see common.smk); the apply job prints its flagged counts on the terminal.
import json
import os
import re
import sys

envvars:
    "PATH",


os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

from spectral_anomaly.apply_config import (
    apply_config_record,
    apply_version_name,
    check_new_files_binning,
    ingest_settings,
    validate_apply_config,
)
from spectral_anomaly.exceptions import exit_with_message
from spectral_anomaly.io import dataset_input_files
from spectral_anomaly.store.layout import VersionLayout
from spectral_anomaly.store.provenance import canonical_json, input_fingerprint

with exit_with_message():
    APPLY = validate_apply_config(config, source=CONFIG_SOURCE)
APPLY_DATASETS = list(APPLY["datasets"])
APPLY_MODELS = APPLY["models"]
REFERENCE = VersionLayout(APPLY["reference"])
REFERENCE_DATASET = APPLY["reference_dataset"]
SOFTWARE = "../../environment.yml"


def apply_raw_files():
    """The new files of every dataset: the configured path, or every match of a glob pattern."""
    return {name: dataset_input_files(name, dataset["path"]) for name, dataset in APPLY["datasets"].items()}


with exit_with_message():
    APPLY_FILES = apply_raw_files()
    check_new_files_binning(APPLY, APPLY_FILES)
APPLY_FINGERPRINTS = {
    file: input_fingerprint(file, cache_file=os.path.join(APPLY["results_dir"], ".checksum-cache.json"))
    for files in APPLY_FILES.values()
    for file in files
}
APPLY_OUT = VersionLayout(
    os.path.join(APPLY["results_dir"], apply_version_name(APPLY, {f: p["sha256"] for f, p in APPLY_FINGERPRINTS.items()}))
)


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in APPLY_DATASETS),


def apply_scores(dataset):
    return [str(APPLY_OUT.scores(dataset, model)) for model in APPLY_MODELS]


def apply_examples(dataset):
    return [str(APPLY_OUT.examples(dataset, model)) for model in APPLY_MODELS]


def apply_ingest_settings(wildcards):
    return canonical_json(ingest_settings(APPLY, wildcards.dataset))


def apply_raw_inputs(wildcards):
    return APPLY_FILES[wildcards.dataset]


def apply_tracked_inputs(wildcards):
    """The new files as declared inputs: all but those whose path holds a brace (read as a wildcard)."""
    return [file for file in APPLY_FILES[wildcards.dataset] if "{" not in file and "}" not in file]


def apply_checksums_json(wildcards):
    return json.dumps({f: APPLY_FINGERPRINTS[f] for f in APPLY_FILES[wildcards.dataset]})


def apply_store(wildcards):
    return APPLY_OUT.store(wildcards.dataset)


def apply_dataset_scores(wildcards):
    return apply_scores(wildcards.dataset)


def apply_dataset_examples(wildcards):
    return apply_examples(wildcards.dataset)


def reference_models(wildcards=None):
    """The stored detectors scoring the new spectra (their change reruns the scoring)."""
    return [str(REFERENCE.model(REFERENCE_DATASET, model)) for model in APPLY_MODELS]


def reference_scores(wildcards=None):
    """The reference's score tables: the monitoring report compares the new scores with their calibration rows."""
    return [str(REFERENCE.scores(REFERENCE_DATASET, model)) for model in APPLY_MODELS]


def apply_targets(wildcards=None):
    """Every output of the apply run: its config and each dataset's monitoring report and metrics."""
    return [str(APPLY_OUT.config), *(str(path) for d in APPLY_DATASETS for path in (APPLY_OUT.report(d), APPLY_OUT.metrics(d)))]


rule apply_config:
    """The apply run's effective config, recording the reference version it scores with."""
    output:
        APPLY_OUT.config,
    params:
        config=canonical_json(apply_config_record(APPLY)),
    log:
        APPLY_OUT.log("apply_config"),
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly --log {log:q} write-config --json {params.config:q} --output {output:q} >> {log:q}"


rule apply_ingest:
    """Stream a dataset's new files into its canonical store, with the reader keys of the apply config."""
    input:
        raw=apply_tracked_inputs,
    output:
        APPLY_OUT.store("{dataset}"),
    params:
        settings=apply_ingest_settings,
        raw=apply_raw_inputs,
        checksums=apply_checksums_json,
    log:
        APPLY_OUT.log("ingest", "{dataset}"),
    benchmark:
        APPLY_OUT.benchmark("ingest", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="2h",
    shell:
        "spectral-anomaly --log {log:q} ingest --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --input {params.raw:q} --checksums {params.checksums:q} --output {output:q} >> {log:q}"


rule apply_score:
    """Score a dataset's new spectra with every stored detector of the reference, flagged at its stored cuts."""
    input:
        data=apply_store,
        models=reference_models,
    output:
        scores=apply_scores("{dataset}"),
        examples=apply_examples("{dataset}"),
    params:
        reference=str(REFERENCE.folder),
        reference_dataset=REFERENCE_DATASET,
        output_dir=str(APPLY_OUT.folder),
        device=APPLY["device"],
        n_examples=APPLY["n_examples"],
    log:
        APPLY_OUT.log("apply", "{dataset}"),
    benchmark:
        APPLY_OUT.benchmark("apply", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="6h",
    shell:
        "spectral-anomaly --log {log:q} apply --reference {params.reference:q} --reference-dataset {params.reference_dataset:q}"
        " --data {input.data:q} --dataset {wildcards.dataset} --output-dir {params.output_dir:q}"
        " --device {params.device} --n-examples {params.n_examples}"


rule monitor_report:
    """The monitoring report of a dataset: scores along the runs with the stored cuts, flagged fractions,
    the most anomalous spectra and the drift of the score distribution from the reference's."""
    input:
        config=APPLY_OUT.config,
        scores=apply_dataset_scores,
        examples=apply_dataset_examples,
        reference=reference_scores,
    output:
        html=APPLY_OUT.report("{dataset}"),
        metrics=APPLY_OUT.metrics("{dataset}"),
    params:
        result_dir=str(APPLY_OUT.folder),
        figure_dir=str(APPLY_OUT.figures("{dataset}")),
    log:
        APPLY_OUT.log("report", "{dataset}"),
    benchmark:
        APPLY_OUT.benchmark("report", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly --log {log:q} monitor-report --config {input.config:q} --dataset {wildcards.dataset}"
        " --result-dir {params.result_dir:q} --html {output.html:q} --metrics {output.metrics:q}"
        " --figure-dir {params.figure_dir:q} >> {log:q}"
