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
            # one partition, as the tune job's cross-validation has it (tune.cv_data): each
            # L-BFGS step a one-task Spark job
            made[rows, width] = (features, labels, df.coalesce(1).cache())
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


@pytest.mark.shared
def test_every_default_grid_point_replays_sparks_fit_on_the_real_features(spark, lite0_rows):
    """What the tune job replays by default: the default grid's 16 points, on the training split
    of the real 60 images' CNN features (the default split), each against Spark's own fit."""
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.linalg import Vectors

    from imgclf.params import PROPERTIES
    from imgclf.split import stratified_split

    default = {name: prop["default"] for name, prop in PROPERTIES.items()}
    keys = [(r["sha256"], r["label"]) for r in lite0_rows]
    split = stratified_split(keys, default["test_fraction"], default["seed"], default["cv_folds"])
    train = {a.key for a in split if a.split == "train"}
    rows = sorted((r for r in lite0_rows if r["sha256"] in train), key=lambda r: r["path"])
    labels_seen = sorted({r["label"] for r in rows})  # the label indexer's order: alphabetical
    features = np.stack([r["features"].toArray() for r in rows])
    labels = np.array([float(labels_seen.index(r["label"])) for r in rows])
    assert features.shape == (36, 1280) and labels.sum() == 18
    df = (
        spark.createDataFrame(
            [(Vectors.dense(f.tolist()), float(y)) for f, y in zip(features, labels, strict=True)],
            ["features", "label"],
        )
        .coalesce(1)
        .cache()
    )  # as tune.cv_data gives the split to the fits
    tune_grid = default["tune_grid"]
    grid = [
        {"regParam": float(r), "elasticNetParam": float(e), "maxIter": int(m)}
        for r in tune_grid["reg_param"]
        for e in tune_grid["elastic_net_param"]
        for m in tune_grid["max_iter"]
    ]
    assert len(grid) == 16

    def spark_fit(point):
        return LogisticRegression(**point).fit(df)

    with ThreadPoolExecutor(4) as pool:  # Spark's fits side by side, as CrossValidator runs them
        fits = list(pool.map(spark_fit, grid))
    for point, theirs in zip(grid, fits, strict=True):
        ours = local_lr.fit(
            features, labels, point["regParam"], point["elasticNetParam"], point["maxIter"]
        )
        history = theirs.summary.objectiveHistory
        assert len(ours.objective_history) == len(history), point  # the same optimizer states
        assert ours.objective_history == pytest.approx(history, rel=1e-9, abs=1e-12), point
        coefficients = theirs.coefficients.toArray()
        scale = np.abs(coefficients).max()
        assert np.abs(ours.coefficients - coefficients).max() <= 1e-8 * scale, point
        assert ours.intercept == pytest.approx(theirs.intercept, rel=1e-8, abs=1e-8 * scale)
        assert (ours.coefficients == 0).sum() == (coefficients == 0).sum(), point
        predicted = [r.prediction for r in theirs.transform(df).select("prediction").collect()]
        assert ours.predict(features).tolist() == predicted, point
    df.unpersist()


def test_the_replay_runs_only_on_the_pyspark_it_replays(monkeypatch):
    from importlib.metadata import version

    assert version("pyspark") in local_lr.REPLAYED_PYSPARK  # the pinned one was checked
    assert local_lr.declined_version(local_lr.REPLAYED_PYSPARK[0]) is None
    reason = local_lr.declined_version("9.9.9")
    assert reason is not None and "pyspark 9.9.9" in reason
    monkeypatch.setattr(local_lr, "REPLAYED_PYSPARK", ("0.0.0",))
    # declined before anything is read or fitted (no data, no estimator)
    declined = local_lr.choose(None, None, [], [], 3)
    assert (
        isinstance(declined, str) and "replays the LogisticRegression of pyspark 0.0.0" in declined
    )


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


def test_the_replay_declines_what_it_does_not_replay(spark, monkeypatch):
    """Data past the replay's bound, three classes, a fold without a training part, a replay
    that raises (in the task): no replay result, CrossValidator runs, and the reason is said."""
    from pyspark.ml.linalg import Vectors

    rows = [(Vectors.dense([float(i), float(i % 3)]), float(i % 3), i % 2) for i in range(12)]
    data = spark.createDataFrame(rows, ["features", "label_index", "fold"])
    points = [{"regParam": 0.0, "elasticNetParam": 0.0, "maxIter": 5}]
    assert "two classes" in local_lr.replay_cross_validation(data, 2, points)  # labels 0, 1, 2
    binary = data.withColumn("label_index", (data["label_index"] > 0).cast("double"))

    def on_the_driver(*args, **kwargs):
        raise AssertionError("the replay ran on the driver")

    # the driver's own copy of the replay is never called: a Python worker replays the grid
    monkeypatch.setattr(local_lr, "cross_validate", on_the_driver)
    whole = local_lr.replay_cross_validation(binary, 2, points)
    assert isinstance(whole, local_lr.ReplayCV)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "5")  # the split reaches the task in 3 Arrow batches: the same result
    try:
        assert local_lr.replay_cross_validation(binary, 2, points) == whole
    finally:
        spark.conf.set(key, before)
    assert "two classes" in local_lr.replay_cross_validation(binary, 3, points)  # fold 2 empty
    monkeypatch.setattr(local_lr, "CLOSE_CALL", 2.0)  # no row can be that far from a boundary
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.tuning import ParamGridBuilder

    lr = LogisticRegression(labelCol="label_index")
    grid = (
        ParamGridBuilder().addGrid(lr.regParam, [0.0]).addGrid(lr.elasticNetParam, [0.0])
        .addGrid(lr.maxIter, [5]).build()
    )  # fmt: skip
    declined = local_lr.choose(binary, lr, grid, points, 2)
    assert isinstance(declined, str) and "decision boundary" in declined
    monkeypatch.setattr(local_lr, "CLOSE_CALL", 0.0)
    monkeypatch.setattr(local_lr, "REFIT_AGREEMENT", -1.0)  # no replay agrees with Spark's refit
    declined = local_lr.choose(binary, lr, grid, points, 2)
    assert isinstance(declined, str) and "differs from Spark's refit" in declined
    bad = [{"regParam": "not a number", "elasticNetParam": 0.0, "maxIter": 5}]
    failed = local_lr.replay_cross_validation(binary, 2, bad)
    assert isinstance(failed, str) and failed.startswith("the replay failed: ValueError")
    monkeypatch.setattr(local_lr, "REPLAY_MAX_VALUES", 23)  # 12 rows x 2 features = 24
    assert "over 23 values" in local_lr.replay_cross_validation(binary, 2, points)
