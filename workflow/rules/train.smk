# One job per (dataset, model): trains the model, then scores every spectrum with it in the same
# process (torch is imported and the canonical store read once per model, not twice). The only
# rule that uses a GPU when one is present. `spectral-anomaly score` scores with a model file alone.


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
        scores=f"{OUT}/scores/{{dataset}}/{{model}}.parquet",
        examples=f"{OUT}/scores/{{dataset}}/{{model}}.examples.npz",
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
        " --model-file {output.model:q} --history {output.history:q} --summary {output.summary:q}"
        " --scores {output.scores:q} --examples {output.examples:q} > {log:q} 2>&1"
