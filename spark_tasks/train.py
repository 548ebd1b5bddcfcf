"""spark-submit entry point: featurize (each image once per model), split, fit, evaluate.

Writes under ``<data root>/runs/<run id>/``:
  datachecks.json        the data checks (imgclf.datachecks), before any fit
  dataset.parquet        path, label, sha256, features, split, fold (read by the tune job)
  baseline/model/        PipelineModel: DeepImageFeaturizer + label indexer + LR + label names
  baseline.json          test metrics, params, counts, featurizer identity
"""

from __future__ import annotations

import logging
import sys

from spark_tasks.job import JobContext, Phases, main


def run(ctx: JobContext, spark=None) -> dict:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from imgclf.files import atomic_write_json
    from spark_tasks import classification, data_checks, feature_store, image_files, session
    from spark_tasks.featurizer import run_featurizer

    phases = Phases()
    p, settings, run_dir = ctx.params, ctx.settings, ctx.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    spark = spark or session.spark_session(ctx.app_name("train"))
    phases.lap("session")
    featurizer = run_featurizer(p)
    identity = featurizer.identity()
    files = image_files.manifest_files(settings.manifest_copy(ctx.run_id), settings.raw_dir)
    keys = image_files.image_keys(image_files.read_images(spark, files))  # hashed once, cached
    image_files.check_all_read(
        files, keys
    )  # every file of the manifest, or one line naming the rest
    phases.lap("list_and_hash")
    store = feature_store.FeatureStore(spark, settings.features_dir, identity)
    # laps: lookup, list_new, featurize (the CNN pass), store
    result = store.featurize_missing(keys, featurizer, run_dir / "featurized.parquet", phases.lap)
    features = store.load()
    if features is None:
        raise RuntimeError(f"no features in {store.path}: every image failed to decode")
    dataset = keys.join(features, "sha256")
    phases.lap("load_features")
    # the data checks (before any fit; a check in mode "fail" stops the job) and the split
    dataset, checks = data_checks.check_and_split(ctx, spark, dataset, identity)
    phases.lap("data_checks")
    dataset.write.mode("overwrite").parquet(str(run_dir / "dataset.parquet"))
    # Not cached: each pass (the indexer, the LR's two, the scoring) reads the file again, and
    # the JVM keeps no copy of the features that grows with the images (and the fit and the
    # scoring are no slower for it: docs/performance.md).
    dataset = spark.read.parquet(str(run_dir / "dataset.parquet"))
    phases.lap("split")

    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = classification.fit_label_indexer(train)
    lr = LogisticRegression(
        maxIter=p["max_iter"], regParam=p["reg_param"], elasticNetParam=p["elastic_net_param"]
    )
    classifier = classification.classifier_pipeline(indexer, lr).fit(train)
    report = classification.evaluate(classifier, test, list(indexer.labels))
    phases.lap("fit_and_score")
    model_path = settings.stage_dir(ctx.run_id, "baseline") / "model"
    classification.full_model(featurizer, classifier).write().overwrite().save(str(model_path))
    counts = {r["split"]: r["count"] for r in dataset.groupBy("split").count().collect()}
    failed = image_files.account_for_every_file(len(files), keys, features, result.failed, counts)
    no_face = classification.no_face_paths(dataset, p["model"])
    phases.lap("save")
    metrics = {
        **report,
        "stage": "baseline",
        "model": p["model"],
        "featurizer": identity,
        "params": {
            "maxIter": p["max_iter"],
            "regParam": p["reg_param"],
            "elasticNetParam": p["elastic_net_param"],
        },
        "n_train": counts.get("train", 0),
        "n_test": counts.get("test", 0),
        "featurized_images": result.images,
        "failed_images": failed,
        **({"no_face_images": no_face} if no_face is not None else {}),
        "model_path": str(model_path),
        "data_checks": checks["metrics"],
        **phases.timing(),
    }
    atomic_write_json(run_dir / "baseline.json", metrics)
    logging.getLogger(__name__).warning(
        "baseline accuracy %.4f on %d test images; %d images featurized",
        report["accuracy"],
        metrics["n_test"],
        result.images,
    )
    return metrics


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
