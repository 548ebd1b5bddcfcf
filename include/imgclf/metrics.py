"""Classification metrics on a (small) test set, as plain Python.

Test sets here are tens to thousands of rows: they are collected from Spark and scored here, so
the same numbers come out of the train job, the tune job and the unit tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (default z for 95 %)."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside 0..{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve from scores (Mann-Whitney U; ties count one half).

    ``None`` when only one class is present (AUC is undefined then).
    """
    if len(y_true) != len(scores):
        raise ValueError("y_true and scores differ in length")
    pos = [s for y, s in zip(y_true, scores, strict=True) if y == 1]
    neg = [s for y, s in zip(y_true, scores, strict=True) if y != 1]
    if not pos or not neg:
        return None
    # rank-based: sum of ranks of positives with average ranks for ties
    ordered = sorted(scores)
    ranks: dict[float, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[i]:
            j += 1
        ranks[ordered[i]] = (i + j) / 2 + 1  # 1-based average rank
        i = j + 1
    rank_sum = sum(ranks[s] for s in pos)
    u = rank_sum - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def roc_curve(y_true: Sequence[int], scores: Sequence[float]) -> list[tuple[float, float]]:
    """ROC points (false positive rate, true positive rate), one per distinct threshold."""
    pos = sum(1 for y in y_true if y == 1)
    neg = len(y_true) - pos
    if not pos or not neg:
        return []
    points = [(0.0, 0.0)]
    tp = fp = 0
    pairs = sorted(zip(scores, y_true, strict=True), key=lambda p: -p[0])
    for i, (score, y) in enumerate(pairs):
        tp += y == 1
        fp += y != 1
        if i + 1 == len(pairs) or pairs[i + 1][0] != score:
            points.append((fp / neg, tp / pos))
    return points


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    positive_scores: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Accuracy (+ Wilson interval), confusion matrix, per-class precision/recall/F1, ROC AUC.

    ``labels`` fixes the order of the confusion matrix rows (true) and columns (predicted).
    ``positive_scores`` are the predicted probabilities of ``labels[-1]`` (binary AUC).
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows, y_pred {len(y_pred)}")
    n = len(y_true)
    if n == 0:
        raise ValueError("no rows to evaluate")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({*y_true, *y_pred} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not in {list(labels)}")
    confusion = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[index[t]][index[p]] += 1
    correct = sum(confusion[i][i] for i in range(len(labels)))
    per_class: dict[str, dict[str, float | int]] = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    lo, hi = wilson_interval(correct, n)
    auc = None
    if positive_scores is not None and len(labels) == 2:
        auc = roc_auc([1 if t == labels[1] else 0 for t in y_true], positive_scores)
    return {
        "accuracy": correct / n,
        "accuracy_ci95": [lo, hi],
        "n": n,
        "correct": correct,
        "labels": list(labels),
        "confusion_matrix": confusion,
        "per_class": per_class,
        "roc_auc": auc,
    }
