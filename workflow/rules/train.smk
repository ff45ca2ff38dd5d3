# One job per (dataset, detector instance), whatever the detector's kind: fits it, then scores every
# spectrum with it in the same process (the store is read once per detector). Only the jobs of
# detectors trained over epochs import torch and ask for a GPU. `spectral-anomaly score` scores
# with a stored detector file alone.


rule train:
    input:
        data=store_of,
        split=split_of,
        normalization=normalization_of,
    output:
        model=STAGE_FILES.model("{dataset}", "{model}", "{key}"),
        history=STAGE_FILES.history("{dataset}", "{model}", "{key}"),
        summary=STAGE_FILES.summary("{dataset}", "{model}", "{key}"),
        scores=STAGE_FILES.scores("{dataset}", "{model}", "{key}"),
        examples=STAGE_FILES.examples("{dataset}", "{model}", "{key}"),
    params:
        settings=train_settings,
    log:
        STAGE_FILES.log("train", "{dataset}", "{model}-{key}"),
    benchmark:
        STAGE_FILES.benchmark("train", "{dataset}", "{model}-{key}")
    threads: 1
    resources:
        mem_mb=8000,
        runtime="6h",
        gpu=train_gpus,  # 1 for a deep detector, 0 for the others or where training.device is cpu
    shell:
        "spectral-anomaly train --settings {params.settings:q} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --data {input.data:q} --split {input.split:q} --normalization {input.normalization:q}"
        " --model-file {output.model:q} --history {output.history:q} --summary {output.summary:q}"
        " --scores {output.scores:q} --examples {output.examples:q} > {log:q} 2>&1"
