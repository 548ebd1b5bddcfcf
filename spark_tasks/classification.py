"""The classifier on stored features: the split, the label indexer, the LR pipeline, the scoring,
and the full model (featurizer + classifier) that scores raw image bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import IndexToString, StringIndexer, StringIndexerModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imgclf.metrics import classification_report
from imgclf.models import ModelSpec
from imgclf.split import stratified_split

LABEL_INDEX = "label_index"
PREDICTED = "predicted_label"


def assign_split(
    spark: SparkSession, dataset: DataFrame, test_fraction: float, seed: int, folds: int
) -> DataFrame:
    """Add ``split`` ("train"/"test") and ``fold`` columns: deterministic, stratified."""
    keys = [
        (r["sha256"], r["label"]) for r in dataset.select("sha256", "label").distinct().collect()
    ]
    assignments = stratified_split(keys, test_fraction, seed, folds)
    table = spark.createDataFrame(
        [(a.key, a.label, a.split, a.fold) for a in assignments],
        "sha256 string, label string, split string, fold int",
    )
    return dataset.join(F.broadcast(table), ["sha256", "label"])


def fit_label_indexer(train: DataFrame) -> StringIndexerModel:
    # Alphabetical, so class indices (and the probability vector's order) never depend on counts.
    return StringIndexer(
        inputCol="label", outputCol=LABEL_INDEX, stringOrderType="alphabetAsc"
    ).fit(train)


def classifier_pipeline(indexer: StringIndexerModel, lr: LogisticRegression) -> Pipeline:
    """Label indexer (fitted) -> logistic regression -> class name of the prediction."""
    lr.setFeaturesCol("features").setLabelCol(LABEL_INDEX)
    return Pipeline(stages=[indexer, lr, _to_name(indexer)])


def classifier_model(indexer: StringIndexerModel, lr: LogisticRegressionModel) -> PipelineModel:
    """The fitted ``classifier_pipeline``: indexer -> ``lr`` (fitted) -> class name."""
    return PipelineModel(stages=[indexer, lr, _to_name(indexer)])


def _to_name(indexer: StringIndexerModel) -> IndexToString:
    return IndexToString(inputCol="prediction", outputCol=PREDICTED, labels=indexer.labels)


def evaluate(model: Transformer, test: DataFrame, labels: list[str]) -> dict[str, Any]:
    """Score ``test`` and compute the report (collected: test sets are small)."""
    rows = (
        model.transform(test)
        .select("path", "label", PREDICTED, "probability")
        .orderBy("path")
        .collect()
    )
    report = classification_report(
        [r["label"] for r in rows],
        [r[PREDICTED] for r in rows],
        labels,
        positive_scores=[float(r["probability"][len(labels) - 1]) for r in rows]
        if len(labels) == 2
        else None,
    )
    report["predictions"] = [
        {
            "path": r["path"],
            "label": r["label"],
            "predicted": r[PREDICTED],
            "probability": float(max(r["probability"])),
            "score": float(r["probability"][len(labels) - 1]),  # P(labels[-1])
        }
        for r in rows
    ]
    return report


def no_face_paths(dataset: DataFrame, model: str | ModelSpec) -> list[str] | None:
    """For a dlib-face model, the images where no face was found (None for other models)."""
    from pyspark.ml.functions import vector_to_array

    from spark_tasks.face import FACE_FOUND

    if not (model if isinstance(model, ModelSpec) else ModelSpec.parse(model)).is_face:
        return None
    found = vector_to_array(F.col("features"))[FACE_FOUND]
    return sorted(r["path"] for r in dataset.filter(found == 0.0).select("path").collect())


def full_model(featurizer: Transformer, classifier: PipelineModel) -> PipelineModel:
    """Featurizer + fitted classifier: one model that scores raw image bytes."""
    return PipelineModel(stages=[featurizer, *classifier.stages])


@dataclass(frozen=True)
class Choice:
    """The cross-validation's outcome, whichever engine ran it: ``model`` is Spark ML's fit of
    the best point on the whole split; ``engine`` goes into ``tuned.json`` as it is."""

    means: list[float]
    stds: list[float]
    best: int
    model: Any
    engine: dict[str, Any]
