"""``imgclf predict`` (``spark_tasks/predict.py``) in-process: one CSV row per image file."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from tests.fixtures_images import make_images

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def model(spark, tiny_model, tmp_path_factory) -> Path:
    """A saved featurizer + classifier PipelineModel (the tiny CNN on the red/blue images),
    trained once for the module: what these tests score with is the same model. Saved under
    an odd name, as a user's model folder may be."""
    from pyspark.ml.classification import LogisticRegression

    from spark_tasks import classification, image_files
    from spark_tasks.featurizer import DeepImageFeaturizer

    tmp = tmp_path_factory.mktemp("predict-model")
    f = DeepImageFeaturizer(modelPath=str(tiny_model))
    data = f.transform(image_files.read_images_dir(spark, make_images(tmp / "images"))).cache()
    classifier = classification.classifier_pipeline(
        classification.fit_label_indexer(data), LogisticRegression(maxIter=20)
    ).fit(data)
    path = tmp / "model #1: x"
    classification.full_model(f, classifier).write().overwrite().save(str(path))
    data.unpersist()
    return path


def test_a_zero_byte_file_gets_a_row_saying_it_is_empty(spark, model, images, tmp_path):
    from spark_tasks import predict

    (images / "red" / "empty.jpg").write_bytes(b"")  # beside 12 real images
    out = tmp_path / "p.csv"
    args = argparse.Namespace(images=images, model_uri=str(model), out=out, version="")
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "p.csv"]  # no staging
    (tmp_path / "none" / "red").mkdir(parents=True)
    args.images, args.out = tmp_path / "none", tmp_path / "q.csv"
    with pytest.raises(ValueError, match="no image files under"):
        predict.run(args, spark=spark)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "none", "p.csv"]


def test_names_spark_skips_or_globs_are_still_predicted(spark, model, images, tmp_path):
    """``_x.jpg``, ``.hidden.jpg`` (Spark's listing skips them) and ``[x].jpg`` (a glob
    character) in a user's folder each get a prediction, none is silently left out."""
    import shutil

    from spark_tasks import predict

    folder = tmp_path / "mine"
    (folder / "_private").mkdir(parents=True)
    source = sorted((images / "red").iterdir())[0]
    for name in ("_x.jpg", "[x].jpg", ".hidden.jpg", "plain.jpg"):
        shutil.copy(source, folder / name)
    shutil.copy(source, folder / "_private" / "in_hidden_folder.jpg")
    (folder / "_broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "p.csv"
    args = argparse.Namespace(images=folder, model_uri=str(model), out=out, version="")
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


@pytest.mark.parametrize("folder_name", ["photos:2026 #1 %", "été?x=1&y", "a%20b"])
def test_a_folder_name_with_uri_characters_is_predicted_whole(
    spark, model, images, tmp_path, folder_name
):
    """A user's folder is named as they like: ``:``, spaces, ``#``, ``%``, ``?``, non-ASCII (what
    a URI would read as a scheme, fragment, escape or query) and a name that looks escaped. Every
    image in it, in a subfolder, a 0-byte one and a hidden one among them, gets its row."""
    import shutil

    from spark_tasks import predict

    folder = tmp_path / folder_name
    shutil.copytree(images, folder / "sub: #2")
    source = sorted((images / "red").iterdir())[0]
    shutil.copy(source, folder / "top %3A.jpg")
    shutil.copy(source, folder / "_hidden #.jpg")
    (folder / "empty ?.jpg").write_bytes(b"")
    out = tmp_path / "p.csv"
    args = argparse.Namespace(images=folder, model_uri=str(model), out=out, version="")
    summary = predict.run(args, spark=spark)
    rows = {Path(r["path"]).relative_to(folder.resolve()).as_posix(): r
            for r in csv.DictReader(out.open())}  # fmt: skip
    want = {"sub: #2/" + p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}
    want |= {"top %3A.jpg", "_hidden #.jpg", "empty ?.jpg"}
    assert sorted(rows) == sorted(want)
    assert "empty file (0 bytes)" in rows["empty ?.jpg"]["error"]
    for name in want - {"empty ?.jpg"}:
        assert rows[name]["predicted_label"] in ("red", "blue") and not rows[name]["error"], name
    assert (summary["images"], summary["predicted"]) == (len(want), len(want) - 1)


def test_read_images_takes_files_in_a_folder_whose_name_has_a_colon(spark, images, tmp_path):
    """``read_images`` (a manifest's exact files) under a data root such as ``/x/photos:2026 #1
    %``: unprefixed, Hadoop reads ``photos:`` as a URI scheme (``URISyntaxException``)."""
    import shutil

    from spark_tasks import image_files

    folder = tmp_path / "photos:2026 #1 %"
    shutil.copytree(images, folder)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    got = sorted(r["path"] for r in image_files.read_images(spark, files).select("path").collect())
    assert got == files
