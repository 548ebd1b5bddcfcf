"""What the spark-submit jobs share: session, image loading, feature store, split, classifier.

Kept free of argument parsing so tests call these functions directly on a local session.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import IndexToString, StringIndexer, StringIndexerModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imgclf import spark_conf
from imgclf.github import IMAGE_EXTENSIONS
from imgclf.metrics import classification_report
from imgclf.models import ModelSpec
from imgclf.settings import Settings
from imgclf.split import stratified_split

if TYPE_CHECKING:
    from spark_tasks.featurizer import DeepImageFeaturizer

log = logging.getLogger(__name__)

LABEL_INDEX = "label_index"
PREDICTED = "predicted_label"
_IMAGE_RE = "(?i).*\\.(" + "|".join(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS)) + ")$"


def use_this_interpreter_for_workers() -> None:
    """Python workers of a session built in-process run ``PYSPARK_PYTHON``, else ``python3``
    from PATH (PySpark does not read ``spark.pyspark.python`` there): pin this interpreter.
    Under spark-submit, ``spark.pyspark.python`` has already set ``PYSPARK_PYTHON``."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def spark_session(app_name: str) -> SparkSession:
    """The job's session. Under spark-submit the master is spark-submit's (``--master``, from
    the ``spark_default`` connection); run directly with ``python``, ``local[*]``.

    (``SparkConf()`` cannot tell: before the JVM gateway exists it never sees spark-submit's
    ``spark.master``; spark-submit's PythonRunner sets ``PYSPARK_GATEWAY_PORT``.)
    """
    use_this_interpreter_for_workers()
    builder = SparkSession.builder.appName(app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # we start the JVM: the project's conf
        conf: dict[str, Any] = dict(spark_conf.job_conf(Settings.from_env()))
        builder = builder.master("local[*]").config(map=conf)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _with_label_and_hash(df: DataFrame) -> DataFrame:
    return df.select(
        F.regexp_replace("path", "^file:", "").alias("path"),
        F.element_at(F.split("path", "/"), -2).alias("label"),
        F.sha2("content", 256).alias("sha256"),
        "content",
    )


def read_images(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Exactly these image files as ``(path, label, sha256, content)``; label = parent folder.

    Listed by the driver: past ``parallelPartitionDiscovery.threshold`` (32) paths Spark lists
    them in a Spark job with a task per path (measured at 6,000 files: 18.7 s; 1.7 s here).
    """
    if not paths:
        raise ValueError("no image files to read")
    key = "spark.sql.sources.parallelPartitionDiscovery.threshold"
    before = spark.conf.get(key) or "32"
    spark.conf.set(key, str(len(paths) + 1))
    try:
        df = spark.read.format("binaryFile").load(paths)
    finally:
        spark.conf.set(key, before)
    return _with_label_and_hash(df)


def manifest_files(manifest_path: Path, raw_dir: Path) -> list[str]:
    """The absolute paths of a manifest's images (its paths are relative to ``raw_dir``)."""
    manifest = json.loads(Path(manifest_path).read_text())
    files = [str(raw_dir / entry["path"]) for entry in manifest["files"]]
    if not files:
        raise ValueError(f"manifest {manifest_path} lists no files")
    return files


def image_keys(images: DataFrame) -> DataFrame:
    """``(path, label, sha256)`` of ``images``, hashed once and cached: rows without pixels
    that every later step (store lookup, split, join) reads instead of the files.

    In as many partitions as the cores (merged, not shuffled): a scan of many small files has
    one partition per ~30 files, and every shuffle over the keys (the store lookup's
    deduplication, the split's join) then moves a block from each of them to each of 200
    reducers (measured at 6,000 images, 188 partitions: the lookup 3.9 s; merged to 2, 0.4 s).
    """
    cores = images.sparkSession.sparkContext.defaultParallelism
    keys = images.select("path", "label", "sha256").coalesce(max(1, cores)).cache()
    keys.count()
    return keys


def read_images_dir(spark: SparkSession, images_dir: Path) -> DataFrame:
    """Every image file below ``images_dir`` (any depth); label = the file's parent folder.

    0-byte files are rows too, with empty ``content`` (the featurizer reports them as empty):
    ``binaryFile`` alone yields no row for them, see ``zero_byte_files``.
    """
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    files = (
        spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(images_dir))
    )
    df = files.select("path", "content")
    if empty := zero_byte_files(files):
        df = df.unionByName(
            spark.createDataFrame([(p, bytearray()) for p in empty], "path string, content binary")
        )
    return _with_label_and_hash(df.filter(F.col("path").rlike(_IMAGE_RE)))


def zero_byte_files(files: DataFrame) -> list[str]:
    """The 0-byte files a ``binaryFile`` DataFrame lists but never reads, spelt as its ``path``.

    Spark plans a file scan over files of length > 0 only (``FileSourceScanExec``:
    ``partition.files.filter(_.getLen > 0)``), so an empty file silently has no row, whatever
    the format; its file listing (``inputFiles()``: URIs, same hidden-file rules) still has it.
    """
    empty = []
    for uri in files.inputFiles():
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            continue  # not on this machine's file system: cannot tell
        local = unquote(parsed.path)
        if not re.match(_IMAGE_RE, local):
            continue
        try:
            if os.stat(local).st_size == 0:
                empty.append(f"file:{local}")  # as binaryFile's path column spells it
        except OSError:  # gone since the listing
            continue
    return sorted(empty)


# Rows per CNN task at most: a bound on what a failed task runs again (~6 s of a core) and on
# the features one task writes (~10 MB; its Parquet writer holds one row group of them:
# imgclf.spark_conf.ROW_GROUP_BYTES).
MAX_ROWS_PER_TASK = 1000


def featurize_partitions(cores: int, n_rows: int) -> int:
    """As few partitions as keep every task within ``MAX_ROWS_PER_TASK`` rows, and a multiple
    of the cores, so that the last round of tasks does not leave cores idle.

    Few, because each task costs a Python worker ~80 ms between its last batch and the next
    task's first (the task's Parquet file closed and committed, the next one's scan opened and
    its command sent), and the JVM a file: at 6,000 images on 2 cores, 48 partitions of 125
    rows cost ~2 s per worker (the CNN pass 42.5 s vs 40.2 s with 6 of 1,000, interleaved, 3
    runs each; the JVM's CPU 4.4 s vs 3.6 s)."""
    cores = max(1, cores)
    rounds = math.ceil(n_rows / (cores * MAX_ROWS_PER_TASK))
    return max(1, min(cores * max(1, rounds), n_rows))


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
        # features themselves (at 6,000 images 60 MB through a sort per partition: the train
        # job's peak, local mode, 874 MB vs 816), so it runs only when a key repeats.
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


def assign_split(
    spark: SparkSession, dataset: DataFrame, test_fraction: float, seed: int, folds: int
) -> DataFrame:
    """Add ``split`` ("train"/"test") and ``fold`` columns: deterministic, stratified."""
    keys = [
        (r["sha256"], r["label"]) for r in dataset.select("sha256", "label").distinct().collect()
    ]
    assignments = stratified_split(keys, test_fraction, seed, folds)
    table = spark.createDataFrame(
        [(a.key, a.label, a.split, a.fold) for a in assignments],
        "sha256 string, label string, split string, fold int",
    )
    return dataset.join(F.broadcast(table), ["sha256", "label"])


def fit_label_indexer(train: DataFrame) -> StringIndexerModel:
    # Alphabetical, so class indices (and the probability vector's order) never depend on counts.
    return StringIndexer(
        inputCol="label", outputCol=LABEL_INDEX, stringOrderType="alphabetAsc"
    ).fit(train)


def classifier_pipeline(indexer: StringIndexerModel, lr: LogisticRegression) -> Pipeline:
    """Label indexer (fitted) -> logistic regression -> class name of the prediction."""
    lr.setFeaturesCol("features").setLabelCol(LABEL_INDEX)
    return Pipeline(stages=[indexer, lr, _to_name(indexer)])


def classifier_model(indexer: StringIndexerModel, lr: LogisticRegressionModel) -> PipelineModel:
    """The fitted ``classifier_pipeline``: indexer -> ``lr`` (fitted) -> class name."""
    return PipelineModel(stages=[indexer, lr, _to_name(indexer)])


def _to_name(indexer: StringIndexerModel) -> IndexToString:
    return IndexToString(inputCol="prediction", outputCol=PREDICTED, labels=indexer.labels)


def evaluate(model: Transformer, test: DataFrame, labels: list[str]) -> dict[str, Any]:
    """Score ``test`` and compute the report (collected: test sets are small)."""
    rows = (
        model.transform(test)
        .select("path", "label", PREDICTED, "probability")
        .orderBy("path")
        .collect()
    )
    report = classification_report(
        [r["label"] for r in rows],
        [r[PREDICTED] for r in rows],
        labels,
        positive_scores=[float(r["probability"][len(labels) - 1]) for r in rows]
        if len(labels) == 2
        else None,
    )
    report["predictions"] = [
        {
            "path": r["path"],
            "label": r["label"],
            "predicted": r[PREDICTED],
            "probability": float(max(r["probability"])),
            "score": float(r["probability"][len(labels) - 1]),  # P(labels[-1])
        }
        for r in rows
    ]
    return report


def no_face_paths(dataset: DataFrame, model: str | ModelSpec) -> list[str] | None:
    """For a dlib-face model, the images where no face was found (None for other models)."""
    from pyspark.ml.functions import vector_to_array

    from spark_tasks.face import FACE_FOUND

    if not (model if isinstance(model, ModelSpec) else ModelSpec.parse(model)).is_face:
        return None
    found = vector_to_array(F.col("features"))[FACE_FOUND]
    return sorted(r["path"] for r in dataset.filter(found == 0.0).select("path").collect())


def full_model(featurizer: Transformer, classifier: PipelineModel) -> PipelineModel:
    """Featurizer + fitted classifier: one model that scores raw image bytes."""
    return PipelineModel(stages=[featurizer, *classifier.stages])


def write_json(path: Path, data: dict[str, Any]) -> None:
    from imgclf.files import atomic_write_json

    atomic_write_json(Path(path), data)
