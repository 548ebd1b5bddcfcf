"""The data checks on planted problems: each is found and named, a clean dataset reports none,
and grouping keeps near-duplicates on one side of a split that stays deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf import datachecks
from imgclf.datachecks import Settings, check, grouped_split, manifest_changes, plain_split


def _dataset(n_per_class=20, dim=64, seed=0):
    """Random features (high-dimensional: distinct images are far from each other)."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for label in ("messi", "ronaldo"):
        for i in range(n_per_class):
            rows.append({"path": f"/raw/{label}/{label}{i}.jpg", "label": label,
                         "sha256": f"{label}-{i:03d}"})  # fmt: skip
            feats.append(rng.normal(size=dim))
    return rows, np.asarray(feats, dtype=np.float32)


KW = {"test_fraction": 0.4, "seed": 12, "folds": 3}


def test_a_clean_dataset_reports_nothing():
    rows, feats = _dataset()
    split, out = check(rows, feats, Settings(), **KW)
    assert out.warnings == [] and out.failures == []
    assert out.metrics["label_conflicts"] == 0
    assert out.metrics["near_duplicate_pairs"] == 0
    assert out.metrics["leaked_test_images"] == 0 and out.metrics["class_ratio"] == 1.0
    assert split == plain_split([r["sha256"] for r in rows], [r["label"] for r in rows],
                                0.4, 12, 3)  # fmt: skip


def test_a_planted_cross_class_duplicate_is_a_label_conflict_naming_both_files():
    rows, feats = _dataset()
    rows[25]["sha256"] = rows[3]["sha256"]  # ronaldo5 has messi3's bytes
    feats[25] = feats[3]
    _, out = check(rows, feats, Settings(), **KW)
    (conflict,) = out.findings["label_conflicts"]
    assert [f["path"] for f in conflict["files"]] == ["/raw/messi/messi3.jpg",
                                                      "/raw/ronaldo/ronaldo5.jpg"]  # fmt: skip
    assert any("messi3.jpg = /raw/ronaldo/ronaldo5.jpg" in w for w in out.warnings)
    _, strict = check(rows, feats, Settings(label_conflicts="fail"), **KW)
    assert strict.failures and "two classes" in strict.failures[0]


def test_cross_class_near_duplicates_are_named():
    rows, feats = _dataset()
    feats[30] = feats[7] + 0.01  # ronaldo10 is nearly messi7
    _, out = check(rows, feats, Settings(), **KW)
    (pair,) = out.findings["near_duplicates"]["cross_class"]
    assert {pair["a"], pair["b"]} == {"/raw/messi/messi7.jpg", "/raw/ronaldo/ronaldo10.jpg"}
    assert pair["similarity"] > 0.99 and out.metrics["cross_class_near_duplicates"] == 1


def _leaky(rows, feats):
    """A near-copy of a test image planted in training (same class)."""
    split = plain_split([r["sha256"] for r in rows], [r["label"] for r in rows], 0.4, 12, 3)
    side = {a.key: a.split for a in split}
    test = next(i for i, r in enumerate(rows) if side[r["sha256"]] == "test")
    train = next(i for i, r in enumerate(rows)
                 if side[r["sha256"]] == "train" and r["label"] == rows[test]["label"])  # fmt: skip
    feats[train] = feats[test] * 1.5 + 0.01  # a brighter crop: same direction
    return test, train


def test_a_near_duplicate_across_train_and_test_is_leakage_named_and_can_fail_the_run():
    rows, feats = _dataset()
    test, train = _leaky(rows, feats)
    _, out = check(rows, feats, Settings(), **KW)
    assert out.metrics["leaked_test_images"] == 1
    assert out.metrics["leakage_share"] == pytest.approx(1 / 16)
    (example,) = out.findings["leakage"]["examples"]
    assert (example["test"], example["train"]) == (rows[test]["path"], rows[train]["path"])
    assert out.warnings and out.failures == []  # default: warn
    _, strict = check(rows, feats, Settings(leakage="fail"), **KW)
    assert strict.failures and "1 of 16 test images" in strict.failures[0]
    _, tolerant = check(rows, feats, Settings(leakage="fail", max_leakage=0.1), **KW)
    assert tolerant.failures == []


