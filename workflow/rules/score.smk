# The PCA baseline's per-spectrum scores, on the same normalization as the deep models (whose
# score tables the train jobs write, workflow/rules/train.smk).


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
