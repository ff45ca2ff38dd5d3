# The version's config, the built-in demo data and raw files -> canonical store.


rule run_config:
    """The version's effective config (defaults filled in, report section left out) as its config.yaml."""
    output:
        RUN_CONFIG,
    params:
        config=effective_config_json,
    log:
        VERSION_FILES.log("run_config"),
    benchmark:
        VERSION_FILES.benchmark("run_config")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly --log {log:q} write-config --json {params.config:q} --output {output:q} >> {log:q}"


rule demo_data:
    """Generate the built-in demo spectra, as HDF5 and as ROOT, for datasets whose path starts with demo://."""
    output:
        hdf5=VERSION_FILES.demo("spectra.h5"),
        root=VERSION_FILES.demo("spectra.root"),
    params:
        settings=demo_settings,
        share=demo_share,
    log:
        VERSION_FILES.log("demo"),
    benchmark:
        VERSION_FILES.benchmark("demo")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=2000,
        runtime="15m",
    shell:
        "spectral-anomaly --log {log:q} demo --settings {params.settings:q} --hdf5 {output.hdf5:q} --root {output.root:q}"
        " --share {params.share:q} >> {log:q}"


rule ingest:
    """Stream a dataset's raw files into its canonical store (spectra, bin edges, metadata, checksums)."""
    input:
        raw=tracked_raw_inputs,
    output:
        VERSION_FILES.store("{dataset}"),
    params:
        settings=ingest_settings,
        share=ingest_share,
        raw=raw_inputs,
        checksums=raw_input_checksums_json,
    log:
        VERSION_FILES.log("ingest", "{dataset}"),
    benchmark:
        VERSION_FILES.benchmark("ingest", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="2h",
    shell:
        "spectral-anomaly --log {log:q} ingest --settings {params.settings:q} --dataset {wildcards.dataset}"
        " --input {params.raw:q} --checksums {params.checksums:q} --output {output:q}"
        " --share {params.share:q} >> {log:q}"