def test_grouping_keeps_the_pair_on_one_side_deterministically():
    rows, feats = _dataset()
    test, train = _leaky(rows, feats)
    split, out = check(rows, feats, Settings(group=True), **KW)
    side = {a.key: a.split for a in split}
    assert side[rows[test]["sha256"]] == side[rows[train]["sha256"]]
    assert out.metrics["leaked_test_images"] == 0 and out.warnings == []
    again, _ = check(rows, feats, Settings(group=True), **KW)
    assert again == split  # deterministic
    tests = [a for a in split if a.split == "test"]
    assert {a.label for a in tests} == {"messi", "ronaldo"} and len(tests) in (15, 16)
    folds = {a.fold for a in split if a.split == "train"}
    assert folds == {0, 1, 2}


def test_grouped_split_never_exceeds_the_quota_and_refuses_too_few_training_images():
    keys = [f"k{i}" for i in range(6)]
    labels = ["a"] * 6
    out = grouped_split(keys, labels, [0, 0, 0, 0, 4, 5], 0.5, 1, 2)
    assert sum(a.split == "test" for a in out) <= 3
    with pytest.raises(ValueError, match="3 training images once near-duplicates are grouped"):
        grouped_split(keys, labels, list(range(6)), 0.5, 1, 4)


def test_a_changed_file_is_found_and_named():
    old = {
        "files": [{"path": "messi/a.jpg", "sha256": "1"}, {"path": "messi/b.jpg", "sha256": "2"}]
    }
    new = {
        "files": [{"path": "messi/a.jpg", "sha256": "9"}, {"path": "messi/c.jpg", "sha256": "3"}]
    }
    assert manifest_changes(old, new) == {
        "added": ["messi/c.jpg"], "removed": ["messi/b.jpg"], "changed": ["messi/a.jpg"],
    }  # fmt: skip
    assert manifest_changes(None, new) is None
    rows, feats = _dataset()
    _, out = check(rows, feats, Settings(), **KW, manifest=new, previous_manifest=old)
    assert (out.metrics["images_added"], out.metrics["images_removed"],
            out.metrics["images_changed"]) == (1, 1, 1)  # fmt: skip
    assert out.findings["changes"]["changed"] == ["messi/a.jpg"]


def test_imbalance_warns_and_drift_is_measured_against_a_reference():
    rows, feats = _dataset()
    _, out = check(rows[:26], feats[:26], Settings(min_class_ratio=0.5), **KW)
    assert out.metrics["class_ratio"] == pytest.approx(6 / 20)
    assert any("class balance" in w for w in out.warnings)
    _, same = check(rows, feats, Settings(), **KW, reference=feats)
    assert same.metrics["drift_novel_share"] <= 0.1  # the same images: nothing novel
    shifted = feats + 5 * np.random.default_rng(1).normal(size=feats.shape[1]).astype("float32")
    _, moved = check(rows, shifted, Settings(max_drift=0.5), **KW, reference=feats)
    assert moved.metrics["drift_centroid_distance"] > same.metrics["drift_centroid_distance"]
    _, none = check(rows, feats, Settings(), **KW)
    assert none.findings["drift"] == {"note": "no champion to compare with"}


def test_zero_feature_rows_are_nobodys_near_duplicate_and_pairs_are_bounded():
    feats = np.zeros((5, 8), dtype=np.float32)
    pairs, total = datachecks.near_duplicate_pairs(datachecks.unit_rows(feats), 0.9)
    assert (pairs, total) == ([], 0)
    same = np.ones((50, 4), dtype=np.float32)
    pairs, total = datachecks.near_duplicate_pairs(datachecks.unit_rows(same), 0.9, max_pairs=10)
    assert total == 50 * 49 // 2 and len(pairs) == 10
