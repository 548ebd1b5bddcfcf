"""Decisions between the pipeline's steps: tune or not, pass the gate or not, promote or not.

Pure functions over the small metric dicts the Spark jobs write; the DAG's tasks call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Accuracies are ratios of counts: compare them with a tolerance, so that 0.85 - 0.90 counts as
# exactly -0.05 (in floats it is -0.05000000000000004).
EPS = 1e-9


def needs_tuning(baseline_accuracy: float, target_accuracy: float) -> bool:
    """Tune only when the baseline falls short of the target."""
    return baseline_accuracy < target_accuracy - EPS


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


@dataclass(frozen=True)
class ChallengeDecision:
    promote: bool
    reason: str


def challenge(
    candidate_accuracy: float, comparison: dict[str, Any] | None, max_regression: float
) -> ChallengeDecision:
    """Promote the candidate unless it is worse than the champion by more than max_regression.

    ``comparison`` is what the challenge job measured: the champion's accuracy on the
    candidate's test images (``None``, or no ``champion``: there is no champion yet).
    """
    if not comparison or not comparison.get("champion"):
        return ChallengeDecision(True, "no champion yet: the first passing model is promoted")
    champion = comparison["champion"]
    if not comparison.get("comparable", True):
        return ChallengeDecision(
            True, f"champion {champion} is not comparable ({comparison.get('reason')}): promoted"
        )
    theirs = float(comparison["champion_accuracy"])
    delta = candidate_accuracy - theirs
    if delta >= -max_regression - EPS:
        return ChallengeDecision(
            True,
            f"candidate {candidate_accuracy:.4f} vs champion {champion} {theirs:.4f} on the same "
            f"test images (delta {delta:+.4f} >= -{max_regression:.4f}): promoted",
        )
    return ChallengeDecision(
        False,
        f"candidate {candidate_accuracy:.4f} is worse than champion {champion} {theirs:.4f} on "
        f"the same test images by {-delta:.4f} > max_regression {max_regression:.4f}: "
        "not promoted",
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
    passed = accuracy >= min_accuracy - EPS
    return GateDecision(candidate, accuracy, float(min_accuracy), passed)
