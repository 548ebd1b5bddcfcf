"""spark-submit entry point: log the gated candidate to MLflow, and score this run's test
images with the current champion (the ``champion`` alias of the MLflow Model Registry).

The champion scores them through its own saved ``PipelineModel``. When its featurizer is the
one this run used, its classifier stages run on the stored features (the same numbers its CNN
would produce, without running it again); otherwise its whole pipeline runs on the raw images.
Writes ``runs/<run id>/challenge.json`` (with the candidate's model URI, for promote).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from imgclf import registry, tracking
from imgclf.files import atomic_write_json
from spark_tasks import serving
from spark_tasks.job import JobContext, main


def run(ctx: JobContext, spark=None) -> dict:
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.sql import functions as F

    from spark_tasks import classification, image_files, session
    from spark_tasks.featurizer import DeepImageFeaturizer

    started = time.time()
    run_dir = ctx.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    spark = spark or session.spark_session(ctx.app_name("challenge"))
    # the gated candidate, logged once with MLflow's Spark flavor: what promote registers
    candidate_uri = tracking.log_model(
        ctx.settings, ctx.run_id, PipelineModel.load(metrics["model_path"]), serving
    )
    champion = registry.champion(ctx.settings)
    out: dict = {
        "champion": champion["version"] if champion else None,
        "candidate_accuracy": metrics["accuracy"],
        "candidate_model_uri": candidate_uri,
    }
    if champion is None:
        atomic_write_json(run_dir / "challenge.json", out)
        return out

    # the champion's own CNN file (logged with it), wherever the run that made it read one
    uri = registry.model_uri(ctx.settings, champion["version"])
    model = serving.load_pipeline(ctx.settings, uri)
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
    is_ours = isinstance(featurizer, DeepImageFeaturizer)
    same = is_ours and featurizer.identity() == metrics.get("featurizer")
    if same:
        scored_by, data = PipelineModel(stages=classifier), test
    else:
        paths = [r["path"] for r in test.select("path").collect()]
        scored_by, data = model, image_files.read_images(spark, paths)
    report = classification.evaluate(scored_by, data, labels)
    tags = champion["tags"]
    out.update(
        comparable=True,
        champion_accuracy=report["accuracy"],
        champion_featurizer=featurizer.identity() if is_ours else None,
        reused_features=same,
        n_test=report["n"],
        champion_info={k: tags.get(k) for k in ("airflow_run_id", "accuracy", "model")},
        seconds=round(time.time() - started, 2),
    )
    atomic_write_json(run_dir / "challenge.json", out)
    logging.getLogger(__name__).warning(
        "champion %s scores %.4f on this run's %d test images (candidate %.4f)",
        out["champion"], report["accuracy"], report["n"], metrics["accuracy"],
    )  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
