"""spark_tasks.common: its pure decisions, and what it does to a session's frames."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from spark_tasks.common import MAX_ROWS_PER_TASK, featurize_partitions


@pytest.mark.parametrize(
    ("cores", "rows", "expected"),
    [
        (2, 6000, 6),  # 3 rounds of 1,000 rows on each core
        (2, 60, 2),  # one partition per core
        (2, 2000, 2),  # exactly one full round
        (2, 2001, 4),  # one row more: two rounds, not a lone third partition
        (4, 1000, 4),
        (2, 600_000, 600),
        (2, 1, 1),  # never more partitions than rows
        (8, 5, 5),
        (0, 10, 1),  # no cores reported: one
    ],
)
def test_featurize_partitions_keep_every_core_busy_to_the_last_round(cores, rows, expected):
    parts = featurize_partitions(cores, rows)
    assert parts == expected
    assert parts <= rows and (parts % max(1, cores) == 0 or parts == rows)
    assert math.ceil(rows / parts) <= MAX_ROWS_PER_TASK


@pytest.mark.spark
def test_the_driver_jvm_runs_with_the_projects_options(spark):
    """Settings.spark_conf's driver options reach the JVM: C1 only (short-lived jobs), the
    serial collector, its heap starting at 128 MB and following what is live."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    assert bean.getVMOption("TieredStopAtLevel").getValue() == "1"
    assert bean.getVMOption("UseSerialGC").getValue() == "true"
    assert int(bean.getVMOption("InitialHeapSize").getValue()) == 128 * 1024 * 1024
    assert bean.getVMOption("MinHeapFreeRatio").getValue() == "20"
    assert bean.getVMOption("MaxHeapFreeRatio").getValue() == "40"


@pytest.mark.spark
def test_reading_big_column_chunks_leaves_no_big_direct_buffers(spark, tmp_path):
    """Parquet reads a column chunk into a heap buffer through a file channel; the JDK copies
    it through a temporary direct buffer as large as the read and keeps that in the reading
    thread, unbounded. Spark's task threads live on, so direct memory followed the largest
    chunk each had read (without the option this test's read leaves ~8 MB per thread)."""
    from pyspark.sql import functions as F

    from imgclf.spark_conf import NIO_CACHED_BYTES

    jvm = spark.sparkContext._jvm
    assert jvm.java.lang.System.getProperty("jdk.nio.maxCachedBufferSize") == str(NIO_CACHED_BYTES)
    pool_class = jvm.java.lang.Class.forName("java.lang.management.BufferPoolMXBean")

    def direct_bytes() -> int:
        pools = jvm.java.lang.management.ManagementFactory.getPlatformMXBeans(pool_class)
        return next(p.getTotalCapacity() for p in pools if p.getName() == "direct")

    blob = F.expr("unbase64(repeat('QUJD', 21846))")  # 65,538 bytes a row
    rows = spark.range(256).repartition(2).select("id", blob.alias("blob"))
    # uncompressed: the codec's own (pooled) direct buffers stay out of the count
    rows.write.option("compression", "none").parquet(str(tmp_path / "t"))
    before = direct_bytes()
    total = spark.read.parquet(str(tmp_path / "t")).agg(F.sum(F.length("blob"))).first()[0]
    assert total == 256 * 65538
    assert direct_bytes() - before < 1024 * 1024, (before, direct_bytes())


@pytest.mark.spark
def test_features_are_written_and_read_in_bounded_pieces(spark, tmp_path):
    """Parquet buffers a whole row group while writing, and reads a batch of rows at a time:
    the session bounds both, so a bigger feature table never needs a bigger buffer (Parquet's
    default row group, 128 MB, would hold all of this one; Spark's default read batch, 4,096
    rows, 42 MB of it)."""
    import pyarrow.parquet as pq
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from imgclf.spark_conf import BATCH_ROWS, ROW_GROUP_BYTES

    n, dim = 1500, 1280  # 15.4 MB of random doubles: incompressible
    values = F.transform(F.array_repeat(F.lit(0.0), dim), lambda _: F.rand(7))
    table = spark.range(n).coalesce(1).select("id", array_to_vector(values).alias("features"))
    table.write.parquet(str(tmp_path / "t"))
    (file,) = (tmp_path / "t").glob("*.parquet")
    meta = pq.ParquetFile(file).metadata
    sizes = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    assert len(sizes) >= 2, sizes
    assert max(sizes) <= 1.25 * ROW_GROUP_BYTES, sizes  # the writer checks its size in steps
    assert sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == n

    assert int(spark.conf.get("spark.sql.parquet.columnarReaderBatchSize")) == BATCH_ROWS
    back = spark.read.parquet(str(tmp_path / "t"))
    assert back.count() == n and back.filter(F.col("id") == 7).first().features.size == dim


@pytest.mark.spark
def test_image_keys_are_every_files_hash_in_as_many_partitions_as_cores(spark, football):
    """A scan of small files has many partitions (here one per file); the cached keys are
    merged to one per core, so that a shuffle over them (the store lookup, the split's join)
    is not partitions x 200 blocks. Every file is still there, with its own SHA-256."""
    from spark_tasks.common import image_keys, read_images

    files = sorted(str(p) for p in football.rglob("*") if p.is_file())
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, "1")  # one partition per file
    try:
        images = read_images(spark, files)
        assert images.rdd.getNumPartitions() == len(files)
        keys = image_keys(images)
    finally:
        spark.conf.set(key, before)
    assert keys.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism == 2
    got = {r["path"]: (r["label"], r["sha256"]) for r in keys.collect()}
    expected = {
        f: (Path(f).parent.name, hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in files
    }
    assert got == expected
    keys.unpersist()


@pytest.mark.spark
def test_the_store_loads_one_row_per_image_and_moves_no_features_to_get_it(spark, tmp_path, caplog):
    """Appends never repeat a key, so the features are read as stored: no shuffle, no sort of
    1,280 doubles a row (``dropDuplicates`` did both on every load). Two runs that featurized
    the same image at once leave a repeated key: that load keeps one row of each, and says so."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import StringType, StructField, StructType

    from spark_tasks.common import FeatureStore

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
    with caplog.at_level("WARNING", logger="spark_tasks.common"):
        loaded = store.load()
    assert sorted(r["sha256"] for r in loaded.collect()) == ["a", "b", "c", "d"]
    assert f"feature store {store.path}: 1 rows repeat a sha256" in caplog.text
