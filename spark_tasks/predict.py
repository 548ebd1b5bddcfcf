"""spark-submit entry point: score a folder of images with a saved model (batch prediction).

Writes ``--out`` as CSV, one row per image file: ``path``, ``predicted_label``, ``probability``
(of the predicted class) and ``error`` (why an unreadable file, a 0-byte one too, got no
prediction; such files are listed, never fatal). Prints a JSON summary last.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgclf predict", description=__doc__)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument(
        "--model-uri",
        required=True,
        help="an MLflow model URI (models:/football_classifier@champion, models:/NAME/VERSION, "
        "runs:/...) or the folder of a saved PipelineModel",
    )
    p.add_argument("--out", type=Path, required=True, help="FILE.csv")
    p.add_argument("--version", default="", help="registry version, recorded in the summary")
    p.add_argument("--report", type=Path, default=None, help="FILE.html: the predictions report")
    return p


def run(args: argparse.Namespace, spark=None) -> dict:
    from pyspark.ml import PipelineModel

    from spark_tasks import classification, feature_store, image_files, session
    from spark_tasks.featurizer import DeepImageFeaturizer

    started = time.time()
    spark = spark or session.spark_session("imgclf-predict")
    if "://" in args.model_uri or args.model_uri.startswith(("models:/", "runs:/")):
        from imgclf.settings import Settings
        from spark_tasks import serving

        # with the CNN file logged beside it, not the one its run read (moved, other host)
        model = serving.load_pipeline(Settings.from_env(), args.model_uri)
    else:
        model = PipelineModel.load(str(Path(args.model_uri).resolve()))
    featurizer = model.stages[0]
    if not isinstance(featurizer, DeepImageFeaturizer):
        raise ValueError(f"{args.model_uri} does not start with a DeepImageFeaturizer")
    from imgclf.settings import Settings

    # names Spark's listing skips (``_x.jpg``, ``.x.jpg``) are read by the driver, not dropped
    hidden, refused = image_files.hidden_images(args.images, Settings.from_env().max_file_bytes)
    images = image_files.read_images_dir(spark, args.images, also=hidden).drop("label")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = args.out.with_name(args.out.name + ".staging")
    try:  # featurize once, then classify the decodable rows and list the others
        result = feature_store.featurize(spark, images, featurizer, staging)
        n, bad = result.images + len(refused), [*result.failed, *refused]
        if n == 0:
            raise ValueError(f"no image files under {args.images}")
        good = PipelineModel(stages=model.stages[1:]).transform(result.good)
        scored = {
            r["path"]: (r[classification.PREDICTED], float(max(r["probability"])))
            for r in good.select("path", classification.PREDICTED, "probability").collect()
        }
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "predicted_label", "probability", "error"])
        errors = {b["path"]: b["error"] for b in bad}
        for path in sorted({*scored, *errors}):
            if path in errors:
                writer.writerow([path, "", "", errors[path]])
            else:
                label, prob = scored[path]
                writer.writerow([path, label, f"{prob:.6f}", ""])
    os.replace(tmp, args.out)
    report = getattr(args, "report", None)
    if report is not None:
        write_report(args.out, report, args.version)
    return {
        "images": n,
        "predicted": len(scored),
        "unreadable": bad,
        "version": args.version or None,
        "out": str(args.out.resolve()),
        "report": str(report.resolve()) if report is not None else None,
        "seconds": round(time.time() - started, 2),
    }


def write_report(csv_path: Path, report: Path, version: str) -> None:
    from imgclf import predictions_report

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    title = f"{csv_path.name} (model version {version})" if version else csv_path.name
    report.parent.mkdir(parents=True, exist_ok=True)
    tmp = report.with_name(report.name + ".tmp")
    tmp.write_text(predictions_report.render(rows, title), encoding="utf-8")
    os.replace(tmp, report)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    summary = run(build_parser().parse_args(argv))
    for item in summary["unreadable"]:
        print(f"unreadable, no prediction: {item['path']} ({item['error']})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
