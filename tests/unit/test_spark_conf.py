"""imgclf.spark_conf: the conf and JVM options every job runs with, and what overrides them."""

import json
import sys
from importlib import metadata
from pathlib import Path

from imgclf import spark_conf
from imgclf.settings import Settings

# Every JVM of a job (drivers and executors): no thread keeps a large temporary direct buffer
NIO_BOUND = "-Djdk.nio.maxCachedBufferSize=262144"
# Every driver: C1 only (short-lived JVMs), and that bound
ALWAYS = ["-XX:TieredStopAtLevel=1", NIO_BOUND]
# unless the user names a collector: the serial one, its heap starting at 128 MB (not 1/64 of
# the machine's memory) and following what is live
SERIAL = ["-XX:+UseSerialGC", "-Xms128m", "-XX:MinHeapFreeRatio=20", "-XX:MaxHeapFreeRatio=40"]
DEFAULT_OPTIONS = " ".join([*ALWAYS, *SERIAL])


def test_jvm_archive_is_used_only_once_it_exists(monkeypatch, tmp_path):
    archive = tmp_path / "spark.jsa"
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", str(archive))
    monkeypatch.delenv("IMGCLF_SPARK_CONF", raising=False)
    s = Settings.from_env()
    assert s.jvm_archive == archive
    # not built yet: Spark starts as it always did (with the options every job has)
    assert spark_conf.job_conf(s)["spark.driver.extraJavaOptions"] == DEFAULT_OPTIONS
    archive.write_bytes(b"x")
    opts = spark_conf.job_conf(Settings.from_env())["spark.driver.extraJavaOptions"].split()
    assert opts[: len(ALWAYS + SERIAL) + 1] == [
        *ALWAYS,
        *SERIAL,
        f"-XX:SharedArchiveFile={archive}",
    ]


def test_jvm_archive_off_and_user_java_options_kept(monkeypatch, tmp_path):
    user = {"spark.driver.extraJavaOptions": "-Dfoo=1", "spark.executor.memory": "2g"}
    monkeypatch.setenv("IMGCLF_SPARK_CONF", json.dumps(user))
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", "off")
    s = Settings.from_env()
    assert s.jvm_archive is None
    conf = spark_conf.job_conf(s)
    assert conf["spark.driver.extraJavaOptions"] == f"{DEFAULT_OPTIONS} -Dfoo=1"
    assert conf["spark.executor.memory"] == "2g"
    assert conf["spark.pyspark.python"] == s.python
    archive = tmp_path / "a.jsa"
    archive.write_bytes(b"x")
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", str(archive))
    opts = spark_conf.driver_java_options(Settings.from_env()).split()
    assert opts[len(ALWAYS + SERIAL)] == f"-XX:SharedArchiveFile={archive}"
    assert opts[-1] == "-Dfoo=1"


def test_default_jvm_archive_is_keyed_by_spark_and_java(monkeypatch, tmp_path):
    monkeypatch.delenv("IMGCLF_JVM_ARCHIVE", raising=False)
    fake_java = tmp_path / "jdk" / "bin" / "java"
    fake_java.parent.mkdir(parents=True)
    fake_java.write_text("")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    a = Settings.from_env().jvm_archive
    assert a is not None and a.parent == Path(sys.prefix) / "share" / "imgclf"
    assert a.name.startswith(f"spark-{metadata.version('pyspark')}-")
    other = tmp_path / "jdk2" / "bin" / "java"
    other.parent.mkdir(parents=True)
    other.write_text("")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk2"))
    assert Settings.from_env().jvm_archive != a  # another JVM never maps this one's archive
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojdk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert Settings.from_env().jvm_archive is None


def test_the_driver_collects_serially_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", "off")
    monkeypatch.delenv("IMGCLF_SPARK_CONF", raising=False)
    assert spark_conf.driver_java_options(Settings.from_env()).split() == [*ALWAYS, *SERIAL]
    # a collector of the user's replaces ours, and our sizing of the heap for it: two
    # collectors would stop the JVM
    user = {"spark.driver.extraJavaOptions": "-XX:+UseG1GC -Dx=1"}
    monkeypatch.setenv("IMGCLF_SPARK_CONF", json.dumps(user))
    assert spark_conf.driver_java_options(Settings.from_env()).split() == [
        *ALWAYS,
        "-XX:+UseG1GC",
        "-Dx=1",
    ]
    # also when it comes in the other option Spark puts on the driver's command line
    user = {"spark.driver.defaultJavaOptions": "-XX:+UseParallelGC"}
    monkeypatch.setenv("IMGCLF_SPARK_CONF", json.dumps(user))
    assert spark_conf.driver_java_options(Settings.from_env()).split() == ALWAYS


def test_executors_bound_their_direct_buffers_too_and_keep_the_users_options(monkeypatch):
    """On a cluster the executors read the Parquet: they get the driver's bound on cached
    temporary direct buffers, and nothing else of its options (no collector or heap of ours)."""
    monkeypatch.setenv("IMGCLF_JVM_ARCHIVE", "off")
    monkeypatch.delenv("IMGCLF_SPARK_CONF", raising=False)
    assert spark_conf.job_conf(Settings.from_env())["spark.executor.extraJavaOptions"] == NIO_BOUND
    user = {"spark.executor.extraJavaOptions": "-XX:+UseG1GC -Dx=1"}
    monkeypatch.setenv("IMGCLF_SPARK_CONF", json.dumps(user))
    conf = spark_conf.job_conf(Settings.from_env())
    assert conf["spark.executor.extraJavaOptions"] == f"{NIO_BOUND} -XX:+UseG1GC -Dx=1"
    assert "-XX:+UseSerialGC" in conf["spark.driver.extraJavaOptions"]  # the driver's own


def test_buffers_are_bounded_in_rows_and_bytes_unless_the_user_says_otherwise(monkeypatch):
    """No buffer sized by a partition or a file: read and cached batches in rows, sort pages
    and Parquet row groups in bytes; IMGCLF_SPARK_CONF still wins."""
    from imgclf.spark_conf import BATCH_ROWS, ROW_GROUP_BYTES

    monkeypatch.delenv("IMGCLF_SPARK_CONF", raising=False)
    conf = spark_conf.job_conf(Settings.from_env())
    assert conf["spark.sql.parquet.columnarReaderBatchSize"] == str(BATCH_ROWS)
    assert conf["spark.sql.inMemoryColumnarStorage.batchSize"] == str(BATCH_ROWS)
    assert conf["spark.buffer.pageSize"] == "1m"
    assert conf["spark.hadoop.parquet.block.size"] == str(ROW_GROUP_BYTES)
    assert BATCH_ROWS * 2048 * 8 <= 1024 * 1024  # a 2,048-double feature column: <= 1 MB
    user = {"spark.sql.parquet.columnarReaderBatchSize": "4096", "spark.buffer.pageSize": "8m"}
    monkeypatch.setenv("IMGCLF_SPARK_CONF", json.dumps(user))
    conf = spark_conf.job_conf(Settings.from_env())
    assert conf["spark.sql.parquet.columnarReaderBatchSize"] == "4096"
    assert conf["spark.buffer.pageSize"] == "8m"
