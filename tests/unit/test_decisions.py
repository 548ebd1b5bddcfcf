import pytest

from imgclf.decisions import decide, needs_tuning


def test_tuning_only_below_target():
    assert needs_tuning(0.79, 0.95)
    assert not needs_tuning(0.95, 0.95)
    assert not needs_tuning(0.5, 0.0)
    assert needs_tuning(0.99, 1.0)


def test_candidate_is_tuned_when_tuning_ran_even_if_baseline_scored_higher():
    d = decide({"accuracy": 0.95}, {"accuracy": 0.90}, min_accuracy=0.8)
    assert (d.candidate, d.accuracy, d.passed) == ("tuned", 0.90, True)


def test_candidate_is_baseline_without_tuning():
    d = decide({"accuracy": 0.85}, None, min_accuracy=0.9)
    assert (d.candidate, d.passed) == ("baseline", False)
    assert "0.8500 < min_accuracy 0.9000" in d.reason


def test_boundary_passes():
    assert decide({"accuracy": 0.8}, None, 0.8).passed


def test_missing_accuracy_is_an_error():
    with pytest.raises(ValueError, match="tuned"):
        decide({"accuracy": 0.8}, {}, 0.5)


def test_first_passing_model_is_promoted_without_a_champion():
    from imgclf.decisions import challenge

    assert challenge(0.7, None, 0.0).promote
    assert challenge(0.7, {"champion": None}, 0.0).promote


def test_challenger_is_compared_both_ways():
    from imgclf.decisions import challenge

    champ = {"champion": "v0003", "champion_accuracy": 0.9}
    better = challenge(0.95, champ, 0.0)
    assert better.promote and "delta +0.0500" in better.reason
    assert challenge(0.9, champ, 0.0).promote  # not worse: promoted
    worse = challenge(0.85, champ, 0.0)
    assert not worse.promote
    assert "worse than champion v0003 0.9000" in worse.reason and "not promoted" in worse.reason
    assert challenge(0.85, champ, 0.05).promote  # within the allowed regression
    assert not challenge(0.84, champ, 0.05).promote


def test_incomparable_champion_does_not_block_a_new_class_set():
    from imgclf.decisions import challenge

    d = challenge(0.8, {"champion": "v0001", "comparable": False, "reason": "classes"}, 0.0)
    assert d.promote and "not comparable" in d.reason


def test_boundaries_are_exact_despite_float_rounding():
    # 21/24 = 0.875 computed as a ratio, threshold typed as 0.875 by a user
    assert decide({"accuracy": 21 / 24}, None, 0.875).passed
    assert 1 - 0.9 < 0.1  # 0.09999999999999998: a naive >= would fail the gate
    assert decide({"accuracy": 1 - 0.9}, None, 0.1).passed
    assert not needs_tuning(1 - 0.9, 0.1)
