"""spark-submit entry point behind ``imgclf featurize``: one Parquet row per image.

Rows: ``path`` (absolute), ``label`` (the class folder name), ``sha256``, ``features``
(array<float>). Undecodable images (and 0-byte files: "empty file (0 bytes)") are dropped,
counted and listed in the JSON summary printed last. The CNN runs once per image (its output
is staged, then filtered).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from imgclf.models import BATCH_SIZE, PREPROCESSING, PREPROCESSINGS
from imgclf.params import add_argument


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgclf featurize", description=__doc__)
    p.add_argument("--images", type=Path, required=True, help="folder of <class>/<image> files")
    add_argument(p, "model", required=True)
    p.add_argument("--out", type=Path, required=True, help="output .parquet (a folder)")
    add_argument(p, "pooling")
    add_argument(p, "runtime")
    p.add_argument("--preprocessing", default=PREPROCESSING, choices=list(PREPROCESSINGS))
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    return p


def run(args: argparse.Namespace, spark=None) -> dict:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from spark_tasks import feature_store, image_files, session
    from spark_tasks.featurizer import make_featurizer

    started = time.time()
    spark = spark or session.spark_session("imgclf-featurize")
    featurizer = make_featurizer(
        args.model, args.pooling, args.preprocessing, args.batch_size, args.runtime
    )
    images = image_files.read_images_dir(spark, args.images)
    staging = args.out.with_name(args.out.name + ".staging")
    try:
        result = feature_store.featurize(
            spark, images, featurizer, staging, ("path", "label", "sha256")
        )
        if result.images == 0:
            raise ValueError(f"no image files under {args.images}")
        out_col = featurizer.getOutputCol()
        result.good.select(
            "path", "label", "sha256", vector_to_array(F.col(out_col), "float32").alias("features")
        ).orderBy("path").write.mode("overwrite").parquet(str(args.out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    n, failed = result.images, result.failed
    summary = {
        "images": n,
        "featurized": n - len(failed),
        "failed": failed,
        "featurizer": featurizer.identity(),
        "out": str(args.out.resolve()),
        "seconds": round(time.time() - started, 2),
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    summary = run(args)
    for item in summary["failed"]:
        print(f"undecodable, dropped: {item['path']} ({item['error']})", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
