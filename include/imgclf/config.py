"""The project's one typed configuration module.

Everything the pipeline writes lives under one data root (``IMGCLF_HOME``, default ``var/`` in
the repository). This module only reads the environment and builds paths: it imports nothing
heavy, so the DAG file can use it at parse time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import TypeVar

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_REPO = "asherif844/ApacheSparkDeepLearningCookbook"
DEFAULT_REF = "master"
DEFAULT_CLASSES: dict[str, str] = {
    "messi": "CH13/football/messi",
    "ronaldo": "CH13/football/ronaldo",
}
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_MODEL = "InceptionV3"
# The Airflow Asset the data watcher updates when the remote images change.
DATASET_ASSET = "imgclf://football/dataset"

# The reference run's logistic regression (maxIter=30) and the grid the tuning branch searches.
# The grid holds the published tuned params regParam=0.05, elasticNetParam=0.3, maxIter=15.
DEFAULT_LR = {"max_iter": 30, "reg_param": 0.0, "elastic_net_param": 0.0}
DEFAULT_GRID = {
    "reg_param": [0.0, 0.01, 0.05, 0.1],
    "elastic_net_param": [0.0, 0.3],
    "max_iter": [15, 100],
}

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(run_id: str) -> str:
    """A run id as a directory name that Hadoop paths accept (no ':' or '+', no '/')."""
    if not run_id or not run_id.strip():
        raise ValueError("run id is empty")
    name = _SAFE.sub("_", run_id.strip()).strip("._")
    if not name:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return name


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


_N = TypeVar("_N", int, float)


def _env_number(
    name: str, default: _N, kind: type[_N], minimum: _N, maximum: _N | None = None
) -> _N:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name}={raw!r} is not {what}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name}={value} must be {bounds}")
    return value


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    return _env_number(name, default, int, minimum)


def _env_conf(name: str) -> dict[str, str]:
    """Extra Spark conf as a JSON object, e.g. ``{"spark.driver.host": "airflow-scheduler"}``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        conf = json.loads(raw)
    except ValueError:
        raise ValueError(f"{name} is not a JSON object: {raw!r}") from None
    if not isinstance(conf, dict) or not all(str(k).startswith("spark.") for k in conf):
        raise ValueError(f"{name} must be a JSON object of spark.* keys: {raw!r}")
    return {str(k): str(v) for k, v in conf.items()}


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


def _env_archive() -> Path | None:
    raw = os.environ.get("IMGCLF_JVM_ARCHIVE", "").strip()
    if raw.lower() in ("off", "none", "0", "false"):
        return None
    return Path(raw).expanduser().resolve() if raw else default_jvm_archive()


# The serial collector, with a heap that follows what is live. The JVM's default first heap is
# 1/64 of the machine's memory (384 MB here, 1 GB on a 64 GB host), and its collector grows
# the heap after a full collection until 40 % is free, shrinks it only past 70 %: the heap's
# size then tracked how much the job allocated, not what it kept. Train job alone, local mode,
# interleaved, 3 runs each: peak 821/817/806 -> 682/693/697 MB at 6,000 images, 579/580 ->
# 517/511 MB at 60; the CNN pass 39.5/39.0/38.9 -> 36.3/37.7/38.6 s, the LR fit
# 6.8/6.4/6.5 -> 6.3/7.5/6.4 s (16 full collections instead of 4: 1.5 s more in pauses).
SERIAL_HEAP = ("-XX:+UseSerialGC", "-Xms128m", "-XX:MinHeapFreeRatio=20", "-XX:MaxHeapFreeRatio=40")

# The largest temporary direct buffer a thread keeps. Parquet reads a column chunk into a heap
# buffer through a file channel; the JDK copies it through a direct buffer as large as the read
# and caches that in the reading thread, unbounded, and Spark's task threads live on (train job
# at 6,000 images: 45 MB of direct buffers, 8 MB with this; 256 rows of 64 KB read back: 16 MB
# vs 0.2 MB). Every JVM of a job gets it: on a cluster the executors do the reading.
NIO_CACHED_BYTES = 256 * 1024
_NIO_BOUND = f"-Djdk.nio.maxCachedBufferSize={NIO_CACHED_BYTES}"

