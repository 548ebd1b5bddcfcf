"""The Spark/JVM configuration every job of the project runs with, and why each setting.

``job_conf(settings)`` is what a spark-submit gets as ``--conf`` pairs (and what a session built
in-process starts with); the driver's and executors' JVM options are built here, once. The
comments say why each setting is there; what each one changed, measured, is in
``docs/performance.md``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgclf.settings import Settings


# Where a local-mode Spark listens: its driver RPC, block manager and UI have no authentication
# unless spark.authenticate is on (docs/security.md), so on a laptop they stay off the network.
LOOPBACK = "127.0.0.1"


def is_local_master(master: str) -> bool:
    """``local``, ``local[*]``, ``local[N,F]``, ``local-cluster[...]``: everything on this host."""
    return master.strip().startswith("local")


def loopback_conf() -> dict[str, str]:
    """The Spark conf that keeps a local-mode job's listening sockets on ``LOOPBACK``: the
    driver's RPC and block manager (``spark.driver.bindAddress``; ``spark.driver.host`` is the
    address it advertises). The UI binds to ``SPARK_LOCAL_IP`` (``loopback_env``)."""
    return {"spark.driver.bindAddress": LOOPBACK, "spark.driver.host": LOOPBACK}


def loopback_env() -> dict[str, str]:
    """The environment of a local-mode spark-submit: ``SPARK_LOCAL_IP`` is the address Spark's
    web UI binds to (else every interface) and the default of the driver's addresses."""
    return {"SPARK_LOCAL_IP": LOOPBACK}


