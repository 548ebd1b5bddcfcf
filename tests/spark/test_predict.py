"""``imgclf predict`` (``spark_tasks/predict.py``) in-process: one CSV row per image file."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark


def test_a_zero_byte_file_gets_a_row_saying_it_is_empty(spark, tiny_model, images, tmp_path):
    from pyspark.ml.classification import LogisticRegression

    from spark_tasks import classification, image_files, predict
    from spark_tasks.featurizer import DeepImageFeaturizer

    f = DeepImageFeaturizer(modelPath=str(tiny_model))
    data = f.transform(image_files.read_images_dir(spark, images)).cache()
    classifier = classification.classifier_pipeline(
        classification.fit_label_indexer(data), LogisticRegression(maxIter=20)
    ).fit(data)
    classification.full_model(f, classifier).write().overwrite().save(str(tmp_path / "model"))
    data.unpersist()
    (images / "red" / "empty.jpg").write_bytes(b"")  # beside 12 real images
    out = tmp_path / "p.csv"
    args = argparse.Namespace(images=images, model_uri=str(tmp_path / "model"), out=out, version="")
    summary = predict.run(args, spark=spark)
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert len(rows) == 13 and (summary["images"], summary["predicted"]) == (13, 12)
    empty = rows["empty.jpg"]
    assert Path(empty["path"]) == images.resolve() / "red" / "empty.jpg"
    assert (empty["predicted_label"], empty["probability"]) == ("", "")
    assert "empty file (0 bytes)" in empty["error"]
    assert [(Path(u["path"]).name, u["error"]) for u in summary["unreadable"]] == [
        ("empty.jpg", empty["error"])
    ]
    assert all(r["predicted_label"] in ("red", "blue") and not r["error"]
               for name, r in rows.items() if name != "empty.jpg")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "model", "p.csv"]  # no staging
    (tmp_path / "none" / "red").mkdir(parents=True)
    args.images, args.out = tmp_path / "none", tmp_path / "q.csv"
    with pytest.raises(ValueError, match="no image files under"):
        predict.run(args, spark=spark)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "model", "none", "p.csv"]
