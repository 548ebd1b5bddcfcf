from __future__ import annotations

import pytest

from imgclf.config import Settings
from tests.fixtures_images import make_images, make_tiny_model


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from spark_tasks.common import use_this_interpreter_for_workers

    use_this_interpreter_for_workers()  # not left to PATH
    session = (
        SparkSession.builder.master("local[2]")
        .appName("imgclf-tests")
        .config(map=Settings.from_env().spark_conf())
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images")
