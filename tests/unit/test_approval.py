"""The approval's pure parts: when to ask, what the approver reads, what an answer means."""

from __future__ import annotations

import pytest

from imgclf import approval, params

METRICS = {
    "run_id": "manual__1",
    "model": "/models/lite0.keras",
    "candidate": "baseline",
    "accuracy": 22 / 24,
    "n_test": 24,
    "baseline": {"accuracy": 22 / 24, "accuracy_ci95": [0.742, 0.977], "n": 24},
    "data_checks": {"warnings": ["leakage: 3 of 24 test images ([x](http://evil))"]},
}


@pytest.mark.parametrize(
    ("mode", "rules_promote", "identical", "ask"),
    [
        ("auto", True, None, False),
        ("auto", False, None, False),
        ("always", False, None, True),
        ("always", True, "3", True),
        ("on_change", True, None, True),
        ("on_change", False, None, False),
        ("on_change", True, "3", False),  # identical: the alias does not move
    ],
)
def test_who_is_asked(mode, rules_promote, identical, ask):
    got, why = approval.should_ask(mode, rules_promote, identical)
    assert got is ask
    assert f"approval={mode}" in why and why.startswith("asked" if ask else "not asked")


def test_an_unknown_mode_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'sometimes'"):
        approval.should_ask("sometimes", True, None)


def test_the_body_gives_both_accuracies_the_rules_checks_and_links():
    comparison = {"champion": "2", "champion_accuracy": 20 / 24, "comparable": True}
    text = approval.body(METRICS, comparison, "candidate 0.9167 vs champion 2: promoted",
                         "http://af/imgclf/report/d/r", "http://ml/#/runs/1", 24.0)  # fmt: skip
    want = "**test accuracy 0.9167** on 24 test images (95 % Wilson interval [0.742, 0.977])"
    assert want in text
    assert "**champion version 2: 0.8333** on the same 24 test images ([0.641, 0.933])" in text
    assert "candidate 0.9167 vs champion 2: promoted" in text
    assert "[Run report](http://af/imgclf/report/d/r)" in text
    assert "[MLflow run](http://ml/#/runs/1)" in text
    assert "within 24 h counts as reject" in text
    # a finding's text (file names come from outside) cannot make a link of its own
    assert "](http://evil)" not in text and r"\[x\]\(http://evil\)" in text


def test_the_body_without_a_champion_or_checks():
    text = approval.body({**METRICS, "data_checks": None}, None, "no champion yet", None, None, 2)
    assert "no champion yet: this would be the first" in text
    assert "- not run" in text and "run report: not served" in text


@pytest.mark.parametrize(
    ("chosen", "by", "timed_out", "approved", "answer"),
    [
        (["Approve"], {"id": "alice", "name": "alice"}, False, True, "approved"),
        (["Reject"], {"id": "bob", "name": "bob"}, False, False, "rejected"),
        (["Reject"], None, True, False, "timed out"),  # Airflow applied the default
        (["Approve"], None, True, False, "timed out"),  # never a promotion without a person
    ],
)
def test_an_answer_maps_to_promote_or_not(chosen, by, timed_out, approved, answer):
    got = approval.answered(chosen, by, "2026-12-05T10:00:00+00:00", " too  few\nimages ",
                            timed_out=timed_out)  # fmt: skip
    assert (got["approved"], got["answer"]) == (approved, answer)
    tags = approval.version_tags(got)
    assert tags["approval"] == answer
    if timed_out:
        assert "approval_by" not in tags and "no answer in time" in got["summary"]
    else:
        assert tags["approval_by"] == by["name"] and tags["approval_comment"] == "too few images"


def test_not_asked_lets_the_rules_decide():
    got = approval.not_asked("not asked: approval=auto")
    assert got["approved"] is True and got["asked"] is False
    assert approval.version_tags(got)["approval_summary"] == "not asked: approval=auto"


def test_the_params_bound_the_mode_and_the_timeout():
    ok = params.validate({"approval": "on_change", "approval_timeout_hours": 0.01},
                         check_weights=False)  # fmt: skip
    assert ok["approval"] == "on_change" and ok["approval_timeout_hours"] == 0.01
    assert params.validate({}, check_weights=False)["approval"] == "auto"
    with pytest.raises(ValueError, match="approval='yes'"):
        params.validate({"approval": "yes"}, check_weights=False)
    with pytest.raises(ValueError, match="approval_timeout_hours=0"):
        params.validate({"approval_timeout_hours": 0}, check_weights=False)
    with pytest.raises(ValueError, match="approval_timeout_hours=1000"):
        params.validate({"approval_timeout_hours": 1000}, check_weights=False)
