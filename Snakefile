# spectral_anomaly: ingest -> split -> normalize -> fit and score every detector (AE, VAE, PCA) -> report;
# or, for a config with reference:, ingest new files -> score with the stored detectors -> monitoring report.
# Entry point only: the rules live in workflow/rules/, the logic in src/spectral_anomaly/.
from snakemake.utils import min_version

from spectral_anomaly.apply_config import is_apply_config
from spectral_anomaly.config import validate_config
from spectral_anomaly.exceptions import exit_with_message

min_version("9.0")


# The default run; a config given with --configfile replaces it rather than merging into it,
# so a run never picks up the demo datasets by accident.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Config errors name the file; they end the run with their one line (exit_with_message), no traceback.
CONFIG_SOURCE = ", ".join(str(path) for path in workflow.configfiles) or "config"


if is_apply_config(config):  # reference: a stored result version scores new files; nothing is trained

    include: "workflow/rules/apply.smk"

    rule apply_all:
        """The default target of an apply run: its config and every dataset's monitoring report."""
        input:
            apply_targets(),
        default_target: True

else:
    with exit_with_message():
        validate_config(config, source=CONFIG_SOURCE)  # against the schema shipped in the package, filling in defaults

    include: "workflow/rules/common.smk"
    include: "workflow/rules/ingest.smk"
    include: "workflow/rules/preprocess.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/report.smk"

    # Front page of `snakemake --report`: the version's config, package versions and devices, from its manifest.
    report: report_front_page()

    rule all:
        """The default target: every stage output, report and the manifest of the result version."""
        input:
            final_targets(),
        default_target: True

    # `snakemake --cores 2 reports`: bring every report of the version up to date from its stored results
    # (after a change of the config's report section); add `--forcerun report` to rebuild them all.
    rule reports:
        """Bring every report of the version up to date from its stored results."""
        input:
            all_reports(),
            VERSION_FILES.manifest,
