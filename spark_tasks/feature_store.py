"""The CNN's pass over images (``featurize``, staged once to Parquet) and the feature store it
fills: features keyed by image content (sha256) per featurizer identity, so each image goes
through each model once."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_tasks.image_files import read_images

if TYPE_CHECKING:
    from spark_tasks.featurizer import DeepImageFeaturizer

log = logging.getLogger(__name__)


# Rows per CNN task at most: a bound on what a failed task runs again and on the features one
# task writes (its Parquet writer holds one row group of them:
# imgclf.spark_conf.ROW_GROUP_BYTES).
MAX_ROWS_PER_TASK = 1000
# One CNN task per this many rows at most: a task on another core starts a Python worker
# there, which imports its runtime and loads the model (seconds of CPU) before its first image;
# a few dozen images do not repay that.
MIN_ROWS_PER_TASK = 32


def featurize_partitions(cores: int, n_rows: int) -> int:
    """As few partitions as keep every task within ``MAX_ROWS_PER_TASK`` rows, and a multiple
    of the cores, so that the last round of tasks does not leave cores idle; but no more than
    one per ``MIN_ROWS_PER_TASK`` rows.

    Few, because each task costs a Python worker a pause between its last batch and the next
    task's first (the task's Parquet file closed and committed, the next one's scan opened and
    its command sent), and the JVM a file."""
    cores = max(1, cores)
    rounds = math.ceil(n_rows / (cores * MAX_ROWS_PER_TASK))
    return max(1, min(cores * max(1, rounds), math.ceil(n_rows / MIN_ROWS_PER_TASK)))


@dataclass
class Featurized:
    """What one pass of the CNN over a DataFrame of images gave."""

    good: DataFrame  # the decodable rows: the kept columns + the featurizer's output column
    failed: list[dict[str, str]]  # [{"path", "error"}] by path: undecodable or 0-byte files
    images: int  # rows that went through the CNN


def featurize(
    spark: SparkSession,
    images: DataFrame,
    featurizer: DeepImageFeaturizer,
    staging: Path,
    columns: tuple[str, ...] = ("path",),
    n: int | None = None,
) -> Featurized:
    """Run the CNN once over ``images`` (which has ``content`` and ``columns``, ``path`` among
    them) and separate the rows it could not read from the others.

    The featurizer's copy runs with ``handleInvalid="keep"`` (a bad file is a listed row, never
    a failed job), on few partitions that keep every core busy (``featurize_partitions``); its
    output is written once to ``staging`` (Parquet) and read back, so neither the failure list
    nor any later use of the good rows runs the model again (a cache may be evicted and
    recomputed; a file is not). The caller owns ``staging`` and says what failed, its own way.
    ``n``: the number of rows, when the caller knows it (else a count: a Spark job over the
    files' list).
    """
    if n is None:
        n = images.count()  # a Spark job over the files (their bytes are not needed)
    keep = featurizer.copy().setHandleInvalid("keep")
    out_col, err_col = keep.getOutputCol(), keep.getErrorCol()
    selected = images.select("content", *columns)

    def run(df: DataFrame) -> DataFrame:
        return keep.transform(df).select(*columns, out_col, F.col(err_col).alias("error"))

    if n == 0:  # limit(0) plans an empty relation: no worker starts, no model loads
        return Featurized(run(selected).drop("error").limit(0), [], 0)
    parts = featurize_partitions(spark.sparkContext.defaultParallelism, n)
    # a scan of many small files has more partitions than that: merge them (no shuffle of the
    # files' bytes); an in-memory or single-file frame has fewer: spread it
    scanned = selected.rdd.getNumPartitions()
    spread = selected.coalesce(parts) if scanned >= parts else selected.repartition(parts)
    run(spread).write.mode("overwrite").parquet(str(staging))
    staged = spark.read.parquet(str(staging))
    bad = staged.filter(F.col("error") != "").select("path", "error").orderBy("path")
    failed = [{"path": r["path"], "error": r["error"]} for r in bad.collect()]
    return Featurized(staged.filter(F.col("error") == "").drop("error"), failed, n)


class FeatureStore:
    """Features in Parquet under ``<root>/<featurizer identity>/``, keyed by image sha256."""

    def __init__(self, spark: SparkSession, root: Path, identity: str):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", identity):
            raise ValueError(f"featurizer identity {identity!r} is not a safe folder name")
        self.spark = spark
        self.path = Path(root) / identity

    def load(self) -> DataFrame | None:
        if not (self.path / "_SUCCESS").exists() and not any(self.path.glob("*.parquet")):
            return None
        features = self.spark.read.parquet(str(self.path))
        # One row per sha256. Appends never repeat a key (``featurize_missing`` writes the
        # missing ones only), but two runs featurizing at once can both append one. Counting
        # the keys reads the sha256 column alone; ``dropDuplicates`` sorts and shuffles the
        # features themselves through a sort per partition (a peak of the train job's memory),
        # so it runs only when a key repeats.
        ((rows, keys),) = features.agg(F.count("*"), F.count_distinct("sha256")).collect()
        if rows == keys:
            return features
        log.warning(
            "feature store %s: %d rows repeat a sha256; using one of each", self.path, rows - keys
        )
        return features.dropDuplicates(["sha256"])

    def featurize_missing(
        self,
        keys: DataFrame,
        featurizer: DeepImageFeaturizer,
        staging: Path,
        lap: Callable[[str], None] = lambda phase: None,
    ) -> Featurized:
        """Run the CNN on the images (``keys``: path, sha256) whose content is not in the store
        yet, one file per content; append their features (one ``featurize`` pass, staged in
        ``staging``). The files are read for the CNN only: lookups run on the keys.

        ``lap(phase)`` is called as each phase ends: ``lookup`` (the keys deduplicated and looked
        up in the store), ``list_new`` (the new files listed), ``featurize`` (the CNN pass),
        ``store``."""
        known = self.load()
        todo = keys.select("sha256", "path").dropDuplicates(["sha256"])
        if known is not None:
            todo = todo.join(known.select("sha256"), "sha256", "left_anti")
        paths = [r["path"] for r in todo.select("path").collect()]
        lap("lookup")
        if paths:
            images = read_images(self.spark, paths)
        else:  # nothing new: an empty frame of the same shape, so no file is read
            images = keys.limit(0).withColumn("content", F.lit(b"").cast("binary"))
        lap("list_new")
        result = featurize(
            self.spark, images, featurizer, staging, ("sha256", "path"), n=len(paths)
        )
        lap("featurize")
        for item in result.failed:
            log.warning("undecodable image dropped: %s (%s)", item["path"], item["error"])
        if result.images > len(result.failed):
            good = result.good.select("sha256", F.col(featurizer.getOutputCol()).alias("features"))
            good.coalesce(1).write.mode("append").parquet(str(self.path))
        lap("store")
        return result
