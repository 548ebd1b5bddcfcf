"""A person's OK before a promotion (the ``approval`` Param): whether to ask, what to show them,
and what their answer means. Pure functions; the Airflow side is ``operators.RunApproval``
(Airflow's ``ApprovalOperator``), the registry side ``dag_tasks.promote``.

Approval is a veto, not an override: "Approve" lets the rules' decision stand (promote when the
rules promote), "Reject" or no answer before the timeout promotes nothing.
"""

from __future__ import annotations

import re
from typing import Any

MODES = ("auto", "on_change", "always")
APPROVE, REJECT = "Approve", "Reject"  # ApprovalOperator's options
COMMENT_MAX = 2000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def md(text: Any, limit: int = 300) -> str:
    """``text`` as literal Markdown: one line, bounded, special characters escaped (file and
    class names come from outside: no link or markup of theirs reaches the approver's page)."""
    one = " ".join(str(text).split())
    one = one if len(one) <= limit else one[: limit - 3] + "..."
    return _MD_SPECIAL.sub(r"\\\1", one)


def should_ask(mode: str, rules_promote: bool, identical_to: str | None) -> tuple[bool, str]:
    """``(ask, why)``: ``always`` asks; ``on_change`` asks when the rules would make a new
    version champion; ``auto`` never asks."""
    if mode not in MODES:
        raise ValueError(f"approval={mode!r} is not one of {list(MODES)}")
    if mode == "auto":
        return False, "not asked: approval=auto"
    if mode == "always":
        return True, "asked: approval=always"
    if not rules_promote:
        return False, "not asked: approval=on_change and the rules keep the champion"
    if identical_to:
        return False, (
            f"not asked: approval=on_change and the candidate is identical to version "
            f"{identical_to} (the champion does not change)"
        )
    return True, "asked: approval=on_change and the rules would change the champion"


def not_asked(why: str) -> dict[str, Any]:
    return {"asked": False, "approved": True, "answer": "not asked", "summary": why}


def answered(
    chosen: list[str],
    by: dict[str, Any] | None,
    at: str | None,
    comment: Any,
    *,
    timed_out: bool,
) -> dict[str, Any]:
    """The record of an answer: ``approved`` only for an explicit "Approve" by a person; a
    timeout (Airflow applies the default, "Reject") and "Reject" promote nothing."""
    who = (by or {}).get("name") or (by or {}).get("id")
    text = " ".join(str(comment or "").split())[:COMMENT_MAX]
    if timed_out:
        answer, approved = "timed out", False
    elif list(chosen) == [APPROVE] and who:
        answer, approved = "approved", True
    else:
        answer, approved = "rejected", False
    summary = (
        f"timed out at {at}: no answer in time counts as reject"
        if timed_out
        else f"{answer} by {who} at {at}" + (f": {text}" if text else "")
    )
    return {
        "asked": True,
        "approved": approved,
        "answer": answer,
        "by": None if timed_out else who,
        "at": at,
        "comment": text,
        "summary": summary,
    }


def version_tags(outcome: dict[str, Any] | None) -> dict[str, str]:
    """What a model version says about its approval (MLflow tags)."""
    if not outcome:
        return {}
    tags = {"approval": str(outcome["answer"]), "approval_summary": outcome["summary"][:4000]}
    for key in ("by", "at", "comment"):
        if outcome.get(key):
            tags[f"approval_{key}"] = str(outcome[key])[:4000]
    return tags


def _code(text: Any, limit: int = 200) -> str:
    """``text`` inside a code span: literal there, so no escaping, only no backtick."""
    one = " ".join(str(text).split()).replace("`", "'")
    return one if len(one) <= limit else one[: limit - 3] + "..."


def _pct(x: float) -> str:
    return f"{x:.4f}"


def body(
    metrics: dict[str, Any],
    comparison: dict[str, Any] | None,
    rules: str,
    report_url: str | None,
    mlflow_url: str | None,
    timeout_hours: float,
) -> str:
    """The Markdown an approver reads: the candidate's accuracy with its Wilson interval, the
    champion's on the same test images, what the rules decide, the data checks, the links."""
    from imgclf.metrics import wilson_interval

    stage = metrics.get(metrics.get("candidate") or "baseline") or metrics.get("baseline") or {}
    n = int(metrics.get("n_test") or stage.get("n") or 0)
    acc = float(metrics["accuracy"])
    lo, hi = stage.get("accuracy_ci95") or wilson_interval(round(acc * n), n)
    lines = [
        "### Candidate",
        f"- model `{_code(metrics.get('model'))}`, {md(metrics.get('candidate'))} classifier",
        f"- **test accuracy {_pct(acc)}** on {n} test images "
        f"(95 % Wilson interval [{lo:.3f}, {hi:.3f}])",
    ]
    c = comparison or {}
    if not c.get("champion"):
        lines.append("- no champion yet: this would be the first")
    elif c.get("champion_accuracy") is None:
        lines.append(f"- champion version {md(c['champion'])}: not comparable "
                     f"({md(c.get('reason'))})")  # fmt: skip
    else:
        theirs = float(c["champion_accuracy"])
        clo, chi = wilson_interval(round(theirs * n), n)
        lines.append(
            f"- **champion version {md(c['champion'])}: {_pct(theirs)}** on the same {n} test "
            f"images ([{clo:.3f}, {chi:.3f}])"
        )
    lines += ["", "### What the rules decide", f"- {md(rules, 600)}", "", "### Data checks"]
    checks = metrics.get("data_checks") or {}
    warnings = checks.get("warnings") or []
    if not checks:
        lines.append("- not run")
    elif not warnings:
        lines.append("- no warnings")
    lines += [f"- warning: {md(w, 400)}" for w in warnings[:10]]
    if len(warnings) > 10:
        lines.append(f"- and {len(warnings) - 10} more (see the report)")
    lines += ["", "### Links"]
    lines.append(f"- [Run report]({report_url})" if report_url else "- run report: not served")
    lines.append(f"- [MLflow run]({mlflow_url})" if mlflow_url else "- MLflow run: none")
    lines += [
        "",
        f"**Approve** carries out the rules' decision; **Reject** promotes nothing (the version "
        f"is registered and tagged with your name and comment). No answer within "
        f"{timeout_hours:g} h counts as reject.",
    ]
    return "\n".join(lines)
