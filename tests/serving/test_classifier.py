"""The serving flavor's NumPy replay of the classifier stages against Spark ML itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.spark


def fitted(spark, classes: int, scaler: bool, threshold: float | None = None):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IndexToString, StandardScaler, StringIndexer
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(classes)
    rows = []
    for i in range(120):
        x = rng.normal(size=6) * [1, 5, 0.1, 2, 1, 30] + [i % classes, 0, 0, 0, 0, 100]
        rows.append((Vectors.dense(x.tolist()), f"c{i % classes}"))
    df = spark.createDataFrame(rows, ["features", "label"]).coalesce(1)  # one-task L-BFGS steps
    indexer = StringIndexer(
        inputCol="label", outputCol="label_index", stringOrderType="alphabetAsc"
    ).fit(df)
    lr = LogisticRegression(
        featuresCol="scaled" if scaler else "features", labelCol="label_index", maxIter=50,
        regParam=0.01,
    )  # fmt: skip
    if threshold is not None:
        lr.setThreshold(threshold)
    stages = [indexer, lr, IndexToString(inputCol="prediction", outputCol="predicted_label",
                                         labels=indexer.labels)]  # fmt: skip
    if scaler:
        stages.insert(1, StandardScaler(inputCol="features", outputCol="scaled", withMean=True))
    return Pipeline(stages=stages).fit(df), df


@pytest.mark.parametrize(
    ("classes", "scaler", "threshold"), [(2, False, None), (2, True, 0.3), (3, True, None)]
)
def test_numpy_replay_equals_spark_ml(spark, classes, scaler, threshold):
    from spark_tasks import serving

    model, df = fitted(spark, classes, scaler, threshold)
    conf = json.loads(json.dumps(serving.describe_classifier(model.stages)))  # as stored
    clf = serving.Classifier(conf)
    rows = model.transform(df).select("features", "probability", "predicted_label").collect()
    probs, pred = clf.probabilities(np.array([r["features"].toArray() for r in rows]))
    assert np.abs(probs - np.array([r["probability"].toArray() for r in rows])).max() < 1e-12
    assert [clf.labels[i] for i in pred] == [r["predicted_label"] for r in rows]
    assert len(set(r["predicted_label"] for r in rows)) == classes  # not one class for all


def test_a_stage_it_cannot_replay_refuses_to_be_logged(spark):
    from pyspark.ml.feature import PCA

    from spark_tasks import serving

    model, df = fitted(spark, 2, False)
    pca = PCA(k=2, inputCol="features", outputCol="pca").fit(df)
    with pytest.raises(ValueError, match="no serving equivalent for pipeline stage PCAModel"):
        serving.describe_classifier([pca, *model.stages])
