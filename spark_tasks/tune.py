"""spark-submit entry point: choose LR params by cross-validation on the training split.

Reads the features the train job stored (``runs/<run id>/dataset.parquet``): the CNN runs zero
times here. Cross-validation uses the deterministic stratified folds of the train split only;
the chosen model is refit on the whole train split and evaluated once on the test split.

Writes ``runs/<run id>/tuned/model/`` (featurizer + classifier) and ``tuned.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from imgclf.config import safe_name

CV_METRICS = ("accuracy", "logLoss", "f1")


def build_parser() -> argparse.ArgumentParser:
    from spark_tasks.train import build_parser as train_parser

    p = argparse.ArgumentParser(
        prog="spark_tasks/tune.py",
        description=__doc__,
        parents=[train_parser()],
        add_help=False,
        conflict_handler="resolve",
    )
    p.add_argument("--manifest", type=Path, default=None)  # not needed: features are stored
    p.add_argument(
        "--grid",
        type=json.loads,
        required=True,
        help='JSON: {"reg_param": [...], "elastic_net_param": [...], "max_iter": [...]}',
    )
    p.add_argument("--cv-metric", default="accuracy", choices=CV_METRICS)
    p.add_argument("--parallelism", type=int, default=2)
    return p


def run(args: argparse.Namespace, spark=None) -> dict:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    from spark_tasks import common
    from spark_tasks.train import make_featurizer

    started = time.time()
    run_dir = args.data_root / "runs" / safe_name(args.run_id)
    spark = spark or common.spark_session(f"imgclf-tune-{safe_name(args.run_id)}")
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
        .addGrid(lr.regParam, [float(v) for v in args.grid["reg_param"]])
        .addGrid(lr.elasticNetParam, [float(v) for v in args.grid["elastic_net_param"]])
        .addGrid(lr.maxIter, [int(v) for v in args.grid["max_iter"]])
        .build()
    )
    evaluator = MulticlassClassificationEvaluator(
        labelCol=common.LABEL_INDEX, predictionCol="prediction", metricName=args.cv_metric
    )
    cv = CrossValidator(
        estimator=common.classifier_pipeline(indexer, lr),
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=args.folds,
        foldCol="fold",
        seed=args.seed,
        parallelism=args.parallelism,
    )
    cv_model = cv.fit(train)
    means, stds = list(cv_model.avgMetrics), list(cv_model.stdMetrics)
    pick = max if evaluator.isLargerBetter() else min
    best = pick(range(len(means)), key=lambda i: means[i])
    best_params = {p.name: v for p, v in grid[best].items()}
    classifier = cv_model.bestModel
    report = common.evaluate(classifier, test, list(indexer.labels))
    featurizer = make_featurizer(args.model, args.pooling, args.preprocessing, args.batch_size)
    common.full_model(featurizer, classifier).write().overwrite().save(
        str(run_dir / "tuned" / "model")
    )
    metrics = {
        **report,
        "stage": "tuned",
        "model": args.model,
        "featurizer": featurizer.identity(),
        "params": best_params,
        "cv": {
            "metric": args.cv_metric,
            "folds": args.folds,
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
        "model_path": str(run_dir / "tuned" / "model"),
        "seconds": round(time.time() - started, 2),
    }
    common.write_json(run_dir / "tuned.json", metrics)
    logging.getLogger(__name__).warning(
        "tuned %s -> test accuracy %.4f (cv %s %.4f +- %.4f)",
        best_params,
        report["accuracy"],
        args.cv_metric,
        means[best],
        stds[best],
    )
    return metrics


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
