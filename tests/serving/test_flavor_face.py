"""The serving flavor on a dlib-face champion: the served model runs dlib itself, and gives
the Spark pipeline's probabilities on the 60 real images."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serving.conftest import TOLERANCE, train_champion

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
    import mlflow.pyfunc

    from imgclf import tracking

    with tracking._fluent(champion_face.settings):
        model = mlflow.pyfunc.load_model("models:/football_classifier@champion")
    assert model.get_raw_model().face is not None  # the flavor runs dlib, not a CNN
    names = list(champion_face.images)
    assert len(names) == 60
    out = model.predict({"content": [champion_face.images[n].read_bytes() for n in names]})
    worst = 0.0
    for name, row in zip(names, out.to_dict("records"), strict=True):
        want_class, want = champion_face.spark[name]
        assert (row["class"], row["error"]) == (want_class, ""), name
        got = [row["probabilities"][label] for label in champion_face.labels]
        worst = max(worst, float(np.max(np.abs(np.subtract(got, want)))))
    assert worst <= TOLERANCE, worst
    # both classes are predicted: parity on a classifier that says one thing would prove little
    assert {row["class"] for row in out.to_dict("records")} == set(champion_face.labels)
