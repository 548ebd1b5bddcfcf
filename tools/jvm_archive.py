"""A class-data-sharing archive for the Spark driver's JVM (``python -m tools.jvm_archive``,
run by ``make install``).

Every job of the pipeline is a short spark-submit, and a fresh Spark driver spends seconds
loading and verifying the same ~20,000 classes. Java's dynamic CDS (``-XX:ArchiveClassesAtExit``,
JDK 13+) records the classes one run loaded; later JVMs map them instead
(``-XX:SharedArchiveFile``, added by ``spark_conf.driver_java_options()`` once the file exists).
Measured on 2 cores (README, *The JVM class-data archive*): a trivial spark-submit takes 6.1 s
instead of 8.2 s.

The archive is built by running a miniature of the real jobs (binaryFile images, an Arrow
pandas UDF, Parquet, a LogisticRegression pipeline saved and loaded) in a JVM that dumps its
classes at exit. It is written to a temporary name, checked by a JVM that maps it, and only then
renamed into place: a truncated archive crashes the JVM that maps it, so none is ever installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgclf import spark_conf
from imgclf.settings import PROJECT_ROOT, Settings
from imgclf.spark_conf import java_executable

EXIT_WAIT_S = 180  # the JVM writes the archive as it exits: generous, on a loaded machine


def _workload(spark, workdir: Path) -> None:
    """The kinds of work the pipeline's jobs do, at toy size."""
    import numpy as np
    from PIL import Image
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.functions import array_to_vector, predict_batch_udf
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    from spark_tasks import classification, image_files

    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (workdir / "images" / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), colour).save(workdir / "images" / label / f"{i}.png")

    def make_predict():  # the featurizer's shape (predict_batch_udf over Arrow), no CNN
        return lambda content: np.stack([[len(b) % 7, b[-1]] for b in content]).astype("f4")

    features = predict_batch_udf(make_predict, return_type=ArrayType(FloatType()), batch_size=4)

    images = image_files.read_images_dir(spark, workdir / "images")
    df = images.withColumn("features", array_to_vector(features(F.col("content"))))
    df.drop("content").write.parquet(str(workdir / "features.parquet"))
    data = spark.read.parquet(str(workdir / "features.parquet")).withColumn(
        "fold", F.abs(F.hash("path")) % 2
    )
    indexer = classification.fit_label_indexer(data)
    lr = LogisticRegression(maxIter=5)
    pipeline = classification.classifier_pipeline(indexer, lr)
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 0.1]).build()
    evaluator = MulticlassClassificationEvaluator(labelCol=classification.LABEL_INDEX)
    cv = CrossValidator(
        estimator=pipeline, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2
    )
    model = cv.setFoldCol("fold").fit(data).bestModel
    classification.evaluate(model, data, indexer.labels)
    model.write().overwrite().save(str(workdir / "model"))
    PipelineModel.load(str(workdir / "model")).transform(data).count()


def _minimal(spark, workdir: Path) -> None:
    """A session and one job: enough classes for tests of the build itself, in seconds."""
    spark.range(10).count()


WORKLOADS = {"jobs": _workload, "minimal": _minimal}


def record(out: Path, workload: str = "jobs") -> None:
    """Run the workload in a JVM that dumps its loaded classes to ``out`` when it exits."""
    from pyspark.sql import SparkSession

    common_conf = spark_conf.job_conf(Settings.from_env())
    common_conf.pop("spark.driver.extraJavaOptions", None)  # never map the archive we replace
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("imgclf-jvm-archive")
        .config(map=common_conf)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", f"-XX:ArchiveClassesAtExit={out}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark.sparkContext._gateway.proc  # the driver JVM that pyspark started
    with tempfile.TemporaryDirectory(prefix="imgclf-jvm-") as tmp:
        WORKLOADS[workload](spark, Path(tmp))
    spark.stop()
    jvm.stdin.close()  # the gateway exits when its stdin closes, and dumps the archive
    jvm.wait(timeout=EXIT_WAIT_S)


def check(archive: Path) -> str | None:
    """None if a JVM maps ``archive`` and runs; else why not."""
    java = java_executable()
    if java is None:
        return "no java found (JAVA_HOME or PATH)"
    if not archive.is_file() or archive.stat().st_size == 0:
        return f"{archive} was not written"
    with tempfile.TemporaryDirectory(prefix="imgclf-jvm-check-") as tmp:
        done = subprocess.run(  # a crash writes hs_err_pid*.log into cwd: not into the project
            [java, f"-XX:SharedArchiveFile={archive}", "-version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp,
        )
    return None if done.returncode == 0 else f"java exited {done.returncode}: {done.stderr[-500:]}"


def build(target: Path, workload: str = "jobs") -> float:
    """Write ``target`` atomically; returns the seconds it took. Raises ``RuntimeError``.

    ``workload="minimal"`` records a bare session (for tests of the build: seconds, not a
    minute); the pipeline's archive records ``"jobs"``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    try:
        env = {**os.environ, "IMGCLF_JVM_ARCHIVE": "off", "TF_CPP_MIN_LOG_LEVEL": "2"}
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "tools.jvm_archive",
                "--record",
                str(tmp),
                "--workload",
                workload,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            check=False,
            cwd=PROJECT_ROOT,  # tools/ is run from the checkout
        )
        if child.returncode != 0:
            raise RuntimeError(f"the recording run failed: {child.stderr[-2000:]}")
        problem = check(tmp)
        if problem:
            raise RuntimeError(f"the archive is unusable: {problem}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.jvm_archive", description=__doc__)
    p.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    p.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="jobs")
    args = p.parse_args(argv)
    if args.record:
        record(args.record, args.workload)
        return 0
    target = Settings.from_env().jvm_archive
    if target is None:
        print("jvm-archive: no archive to build (IMGCLF_JVM_ARCHIVE=off, or no java)")
        return 0
    if target.is_file() and not args.force and check(target) is None:
        print(f"jvm-archive: {target} exists (--force rebuilds it)")
        return 0
    try:
        seconds = build(target, args.workload)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"jvm-archive: not built: {exc}", file=sys.stderr)
        return 1
    size = target.stat().st_size / 1e6
    print(f"jvm-archive: wrote {target} ({size:.0f} MB) in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
