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


def test_names_spark_skips_or_globs_are_still_predicted(spark, tiny_model, images, tmp_path):
    """``_x.jpg``, ``.hidden.jpg`` (Spark's listing skips them) and ``[x].jpg`` (a glob
    character) in a user's folder each get a prediction, none is silently left out."""
    import shutil

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
    folder = tmp_path / "mine"
    (folder / "_private").mkdir(parents=True)
    source = sorted((images / "red").iterdir())[0]
    for name in ("_x.jpg", "[x].jpg", ".hidden.jpg", "plain.jpg"):
        shutil.copy(source, folder / name)
    shutil.copy(source, folder / "_private" / "in_hidden_folder.jpg")
    (folder / "_broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "p.csv"
    args = argparse.Namespace(images=folder, model_uri=str(tmp_path / "model"), out=out, version="")
    summary = predict.run(args, spark=spark)
    rows = {Path(r["path"]).relative_to(folder.resolve()).as_posix(): r
            for r in csv.DictReader(out.open())}  # fmt: skip
    predicted = ["_x.jpg", "[x].jpg", ".hidden.jpg", "plain.jpg", "_private/in_hidden_folder.jpg"]
    assert sorted(rows) == sorted([*predicted, "_broken.jpg"])
    labels = {n: (rows[n]["predicted_label"], rows[n]["probability"]) for n in predicted}
    assert len(set(labels.values())) == 1 and labels["plain.jpg"][0] in ("red", "blue")
    assert rows["_broken.jpg"]["predicted_label"] == "" and rows["_broken.jpg"]["error"]
    assert (summary["images"], summary["predicted"]) == (6, 5)


def test_a_hidden_file_over_the_byte_limit_is_listed_not_read(tmp_path):
    from spark_tasks import image_files

    (tmp_path / "_big.jpg").write_bytes(b"x" * 101)
    (tmp_path / "_ok.jpg").write_bytes(b"x" * 100)
    (tmp_path / "seen.jpg").write_bytes(b"x" * 500)  # Spark lists it: not ours to read
    read, refused = image_files.hidden_images(tmp_path, max_bytes=100)
    assert read == [(f"file:{tmp_path.resolve() / '_ok.jpg'}", b"x" * 100)]
    assert [r["path"] for r in refused] == [str(tmp_path.resolve() / "_big.jpg")]
    assert "101 bytes, over the 100" in refused[0]["error"]
