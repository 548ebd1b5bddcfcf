"""spark-submit entry point: featurize (each image once per model), split, fit, evaluate.

Writes under ``<data root>/runs/<run id>/``:
  dataset.parquet        path, label, sha256, features, split, fold (read by the tune job)
  baseline/model/        PipelineModel: DeepImageFeaturizer + label indexer + LR + label names
  baseline.json          test metrics, params, counts, featurizer identity
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from imgclf.config import safe_name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark_tasks/train.py", description=__doc__)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--model", required=True, help="keras.applications name or .keras path")
    p.add_argument("--pooling", default="avg", choices=["avg", "max", "flatten"])
    p.add_argument("--preprocessing", default="none", choices=["none", "tf", "torch", "caffe"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test-fraction", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=30)
    p.add_argument("--reg-param", type=float, default=0.0)
    p.add_argument("--elastic-net-param", type=float, default=0.0)
    return p


def make_featurizer(model: str, pooling: str, preprocessing: str, batch_size: int):
    from imgclf.models import APPLICATIONS, FACE_MODELS, split_face_model
    from spark_tasks.featurizer import DeepImageFeaturizer

    model, fallback = split_face_model(model)  # "dlib-face+<CNN>": the CNN goes alongside
    kind = "modelName" if model in APPLICATIONS or model in FACE_MODELS else "modelPath"
    return DeepImageFeaturizer(
        inputCol="content",
        outputCol="features",
        pooling=pooling,
        preprocessing=preprocessing,
        batchSize=batch_size,
        fallbackModel=fallback,
        **{kind: model},
    )


def run(args: argparse.Namespace, spark=None) -> dict:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from spark_tasks import common

    started = time.time()
    run_dir = args.data_root / "runs" / safe_name(args.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    spark = spark or common.spark_session(f"imgclf-train-{safe_name(args.run_id)}")
    featurizer = make_featurizer(args.model, args.pooling, args.preprocessing, args.batch_size)
    identity = featurizer.identity()

    images = common.read_images_from_manifest(spark, args.manifest, args.data_root / "raw")
    store = common.FeatureStore(spark, args.data_root / "features", identity)
    result = store.featurize_missing(images, featurizer, run_dir / "featurized.parquet")
    features = store.load()
    dataset = images.select("path", "label", "sha256").join(features, "sha256")
    dataset = common.assign_split(spark, dataset, args.test_fraction, args.seed, args.folds)
    dataset.write.mode("overwrite").parquet(str(run_dir / "dataset.parquet"))
    dataset = spark.read.parquet(str(run_dir / "dataset.parquet")).cache()

    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = common.fit_label_indexer(train)
    lr = LogisticRegression(
        maxIter=args.max_iter, regParam=args.reg_param, elasticNetParam=args.elastic_net_param
    )
    classifier = common.classifier_pipeline(indexer, lr).fit(train)
    report = common.evaluate(classifier, test, list(indexer.labels))
    common.full_model(featurizer, classifier).write().overwrite().save(
        str(run_dir / "baseline" / "model")
    )
    counts = {r["split"]: r["count"] for r in dataset.groupBy("split").count().collect()}
    no_face = common.no_face_paths(dataset, args.model)
    metrics = {
        **report,
        "stage": "baseline",
        "model": args.model,
        "featurizer": identity,
        "params": {
            "maxIter": args.max_iter,
            "regParam": args.reg_param,
            "elasticNetParam": args.elastic_net_param,
        },
        "n_train": counts.get("train", 0),
        "n_test": counts.get("test", 0),
        "featurized_images": result.featurized,
        "failed_images": result.failed,
        **({"no_face_images": no_face} if no_face is not None else {}),
        "model_path": str(run_dir / "baseline" / "model"),
        "seconds": round(time.time() - started, 2),
    }
    common.write_json(run_dir / "baseline.json", metrics)
    logging.getLogger(__name__).warning(
        "baseline accuracy %.4f on %d test images; %d images featurized",
        report["accuracy"],
        metrics["n_test"],
        result.featurized,
    )
    return metrics


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
