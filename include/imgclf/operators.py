"""The one spark-submit operator factory, for every DAG (Airflow-only; DAG files import it).

Every job runs on the ``spark_default`` master with the project's Spark conf (its interpreter
on the executors, the driver's class-data archive, ``IMGCLF_SPARK_CONF``), the data root in its
environment, and the project's code shipped as ``--py-files`` when ``IMGCLF_PY_FILES`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from imgclf import spark_conf
from imgclf.settings import Settings, spark_tasks_dir


class SparkJobOperator(SparkSubmitOperator):
    """The provider's operator; in local mode (the ``spark_default`` master, resolved when the
    task runs, as the hook does) the driver's RPC, block manager and UI listen on loopback.

    ``enabled`` (templated: a checked run parameter passed as an ``XComArg``) skips the job when
    false, before anything is submitted: the task shows *skipped*, with the reason logged."""

    template_fields: Sequence[str] = (*SparkSubmitOperator.template_fields, "enabled")

    def __init__(self, *, enabled: Any = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enabled = enabled

    def execute(self, context: Any) -> Any:
        if self.enabled is not True:  # a rendered XComArg: the checked boolean itself
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.task_id}: off for this run (its run parameter)")
        return super().execute(context)

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
            **({"IMGCLF_CACHE_DIR": str(settings.cache_root)} if settings.cache_root else {}),
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


class RunApproval(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` (the run waits in *Required actions*), asked only when
    the run's ``approval`` Param says so (``imgclf.approval.should_ask``); otherwise it returns
    at once and never waits. Subject, body and timeout are the run's, set when it runs.

    Unlike the stock operator, "Reject" does not skip ``promote``: promote still registers the
    version, tagged with who rejected it and why, and leaves the champion alone. No answer
    within ``approval_timeout_hours`` applies the default, "Reject", and is recorded as
    "timed out". ``assigned_users`` (``IMGCLF_APPROVERS``) restricts who may answer."""

    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Promote this run's model?")
        # the wait's own bound (set per run from approval_timeout_hours when the task runs);
        # execution_timeout stays the bound on the work before it
        kwargs.setdefault("response_timeout", timedelta(hours=24))
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)  # no answer in time: reject
        kwargs.setdefault("assigned_users", [{"id": u, "name": u} for u in settings.approvers]
                          or None)  # fmt: skip
        super().__init__(**kwargs)
        self.settings = settings
        # the answer's form: one optional comment (nullable: the UI requires a plain "string"
        # and keeps both buttons disabled until one is typed). Set after __init__: inside a
        # DAG, Airflow merges the DAG's Params into a task's, and the operator keeps none.
        self.params = ParamsDict({"comment": Param(
            None, type=["null", "string"], maxLength=2000, title="Comment",
            description="Why (kept with the model version and the run)",
            source="task")})  # fmt: skip

    def _report_url(self, run_id: str) -> str | None:
        from urllib.parse import quote

        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        if not base.startswith(("http://", "https://")):
            return None
        return f"{base}/imgclf/report/{quote(self.dag_id, safe='')}/{quote(run_id, safe='')}"

    def execute(self, context: Any) -> Any:
        from imgclf import approval, dag_tasks

        run_id = context["run_id"]
        request = dag_tasks.approval_request(self.settings, run_id, self._report_url(run_id))
        if not request["ask"]:
            return dag_tasks.record_approval(
                self.settings, run_id, approval.not_asked(request["why"])
            )
        self.subject, self.body = request["subject"], request["body"]
        self.response_timeout = timedelta(hours=request["timeout_hours"])
        return super().execute(context)  # waits (AWAITING_INPUT); resumes in execute_complete

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from imgclf import approval, dag_tasks

        got = HITLOperator.execute_complete(self, context, event)  # checks; no skipping here
        at = got["responded_at"]
        outcome = approval.answered(
            got["chosen_options"],
            got["responded_by_user"],
            at.isoformat() if hasattr(at, "isoformat") else str(at),
            (got["params_input"] or {}).get("comment"),
            timed_out=bool(event.get("timedout")),
        )
        return dag_tasks.record_approval(self.settings, context["run_id"], outcome)
