"""Which stored examples the top-anomalies figure draws: the most anomalous of distinct places.

The highest scores of a dataset are often all one kind of defect, so the figure would show the same
thing ten times. Without labels, :func:`distinct_examples` walks the stored most anomalous examples
in order of decreasing score and takes one when the bin of its largest |pull| lies more than
:data:`REGION_FRACTION` of the spectrum's bins away from that of every example already taken: each
panel then shows a spectrum that departs from its reconstruction somewhere else. When fewer such
examples exist than panels, the rest are filled by score. The choice depends only on the stored
examples, so it is the same on every rebuild.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: two examples are in the same region when their largest pulls are at most this fraction of the bins apart
REGION_FRACTION = 1.0 / 16.0
VARIETY_RULE = ("the stored most anomalous examples are taken in order of decreasing score, each only if the "
                f"bin of its largest |pull| is more than 1/{round(1 / REGION_FRACTION)} of the spectrum's bins "
                "away from that of every spectrum already shown; if too few remain, the next by score fill up")


def largest_pull_bins(example: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The bin of each stored example's largest |pull| (NaN pulls ignored), or ``None`` without pulls."""
    if "pulls" not in example:
        return None
    pulls = np.abs(np.nan_to_num(np.asarray(example["pulls"], dtype=np.float64), nan=0.0, posinf=np.inf, neginf=np.inf))
    return np.argmax(pulls, axis=1) if pulls.size else np.zeros(0, dtype=np.int64)


def distinct_examples(example: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of at most ``n`` stored examples to draw, and whether each opened a new region.

    The rows are returned in order of decreasing score (the stored order); see the module docstring.
    Without pulls the first ``n`` rows are taken.
    """
    scores = np.nan_to_num(np.asarray(example["anomaly_score"], dtype=np.float64), nan=-np.inf)
    order = np.argsort(-scores, kind="stable")
    bins = largest_pull_bins(example)
    if bins is None:
        chosen = order[:n]
        return chosen, np.zeros(len(chosen), dtype=bool)
    width = REGION_FRACTION * np.asarray(example["pulls"]).shape[1]
    taken: list[int] = []
    for row in order:
        if len(taken) == n:
            break
        if all(abs(int(bins[row]) - int(bins[other])) > width for other in taken):
            taken.append(int(row))
    distinct = set(taken)
    taken += [int(row) for row in order if int(row) not in distinct][: n - len(taken)]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    chosen = np.array(sorted(taken, key=lambda row: rank[row]), dtype=np.int64)
    return chosen, np.array([row in distinct for row in chosen], dtype=bool)
