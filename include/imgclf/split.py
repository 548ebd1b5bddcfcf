"""Deterministic, stratified train/test split and cross-validation folds.

Each image is ranked inside its class by ``sha256(seed + content hash)``; the first
``round(n * test_fraction)`` of a class go to test. The result depends only on the seed and the
image bytes: not on file names, listing order, Spark version, partitioning or cluster.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Assignment:
    key: str  # content hash of the image
    label: str
    split: str  # "train" | "test"
    fold: int  # cross-validation fold within train (-1 for test)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def holdout_count(n: int, test_fraction: float) -> int:
    """Images of a class of size ``n`` that go to test: at least one each side when n >= 2."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be strictly between 0 and 1")
    k = int(n * test_fraction + 0.5)  # round half up, not banker's rounding
    if n >= 2:
        k = min(max(k, 1), n - 1)
    return k


def stratified_split(
    items: Iterable[tuple[str, str]],
    test_fraction: float,
    seed: int,
    folds: int = 3,
) -> list[Assignment]:
    """Assign ``(key, label)`` pairs to train/test, and train rows to ``folds`` CV folds.

    Folds are stratified too: train rows of each class are dealt round-robin in rank order.
    Duplicate keys within a class are kept together (they get the same rank).
    """
    if folds < 2:
        raise ValueError(f"folds={folds} must be >= 2")
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in items:
        by_label[label].append(key)
    if not by_label:
        raise ValueError("nothing to split: no images")
    out: list[Assignment] = []
    for label in sorted(by_label):
        keys = sorted(by_label[label], key=lambda k: (_rank(seed, k), k))
        n_test = holdout_count(len(keys), test_fraction)
        n_train = len(keys) - n_test
        if n_train < folds:
            raise ValueError(
                f"class {label!r} has {n_train} training images, fewer than folds={folds}"
            )
        for i, key in enumerate(keys):
            if i < n_test:
                out.append(Assignment(key, label, "test", -1))
            else:
                out.append(Assignment(key, label, "train", (i - n_test) % folds))
    return out


def seeded_subset(keys: Iterable[str], fraction: float, seed: int, salt: str = "") -> set[str]:
    """Exactly ``round(n * fraction)`` of ``keys``, chosen by ``sha256(seed + salt + key)``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be between 0 and 1")
    ordered = sorted(set(keys), key=lambda k: (_rank(seed, salt + k), k))
    return set(ordered[: int(len(ordered) * fraction + 0.5)])
