import pytest

from imgclf.gate import decide, needs_tuning


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
