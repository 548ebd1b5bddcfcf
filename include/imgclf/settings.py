"""Settings: the environment, read once and typed, and the layout of the data root.

Everything the pipeline writes lives under one data root (``IMGCLF_HOME``, default ``var/`` in
the repository). This module only reads the environment and builds paths: it imports nothing
heavy, so the DAG file can use it at parse time. How the Spark jobs' JVMs are configured from
these settings is ``imgclf.spark_conf``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from imgclf.names import GLOB_CHARS, URI_CHARS
from imgclf.spark_conf import jvm_archive_from_env

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


_D = TypeVar("_D", Path, None)


def _env_path(name: str, default: _D) -> Path | _D:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


def _data_root(name: str, default: Path) -> Path:
    """The data root, refused when Spark would misread it: the jobs hand Spark paths below it
    (datasets, runs, features), and Spark reads a path holding a glob character as a pattern
    and one holding ':' as a URI."""
    root = _env_path(name, default)
    odd = sorted(set(str(root)) & (GLOB_CHARS | URI_CHARS))
    if odd:
        raise ValueError(
            f"data root {str(root)!r} ({name}, or the default beside the project) contains "
            f"{' '.join(odd)}, which Spark reads as a pattern or a URI: set {name} to a path "
            "without them"
        )
    return root


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


@dataclass(frozen=True)
class Settings:
    """Where things live and how jobs run, resolved once from the environment."""

    home: Path
    python: str
    spark_driver_memory: str = "4g"
    download_workers: int = 4
    # Bounds on what the remote may send: bytes per file, pixels per image (the same limit for
    # the downloader, the featurizer and prediction: imgclf.image_acceptance reads it too).
    max_file_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    # ... and bytes a .keras model file may declare, all members uncompressed (imgclf.model_files).
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
    # Derived files (converted models, downloaded model versions), rebuilt when missing:
    # ``IMGCLF_CACHE_DIR``, else ``<home>/cache``. Data roots that set the same one share it.
    cache_root: Path | None = None
    # Airflow user ids who may answer an approval (``IMGCLF_APPROVERS``, comma-separated);
    # empty: any user allowed to act on the DAG's required actions. A setting, not a run
    # Param, so that whoever triggers a run cannot name themselves its approver.
    approvers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=_data_root("IMGCLF_HOME", PROJECT_ROOT / "var"),
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
            jvm_archive=jvm_archive_from_env(),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "").strip(),
            registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", "").strip(),
            mlflow_experiment=os.environ.get("IMGCLF_MLFLOW_EXPERIMENT", "").strip()
            or cls.mlflow_experiment,
            registered_model=os.environ.get("IMGCLF_REGISTERED_MODEL", "").strip()
            or cls.registered_model,
            approvers=tuple(
                u.strip() for u in os.environ.get("IMGCLF_APPROVERS", "").split(",") if u.strip()
            ),
            mlflow_ui_url=os.environ.get("IMGCLF_MLFLOW_UI_URL", "").strip().rstrip("/")
            or cls.mlflow_ui_url,
            cache_root=_env_path("IMGCLF_CACHE_DIR", None),
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
        """Derived files, rebuilt when missing: ``openvino/<key>/`` holds converted models,
        ``models/<key>/`` downloaded model versions."""
        return self.cache_root or self.home / "cache"

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
