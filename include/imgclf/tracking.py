"""MLflow tracking: every DAG run is an MLflow run (params, metrics, artifacts, the logged model).

The Model Registry (versions, the ``champion`` alias, promotion and rollback) is
``imgclf.registry``, on the client and store set up here.

Embedded by default (no server): tracking and registry in ``sqlite:///<IMGCLF_HOME>/mlflow.db``,
artifacts under ``<IMGCLF_HOME>/mlartifacts``; ``MLFLOW_TRACKING_URI`` (and
``MLFLOW_REGISTRY_URI``) point everything at a real server instead. ``make mlflow`` serves the
UI over the embedded store.

MLflow is imported lazily: the DAG files import this module at parse time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.settings import Settings
from imgclf.version import code_version

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow 3's UI opens an experiment by its kind: without this tag it may infer "GenAI" (traces,
# token usage) and hide the training runs; the value is the UI's CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"


def client(settings: Settings) -> MlflowClient:
    from mlflow import MlflowClient

    settings.home.mkdir(parents=True, exist_ok=True)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_registry_uri)


def experiment_id(settings: Settings, mlflow: MlflowClient | None = None) -> str:
    """The experiment's id, created on first use with its artifacts under the data root."""
    mlflow = mlflow or client(settings)
    found = mlflow.get_experiment_by_name(settings.mlflow_experiment)
    if found is not None:
        if (found.tags or {}).get(EXPERIMENT_KIND_TAG) is None:  # made by older code
            mlflow.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML)
        return found.experiment_id
    from mlflow.exceptions import MlflowException

    location = None
    if settings.mlflow_tracking_uri.startswith("sqlite:"):  # embedded: artifacts beside it
        location = (settings.home / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(
            settings.mlflow_experiment,
            artifact_location=location,
            tags={EXPERIMENT_KIND_TAG: CLASSIC_ML},
        )
    except MlflowException:  # created meanwhile by another task
        found = mlflow.get_experiment_by_name(settings.mlflow_experiment)
        if found is None:
            raise
        return found.experiment_id


def run_url(settings: Settings, experiment: str, run_id: str) -> str:
    return f"{settings.mlflow_ui_url}/#/experiments/{experiment}/runs/{run_id}"


# --- tracking: one MLflow run per DAG run --------------------------------------------------
def start_run(
    settings: Settings, dag_id: str, run_id: str, params: dict[str, Any]
) -> dict[str, str]:
    """The MLflow run of Airflow run ``run_id`` (created once; a retried task finds it)."""
    mlflow = client(settings)
    experiment = experiment_id(settings, mlflow)
    found = mlflow.search_runs(
        [experiment], filter_string=f"tags.airflow_run_id = '{quote(run_id)}'", max_results=1
    )
    if found:
        run = found[0]
    else:
        run = mlflow.create_run(
            experiment,
            run_name=run_id,
            tags={
                "airflow_dag_id": dag_id,
                "airflow_run_id": run_id,
                "code_version": code_version(),
            },
        )
        _log_params(mlflow, run.info.run_id, params)
    out = {
        "mlflow_run_id": run.info.run_id,
        "experiment_id": experiment,
        "url": run_url(settings, experiment, run.info.run_id),
    }
    from imgclf.files import atomic_write_json

    atomic_write_json(settings.run_dir(run_id) / "mlflow.json", out)
    return out


def quote(value: str) -> str:
    """``value`` inside single quotes of an MLflow search filter."""
    return value.replace("'", "\\'")


# A parameter's value as logged: runs rejected at validation log what was given, bounded.
PARAM_VALUE_MAX = 1000


def _log_params(mlflow: MlflowClient, mlflow_run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    def text(v: Any) -> str:
        out = json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else str(v)
        return out if len(out) <= PARAM_VALUE_MAX else out[: PARAM_VALUE_MAX - 3] + "..."

    flat = [Param(k, text(v)) for k, v in sorted(params.items())]
    mlflow.log_batch(mlflow_run_id, params=flat)


def stage_metrics(stage: str, m: dict[str, Any] | None) -> dict[str, float]:
    """A stage's figures (``baseline``/``tuned``) as flat MLflow metrics."""
    if not m:
        return {}
    out: dict[str, Any] = {
        f"{stage}_accuracy": m.get("accuracy"),
        f"{stage}_roc_auc": m.get("roc_auc"),
        f"{stage}_seconds": m.get("seconds"),
        f"{stage}_featurized_images": m.get("featurized_images"),
    }
    lo, hi = (m.get("accuracy_ci95") or [None, None])[:2]
    out[f"{stage}_accuracy_wilson_low"], out[f"{stage}_accuracy_wilson_high"] = lo, hi
    for label, figures in (m.get("per_class") or {}).items():
        for name in ("precision", "recall", "f1"):
            out[f"{stage}_{label}_{name}"] = figures.get(name)
    cv = m.get("cv") or {}
    out[f"{stage}_cv_mean"], out[f"{stage}_cv_std"] = cv.get("best_mean"), cv.get("best_std")
    return {
        k: float(v)
        for k, v in out.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def registry_outcome(metrics: dict[str, Any]) -> str:
    """What the run did to the Model Registry, as the report, the summary and MLflow say it."""
    comparison = metrics.get("champion_comparison") or {}
    if comparison.get("registry"):
        return str(comparison["registry"])
    if not metrics.get("passed_gate"):
        return "nothing registered (the gate failed)"
    return "nothing registered (the run stopped before promotion)"


def finish_run(
    settings: Settings,
    run_id: str,
    *,
    metrics: dict[str, Any] | None,
    failure: dict[str, Any] | None,
    artifacts: list[tuple[Path, str | None]],
) -> str | None:
    """Log the run's outcome (metrics, tags, artifacts) and end it: FINISHED, or FAILED when
    the run failed (the gate included). Returns the run's MLflow URL."""
    info_path = settings.run_dir(run_id) / "mlflow.json"
    if not info_path.is_file():
        return None  # failed before the run was opened (invalid params)
    info = json.loads(info_path.read_text())
    mlflow = client(settings)
    rid = info["mlflow_run_id"]
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    values: dict[str, float] = {}
    tags: dict[str, str] = {}
    if metrics:
        values.update(stage_metrics("baseline", metrics.get("baseline")))
        values.update(stage_metrics("tuned", metrics.get("tuned")))
        values["accuracy"] = float(metrics["accuracy"])
        values["featurized_images"] = float(metrics.get("featurized_images", 0))
        values["passed_gate"] = float(bool(metrics.get("passed_gate")))
        tags.update(
            candidate=str(metrics.get("candidate")),
            featurizer=str(metrics.get("featurizer")),
            dataset_fingerprint=str((metrics.get("dataset") or {}).get("fingerprint")),
            gate=str((metrics.get("gate") or {}).get("reason", "")),
            promoted_version=str(metrics.get("promoted_version") or ""),
            # what happened to the registry, in words (a version, the alias, or nothing)
            registry=registry_outcome(metrics),
        )
        if verdict := metrics.get("approval"):  # the person's answer, or why none was asked
            tags.update(approval=str(verdict.get("answer")), approval_summary=str(
                verdict.get("summary"))[:4000])  # fmt: skip
            for key in ("by", "at", "comment"):
                if verdict.get(key):
                    tags[f"approval_{key}"] = str(verdict[key])[:4000]
    checks = (metrics or {}).get("data_checks") or _read(
        settings.run_dir(run_id) / "datachecks.json"
    )
    for name, value in (checks or {}).get("metrics", {}).items():
        if isinstance(value, int | float) and math.isfinite(value):
            values[f"data_{name}"] = float(value)
    for name, value in ((metrics or {}).get("evidence") or {}).get("metrics", {}).items():
        if isinstance(value, int | float) and math.isfinite(value):
            values[name] = float(value)
    if failure:
        tags.update(failed_task=failure["task"], failure=failure["error"][:4000])
    mlflow.log_batch(
        rid,
        metrics=[Metric(k, v, now, 0) for k, v in sorted(values.items())],
        tags=[RunTag(k, v) for k, v in sorted(tags.items())],
    )
    for path, folder in artifacts:  # (file, folder in the run's artifacts or None)
        if path.is_file():
            mlflow.log_artifact(rid, str(path), folder)
    failed = failure is not None or (metrics is not None and not metrics.get("passed_gate"))
    mlflow.set_terminated(rid, "FAILED" if failed else "FINISHED")
    return info["url"]


@contextlib.contextmanager
def _fluent(settings: Settings) -> Iterator[Any]:
    """MLflow's fluent API (``mlflow.spark``) pointed at our store, for the duration only:
    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the process
    environment, which would silently redirect every later ``Settings.from_env()``."""
    import os

    import mlflow

    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]  # None: unset
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)


def log_model(settings: Settings, run_id: str, model: Any, flavor: Any) -> str:
    """Log a fitted ``PipelineModel`` (featurizer + classifier) to the run with ``flavor``
    (``spark_tasks.serving``: MLflow's Spark flavor and a pyfunc that needs no Spark) and its
    signature (encoded image bytes in; the class and each class's probability out); return
    its URI.

    Called from a Spark job (the session exists). The run stays open for the rest of the DAG.
    """
    import tempfile

    from mlflow.models import Model

    info = json.loads((settings.run_dir(run_id) / "mlflow.json").read_text())
    rid = info["mlflow_run_id"]
    with tempfile.TemporaryDirectory() as tmp:
        # saved here, logged as the run's artifact folder "model" (runs:/<run>/model, as
        # mlflow.spark.log_model does it); the run stays open for the rest of the DAG
        local = str(Path(tmp) / "model")
        flavor.save_model(
            local,
            Model(artifact_path="model", run_id=rid),
            spark_model=model,
            signature=flavor.signature(),
        )
        client(settings).log_artifacts(rid, local, "model")
    return f"runs:/{rid}/model"


def load_model(settings: Settings, uri: str) -> Any:
    """The ``PipelineModel`` behind ``models:/...`` or ``runs:/...`` (in a Spark job)."""
    import mlflow.spark

    with _fluent(settings):
        return mlflow.spark.load_model(uri)


def now_iso() -> str:
    """The time now, UTC, to the second (``2026-12-05T08:44:07Z``): what a version tag says."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def readable_time(value: Any) -> str:
    """An epoch timestamp (seconds or MLflow's milliseconds) as UTC ISO 8601; anything else
    (an ISO string already, ``None``) unchanged as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if number > 1e11:  # milliseconds (MLflow's timestamps)
        number /= 1000
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(number))
