"""The one spark-submit operator factory, for every DAG (Airflow-only; DAG files import it).

Every job runs on the ``spark_default`` master with the project's Spark conf (its interpreter
on the executors, the driver's class-data archive, ``IMGCLF_SPARK_CONF``), the data root in its
environment, and the project's code shipped as ``--py-files`` when ``IMGCLF_PY_FILES`` is set.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from imgclf import spark_conf
from imgclf.settings import Settings, spark_tasks_dir


class SparkJobOperator(SparkSubmitOperator):
    """The provider's operator; in local mode (the ``spark_default`` master, resolved when the
    task runs, as the hook does) the driver's RPC, block manager and UI listen on loopback."""

    def _get_hook(self):
        hook = super()._get_hook()
        if spark_conf.is_local_master(hook._connection["master"]):
            hook._conf = {**spark_conf.loopback_conf(), **hook._conf}  # IMGCLF_SPARK_CONF wins
            hook._env_vars = {**spark_conf.loopback_env(), **(hook._env_vars or {})}
        return hook


def spark_job(
    settings: Settings, task_id: str, script: str, args: list[str], **kwargs
) -> SparkSubmitOperator:
    """One spark-submit of ``spark_tasks/<script>`` with ``args`` (templated)."""
    options = {
        "retries": 1,  # a lost executor
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": settings.timeout("spark_job"),
        **kwargs,
    }
    return SparkJobOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=str(spark_tasks_dir() / script),
        name=f"imgclf-{task_id}",
        conf=spark_conf.job_conf(settings),
        env_vars={
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "IMGCLF_HOME": str(settings.home),
            # the jobs log models to, and load them from, the same MLflow as the tasks
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "MLFLOW_REGISTRY_URI": settings.mlflow_registry_uri,
        },
        py_files=settings.py_files or None,
        application_args=args,
        **options,
    )


def run_job(settings: Settings, task_id: str, script: str, **kwargs) -> SparkSubmitOperator:
    """A job of the running DAG run (``spark_tasks/job.py``): it gets the run id, nothing else."""
    args = ["--data-root", str(settings.home), "--run-id", "{{ run_id }}"]
    return spark_job(settings, task_id, script, args, **kwargs)
