"""spark_tasks.feature_store: how the CNN pass is partitioned, and the store's one row per image."""

from __future__ import annotations

import math

import pytest

from spark_tasks.feature_store import MAX_ROWS_PER_TASK, MIN_ROWS_PER_TASK, featurize_partitions


@pytest.mark.parametrize(
    ("cores", "rows", "expected"),
    [
        (2, 6000, 6),  # 3 rounds of 1,000 rows on each core
        (2, 60, 2),  # one partition per core
        (2, 2000, 2),  # exactly one full round
        (2, 2001, 4),  # one row more: two rounds, not a lone third partition
        (4, 1000, 4),
        (2, 600_000, 600),
        (2, 24, 1),  # the evidence job's 24 test images: one worker loads the models
        (8, 100, 4),  # fewer tasks than cores rather than tasks of a dozen images
        (2, 1, 1),  # never more partitions than rows
        (8, 5, 1),
        (0, 10, 1),  # no cores reported: one
    ],
)
def test_featurize_partitions_keep_every_core_busy_to_the_last_round(cores, rows, expected):
    parts = featurize_partitions(cores, rows)
    assert parts == expected
    assert parts % max(1, cores) == 0 or parts == math.ceil(rows / MIN_ROWS_PER_TASK)
    assert math.ceil(rows / parts) <= MAX_ROWS_PER_TASK
    assert parts <= math.ceil(rows / MIN_ROWS_PER_TASK)


@pytest.mark.spark
def test_the_store_loads_one_row_per_image_and_moves_no_features_to_get_it(spark, tmp_path, caplog):
    """Appends never repeat a key, so the features are read as stored: no shuffle, no sort of
    1,280 doubles a row (``dropDuplicates`` did both on every load). Two runs that featurized
    the same image at once leave a repeated key: that load keeps one row of each, and says so."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import StringType, StructField, StructType

    from spark_tasks.feature_store import FeatureStore

    store = FeatureStore(spark, tmp_path, "model-avg")
    assert store.load() is None  # nothing stored yet

    def append(keys):
        rows = [(k, Vectors.dense([float(i), 1.0])) for i, k in enumerate(keys)]
        schema = StructType(
            [StructField("sha256", StringType()), StructField("features", VectorUDT())]
        )
        spark.createDataFrame(rows, schema).coalesce(1).write.mode("append").parquet(
            str(store.path)
        )

    append(["a", "b", "c"])
    loaded = store.load()
    plan = loaded._jdf.queryExecution().executedPlan().toString()
    assert "Exchange" not in plan and "Aggregate" not in plan, plan
    assert sorted(r["sha256"] for r in loaded.collect()) == ["a", "b", "c"]

    append(["c", "d"])  # "c" again, as a concurrent run would have written it
    with caplog.at_level("WARNING", logger="spark_tasks.feature_store"):
        loaded = store.load()
    assert sorted(r["sha256"] for r in loaded.collect()) == ["a", "b", "c", "d"]
    assert f"feature store {store.path}: 1 rows repeat a sha256" in caplog.text
