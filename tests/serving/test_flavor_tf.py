"""The serving flavor on a champion of the TensorFlow runtime (the DAG's default): the served
model gives the Spark pipeline's probabilities on the 60 real images and 40 held-out augmented
ones."""

from __future__ import annotations

import pytest

from tests.serving.conftest import parity_on_real_and_augmented, train_champion

pytestmark = [pytest.mark.spark, pytest.mark.shared]


@pytest.fixture(scope="module")
def champion_tf(spark, tmp_path_factory, football, lite0, seed_mlflow_store, lite0_rows):
    """The serving tests' training with the TensorFlow runtime, in its own registry: the real
    images' features the session's (``lite0_rows``), the augmented ones through the whole
    PipelineModel."""
    tmp = tmp_path_factory.mktemp("champion-tensorflow")
    return train_champion(
        spark, tmp, football, lite0, seed_mlflow_store, "tensorflow", features=lite0_rows
    )


def test_served_probabilities_equal_the_pipelines_on_real_and_augmented_images(champion_tf):
    parity_on_real_and_augmented(champion_tf, "tensorflow")
