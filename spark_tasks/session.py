"""The jobs' Spark session: spark-submit's master when under spark-submit, else local with the
project's conf (``imgclf.spark_conf``)."""

from __future__ import annotations

import os
import sys
from typing import Any

from pyspark.sql import SparkSession

from imgclf import spark_conf
from imgclf.settings import Settings


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
        conf: dict[str, Any] = dict(spark_conf.job_conf(Settings.from_env(), "local[*]"))
        # the UI on loopback too, as spark-submit's
        os.environ.setdefault("SPARK_LOCAL_IP", spark_conf.LOOPBACK)
        builder = builder.master("local[*]").config(map=conf)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
