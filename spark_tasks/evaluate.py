"""spark-submit entry point behind ``imgclf evaluate``: accuracy over K seeded splits.

Featurizes the images once, then for seeds 1..K makes the pipeline's deterministic stratified
split (same sizes as the DAG's default), fits the baseline LogisticRegression on the train part
and scores the test part. Prints a table, then one JSON line with ``mean``, ``std``, ``min``,
``max``, ``splits`` and the featurization time per image.

For ``dlib-face`` models it also lists the images where no face was found and scores the
test images with and without a face apart. ``--miss-faces F`` simulates a detector that misses
a fraction F of the faces (seeded per split, train and test alike): those images get exactly
what the featurizer gives a face-less image (zeros and ``face_found`` 0, the fallback CNN's
features untouched), which is how the no-face fallbacks are compared on a dataset where
nearly every face is found.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from imgclf.models import BATCH_SIZE
from imgclf.params import add_argument


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgclf evaluate", description=__doc__)
    p.add_argument("--images", type=Path, required=True, help="folder of <class>/<image> files")
    add_argument(p, "model", required=True)
    add_argument(p, "runtime")
    p.add_argument("--splits", type=int, default=20)
    for name in ("test_fraction", "max_iter", "reg_param", "elastic_net_param"):
        add_argument(p, name)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--miss-faces", type=float, default=0.0, metavar="F",
                   help="dlib-face only: simulate missing this fraction of the faces")  # fmt: skip
    return p


def _without_face(row):
    """The row as the featurizer would have written it had it found no face."""
    from pyspark.ml.linalg import DenseVector
    from pyspark.sql import Row

    from spark_tasks.face import DIM

    values = row["features"].toArray().copy()
    values[:DIM] = 0.0
    return Row(**{**row.asDict(), "features": DenseVector(values)})


def _tally(predictions: list[dict], paths: set[str]) -> tuple[int, int]:
    chosen = [p for p in predictions if p["path"] in paths]
    return len(chosen), sum(p["label"] == p["predicted"] for p in chosen)


def run(args: argparse.Namespace, spark=None) -> dict:
    from imgclf.models import ModelSpec
    from spark_tasks import feature_store, image_files, session
    from spark_tasks.featurizer import make_featurizer

    if args.splits < 1:
        raise ValueError(f"--splits {args.splits} must be >= 1")
    is_face = ModelSpec.parse(args.model).is_face
    if args.miss_faces and not is_face:
        raise ValueError(f"--miss-faces applies to dlib-face models, not {args.model!r}")
    if not 0.0 <= args.miss_faces <= 1.0:
        raise ValueError(f"--miss-faces {args.miss_faces} must be between 0 and 1")
    spark = spark or session.spark_session("imgclf-evaluate")
    featurizer = make_featurizer(args.model, "avg", "none", args.batch_size, args.runtime)
    images = image_files.read_images_dir(spark, args.images)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="imgclf-evaluate-") as tmp:
        result = feature_store.featurize(
            spark, images, featurizer, Path(tmp) / "staged", ("path", "label", "sha256")
        )
        everything = result.good.collect()  # small: the folds below never run the CNN
    seconds = time.time() - started
    n = result.images
    return {
        "model": args.model,
        "featurizer": featurizer.identity(),
        "images": n,
        "failed": [f["path"] for f in result.failed],
        **over_splits(spark, everything, args, result.good.schema),
        "featurize_seconds": round(seconds, 2),
        "featurize_ms_per_image": round(1000 * seconds / max(1, n), 1),
    }


def over_splits(spark, everything: list, args: argparse.Namespace, schema=None) -> dict:
    """The classifier over ``args.splits`` seeded splits of the featurized rows ``everything``
    (``path, label, sha256, features``; ``schema`` theirs, else inferred): the accuracies, and
    for a dlib-face model the no-face tally, with ``args.miss_faces`` of the found faces hidden."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from imgclf.models import ModelSpec
    from imgclf.split import seeded_subset
    from spark_tasks import classification
    from spark_tasks.face import FACE_FOUND

    is_face = ModelSpec.parse(args.model).is_face
    data = spark.createDataFrame(everything, schema).cache()
    found = {r["path"] for r in everything if is_face and r["features"][FACE_FOUND] == 1.0}
    no_face = sorted(r["path"] for r in everything if is_face and r["path"] not in found)
    rows = []
    faceless_tally = [0, 0]
    for seed in range(1, args.splits + 1):
        missed = seeded_subset(found, args.miss_faces, seed, salt="missed-face:")
        split_data = data
        if missed:
            changed = [_without_face(r) if r["path"] in missed else r for r in everything]
            split_data = spark.createDataFrame(changed, data.schema)
        split = classification.assign_split(spark, split_data, args.test_fraction, seed, folds=2)
        train, test = (
            split.filter(F.col("split") == "train"),
            split.filter(F.col("split") == "test"),
        )
        indexer = classification.fit_label_indexer(train)
        lr = LogisticRegression(
            maxIter=args.max_iter, regParam=args.reg_param, elasticNetParam=args.elastic_net_param
        )
        model = classification.classifier_pipeline(indexer, lr).fit(train)
        report = classification.evaluate(model, test, list(indexer.labels))
        n_faceless, ok_faceless = _tally(report["predictions"], set(no_face) | missed)
        faceless_tally = [faceless_tally[0] + n_faceless, faceless_tally[1] + ok_faceless]
        rows.append({"seed": seed, "n_train": train.count(), "n_test": report["n"],
                     "accuracy": report["accuracy"], "no_face_test": n_faceless,
                     "no_face_correct": ok_faceless})  # fmt: skip
    data.unpersist()
    accs = [r["accuracy"] for r in rows]
    return {
        "splits": args.splits,
        "mean": statistics.fmean(accs),
        "std": statistics.pstdev(accs),
        "min": min(accs),
        "max": max(accs),
        "accuracies": accs,
        "rows": rows,
        **(
            {
                "no_face_images": no_face,
                "missed_faces_fraction": args.miss_faces,
                "no_face_test_images": faceless_tally[0],  # over all splits
                "no_face_test_accuracy": faceless_tally[1] / faceless_tally[0]
                if faceless_tally[0]
                else None,
            }
            if is_face
            else {}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    result = run(build_parser().parse_args(argv))
    print(f"{'seed':>4}  {'train':>5}  {'test':>4}  accuracy  no-face test (correct)")
    for r in result.pop("rows"):
        print(f"{r['seed']:>4}  {r['n_train']:>5}  {r['n_test']:>4}  {r['accuracy']:.4f}    "
              f"{r['no_face_test']:>3} ({r['no_face_correct']})")  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
