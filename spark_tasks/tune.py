"""spark-submit entry point: choose LR params by cross-validation on the training split.

Reads the features the train job stored (``runs/<run id>/dataset.parquet``): the CNN runs zero
times here. Cross-validation uses the deterministic stratified folds of the train split only;
the chosen model is refit on the whole train split by Spark ML and evaluated once on the test
split.

Two engines, one choice. ``local_lr.choose`` replays the grid's fits (Spark ML's, step for step
in NumPy, in one Spark task over the cached split: the same folds, accuracy and tie rule as
``CrossValidator``, without a Spark job per L-BFGS step) and checks the choice against Spark's
own refit; on any reason it gives instead (another pyspark than the one it replays, data too
big, not binomial, a held-out row on a decision boundary, a disagreement, an error),
``CrossValidator`` runs and ``tuned.json`` says why (``cv.replay_declined``).

Writes ``runs/<run id>/tuned/model/`` (featurizer + classifier) and ``tuned.json``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, cast

from spark_tasks.job import JobContext, Phases, main

log = logging.getLogger(__name__)

CV_METRIC: Literal["accuracy"] = "accuracy"  # not logLoss or f1: the gate judges accuracy
# Fits in flight per core. On tuning-sized data an LR fit is a chain of tiny Spark jobs (one or
# more per L-BFGS iteration) whose cost is scheduling, not arithmetic: one thread per core
# leaves the cores waiting between jobs, and past a few per core nothing more is gained.
FITS_PER_CORE = 4


def cv_parallelism(cores: int, grid_size: int) -> int:
    """CrossValidator's ``parallelism``: enough fits in flight to hide each job's latency."""
    return max(1, min(grid_size, FITS_PER_CORE * max(1, cores)))


def cv_data(train, indexer):
    """The cross-validation's input: labels indexed once (not per fit: each fit of a Pipeline
    re-plans every stage), in one cached partition, so each L-BFGS step is a one-task job.
    A different partitioning may change a float's last bits, never the choice: a test compares
    the choice with CrossValidator over the Pipeline on the split as written."""
    return indexer.transform(train).coalesce(1).cache()


def run(ctx: JobContext, spark=None) -> dict:
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    from imgclf.files import atomic_write_json
    from spark_tasks import classification, local_lr, session
    from spark_tasks.featurizer import run_featurizer

    phases = Phases()
    p, run_dir = ctx.params, ctx.run_dir
    grid_values, folds = p["tune_grid"], p["cv_folds"]
    spark = spark or session.spark_session(ctx.app_name("tune"))
    phases.lap("session")
    data_path = run_dir / "dataset.parquet"
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} is missing: the train job writes it first")
    # Not cached: the indexer, the cross-validation's partition and the scoring each read the
    # file once (a cache held the whole split's features on the heap, growing with the images,
    # for no faster step).
    dataset = spark.read.parquet(str(data_path))
    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = classification.fit_label_indexer(train)
    data = cv_data(train, indexer)
    lr = LogisticRegression(featuresCol="features", labelCol=classification.LABEL_INDEX)
    grid = (
        ParamGridBuilder()
        .addGrid(lr.regParam, [float(v) for v in grid_values["reg_param"]])
        .addGrid(lr.elasticNetParam, [float(v) for v in grid_values["elastic_net_param"]])
        .addGrid(lr.maxIter, [int(v) for v in grid_values["max_iter"]])
        .build()
    )
    points = [{param.name: v for param, v in pm.items()} for pm in grid]
    choice = local_lr.choose(data, lr, grid, points, folds)  # the grid replayed, or why not
    if isinstance(choice, str):
        log.warning("cross-validating with CrossValidator: %s", choice)
        cv = CrossValidator(
            estimator=lr,
            estimatorParamMaps=grid,
            evaluator=MulticlassClassificationEvaluator(
                labelCol=classification.LABEL_INDEX,
                predictionCol="prediction",
                metricName=CV_METRIC,
            ),
            numFolds=folds,
            foldCol="fold",
            seed=p["seed"],
            parallelism=cv_parallelism(spark.sparkContext.defaultParallelism, len(grid)),
        )
        cv_model = cv.fit(data)
        means = list(cv_model.avgMetrics)
        first_best = max(range(len(means)), key=means.__getitem__)  # accuracy: larger is better
        engine = {"engine": "spark", "replay_declined": choice}
        choice = classification.Choice(
            means, list(cv_model.stdMetrics), first_best, cv_model.bestModel, engine
        )
    means, stds, best = choice.means, choice.stds, choice.best
    data.unpersist()
    phases.lap("cross_validate")
    best_params = points[best]
    # the best params, refit on the whole train split, behind the same indexer and label names
    classifier = classification.classifier_model(
        indexer, cast(LogisticRegressionModel, choice.model)
    )
    report = classification.evaluate(classifier, test, list(indexer.labels))
    featurizer = run_featurizer(p)
    model_path = ctx.settings.stage_dir(ctx.run_id, "tuned") / "model"
    classification.full_model(featurizer, classifier).write().overwrite().save(str(model_path))
    phases.lap("score_and_save")
    metrics = {
        **report,
        "stage": "tuned",
        "model": p["model"],
        "featurizer": featurizer.identity(),
        "params": best_params,
        "cv": {
            "metric": CV_METRIC,
            "folds": folds,
            **choice.engine,
            "best_mean": means[best],
            "best_std": stds[best],
            "grid": [
                {**point, "mean": m, "std": s}
                for point, m, s in zip(points, means, stds, strict=True)
            ],
        },
        "n_train": train.count(),
        "n_test": test.count(),
        "featurized_images": 0,
        "model_path": str(model_path),
        **phases.timing(),
    }
    atomic_write_json(run_dir / "tuned.json", metrics)
    log.warning(
        "tuned %s -> test accuracy %.4f (cv %s %.4f +- %.4f)",
        best_params,
        report["accuracy"],
        CV_METRIC,
        means[best],
        stds[best],
    )
    return metrics


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
