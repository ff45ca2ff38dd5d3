# Canonical store -> seeded split -> normalization fitted on the training split .


rule split:
    """Split a dataset's spectra into seeded train, validation and test indices."""
    input:
        data=store_of,
    output:
        VERSION_FILES.split("{dataset}"),
    params:
        settings=split_settings,
        share=split_share,
    log:
        VERSION_FILES.log("split", "{dataset}"),
    benchmark:
        VERSION_FILES.benchmark("split", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=2000,
        runtime="30m",
    shell:
        "spectral-anomaly --log {log:q} split --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --output {output:q}"
        " --share {params.share:q} >> {log:q}"


rule normalize:
    """Fit a dataset's normalization on its training split only."""
    input:
        data=store_of,
        split=split_of,
    output:
        VERSION_FILES.normalization("{dataset}"),
    params:
        settings=normalize_settings,
        share=normalize_share,
    log:
        VERSION_FILES.log("normalize", "{dataset}"),
    benchmark:
        VERSION_FILES.benchmark("normalize", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly --log {log:q} normalize --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --data {input.data:q} --split {input.split:q} --output {output:q}"
        " --share {params.share:q} >> {log:q}"
