# One job per (dataset, detector instance), whatever the detector's kind: fits it, then scores every
# spectrum with it in the same process (the store is read once per detector). Only the jobs of
# detectors trained over epochs import torch and ask for a GPU. `spectral-anomaly score` scores
# with a stored detector file alone.


rule train:
    """Fit one detector on a dataset's training split, calibrate its cuts, and score every spectrum with it."""
    input:
        data=store_of,
        split=split_of,
        normalization=normalization_of,
    output:
        model=VERSION_FILES.model("{dataset}", "{model}"),
        history=VERSION_FILES.history("{dataset}", "{model}"),
        summary=VERSION_FILES.summary("{dataset}", "{model}"),
        scores=VERSION_FILES.scores("{dataset}", "{model}"),
        examples=VERSION_FILES.examples("{dataset}", "{model}"),
    params:
        settings=train_settings,
        share=train_share,
    log:
        VERSION_FILES.log("train", "{dataset}", "{model}"),
    benchmark:
        VERSION_FILES.benchmark("train", "{dataset}", "{model}")
    conda:
        SOFTWARE
    # CPU threads per job (torch's, or BLAS's for a detector fitted in one pass): locally half of --cores, at
    # most 4; on SLURM 4 (--cpus-per-task). Change with --set-threads train=N.
    threads: train_threads()
    resources:
        mem_mb=8000,
        runtime="6h",
        gpu=train_gpus,  # 1 for a deep detector that may train on a GPU, else left out (see train_gpus)
    shell:
        "spectral-anomaly --log {log:q} train --settings {params.settings:q} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --threads {threads}"
        " --data {input.data:q} --split {input.split:q} --normalization {input.normalization:q}"
        " --model-file {output.model:q} --history {output.history:q} --summary {output.summary:q}"
        " --scores {output.scores:q} --examples {output.examples:q} --share {params.share:q} >> {log:q}"
