# Per-spectrum scores of every trained model, and the PCA baseline on the same normalization.


rule score:
    input:
        config=RUN_CONFIG,
        data=f"{OUT}/data/{{dataset}}.h5",
        split=f"{OUT}/splits/{{dataset}}.json",
        model=f"{OUT}/models/{{dataset}}/{{model}}.pt",
    output:
        scores=f"{OUT}/scores/{{dataset}}/{{model}}.parquet",
        examples=f"{OUT}/scores/{{dataset}}/{{model}}.examples.npz",
    log:
        f"{OUT}/logs/score/{{dataset}}/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/score/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime="2h",
    shell:
        "spectral-anomaly score --config {input.config:q} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --data {input.data:q} --split {input.split:q} --model-file {input.model:q}"
        " --scores {output.scores:q} --examples {output.examples:q} > {log:q} 2>&1"


rule baseline:
    input:
        config=RUN_CONFIG,
        data=f"{OUT}/data/{{dataset}}.h5",
        split=f"{OUT}/splits/{{dataset}}.json",
        normalization=f"{OUT}/normalization/{{dataset}}.json",
    output:
        model=f"{OUT}/models/{{dataset}}/pca.npz",
        scores=f"{OUT}/scores/{{dataset}}/pca.parquet",
        examples=f"{OUT}/scores/{{dataset}}/pca.examples.npz",
    log:
        f"{OUT}/logs/baseline/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/baseline/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime="2h",
    shell:
        "spectral-anomaly baseline --config {input.config:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --split {input.split:q} --normalization {input.normalization:q}"
        " --model-file {output.model:q} --scores {output.scores:q} --examples {output.examples:q} > {log:q} 2>&1"
