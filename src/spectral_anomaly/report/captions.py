"""Section titles and captions of the report's figures, in page order (the order of ``FIGURE_NAMES``)."""

from __future__ import annotations

#: figure name -> (section title, caption)
FIGURE_TEXT: dict[str, tuple[str, str]] = {
    "roc": ("ROC curves",
            "Receiver operating characteristic of each model's primary anomaly score on the test split: the fraction "
            "of labelled anomalies found (true positive rate) against the fraction of normal spectra flagged (false "
            "positive rate) as the threshold is lowered. The dashed diagonal is a random ranking (AUC 0.5). Shaded: "
            "the 16th-84th percentile band of 200 seeded bootstrap resamples of the test spectra; the legend gives "
            "each AUC with its bootstrap standard deviation. The right panel has a logarithmic false-positive-rate "
            "axis, which shows the region of interest for rare anomalies: how many are found while flagging few "
            "normal spectra."),
    "precision_recall": ("Precision-recall curves",
            "Precision (fraction of flagged test spectra that are labelled anomalous) against recall (fraction of "
            "anomalies flagged) as the threshold is lowered, with 68 % bootstrap bands as for the ROC curves. AP is "
            "the average precision (the area under the step curve) with its bootstrap standard deviation. The dashed "
            "line is a random ranking, whose precision is the anomaly fraction of the test split; with rare "
            "anomalies this view separates models that look alike in ROC space."),
    "score_distributions": ("Score distributions",
            "Histograms of each model's anomaly score (higher = more anomalous) on a log-scaled vertical axis. With "
            "labels, the test split is shown by label (counts per bin): good separation means the anomalous histogram lies to the right of "
            "the normal one. Without labels, every spectrum is shown by split, each split normalised to unit sum; a test distribution far to the right "
            "of the training one would point to overfitting or a shift between splits."),
    "score_agreement": ("Score agreement between models",
            "For each pair of models (up to four models, one of each kind first), every spectrum's rank under one "
            "model against its rank under the other, both on log axes with rank 1, the most anomalous, at the "
            "top right. Points on the dashed diagonal are ranked alike. Labelled anomalies (without labels: spectra "
            "flagged at the strictest calibrated rate) are red and always drawn; other spectra are subsampled to "
            "at most 20,000 points. Spearman's rank correlation over every spectrum is given in each panel; a low "
            "value in the top-right corner means the models flag different spectra, which is worth a look."),
    "run_summary": ("Flags per run",
            "Where the metadata have a run column: for each model, the fraction of each run's spectra (every split) "
            "flagged at each calibrated false-positive rate, and, with labels, the fraction labelled anomalous "
            "(black). A run far above the target rate on every model points to a detector or data-taking problem "
            "rather than to one model; training-split spectra are flagged less often when the models trained on them."),
    "top_anomalies": ("Most anomalous spectra",
            "The most anomalous spectra of each model (one column per model, most anomalous at the top): the input "
            "counts as steps and the model's reconstruction, in the same units, as a line. Counts are drawn on a "
            "log scale where they are non-negative, with empty bins drawn at 0.5. Below each spectrum, the per-bin "
            "pulls (residual over its uncertainty: the input file's variances where it has them, else the model's "
            "own; for the autoencoder in normalized units), with dotted lines at +-3. Where the line departs from "
            "the steps and the pulls pass +-3 is what the model could not explain."),
    "latent_space": ("Latent space",
            "Where each spectrum lands in the model's latent space (for PCA: its principal-component coordinates). "
            "Two-dimensional latents are drawn directly; larger ones are projected onto their first two principal "
            "components. With labels, the test split is coloured normal / anomalous (anomalies on top); without, "
            "every spectrum is coloured by its anomaly score. Large samples are subsampled for drawing."),
    "training_curves": ("Training curves",
            "Training and validation loss per epoch of each deep model. The star marks the best validation epoch, "
            "whose weights were kept and used for scoring. A validation loss that rises while the training loss "
            "keeps falling indicates overfitting."),
}
