"""imgclf evaluate: K seeded splits on one featurization, the no-face tally, --miss-faces."""

from __future__ import annotations

import statistics

import pytest

from spark_tasks import evaluate
from tests.fixtures_images import make_images


def _args(images, model, **kw):
    # these tests check the splits and the tallies, not the fits: a short one (each iteration
    # of Spark's LogisticRegression is a Spark job)
    kw.setdefault("max_iter", 5)
    return evaluate.build_parser().parse_args(
        ["--images", str(images), "--model", model, "--splits", str(kw.pop("splits", 3))]
        + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("eval"), per_class=6)


def test_a_cnn_over_seeded_splits(spark, images, tiny_model):
    got = evaluate.run(_args(images, str(tiny_model)), spark)
    assert got["images"] == 12 and got["splits"] == 3 and got["failed"] == []
    assert [r["n_test"] for r in got["rows"]] == [4, 4, 4]  # 0.4 of 6 per class, both classes
    assert got["mean"] == pytest.approx(statistics.fmean(got["accuracies"]))
    assert got["min"] == min(got["accuracies"]) and "no_face_images" not in got
    with pytest.raises(ValueError, match="--miss-faces applies to dlib-face"):
        evaluate.run(_args(images, str(tiny_model), miss_faces=0.5), spark)


def test_dlib_face_counts_the_images_without_a_face(spark, images, tiny_model):
    """Flat colour patches have no face: all of them are tallied as no-face test images."""
    zeros = evaluate.run(_args(images, "dlib-face", splits=2), spark)
    assert len(zeros["no_face_images"]) == 12
    assert zeros["no_face_test_images"] == 8  # 4 test images x 2 splits
    assert zeros["no_face_test_accuracy"] == pytest.approx(statistics.fmean(zeros["accuracies"]))
    alongside = evaluate.run(_args(images, f"dlib-face+{tiny_model}", splits=2), spark)
    assert alongside["featurizer"].startswith("dlib-face-v1_with_file-")
    assert alongside["no_face_test_images"] == 8


def test_without_face_zeroes_the_face_block_only():
    from pyspark.ml.linalg import DenseVector
    from pyspark.sql import Row

    from spark_tasks.face import DIM

    row = Row(path="p", label="messi", features=DenseVector([0.5] * (DIM + 3)))
    out = evaluate._without_face(row)
    assert out["path"] == "p" and out["label"] == "messi"
    assert out["features"].toArray()[:DIM].tolist() == [0.0] * DIM
    assert out["features"].toArray()[DIM:].tolist() == [0.5] * 3  # the CNN's part is kept


def test_missed_faces_are_simulated_on_real_faces(spark, football, face_rows):
    """The splits over the real images' dlib-face features (the session's, as ``run`` computes
    them: test_face), half the found faces hidden."""
    args = _args(football, "dlib-face", splits=2, miss_faces=0.5)
    got = evaluate.over_splits(spark, face_rows, args)
    assert len(got["no_face_images"]) <= 2  # this dataset: a face in all but one image
    # half the found faces are hidden in each split: far more face-less test images than real
    assert got["no_face_test_images"] >= 12
    assert got["missed_faces_fraction"] == 0.5
