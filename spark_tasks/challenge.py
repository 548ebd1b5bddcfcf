"""spark-submit entry point: score this run's test images with the current champion.

The champion scores them through its own saved ``PipelineModel``. When its featurizer is the
one this run used, its classifier stages run on the stored features (the same numbers its CNN
would produce, without running it again); otherwise its whole pipeline runs on the raw images.
Writes ``runs/<run id>/challenge.json``; starts no Spark session when there is no champion.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from imgclf.config import safe_name
from imgclf.registry import Registry, atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark_tasks/challenge.py", description=__doc__)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    return p


def run(args: argparse.Namespace, spark=None) -> dict:
    started = time.time()
    run_dir = args.data_root / "runs" / safe_name(args.run_id)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    registry = Registry(args.data_root / "models")
    champion = registry.champion()
    out: dict = {"champion": champion, "candidate_accuracy": metrics["accuracy"]}
    if champion is None:
        atomic_write_json(run_dir / "challenge.json", out)
        return out

    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from spark_tasks import common
    from spark_tasks.featurizer import DeepImageFeaturizer

    spark = spark or common.spark_session(f"imgclf-challenge-{safe_name(args.run_id)}")
    model = PipelineModel.load(str(registry.model_path(champion)))
    featurizer, classifier = model.stages[0], model.stages[1:]
    labels = list(classifier[0].labels)  # the champion's StringIndexerModel
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
