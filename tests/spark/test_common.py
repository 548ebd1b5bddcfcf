"""spark_tasks.common's pure decisions (no session needed)."""

from __future__ import annotations

import pytest

from spark_tasks.common import featurize_partitions


@pytest.mark.parametrize(
    ("cores", "rows", "expected"),
    [
        (2, 6000, 48),  # ceil(6000 / 128) = 47, rounded up to a multiple of the cores
        (2, 60, 2),  # fewer rows than four batches: still one partition per core
        (4, 1000, 8),  # 8 of 125 rows
        (2, 1, 1),  # never more partitions than rows
        (8, 5, 5),
        (0, 10, 1),  # no cores reported: one
    ],
)
def test_featurize_partitions_keep_every_core_busy_to_the_last_round(cores, rows, expected):
    parts = featurize_partitions(cores, rows, batch_size=32)
    assert parts == expected
    assert parts <= rows and (parts % max(1, cores) == 0 or parts == rows)


@pytest.mark.spark
def test_the_driver_jvm_runs_with_the_projects_options(spark):
    """Settings.spark_conf's driver options reach the JVM: C1 only (short-lived jobs)."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    assert bean.getVMOption("TieredStopAtLevel").getValue() == "1"
