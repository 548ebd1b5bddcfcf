"""spark-submit entry point: choose LR params by cross-validation on the training split.

Reads the features the train job stored (``runs/<run id>/dataset.parquet``): the CNN runs zero
times here. Cross-validation uses the deterministic stratified folds of the train split only;
the chosen model is refit on the whole train split and evaluated once on the test split.

Writes ``runs/<run id>/tuned/model/`` (featurizer + classifier) and ``tuned.json``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Literal, cast

from spark_tasks.job import JobContext, main

CV_METRIC: Literal["accuracy"] = "accuracy"  # not logLoss or f1: the gate judges accuracy
PARALLELISM = 2


def run(ctx: JobContext, spark=None) -> dict:
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    from spark_tasks import common
    from spark_tasks.train import BATCH_SIZE, PREPROCESSING, make_featurizer

    started = time.time()
    p, run_dir = ctx.params, ctx.run_dir
    grid_values, folds = p["tune_grid"], p["cv_folds"]
    spark = spark or common.spark_session(ctx.app_name("tune"))
    data_path = run_dir / "dataset.parquet"
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} is missing: the train job writes it first")
    dataset = spark.read.parquet(str(data_path)).cache()
    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = common.fit_label_indexer(train)
    lr = LogisticRegression()
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
        estimator=common.classifier_pipeline(indexer, lr),
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=folds,
        foldCol="fold",
        seed=p["seed"],
        parallelism=PARALLELISM,
    )
    cv_model = cv.fit(train)
    means, stds = list(cv_model.avgMetrics), list(cv_model.stdMetrics)
    pick = max if evaluator.isLargerBetter() else min
    best = pick(range(len(means)), key=lambda i: means[i])
    best_params = {p.name: v for p, v in grid[best].items()}
    classifier = cast(PipelineModel, cv_model.bestModel)  # the best pipeline, refit on train
    report = common.evaluate(classifier, test, list(indexer.labels))
    featurizer = make_featurizer(p["model"], p["pooling"], PREPROCESSING, BATCH_SIZE)
    model_path = ctx.settings.stage_dir(ctx.run_id, "tuned") / "model"
    common.full_model(featurizer, classifier).write().overwrite().save(str(model_path))
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
        "seconds": round(time.time() - started, 2),
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
