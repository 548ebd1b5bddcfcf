"""Decisions between the pipeline's steps: tune or not, pass the gate or not.

Pure functions over the small metric dicts the Spark jobs write; the DAG's tasks call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def needs_tuning(baseline_accuracy: float, target_accuracy: float) -> bool:
    """Tune only when the baseline falls short of the target."""
    return baseline_accuracy < target_accuracy


@dataclass(frozen=True)
class GateDecision:
    candidate: str  # "baseline" | "tuned"
    accuracy: float
    min_accuracy: float
    passed: bool

    @property
    def reason(self) -> str:
        verdict = "passes" if self.passed else "fails"
        cmp = ">=" if self.passed else "<"
        return (
            f"{self.candidate} model {verdict} the gate: test accuracy {self.accuracy:.4f} "
            f"{cmp} min_accuracy {self.min_accuracy:.4f}"
        )


def decide(
    baseline: dict[str, Any], tuned: dict[str, Any] | None, min_accuracy: float
) -> GateDecision:
    """The candidate is the tuned model when tuning ran, else the baseline.

    Picking whichever of the two scores better on the test split would choose on the test set;
    the tuned model was already chosen by cross-validation on the training split.
    """
    candidate, chosen = ("tuned", tuned) if tuned is not None else ("baseline", baseline)
    if "accuracy" not in chosen:
        raise ValueError(f"{candidate} metrics have no 'accuracy'")
    accuracy = float(chosen["accuracy"])
    return GateDecision(candidate, accuracy, float(min_accuracy), accuracy >= min_accuracy)
