"""spark_tasks.local_lr against Spark ML's LogisticRegression itself: for each kind of fit the
tune job replays (plain L-BFGS, L2, OWL-QN with elastic net and pure L1, a cut-off maxIter, more
features than rows, constant and all-zero columns), the same number of optimizer states, the
same objective at each, the same model and the same predictions."""

from __future__ import annotations

import numpy as np
import pytest

from spark_tasks import local_lr

pytestmark = pytest.mark.spark


def make_data(rows: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CNN-like features: non-negative, a few informative columns, one constant, one all zero."""
    rng = np.random.default_rng(seed)
    features = np.abs(rng.normal(0.5, 1.0, size=(rows, width)))
    features[:, 1] = 0.0
    features[:, 2] = 0.7
    labels = features[:, 0] + 0.5 * features[:, 3] - features[:, 4] + rng.normal(0, 0.6, rows)
    labels = (labels > np.median(labels)).astype(np.float64)
    return features, labels


# (rows, width, regParam, elasticNetParam, maxIter)
CASES = [
    (36, 200, 0.0, 0.0, 100),  # separable, more features than rows: stops on function values
    (36, 200, 0.0, 0.3, 15),  # elasticNet without regParam: plain L-BFGS, cut at 15
    (36, 200, 0.05, 0.0, 100),  # L2 only
    (36, 200, 0.05, 0.3, 100),  # OWL-QN, the published tuned point's kind
    (36, 200, 0.1, 1.0, 100),  # pure L1: many coefficients exactly zero
    (120, 8, 0.01, 0.3, 3),  # more rows than features, cut after 3 steps
    (120, 8, 0.0, 0.0, 100),  # not separable: converges on the gradient or values
]


@pytest.fixture(scope="module")
def frames(spark):
    from pyspark.ml.linalg import Vectors

    made = {}
    for rows, width, *_ in CASES:
        if (rows, width) not in made:
            features, labels = make_data(rows, width, seed=rows + width)
            df = spark.createDataFrame(
                [
                    (Vectors.dense(f.tolist()), float(y))
                    for f, y in zip(features, labels, strict=True)
                ],
                ["features", "label"],
            )
            made[rows, width] = (features, labels, df.cache())
    return made


@pytest.mark.parametrize(("rows", "width", "reg", "enet", "max_iter"), CASES)
def test_the_replay_takes_sparks_steps_and_reaches_sparks_model(
    frames, rows, width, reg, enet, max_iter
):
    from pyspark.ml.classification import LogisticRegression

    features, labels, df = frames[rows, width]
    spark_fit = LogisticRegression(regParam=reg, elasticNetParam=enet, maxIter=max_iter).fit(df)
    replay = local_lr.fit(features, labels, reg, enet, max_iter)

    history = spark_fit.summary.objectiveHistory
    assert len(replay.objective_history) == len(history)  # the same optimizer states
    assert replay.objective_history == pytest.approx(history, rel=1e-9, abs=1e-12)
    theirs = spark_fit.coefficients.toArray()
    scale = np.abs(theirs).max()
    assert np.abs(replay.coefficients - theirs).max() <= 1e-8 * scale
    assert replay.intercept == pytest.approx(spark_fit.intercept, rel=1e-8, abs=1e-8 * scale)
    assert (replay.coefficients == 0).sum() == (theirs == 0).sum()  # L1's exact zeros, too
    assert replay.coefficients[[1, 2]].tolist() == [0.0, 0.0]  # constant columns: no weight
    predicted = [r.prediction for r in spark_fit.transform(df).select("prediction").collect()]
    assert replay.predict(features).tolist() == predicted


def test_a_cut_off_fit_is_not_the_converged_one(frames):
    """The reason for replaying Spark's path, not just solving the problem: maxIter=15 stops
    far from the optimum, and the model (so the held-out accuracy) depends on the path."""
    features, labels, _ = frames[36, 200]
    cut = local_lr.fit(features, labels, 0.05, 0.3, 15)
    full = local_lr.fit(features, labels, 0.05, 0.3, 100)
    assert len(cut.objective_history) == 16 < len(full.objective_history)
    assert np.abs(cut.coefficients - full.coefficients).max() > 1e-3


def test_what_is_not_replayed_is_said():
    labels = np.array([0, 1, 0, 1, 0, 1], dtype=float)
    folds = np.array([0, 0, 1, 1, 2, 2])
    assert local_lr.supports(labels, folds, 3)
    assert not local_lr.supports(np.array([0, 1, 2, 0, 1, 2], dtype=float), folds, 3)  # 3 classes
    one_class_fold = np.array([0, 0, 1, 1, 1, 1], dtype=float)  # fold 0 out: only class 1 left
    assert not local_lr.supports(one_class_fold, folds, 3)
    assert not local_lr.supports(labels, folds, 4)  # fold 3 empty: CrossValidator raises
    assert not local_lr.supports(labels, np.array([0, 0, 1, 1, 2, 5]), 3)  # a fold out of range
    with pytest.raises(ValueError, match="both classes"):
        local_lr.fit(np.ones((4, 2)), np.ones(4), 0.0, 0.0, 10)


def test_closeness_is_the_nearest_margin_over_the_size_of_its_terms():
    fit = local_lr.Fit(np.array([1.0, -1.0]), 0.0, [])
    rows = np.array([[3.0, 1.0], [2.0, 2.0]])
    assert fit.predict(rows).tolist() == [1.0, 0.0]  # margin 2 > 0; margin 0 is not above 0
    assert fit.closeness(rows[:1]) == 0.5  # |2| / (3 + 1)
    assert fit.closeness(rows) == 0.0  # exactly on the boundary
    # a row whose every term is 0 (0/0) is on the boundary too, not ignored
    assert fit.closeness(np.zeros((2, 2))) == 0.0
