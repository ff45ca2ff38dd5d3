"""The report's figures, one registry: name, builder, section title, caption and Snakemake category.

:data:`FIGURES` lists every figure in page order. The HTML report takes its sections, titles and
captions from it, the workflow's ``report`` rule its outputs (one PNG per figure) and their
categories, and the captions of ``snakemake --report`` (``workflow/report/<name>.rst``) are written
from it by :func:`write_snakemake_captions` (``scripts/write_report_captions.py``; a test checks
that the files are up to date). A new
figure is its builder (a function of :class:`FigureInputs` returning a matplotlib Figure) and one
entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure as MatplotlibFigure

from .comparison import run_summary_figure, score_agreement_figure
from .curves import precision_recall_figure, roc_figure
from .figures import latent_space_figure, score_distribution_figure, training_curves_figure
from .top_figure import top_anomalies_figure
from .variety import VARIETY_RULE


@dataclass(frozen=True)
class FigureInputs:
    """Everything a figure may draw: score tables, histories and examples by model, and report options."""

    tables: Mapping[str, Any]
    histories: Mapping[str, Any]
    examples: Mapping[str, Any]
    labelled: bool
    curves: Mapping[str, Any]
    runs: Any
    run_column: str | None
    n_top: int
    bin_unit: str | None


@dataclass(frozen=True)
class Figure:
    """One figure of the report."""

    name: str
    title: str
    caption: str
    #: Snakemake report grouping within the dataset's category, and the figure's label there
    subcategory: str
    label: str
    build: Callable[[FigureInputs], MatplotlibFigure]


_ENTRIES = (
    Figure(
        name='roc', title='ROC curves', subcategory='model comparison', label='ROC curves',
        build=lambda i: roc_figure(i.tables, labelled=i.labelled, curves=i.curves),
        caption=("Receiver operating characteristic of each model's primary anomaly score on the "
                 'test split: the fraction of labelled anomalies found (true positive rate) '
                 'against the fraction of normal spectra flagged (false positive rate) as the '
                 'threshold is lowered. The dashed diagonal is a random ranking (AUC 0.5). Shaded: '
                 'the 16th-84th percentile band of 200 seeded bootstrap resamples of the test '
                 'spectra; the legend gives each AUC with its bootstrap standard deviation. The '
                 'right panel has a logarithmic false-positive-rate axis, which shows the region '
                 'of interest for rare anomalies: how many are found while flagging few normal '
                 'spectra.'),
    ),
    Figure(
        name='precision_recall', title='Precision-recall curves', subcategory='model comparison', label='precision-recall curves',
        build=lambda i: precision_recall_figure(i.tables, labelled=i.labelled, curves=i.curves),
        caption=('Precision (fraction of flagged test spectra that are labelled anomalous) against '
                 'recall (fraction of anomalies flagged) as the threshold is lowered, with 68 % '
                 'bootstrap bands as for the ROC curves. AP is the average precision (the area '
                 'under the step curve) with its bootstrap standard deviation. The dashed line is '
                 'a random ranking, whose precision is the anomaly fraction of the test split; '
                 'with rare anomalies this view separates models that look alike in ROC space.'),
    ),
    Figure(
        name='score_distributions', title='Score distributions', subcategory='model comparison', label='score distributions',
        build=lambda i: score_distribution_figure(i.tables, labelled=i.labelled),
        caption=("Histograms of each model's anomaly score (higher = more anomalous) on a "
                 'log-scaled vertical axis. With labels, the test split is shown by label (counts '
                 'per bin): good separation means the anomalous histogram lies to the right of the '
                 'normal one. Without labels, every spectrum is shown by split, each split '
                 'normalised to unit sum; a test distribution far to the right of the training one '
                 'would point to overfitting or a shift between splits.'),
    ),
    Figure(
        name='score_agreement', title='Score agreement between models', subcategory='model comparison', label='score agreement between models',
        build=lambda i: score_agreement_figure(i.tables, labelled=i.labelled),
        caption=('For each pair of models (up to four models, one of each kind first), every '
                 "spectrum's rank under one model against its rank under the other, both on log "
                 'axes with rank 1, the most anomalous, at the top right. Points on the dashed '
                 'diagonal are ranked alike. Labelled anomalies (without labels: spectra flagged '
                 'at the strictest calibrated rate) are red and always drawn; other spectra are '
                 "subsampled to at most 20,000 points. Spearman's rank correlation over every "
                 'spectrum is given in each panel; a low value in the top-right corner means the '
                 'models flag different spectra, which is worth a look.'),
    ),
    Figure(
        name='run_summary', title='Flags per run', subcategory='flags per run', label='flags per run',
        build=lambda i: run_summary_figure(i.tables, i.runs, column=i.run_column),
        caption=("Where the metadata have a run column: for each model, the fraction of each run's "
                 'spectra (every split) flagged at each calibrated false-positive rate, and, with '
                 'labels, the fraction labelled anomalous (black). A run far above the target rate '
                 'on every model points to a detector or data-taking problem rather than to one '
                 'model; training-split spectra are flagged less often when the models trained on '
                 'them.'),
    ),
    Figure(
        name='top_anomalies', title='Most anomalous spectra', subcategory='most anomalous spectra', label='most anomalous spectra',
        build=lambda i: top_anomalies_figure(i.examples, n_top=i.n_top, bin_unit=i.bin_unit),
        caption=('Some of the most anomalous spectra of each model (one column per model, most anomalous '
                 'at the top), chosen for variety without labels: ' + VARIETY_RULE + '. Each panel gives the '
                 "spectrum's rank by score among the stored examples and the bin of its largest |pull|. "
                 "The input counts are drawn as steps and the model's reconstruction, in the "
                 'same units, as a line. Counts are drawn on a log scale where they are '
                 'non-negative, with empty bins drawn at 0.5. Below each spectrum, the per-bin '
                 "pulls (residual over its uncertainty: the input file's variances where it has "
                 "them, else the model's own; for the autoencoder in normalized units), with "
                 'dotted lines at +-3. Where the line departs from the steps and the pulls pass '
                 '+-3 is what the model could not explain.'),
    ),
    Figure(
        name='latent_space', title='Latent space', subcategory='latent space', label='latent space',
        build=lambda i: latent_space_figure(i.tables, labelled=i.labelled),
        caption=("Where each spectrum lands in the model's latent space (for PCA: its "
                 'principal-component coordinates). Two-dimensional latents are drawn directly; '
                 'larger ones are projected onto their first two principal components. With '
                 'labels, the test split is coloured normal / anomalous (anomalies on top); '
                 'without, every spectrum is coloured by its anomaly score. Large samples are '
                 'subsampled for drawing.'),
    ),
    Figure(
        name='training_curves', title='Training curves', subcategory='training', label='training curves',
        build=lambda i: training_curves_figure(i.histories),
        caption=('Training and validation loss per epoch of each deep model. The star marks the '
                 'best validation epoch, whose weights were kept and used for scoring. A '
                 'validation loss that rises while the training loss keeps falling indicates '
                 'overfitting.'),
    ),
)
#: figure name -> figure, in page order
FIGURES: dict[str, Figure] = {entry.name: entry for entry in _ENTRIES}
FIGURE_NAMES: tuple[str, ...] = tuple(FIGURES)
#: the folder of the Snakemake report's captions, beside the rules
SNAKEMAKE_CAPTIONS = Path("workflow") / "report"


def snakemake_caption(name: str) -> str:
    """The reStructuredText caption of figure ``name`` in ``snakemake --report`` (a Jinja template there)."""
    figure = FIGURES[name]
    return f"{figure.title} of dataset **{{{{ snakemake.wildcards.dataset }}}}**. {figure.caption}\n"


def write_snakemake_captions(folder: str | Path = SNAKEMAKE_CAPTIONS) -> list[Path]:
    """Write ``<folder>/<name>.rst`` for every figure; return the paths."""
    from ..store.atomic import write_text

    paths = []
    for name in FIGURES:
        path = Path(folder) / f"{name}.rst"
        write_text(path, snakemake_caption(name))
        paths.append(path)
    return paths
