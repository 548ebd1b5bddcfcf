"""The serving flavor on a dlib-face champion: the served model runs dlib itself, and gives
the Spark pipeline's probabilities on the 60 real images."""

from __future__ import annotations

import pytest

from tests.serving.conftest import served_like_spark, train_champion

pytestmark = [pytest.mark.spark, pytest.mark.shared]


@pytest.fixture(scope="module")
def champion_face(spark, tmp_path_factory, football, lite0, seed_mlflow_store, face_rows):
    """The serving tests' training on dlib's face features (``modelName="dlib-face"``), in its
    own registry: the 60 real images, their features the session's (``face_rows``)."""
    tmp = tmp_path_factory.mktemp("champion-dlib-face")
    return train_champion(
        spark, tmp, football, lite0, seed_mlflow_store, "tensorflow", "dlib-face", augment=False,
        features=face_rows,
    )  # fmt: skip


def test_served_dlib_face_probabilities_equal_the_pipelines_on_the_real_images(champion_face):
    assert len(champion_face.images) == 60
    raw, rows = served_like_spark(champion_face)
    assert raw.face is not None  # the flavor runs dlib, not a CNN
    # both classes are predicted: parity on a classifier that says one thing would prove little
    assert {row["class"] for row in rows} == set(champion_face.labels)
