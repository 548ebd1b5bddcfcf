"""imgclf.spark_conf, asserted by its effect on a running JVM and on what Spark writes and reads."""

from __future__ import annotations

import pytest


@pytest.mark.spark
def test_the_driver_jvm_runs_with_the_projects_options(spark):
    """spark_conf.job_conf's driver options reach the JVM: C1 only (short-lived jobs), the
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
