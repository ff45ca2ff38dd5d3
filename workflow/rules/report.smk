# Per-dataset report (self-contained HTML, metrics and figures) and the version's manifest.


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
        score_distributions=report(
            f"{OUT}/reports/{{dataset}}/score_distributions.png",
            caption="../report/score_distributions.rst",
            category="{dataset}",
            subcategory="model comparison",
            labels={"dataset": "{dataset}", "figure": "score distributions"},
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
    log:
        f"{OUT}/logs/report/{{dataset}}.log",
    shell:
        "spectral-anomaly report --config {input.config:q} --dataset {wildcards.dataset}"
        " --result-dir {params.result_dir:q} --html {output.html:q} --metrics {output.metrics:q}"
        " --figure-dir {params.figure_dir:q} > {log:q} 2>&1"


rule manifest:
    input:
        config=RUN_CONFIG,
        reports=all_reports,
    output:
        f"{OUT}/manifest.json",
    params:
        result_dir=OUT,
        checksums=input_checksums_json(),
    log:
        f"{OUT}/logs/manifest.log",
    shell:
        "spectral-anomaly manifest --config {input.config:q} --result-dir {params.result_dir:q}"
        " --input-checksums {params.checksums:q} --output {output:q} > {log:q} 2>&1"
