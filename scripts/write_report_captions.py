"""Rewrite workflow/report/<figure>.rst, the captions of `snakemake --report`, from the figure registry.

Run from the repository root after changing a figure's title or caption in
src/spectral_anomaly/report/registry.py:  .venv/bin/python scripts/write_report_captions.py
"""

from spectral_anomaly.report.registry import write_snakemake_captions

if __name__ == "__main__":
    for path in write_snakemake_captions():
        print(path)
