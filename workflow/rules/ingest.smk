# The version's config, the built-in demo data and raw files -> canonical store (a shared stage output).


rule run_config:
    output:
        RUN_CONFIG,
    params:
        config=effective_config_json,
    log:
        VERSION_FILES.log("run_config"),
    benchmark:
        VERSION_FILES.benchmark("run_config")
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly write-config --json {params.config:q} --output {output:q} > {log:q} 2>&1"


rule demo_data:
    output:
        hdf5=STAGE_FILES.demo("{key}", "spectra.h5"),
        root=STAGE_FILES.demo("{key}", "spectra.root"),
    params:
        settings=demo_settings,
    log:
        STAGE_FILES.log("demo", "{key}"),
    benchmark:
        STAGE_FILES.benchmark("demo", "{key}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime="15m",
    shell:
        "spectral-anomaly demo --settings {params.settings:q} --hdf5 {output.hdf5:q} --root {output.root:q} > {log:q} 2>&1"


rule ingest:
    input:
        raw=tracked_raw_inputs,
    output:
        STAGE_FILES.store("{dataset}", "{key}"),
    params:
        settings=ingest_settings,
        raw=raw_inputs,
        checksums=raw_input_checksums_json,
    log:
        STAGE_FILES.log("ingest", "{dataset}-{key}"),
    benchmark:
        STAGE_FILES.benchmark("ingest", "{dataset}-{key}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime="2h",
    shell:
        "spectral-anomaly ingest --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --input {params.raw:q} --checksums {params.checksums:q} --output {output:q} > {log:q} 2>&1"
