"""spark-submit entry point: score this run's test images with the current champion.

The champion scores them through its own saved ``PipelineModel``. When its featurizer is the
one this run used, its classifier stages run on the stored features (the same numbers its CNN
would produce, without running it again); otherwise its whole pipeline runs on the raw images.
Writes ``runs/<run id>/challenge.json``; starts no Spark session when there is no champion.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from imgclf.files import atomic_write_json
from imgclf.registry import Registry
from spark_tasks.job import JobContext, main


def run(ctx: JobContext, spark=None) -> dict:
    started = time.time()
    run_dir = ctx.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    registry = Registry(ctx.settings.models_dir)
    champion = registry.champion()
    out: dict = {"champion": champion, "candidate_accuracy": metrics["accuracy"]}
    if champion is None:
        atomic_write_json(run_dir / "challenge.json", out)
        return out

    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.sql import functions as F

    from spark_tasks import common
    from spark_tasks.featurizer import DeepImageFeaturizer

    spark = spark or common.spark_session(ctx.app_name("challenge"))
    model = PipelineModel.load(str(registry.model_path(champion)))
    featurizer, classifier = model.stages[0], model.stages[1:]
    indexer = classifier[0]  # the champion's StringIndexerModel
    assert isinstance(indexer, StringIndexerModel), type(indexer)
    labels = list(indexer.labels)
    test = spark.read.parquet(str(run_dir / "dataset.parquet")).filter(F.col("split") == "test")
    ours = sorted(metrics["baseline"]["labels"])
    if sorted(labels) != ours:
        out.update(comparable=False, reason=f"its classes {labels} differ from this run's {ours}")
        atomic_write_json(run_dir / "challenge.json", out)
        return out
    same = isinstance(featurizer, DeepImageFeaturizer) and featurizer.identity() == metrics.get(
        "featurizer"
    )
    if same:
        scored_by, data = PipelineModel(stages=classifier), test
    else:
        paths = [r["path"] for r in test.select("path").collect()]
        raw = common._with_label_and_hash(spark.read.format("binaryFile").load(paths))
        scored_by, data = model, raw
    report = common.evaluate(scored_by, data, labels)
    out.update(
        comparable=True,
        champion_accuracy=report["accuracy"],
        champion_featurizer=featurizer.identity()
        if isinstance(featurizer, DeepImageFeaturizer)
        else None,
        reused_features=same,
        n_test=report["n"],
        champion_info={k: registry.info(champion).get(k) for k in ("run_id", "accuracy", "model")},
        seconds=round(time.time() - started, 2),
    )
    atomic_write_json(run_dir / "challenge.json", out)
    logging.getLogger(__name__).warning(
        "champion %s scores %.4f on this run's %d test images (candidate %.4f)",
        champion, report["accuracy"], report["n"], metrics["accuracy"],
    )  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
