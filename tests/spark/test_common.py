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
    """Settings.spark_conf's driver options reach the JVM: C1 only (short-lived jobs)."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    assert bean.getVMOption("TieredStopAtLevel").getValue() == "1"


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
