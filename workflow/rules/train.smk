# One training job per (dataset, model): the only rule that uses a GPU when one is present.


rule train:
    input:
        config=RUN_CONFIG,
        data=f"{OUT}/data/{{dataset}}.h5",
        split=f"{OUT}/splits/{{dataset}}.json",
        normalization=f"{OUT}/normalization/{{dataset}}.json",
    output:
        model=f"{OUT}/models/{{dataset}}/{{model}}.pt",
        history=f"{OUT}/models/{{dataset}}/{{model}}.history.csv",
        summary=f"{OUT}/models/{{dataset}}/{{model}}.summary.json",
    log:
        f"{OUT}/logs/train/{{dataset}}/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime="6h",
        gpu=train_gpus(),  # 1, or 0 where training.device is cpu
    shell:
        "spectral-anomaly train --config {input.config:q} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --data {input.data:q} --split {input.split:q} --normalization {input.normalization:q}"
        " --model-file {output.model:q} --history {output.history:q} --summary {output.summary:q} > {log:q} 2>&1"
