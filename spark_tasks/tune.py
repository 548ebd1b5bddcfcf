"""spark-submit entry point: choose LR params by cross-validation on the training split.

Reads the features the train job stored (``runs/<run id>/dataset.parquet``): the CNN runs zero
times here. Cross-validation uses the deterministic stratified folds of the train split only;
the chosen model is refit on the whole train split and evaluated once on the test split.

Writes ``runs/<run id>/tuned/model/`` (featurizer + classifier) and ``tuned.json``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, cast

from spark_tasks.job import JobContext, Phases, main

CV_METRIC: Literal["accuracy"] = "accuracy"  # not logLoss or f1: the gate judges accuracy
# Fits in flight per core. On tuning-sized data an LR fit is a chain of tiny Spark jobs (one or
# more per L-BFGS iteration) whose cost is scheduling, not arithmetic: one thread per core
# leaves the cores waiting between jobs (measured on 2 cores, 48 fits: 2 threads 21.5 s,
# 8 threads 14.6 s, 16 no better).
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

    from spark_tasks import common
    from spark_tasks.train import BATCH_SIZE, PREPROCESSING, make_featurizer

    phases = Phases()
    p, run_dir = ctx.params, ctx.run_dir
    grid_values, folds = p["tune_grid"], p["cv_folds"]
    spark = spark or common.spark_session(ctx.app_name("tune"))
    phases.lap("session")
    data_path = run_dir / "dataset.parquet"
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} is missing: the train job writes it first")
    dataset = spark.read.parquet(str(data_path)).cache()
    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = common.fit_label_indexer(train)
    data = cv_data(train, indexer)
    lr = LogisticRegression(featuresCol="features", labelCol=common.LABEL_INDEX)
    grid = (
        ParamGridBuilder()
        .addGrid(lr.regParam, [float(v) for v in grid_values["reg_param"]])
        .addGrid(lr.elasticNetParam, [float(v) for v in grid_values["elastic_net_param"]])
        .addGrid(lr.maxIter, [int(v) for v in grid_values["max_iter"]])
        .build()
    )
    evaluator = MulticlassClassificationEvaluator(
        labelCol=common.LABEL_INDEX, predictionCol="prediction", metricName=CV_METRIC
    )
    cv = CrossValidator(
        estimator=lr,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=folds,
        foldCol="fold",
        seed=p["seed"],
        parallelism=cv_parallelism(spark.sparkContext.defaultParallelism, len(grid)),
    )
    cv_model = cv.fit(data)
    data.unpersist()
    phases.lap("cross_validate")
    means, stds = list(cv_model.avgMetrics), list(cv_model.stdMetrics)
    pick = max if evaluator.isLargerBetter() else min
    best = pick(range(len(means)), key=lambda i: means[i])
    best_params = {p.name: v for p, v in grid[best].items()}
    # the best params, refit on the whole train split, behind the same indexer and label names
    classifier = common.classifier_model(indexer, cast(LogisticRegressionModel, cv_model.bestModel))
    report = common.evaluate(classifier, test, list(indexer.labels))
    featurizer = make_featurizer(p["model"], p["pooling"], PREPROCESSING, BATCH_SIZE, p["runtime"])
    model_path = ctx.settings.stage_dir(ctx.run_id, "tuned") / "model"
    common.full_model(featurizer, classifier).write().overwrite().save(str(model_path))
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
            "best_mean": means[best],
            "best_std": stds[best],
            "grid": [
                {**{p.name: v for p, v in pm.items()}, "mean": m, "std": s}
                for pm, m, s in zip(grid, means, stds, strict=True)
            ],
        },
        "n_train": train.count(),
        "n_test": test.count(),
        "featurized_images": 0,
        "model_path": str(model_path),
        **phases.timing(),
    }
    common.write_json(run_dir / "tuned.json", metrics)
    logging.getLogger(__name__).warning(
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
