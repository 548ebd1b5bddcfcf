import math

import pytest

from imgclf.metrics import classification_report, roc_auc, wilson_interval


def test_wilson_interval_matches_hand_computation():
    # 22/24 correct: p = 0.9167, z = 1.96 -> hand-computed with the Wilson formula
    lo, hi = wilson_interval(22, 24)
    z = 1.959963984540054
    p, n = 22 / 24, 24
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert lo == pytest.approx(centre - half)
    assert hi == pytest.approx(centre + half)
    assert lo == pytest.approx(0.7416, abs=1e-4)
    assert hi == pytest.approx(0.9769, abs=1e-4)


def test_wilson_all_correct_upper_bound_is_one():
    lo, hi = wilson_interval(24, 24)
    assert hi == 1.0
    assert 0.85 < lo < 0.87


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(5, 0)
    with pytest.raises(ValueError, match=r"outside 0\.\.5"):
        wilson_interval(6, 5)


def test_auc_from_probabilities_with_ties():
    # positives 0.9, 0.4; negatives 0.4, 0.1; pairs won: 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0], [0.2, 0.8]) == 0.0
    assert roc_auc([1, 1], [0.2, 0.8]) is None


def test_report_confusion_and_per_class():
    y_true = ["messi"] * 4 + ["ronaldo"] * 4
    y_pred = ["messi", "messi", "messi", "ronaldo", "ronaldo", "ronaldo", "messi", "ronaldo"]
    r = classification_report(y_true, y_pred, ["messi", "ronaldo"], [0.1] * 8)
    assert r["accuracy"] == 6 / 8
    assert r["confusion_matrix"] == [[3, 1], [1, 3]]
    assert r["per_class"]["messi"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert r["roc_auc"] == 0.5  # constant scores carry no ranking information


def test_report_rejects_unknown_labels_and_mismatched_lengths():
    with pytest.raises(ValueError, match="zidane"):
        classification_report(["messi"], ["zidane"], ["messi", "ronaldo"])
    with pytest.raises(ValueError, match=r"differ|rows"):
        classification_report(["messi"], [], ["messi", "ronaldo"])


def test_roc_curve_points_match_hand_computation():
    from imgclf.metrics import roc_curve

    # scores: pos 0.9, 0.4; neg 0.4, 0.1 -> thresholds 0.9, 0.4 (tie), 0.1
    assert roc_curve([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == [
        (0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0),
    ]  # fmt: skip
    assert roc_curve([1, 1], [0.2, 0.3]) == []
