"""spark_tasks.image_files: the pixel-free keys of a manifest's images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


@pytest.mark.spark
def test_image_keys_are_every_files_hash_in_as_many_partitions_as_cores(spark, football):
    """A scan of small files has many partitions (here one per file); the cached keys are
    merged to one per core, so that a shuffle over them (the store lookup, the split's join)
    is not partitions x 200 blocks. Every file is still there, with its own SHA-256."""
    from spark_tasks.image_files import image_keys, read_images

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
