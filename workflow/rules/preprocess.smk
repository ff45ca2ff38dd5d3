# Canonical store -> seeded split -> normalization fitted on the training split.


rule split:
    input:
        config=RUN_CONFIG,
        data=f"{OUT}/data/{{dataset}}.h5",
    output:
        f"{OUT}/splits/{{dataset}}.json",
    log:
        f"{OUT}/logs/split/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/split/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime="30m",
    shell:
        "spectral-anomaly split --config {input.config:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --output {output:q} > {log:q} 2>&1"


rule normalize:
    input:
        config=RUN_CONFIG,
        data=f"{OUT}/data/{{dataset}}.h5",
        split=f"{OUT}/splits/{{dataset}}.json",
    output:
        f"{OUT}/normalization/{{dataset}}.json",
    log:
        f"{OUT}/logs/normalize/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/normalize/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly normalize --config {input.config:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --split {input.split:q} --output {output:q} > {log:q} 2>&1"