# Rows per columnar batch (read or cached): at most 1 MB of a 2,048-double feature column.
BATCH_ROWS = 64
# Bytes of Parquet a writer buffers before it writes a row group: ~200 rows of 1,280 doubles.
# The buffer fills as slowly as the CNN works, so it outlives young collections and is promoted
# only to die (train job at 6,000 images, local mode, interleaved: JVM peak 673/680 MB with
# 8 MB, 658/657 with 2 MB; its CNN pass and LR fit within noise).
ROW_GROUP_BYTES = 2 * 1024 * 1024

# A JVM flag that picks a garbage collector (two stop the JVM).
_COLLECTOR = re.compile(
    r"-XX:\+Use(?:Serial|Parallel|ParallelOld|G1|Z|Shenandoah|Epsilon|ConcMarkSweep)GC\b"
)


@dataclass(frozen=True)
class Settings:
    """Where things live and how jobs run, resolved once from the environment."""

    home: Path
    python: str
    spark_driver_memory: str = "4g"
    download_workers: int = 4
    # Bounds on what the remote may send: bytes per file, pixels per image (the same limit for
    # the downloader, the featurizer and prediction: imgclf.images reads the same variable).
    max_file_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    # ... and bytes a .keras model file may declare, all members uncompressed (imgclf.models).
    max_model_bytes: int = 1024**3
    # Seconds a sync waits for another sync of the same destination before giving up.
    sync_lock_wait: float = 600.0
    # Every task's execution_timeout (seconds): generous for honest runs, so that nothing stalled
    # holds a DAG (max_active_runs=1) forever. Python tasks; the download (its lock wait, then
    # the transfer); a Spark job (the CNN over every new image: hours at 100,000s of images).
    task_timeout: float = 1800.0
    download_timeout: float = 3 * 3600.0
    spark_job_timeout: float = 12 * 3600.0
    # The first retry's wait against GitHub (doubling, with as much jitter); 0 retries at once.
    github_backoff: float = 0.5
    # How slow the remote may be (docs/security.md): every answer must average this many bytes
    # a second once its grace has passed, and one download (listings and files) must end by
    # its deadline. An honest GitHub is far faster; a stalled or trickling one is cut.
    github_grace: float = 30.0
    github_min_rate: float = 8192.0
    github_deadline: float = 600.0
    extra_spark_conf: dict[str, str] = field(default_factory=dict)
    py_files: str = ""  # comma-separated zips shipped to executors (spark-submit --py-files)
    # The Spark driver's class-data-sharing archive (``make install``); None = not used.
    jvm_archive: Path | None = None
    # MLflow: empty URIs mean the embedded store under the data root (no server)
    tracking_uri: str = ""
    registry_uri: str = ""
    mlflow_experiment: str = "football_classifier"
    registered_model: str = "football_classifier"
    mlflow_ui_url: str = "http://localhost:5000"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=_env_path("IMGCLF_HOME", PROJECT_ROOT / "var"),
            # Executors must run the project's interpreter, not whatever python3 is on PATH.
            python=os.environ.get("IMGCLF_PYSPARK_PYTHON", "").strip() or sys.executable,
            spark_driver_memory=os.environ.get("IMGCLF_SPARK_DRIVER_MEMORY", "4g"),
            download_workers=_env_int("IMGCLF_DOWNLOAD_WORKERS", 4),
            max_file_bytes=_env_int("IMGCLF_MAX_FILE_BYTES", cls.max_file_bytes),
            max_image_pixels=_env_int("IMGCLF_MAX_IMAGE_PIXELS", cls.max_image_pixels),
            max_model_bytes=_env_int("IMGCLF_MAX_MODEL_BYTES", cls.max_model_bytes),
            sync_lock_wait=_env_number(
                "IMGCLF_SYNC_LOCK_WAIT", cls.sync_lock_wait, float, 0.0, 7 * 86400.0
            ),
            task_timeout=_env_number("IMGCLF_TASK_TIMEOUT", cls.task_timeout, float, 1.0),
            download_timeout=_env_number(
                "IMGCLF_DOWNLOAD_TIMEOUT", cls.download_timeout, float, 1.0
            ),
            spark_job_timeout=_env_number(
                "IMGCLF_SPARK_JOB_TIMEOUT", cls.spark_job_timeout, float, 1.0
            ),
            github_backoff=_env_number(
                "IMGCLF_GITHUB_BACKOFF", cls.github_backoff, float, 0.0, 60.0
            ),
            github_grace=_env_number("IMGCLF_GITHUB_GRACE", cls.github_grace, float, 0.1, 3600.0),
            github_min_rate=_env_number(
                "IMGCLF_GITHUB_MIN_RATE", cls.github_min_rate, float, 1.0, 1e9
            ),
            github_deadline=_env_number(
                "IMGCLF_GITHUB_DEADLINE", cls.github_deadline, float, 1.0, 7 * 86400.0
            ),
            extra_spark_conf=_env_conf("IMGCLF_SPARK_CONF"),
            py_files=os.environ.get("IMGCLF_PY_FILES", "").strip(),
            jvm_archive=_env_archive(),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "").strip(),
            registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", "").strip(),
            mlflow_experiment=os.environ.get("IMGCLF_MLFLOW_EXPERIMENT", "").strip()
            or cls.mlflow_experiment,
            registered_model=os.environ.get("IMGCLF_REGISTERED_MODEL", "").strip()
            or cls.registered_model,
            mlflow_ui_url=os.environ.get("IMGCLF_MLFLOW_UI_URL", "").strip().rstrip("/")
            or cls.mlflow_ui_url,
        )

    def timeout(self, kind: str = "task") -> timedelta:
        """A task's ``execution_timeout``: ``kind`` is ``task``, ``download`` or ``spark_job``."""
        return timedelta(seconds=getattr(self, f"{kind}_timeout"))

    # --- MLflow ------------------------------------------------------------------------------
    @property
    def mlflow_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI``, else the embedded store: ``sqlite:///<home>/mlflow.db``."""
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_registry_uri(self) -> str:
        return self.registry_uri or self.mlflow_tracking_uri

    # --- how Spark jobs start ---------------------------------------------------------------
    def driver_java_options(self) -> str:
        """``spark.driver.extraJavaOptions``: the C1 compiler only, no cached temporary direct
        buffer over ``NIO_CACHED_BYTES``, the serial collector (``SERIAL_HEAP``), the
        class-data archive once it exists (Spark's driver starts about 2 s sooner), then
        whatever ``IMGCLF_SPARK_CONF`` adds (a later ``-XX:`` flag wins:
        ``-XX:TieredStopAtLevel=4`` brings C2 back; a collector it names replaces ours, as two
        would stop the JVM).

        Every job is a JVM of seconds to a minute: C2's compile threads cost more than its
        faster code returns (the 60-image DAG 49.9 -> 41.6 s, its train job 18.7 -> 14.9 s; at
        6,000 images the CNN pass 42.4 -> 41.6 s, the LR fit 5.4 -> 6.4 s).

        G1, the JVM's default, sizes the heap for throughput: it grows it into whatever
        ``spark.driver.memory`` allows whenever collections take a few per cent of the time,
        and Spark's ML fit allocates at GB/s (its NaN check of the features builds a SQL conf
        per value). The serial collector keeps the heap near what is live. On a cluster the
        driver's peak went 1,039 -> 1,644 MB from 60 to 6,000 images with G1, 768 -> 771
        serial (``benchmarks.scale --standalone``); with a local master, where the driver JVM
        is also the executor, the train job's peak at 6,000 images 1,502 and 2,023 MB with G1,
        849 and 892 serial, its CNN pass 38.2 and 37.5 s with G1, 36.7 and 37.7 serial
        (interleaved). Its heap starts at 128 MB and grows or shrinks only as far as what is
        live needs (``SERIAL_HEAP``). See README, "Memory"."""
        options = ["-XX:TieredStopAtLevel=1", _NIO_BOUND]
        user = self.extra_spark_conf.get("spark.driver.extraJavaOptions", "").strip()
        chosen = user + " " + self.extra_spark_conf.get("spark.driver.defaultJavaOptions", "")
        if not _COLLECTOR.search(chosen):
            options += SERIAL_HEAP
        if self.jvm_archive is not None and self.jvm_archive.is_file():
            # -Xlog:cds off: a stale archive (another JDK) is ignored without a warning on stdout
            options += [
                f"-XX:SharedArchiveFile={self.jvm_archive}",
                "-Xlog:cds=off",
                "-Xlog:cds+dynamic=off",
            ]
        return " ".join([*options, user] if user else options)

    def executor_java_options(self) -> str:
        """``spark.executor.extraJavaOptions``: on a cluster the executors' JVMs read the
        Parquet, so they get the same bound on cached temporary direct buffers as the driver
        (``NIO_CACHED_BYTES``), then whatever ``IMGCLF_SPARK_CONF`` adds. Nothing else of the
        driver's: executors are the cluster's to size and collect (and with a local master
        there is no executor JVM; this is ignored)."""
        user = self.extra_spark_conf.get("spark.executor.extraJavaOptions", "").strip()
        return f"{_NIO_BOUND} {user}" if user else _NIO_BOUND

    def spark_conf(self, master: str | None = None) -> dict[str, str]:
        """The conf every job of the project runs with (spark-submit ``--conf`` pairs); with a
        local ``master``, its sockets on loopback (``loopback_conf``; ``IMGCLF_SPARK_CONF``
        may still say otherwise)."""
        conf = {
            # Executors run the project's interpreter, with TensorFlow and the project installed.
            "spark.pyspark.python": self.python,
            "spark.pyspark.driver.python": self.python,
            "spark.driver.memory": self.spark_driver_memory,
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
            # What the jobs write is mostly CNN features: floats never repeat, and Parquet's
            # dictionary encoding first tries, then abandons, a dictionary for every page
            # (measured: 0.8 s of the JVM's 10.1 s of CPU in the 6,000-image CNN pass).
            "spark.hadoop.parquet.enable.dictionary": "false",
            # No buffer sized by a whole partition or file, so a job's memory does not grow
            # with the images. Spark's defaults size them by rows (4,096 per Parquet read
            # batch: 42 MB of one feature column at 1,280 doubles a row; 10,000 per cached
            # batch), by the heap (64 MB sort and aggregation pages at 4g) or by the file
            # (Parquet buffers a 128 MB row group while writing); at 60 images all of them
            # are small, at 6,000 each is an array the collector must find room for in one
            # piece (the train job's peak, local mode: see README, "Memory").
            "spark.sql.parquet.columnarReaderBatchSize": str(BATCH_ROWS),
            "spark.sql.inMemoryColumnarStorage.batchSize": str(BATCH_ROWS),
            "spark.buffer.pageSize": "1m",  # the least Spark's own sizing picks
            "spark.hadoop.parquet.block.size": str(ROW_GROUP_BYTES),
            **(loopback_conf() if master is not None and is_local_master(master) else {}),
            **self.extra_spark_conf,
        }
        conf["spark.driver.extraJavaOptions"] = self.driver_java_options()
        conf["spark.executor.extraJavaOptions"] = self.executor_java_options()
        return conf

    # --- layout under the data root -------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        """Derived files, rebuilt when missing: ``openvino/<key>/`` holds converted models."""
        return self.home / "cache"

    @property
    def manifest_path(self) -> Path:
        return self.raw_dir / "manifest.json"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / safe_name(run_id)

    def params_path(self, run_id: str) -> Path:
        """The run's validated, normalised parameters, written once by its first task."""
        return self.run_dir(run_id) / "params.json"

    def manifest_copy(self, run_id: str) -> Path:
        """The dataset manifest pinned for the run (what the train job reads)."""
        return self.run_dir(run_id) / "manifest.json"

    def stage_dir(self, run_id: str, stage: str) -> Path:
        """``baseline`` or ``tuned``: its metrics beside it (``<stage>.json``), model inside."""
        return self.run_dir(run_id) / stage


def spark_tasks_dir() -> Path:
    """Folder of the spark-submit entry points (next to ``include/`` in the repository)."""
    return Path(os.environ.get("IMGCLF_SPARK_TASKS", PROJECT_ROOT / "spark_tasks"))
