# The version: links to the shared stage outputs it reuses, the per-dataset reports and the manifest.
# Reports read only stored results (scores, examples, histories, the canonical store's metadata), and
# the report options are a param of the report rule only: `snakemake --cores 2 reports` rebuilds the
# reports after a change of the config's report section, `--forcerun report` after a change of report
# code; the manifest (the training run's provenance) is left as it was, and each report records its
# own build (reports/<dataset>.build.json).


if LINKED:  # stage outputs shared already: linked, not computed again

    ruleorder: link > demo_data > ingest > split > normalize > train

    rule link:
        """Link the stage outputs that an earlier version with the same stage keys computed already."""
        input:
            [shared for _, shared in LINKED],
        output:
            [path for path, _ in LINKED],
        params:
            links=links_json,
        log:
            VERSION_FILES.log("link"),
        benchmark:
            VERSION_FILES.benchmark("link")
        conda:
            SOFTWARE
        threads: 1
        resources:
            mem_mb=1000,
            runtime="10m",
        shell:
            "spectral-anomaly --log {log:q} link --links {params.links:q} >> {log:q}"


rule report:
    """A dataset's HTML report, metrics and figures, comparing every detector, from its stored results."""
    input:
        config=RUN_CONFIG,
        stages=stage_files,
    output:
        html=report(
            VERSION_FILES.report("{dataset}"),
            caption="../report/report_html.rst",
            category="{dataset}",
            subcategory="report",
            labels={"dataset": "{dataset}", "figure": "full report (HTML)"},
        ),
        metrics=VERSION_FILES.metrics("{dataset}"),
        build_record=VERSION_FILES.build_record("{dataset}"),
        **report_figures(),
    params:
        result_dir=version_folder,
        figure_dir=str(VERSION_FILES.figures("{dataset}")),
        report_options=report_options_json,
    log:
        VERSION_FILES.log("report", "{dataset}"),
    benchmark:
        VERSION_FILES.benchmark("report", "{dataset}")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly --log {log:q} report --config {input.config:q} --dataset {wildcards.dataset}"
        " --result-dir {params.result_dir:q} --html {output.html:q} --metrics {output.metrics:q}"
        " --figure-dir {params.figure_dir:q} --report-options {params.report_options:q}"
        " --build-record {output.build_record:q} >> {log:q}"


rule manifest:
    """The version's manifest: config, input checksums, package versions, devices and times."""
    input:
        config=RUN_CONFIG,
        stages=stage_files,
        reports=ancient_reports,  # the run is complete once its reports exist; rebuilding them changes no provenance
    output:
        manifest=VERSION_FILES.manifest,
        front_page=VERSION_FILES.front_page,
    params:
        result_dir=version_folder,
        checksums=input_checksums_json,
    log:
        VERSION_FILES.log("manifest"),
    benchmark:
        VERSION_FILES.benchmark("manifest")
    conda:
        SOFTWARE
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly --log {log:q} manifest --config {input.config:q} --result-dir {params.result_dir:q}"
        " --input-checksums {params.checksums:q}"
        " --output {output.manifest:q} --front-page {output.front_page:q} >> {log:q}"
