"""The one spark-submit operator factory, for every DAG (Airflow-only; DAG files import it).

Every job runs on the ``spark_default`` master with the project's Spark conf (its interpreter
on the executors, the driver's class-data archive, ``IMGCLF_SPARK_CONF``), the data root in its
environment, and the project's code shipped as ``--py-files`` when ``IMGCLF_PY_FILES`` is set.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from imgclf.config import Settings, is_local_master, spark_tasks_dir


class SparkJobOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` whose driver JVM options follow the master spark-submit gets,
    as its hook resolves it from the connection when the task runs
    (``Settings.driver_java_options``: a driver that is its own executor, or not)."""

    def __init__(self, *, local_driver_options: str, cluster_driver_options: str, **kwargs):
        super().__init__(**kwargs)
        self.local_driver_options = local_driver_options
        self.cluster_driver_options = cluster_driver_options

    def master(self) -> str:
        """The master the hook submits to (``yarn`` when the connection does not exist)."""
        return SparkSubmitHook(conn_id=self._conn_id)._connection["master"]

    def _get_hook(self) -> SparkSubmitHook:
        local = is_local_master(self.master())
        options = self.local_driver_options if local else self.cluster_driver_options
        self.conf = {**(self.conf or {}), "spark.driver.extraJavaOptions": options}
        return super()._get_hook()


def spark_job(
    settings: Settings, task_id: str, script: str, args: list[str], **kwargs
) -> SparkSubmitOperator:
    """One spark-submit of ``spark_tasks/<script>`` with ``args`` (templated)."""
    options = {"retries": 1, "retry_delay": timedelta(seconds=20), **kwargs}  # a lost executor
    return SparkJobOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=str(spark_tasks_dir() / script),
        name=f"imgclf-{task_id}",
        conf=settings.spark_conf(),
        local_driver_options=settings.driver_java_options(executors_in_driver=True),
        cluster_driver_options=settings.driver_java_options(executors_in_driver=False),
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
