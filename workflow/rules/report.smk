# Per-dataset report (self-contained HTML, metrics and figures) and the version's manifest.
# Reports read only stored results (scores, examples, histories, the canonical store's metadata), and
# the report options are params of these two rules only: `snakemake --cores 2 reports` rebuilds them
# after a change of the config's report section, `--forcerun report` after a change of report code.


rule report:
    input:
        config=RUN_CONFIG,
        scores=score_tables,
        examples=score_examples,
        histories=training_histories,
        summaries=training_summaries,
        data=f"{OUT}/data/{{dataset}}.h5",
    output:
        html=report(
            f"{OUT}/reports/{{dataset}}.html",
            caption="../report/report_html.rst",
            category="{dataset}",
            subcategory="report",
            labels={"dataset": "{dataset}", "figure": "full report (HTML)"},
        ),
        metrics=f"{OUT}/reports/{{dataset}}.metrics.json",
        roc=report(
            f"{OUT}/reports/{{dataset}}/roc.png",
            caption="../report/roc.rst",
            category="{dataset}",
            subcategory="model comparison",
            labels={"dataset": "{dataset}", "figure": "ROC curves"},
        ),
        precision_recall=report(
            f"{OUT}/reports/{{dataset}}/precision_recall.png",
            caption="../report/precision_recall.rst",
            category="{dataset}",
            subcategory="model comparison",
            labels={"dataset": "{dataset}", "figure": "precision-recall curves"},
        ),
        score_distributions=report(
            f"{OUT}/reports/{{dataset}}/score_distributions.png",
            caption="../report/score_distributions.rst",
            category="{dataset}",
            subcategory="model comparison",
            labels={"dataset": "{dataset}", "figure": "score distributions"},
        ),
        score_agreement=report(
            f"{OUT}/reports/{{dataset}}/score_agreement.png",
            caption="../report/score_agreement.rst",
            category="{dataset}",
            subcategory="model comparison",
            labels={"dataset": "{dataset}", "figure": "score agreement between models"},
        ),
        run_summary=report(
            f"{OUT}/reports/{{dataset}}/run_summary.png",
            caption="../report/run_summary.rst",
            category="{dataset}",
            subcategory="flags per run",
            labels={"dataset": "{dataset}", "figure": "flags per run"},
        ),
        training_curves=report(
            f"{OUT}/reports/{{dataset}}/training_curves.png",
            caption="../report/training_curves.rst",
            category="{dataset}",
            subcategory="training",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
        top_anomalies=report(
            f"{OUT}/reports/{{dataset}}/top_anomalies.png",
            caption="../report/top_anomalies.rst",
            category="{dataset}",
            subcategory="most anomalous spectra",
            labels={"dataset": "{dataset}", "figure": "most anomalous spectra"},
        ),
        latent_space=report(
            f"{OUT}/reports/{{dataset}}/latent_space.png",
            caption="../report/latent_space.rst",
            category="{dataset}",
            subcategory="latent space",
            labels={"dataset": "{dataset}", "figure": "latent space"},
        ),
    params:
        result_dir=OUT,
        figure_dir=f"{OUT}/reports/{{dataset}}",
        report_options=report_options_json,
    log:
        f"{OUT}/logs/report/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/report/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime="1h",
    shell:
        "spectral-anomaly report --config {input.config:q} --dataset {wildcards.dataset}"
        " --result-dir {params.result_dir:q} --html {output.html:q} --metrics {output.metrics:q}"
        " --figure-dir {params.figure_dir:q} --report-options {params.report_options:q} > {log:q} 2>&1"


rule manifest:
    input:
        config=RUN_CONFIG,
        files=version_files,
    output:
        manifest=f"{OUT}/manifest.json",
        front_page=f"{OUT}/manifest.rst",
    params:
        result_dir=OUT,
        checksums=input_checksums_json,
        report_options=report_options_json,
    log:
        f"{OUT}/logs/manifest.log",
    benchmark:
        f"{OUT}/benchmarks/manifest.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime="10m",
    shell:
        "spectral-anomaly manifest --config {input.config:q} --result-dir {params.result_dir:q}"
        " --input-checksums {params.checksums:q} --report-options {params.report_options:q}"
        " --output {output.manifest:q} --front-page {output.front_page:q} > {log:q} 2>&1"
