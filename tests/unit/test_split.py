from collections import Counter

import pytest

from imgclf.split import holdout_count, seeded_subset, stratified_split


def _items(n_per_class=30, labels=("messi", "ronaldo")):
    return [(f"{label}-{i:03d}", label) for label in labels for i in range(n_per_class)]


def test_reference_sizes_18_train_12_test_per_class():
    out = stratified_split(_items(), test_fraction=0.4, seed=12)
    counts = Counter((a.label, a.split) for a in out)
    assert counts == {
        ("messi", "train"): 18, ("messi", "test"): 12,
        ("ronaldo", "train"): 18, ("ronaldo", "test"): 12,
    }  # fmt: skip


def test_deterministic_and_independent_of_input_order():
    items = _items()
    a = stratified_split(items, 0.4, seed=7)
    b = stratified_split(list(reversed(items)), 0.4, seed=7)
    assert sorted(a, key=lambda x: x.key) == sorted(b, key=lambda x: x.key)


def test_seed_changes_the_split():
    a = {x.key for x in stratified_split(_items(), 0.4, seed=1) if x.split == "test"}
    b = {x.key for x in stratified_split(_items(), 0.4, seed=2) if x.split == "test"}
    assert a != b


def test_folds_are_stratified_and_only_on_train():
    out = stratified_split(_items(), 0.4, seed=12, folds=3)
    assert all(a.fold == -1 for a in out if a.split == "test")
    per_fold = Counter((a.label, a.fold) for a in out if a.split == "train")
    assert set(per_fold.values()) == {6}  # 18 train images per class, 3 folds


def test_holdout_count_rounds_half_up_and_keeps_both_sides():
    assert holdout_count(30, 0.4) == 12
    assert holdout_count(5, 0.5) == 3
    assert holdout_count(2, 0.01) == 1  # at least one test image
    assert holdout_count(2, 0.99) == 1  # at least one train image


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction_is_rejected(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(_items(), fraction, seed=1)


def test_too_few_training_images_for_folds_names_the_class():
    with pytest.raises(ValueError, match="'ronaldo'"):
        stratified_split(_items(30, ("messi",)) + _items(3, ("ronaldo",)), 0.4, 1, folds=3)


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        stratified_split([], 0.4, 1)


def test_seeded_subset_is_exact_deterministic_and_seed_dependent():
    keys = [f"k{i}" for i in range(40)]
    a = seeded_subset(keys, 0.25, seed=1, salt="x:")
    assert len(a) == 10 and a <= set(keys)
    assert seeded_subset(reversed(keys), 0.25, seed=1, salt="x:") == a  # order does not matter
    assert seeded_subset(keys, 0.25, seed=2, salt="x:") != a
    assert seeded_subset(keys, 0.0, seed=1) == set() and seeded_subset(keys, 1.0, 1) == set(keys)
    with pytest.raises(ValueError, match=r"fraction=1\.5"):
        seeded_subset(keys, 1.5, seed=1)
