"""spark-submit entry point behind ``imgclf evaluate``: accuracy over K seeded splits.

Featurizes the images once, then for seeds 1..K makes the pipeline's deterministic stratified
split (same sizes as the DAG's default), fits the baseline LogisticRegression on the train part
and scores the test part. Prints a table, then one JSON line with ``mean``, ``std``, ``min``,
``max``, ``splits`` and the featurization time per image.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgclf evaluate", description=__doc__)
    p.add_argument("--images", type=Path, required=True, help="folder of <class>/<image> files")
    p.add_argument("--model", required=True, help="application name, .keras path or dlib-face")
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--test-fraction", type=float, default=0.4)
    p.add_argument("--max-iter", type=int, default=30)
    p.add_argument("--reg-param", type=float, default=0.0)
    p.add_argument("--elastic-net-param", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    return p


def run(args: argparse.Namespace, spark=None) -> dict:
    from pyspark import StorageLevel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from spark_tasks import common
    from spark_tasks.train import make_featurizer

    if args.splits < 1:
        raise ValueError(f"--splits {args.splits} must be >= 1")
    spark = spark or common.spark_session("imgclf-evaluate")
    featurizer = make_featurizer(args.model, "avg", "none", args.batch_size)
    featurizer.set(featurizer.handleInvalid, "keep")
    images = common.read_images_dir(spark, args.images)
    n = images.count()
    started = time.time()
    parts = common.featurize_partitions(spark, n, args.batch_size)
    featurized = featurizer.transform(images.repartition(parts)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    failed = [r["path"] for r in featurized.filter(F.col("featurizer_error") != "").collect()]
    seconds = time.time() - started
    data = featurized.filter(F.col("featurizer_error") == "").select(
        "path", "label", "sha256", "features"
    )
    data = spark.createDataFrame(data.collect(), data.schema).cache()  # detach from the CNN
    featurized.unpersist()
    rows = []
    for seed in range(1, args.splits + 1):
        split = common.assign_split(spark, data, args.test_fraction, seed, folds=2)
        train, test = (
            split.filter(F.col("split") == "train"),
            split.filter(F.col("split") == "test"),
        )
        indexer = common.fit_label_indexer(train)
        lr = LogisticRegression(
            maxIter=args.max_iter, regParam=args.reg_param, elasticNetParam=args.elastic_net_param
        )
        model = common.classifier_pipeline(indexer, lr).fit(train)
        report = common.evaluate(model, test, list(indexer.labels))
        rows.append({"seed": seed, "n_train": train.count(), "n_test": report["n"],
                     "accuracy": report["accuracy"]})  # fmt: skip
    accs = [r["accuracy"] for r in rows]
    return {
        "model": args.model,
        "featurizer": featurizer.identity(),
        "images": n,
        "failed": failed,
        "splits": args.splits,
        "mean": statistics.fmean(accs),
        "std": statistics.pstdev(accs),
        "min": min(accs),
        "max": max(accs),
        "accuracies": accs,
        "rows": rows,
        "featurize_seconds": round(seconds, 2),
        "featurize_ms_per_image": round(1000 * seconds / max(1, n), 1),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    result = run(build_parser().parse_args(argv))
    print(f"{'seed':>4}  {'train':>5}  {'test':>4}  accuracy")
    for r in result.pop("rows"):
        print(f"{r['seed']:>4}  {r['n_train']:>5}  {r['n_test']:>4}  {r['accuracy']:.4f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
