# Canonical store -> seeded split -> normalization fitted on the training split (shared stage outputs).


rule split:
    input:
        data=store_of,
    output:
        STAGE_FILES.split("{dataset}", "{key}"),
    params:
        settings=split_settings,
    log:
        STAGE_FILES.log("split", "{dataset}-{key}"),
    benchmark:
        STAGE_FILES.benchmark("split", "{dataset}-{key}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime="30m",
    shell:
        "spectral-anomaly split --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --output {output:q} > {log:q} 2>&1"


rule normalize:
    input:
        data=store_of,
        split=split_of,
    output:
        STAGE_FILES.normalization("{dataset}", "{key}"),
    params:
        settings=normalize_settings,
    log:
        STAGE_FILES.log("normalize", "{dataset}-{key}"),
    benchmark:
        STAGE_FILES.benchmark("normalize", "{dataset}-{key}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly normalize --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --split {input.split:q} --output {output:q} > {log:q} 2>&1"
