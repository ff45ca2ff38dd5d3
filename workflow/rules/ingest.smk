# Raw files -> canonical store (and the built-in demo data).


rule run_config:
    output:
        RUN_CONFIG,
    params:
        config=effective_config_json,
    log:
        f"{OUT}/logs/run_config.log",
    benchmark:
        f"{OUT}/benchmarks/run_config.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly write-config --json {params.config:q} --output {output:q} > {log:q} 2>&1"


rule demo_data:
    input:
        config=RUN_CONFIG,
    output:
        hdf5=f"{OUT}/demo/spectra.h5",
        root=f"{OUT}/demo/spectra.root",
    log:
        f"{OUT}/logs/demo_data.log",
    benchmark:
        f"{OUT}/benchmarks/demo_data.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime="15m",
    shell:
        "spectral-anomaly demo --config {input.config:q} --hdf5 {output.hdf5:q} --root {output.root:q} > {log:q} 2>&1"


rule ingest:
    input:
        config=RUN_CONFIG,
        raw=tracked_raw_inputs,
    output:
        f"{OUT}/data/{{dataset}}.h5",
    params:
        raw=raw_inputs,
        checksums=raw_input_checksums_json,
    log:
        f"{OUT}/logs/ingest/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/ingest/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime="2h",
    shell:
        "spectral-anomaly ingest --config {input.config:q} --dataset {wildcards.dataset}"
        " --input {params.raw:q} --checksums {params.checksums:q} --output {output:q} > {log:q} 2>&1"