def java_executable() -> str | None:
    """The ``java`` that spark-submit will run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME", "").strip()
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return os.path.realpath(found) if found and os.path.exists(found) else None


def default_jvm_archive() -> Path | None:
    """Where ``tools/jvm_archive.py`` (``make install``) keeps the driver's class-data archive.

    A dynamic CDS archive is only valid for the JVM and the Spark jars it was made with, so it
    lives in the virtualenv (beside those jars) under a name keyed by both.
    """
    java = java_executable()
    if java is None:
        return None
    try:
        spark = metadata.version("pyspark")
    except metadata.PackageNotFoundError:
        return None
    key = hashlib.sha256(f"{spark}|{java}".encode()).hexdigest()[:12]
    return Path(sys.prefix) / "share" / "imgclf" / f"spark-{spark}-{key}.jsa"


def jvm_archive_from_env() -> Path | None:
    """``IMGCLF_JVM_ARCHIVE``: a path, ``off``, or unset for ``default_jvm_archive()``."""
    raw = os.environ.get("IMGCLF_JVM_ARCHIVE", "").strip()
    if raw.lower() in ("off", "none", "0", "false"):
        return None
    return Path(raw).expanduser().resolve() if raw else default_jvm_archive()


# The serial collector, with a heap that follows what is live. The JVM's default first heap is
# 1/64 of the machine's memory, and its collector grows the heap after a full collection until
# 40 % is free and shrinks it only past 70 %: the heap's size then tracks how much a job
# allocated, not what it kept. A small first heap and tighter free ratios cost a few more full
# collections, spread over the job (docs/performance.md).
SERIAL_HEAP = ("-XX:+UseSerialGC", "-Xms128m", "-XX:MinHeapFreeRatio=20", "-XX:MaxHeapFreeRatio=40")

# The largest temporary direct buffer a thread keeps. Parquet reads a column chunk into a heap
# buffer through a file channel; the JDK copies it through a direct buffer as large as the read
# and caches that in the reading thread, unbounded, and Spark's task threads live on, so the
# cached buffers grow with the largest column chunk ever read. Every JVM of a job gets the
# bound: on a cluster the executors do the reading (tests/spark/test_spark_conf_effects.py).
NIO_CACHED_BYTES = 256 * 1024
_NIO_BOUND = f"-Djdk.nio.maxCachedBufferSize={NIO_CACHED_BYTES}"

# Rows per columnar batch (read or cached): at most 1 MB of a 2,048-double feature column.
BATCH_ROWS = 64
# Bytes of Parquet a writer buffers before it writes a row group: ~200 rows of 1,280 doubles.
# The buffer fills as slowly as the CNN works, so it outlives young collections and is promoted
# to the old generation only to die there: a small one keeps that garbage small.
ROW_GROUP_BYTES = 2 * 1024 * 1024

# A JVM flag that picks a garbage collector (two stop the JVM).
_COLLECTOR = re.compile(
    r"-XX:\+Use(?:Serial|Parallel|ParallelOld|G1|Z|Shenandoah|Epsilon|ConcMarkSweep)GC\b"
)


def driver_java_options(settings: Settings) -> str:
    """``spark.driver.extraJavaOptions``: the C1 compiler only, no cached temporary direct
    buffer over ``NIO_CACHED_BYTES``, the serial collector (``SERIAL_HEAP``), the
    class-data archive once it exists (the driver maps its classes instead of loading them), then
    whatever ``IMGCLF_SPARK_CONF`` adds (a later ``-XX:`` flag wins:
    ``-XX:TieredStopAtLevel=4`` brings C2 back; a collector it names replaces ours, as two
    would stop the JVM).

    Every job is a JVM of seconds to a minute, on cores shared with the Python workers: C2's
    compile threads cost more than its faster code returns.

    G1, the JVM's default, sizes the heap for throughput: it grows it into whatever
    ``spark.driver.memory`` allows whenever collections take a few per cent of the time,
    and Spark's ML fit allocates at GB/s (its NaN check of the features builds a SQL conf
    per value), so the driver's heap grew with the images. The serial collector keeps the
    heap near what is live (``SERIAL_HEAP``), on a cluster and with a local master (where
    the driver JVM is also the executor) alike. Measured: ``docs/performance.md``."""
    options = ["-XX:TieredStopAtLevel=1", _NIO_BOUND]
    user = settings.extra_spark_conf.get("spark.driver.extraJavaOptions", "").strip()
    chosen = user + " " + settings.extra_spark_conf.get("spark.driver.defaultJavaOptions", "")
    if not _COLLECTOR.search(chosen):
        options += SERIAL_HEAP
    if settings.jvm_archive is not None and settings.jvm_archive.is_file():
        # -Xlog:cds off: a stale archive (another JDK) is ignored without a warning on stdout
        options += [
            f"-XX:SharedArchiveFile={settings.jvm_archive}",
            "-Xlog:cds=off",
            "-Xlog:cds+dynamic=off",
        ]
    return " ".join([*options, user] if user else options)


def executor_java_options(settings: Settings) -> str:
    """``spark.executor.extraJavaOptions``: on a cluster the executors' JVMs read the
    Parquet, so they get the same bound on cached temporary direct buffers as the driver
    (``NIO_CACHED_BYTES``), then whatever ``IMGCLF_SPARK_CONF`` adds. Nothing else of the
    driver's: executors are the cluster's to size and collect (and with a local master
    there is no executor JVM; this is ignored)."""
    user = settings.extra_spark_conf.get("spark.executor.extraJavaOptions", "").strip()
    return f"{_NIO_BOUND} {user}" if user else _NIO_BOUND


def job_conf(settings: Settings, master: str | None = None) -> dict[str, str]:
    """The conf every job of the project runs with (spark-submit ``--conf`` pairs); with a
    local ``master``, its sockets on loopback (``loopback_conf``; ``IMGCLF_SPARK_CONF``
    may still say otherwise)."""
    conf = {
        # Executors run the project's interpreter, with TensorFlow and the project installed.
        "spark.pyspark.python": settings.python,
        "spark.pyspark.driver.python": settings.python,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
        # What the jobs write is mostly CNN features: floats never repeat, and Parquet's
        # dictionary encoding first tries, then abandons, a dictionary for every page.
        "spark.hadoop.parquet.enable.dictionary": "false",
        # No buffer sized by a whole partition or file, so a job's memory does not grow
        # with the images. Spark's defaults size them by rows (per Parquet read batch, per
        # cached batch), by the heap (sort and aggregation pages) or by the file (the row
        # group a Parquet writer buffers): small for a few images, and for many each an
        # array the collector must find room for in one piece.
        "spark.sql.parquet.columnarReaderBatchSize": str(BATCH_ROWS),
        "spark.sql.inMemoryColumnarStorage.batchSize": str(BATCH_ROWS),
        "spark.buffer.pageSize": "1m",  # the least Spark's own sizing picks
        "spark.hadoop.parquet.block.size": str(ROW_GROUP_BYTES),
        **(loopback_conf() if master is not None and is_local_master(master) else {}),
        **settings.extra_spark_conf,
    }
    conf["spark.driver.extraJavaOptions"] = driver_java_options(settings)
    conf["spark.executor.extraJavaOptions"] = executor_java_options(settings)
    return conf
