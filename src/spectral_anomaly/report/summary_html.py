"""The summary at the top of the report page: what the comparison found, in a few sentences.

Which detector's primary score ranks best by ROC AUC on the test split, by how much over the next,
and whether that is inside the uncertainty (:data:`.findings.TIE_RULE`, stated on the page); how far
the detectors' other score columns reach (chosen on the test labels, so for reading only); and,
with a kind column, the anomaly kind each detector flags least often. Without labels it says that no
detection quality can be measured. Every name from data or configuration is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..text import html_text as escape
from ..thresholds import rate_label
from .findings import TIE_RULE
from .kinds import weakest_kind

UNLABELLED = ("This dataset has no anomaly labels, so no detection quality (AUC, efficiency) can be measured: "
              "the page shows how the detectors rank the spectra and how many they flag at the calibrated rates, "
              "not how well they find anomalies.")


def _auc(value: float, std: float | None = None) -> str:
    return f"{value:.4f}" + (f" &plusmn; {std:.4f}" if std is not None else "")


def _names(names: list[str]) -> str:
    shown = [f"<b>{escape(name)}</b>" for name in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def ranking_sentences(metrics: Mapping, key: str = "roc_auc", label: str = "ROC AUC") -> str:
    """Who ranks best by ``key``, by how much over each other detector, and who is tied with it."""
    ranking = (metrics.get("comparison") or {}).get(key)
    models = metrics["models"]
    if not ranking:
        return f"No {label} could be computed: the test split does not hold both normal and anomalous spectra."
    best, tied = ranking["best"], ranking["tied"]
    head = (f"<b>{escape(best)}</b> ({escape(str(models[best]['primary_score']))}) has "
            f"{_auc(ranking['value'], models[best].get(key + '_std'))}")
    if len(ranking["ranked"]) == 1:
        return f"By {label}, {head}; it is the only detector, so there is nothing to compare."
    if len(tied) == len(ranking["ranked"]):
        verdict = f"By {label}, all detectors tie ({_names(tied)})"
    elif len(tied) > 1:
        verdict = f"By {label}, {_names(tied)} tie for best"
    else:
        verdict = f"By {label}, <b>{escape(best)}</b> ranks best"
    parts = []
    for name in ranking["ranked"][1:]:
        entry = ranking["differences"][name]
        spread = f" &plusmn; {entry['std']:.4f}" if entry["std"] is not None else ""
        parts.append(f"{entry['difference']:.4f}{spread} above <b>{escape(name)}</b> ({_auc(models[name][key])}, "
                     + ("inside" if entry["tied"] else "outside") + " the uncertainty)")
    return f"{verdict}: {head}, " + ", ".join(parts) + "."


def best_score_sentence(metrics: Mapping) -> str:
    """Which detectors have a score column above their primary score, chosen on the test labels."""
    better = {name: entry["best_score"] for name, entry in metrics["models"].items()
              if entry.get("best_score") and not entry["best_score"]["primary"]}
    if not better:
        return ""
    primaries = [entry["roc_auc"] for entry in metrics["models"].values() if entry["roc_auc"] is not None]
    listed = ", ".join(f"<code>{escape(b['column'])}</code> {b['roc_auc']:.4f} ({escape(name)})" for name, b in better.items())
    reach = ("above every primary score" if min(b["roc_auc"] for b in better.values()) > max(primaries)
             else "above the detector's own primary score")
    return (f"Among the other score columns, {listed} reach {reach}. Those columns are picked here on the test "
            "labels, so they show what the stored scores could separate: for reading, not a fair ranking; the "
            "primary scores were chosen without labels.")


def weakest_kind_sentence(metrics: Mapping) -> str:
    """Per detector, the anomaly kind flagged least often at the loosest calibrated rate."""
    kinds = metrics.get("kinds")
    if not kinds:
        return ""
    per_model = {}
    for model in kinds["models"]:
        lowest = weakest_kind({**kinds, "models": {model: kinds["models"][model]}})
        if lowest is not None:
            per_model[model] = lowest
    if not per_model:
        return ""
    groups: dict[tuple, list[str]] = {}
    for model, entry in per_model.items():
        groups.setdefault((entry["kind"], entry["n_flagged"], entry["n_test"], entry["fraction"]), []).append(model)
    items = [f"{escape(kinds['names'][kind])} for {_names(models)} ({flagged} of {total}"
             f"{' each' if len(models) > 1 else ''}, {100 * fraction:.1f}%)"
             for (kind, flagged, total, fraction), models in groups.items()]
    rate = rate_label(next(iter(per_model.values()))["false_positive_rate"])
    return (f"The anomaly kind ({escape(kinds['column'])}) flagged least often at target FPR {escape(rate)} is "
            + "; ".join(items) + " (table below).")


def summary_paragraph(metrics: Mapping) -> str:
    """The summary paragraph of the page (see the module docstring)."""
    if not metrics["labelled"]:
        return f'<p class="summary"><b>Summary.</b> {escape(UNLABELLED)}</p>'
    first = next(iter(metrics["models"].values()))
    parts = [f"On the test split ({first['n_test']} spectra, {first['n_anomalous_test']} labelled anomalous):",
             ranking_sentences(metrics), ranking_sentences(metrics, "pr_auc", "PR AUC (average precision)"),
             f"Rule: {escape(TIE_RULE)}. Each AUC's own &plusmn; is mostly common to every detector (the same test "
             "spectra are hard or easy for all of them), so the paired difference is far more precise than the "
             "&plusmn; of either; it does not include the spread between training seeds. The table highlights "
             "the best and every detector tied with it.",
             best_score_sentence(metrics), weakest_kind_sentence(metrics)]
    return '<p class="summary"><b>Summary.</b> ' + " ".join(part for part in parts if part) + "</p>"
