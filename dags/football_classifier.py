"""
### football_classifier: Messi vs Ronaldo by transfer learning on Spark

1. **validate_params**: checks the run's parameters before any work.
2. **download**: syncs the class folders from GitHub (`github_default`), verified by blob SHA.
3. **train** (`spark-submit spark_tasks/train.py`): featurizes images not yet in the feature
   store with a pretrained CNN (`DeepImageFeaturizer`), splits (deterministic, stratified), fits
   `LogisticRegression` in a `Pipeline`, evaluates on the test split.
4. **choose_branch**: baseline accuracy >= `target_accuracy` skips tuning.
5. **tune** (`spark-submit spark_tasks/tune.py`): cross-validates LR params on the training
   split only, reusing stored features (the CNN does not run), evaluates once on test.
6. **gate**: fails the run when the candidate's test accuracy is below `min_accuracy`.
7. **challenge** (`spark-submit spark_tasks/challenge.py`): the current champion scores the same
   test images through its own saved pipeline.
8. **evidence** (`spark-submit spark_tasks/evidence.py`): what the gated model looks at: exact
   class-evidence maps of test images, face boxes, the face-evidence share (never fails a run;
   skipped when the `evidence` Param is off).
9. **approve**: waits for a person's Approve/Reject in *Required actions* when the `approval`
   Param asks for it (`on_change`, `always`); `auto` never waits. Reject or no answer in time:
   nothing is promoted.
10. **promote**: registers the model in MLflow and moves the `champion` alias to it unless it is
   worse than the champion by more than `max_regression`.
11. **record** (a teardown: runs whatever happened before): the run's history line, its report
    and figures, and the end of its MLflow run.

Runs weekly, and whenever `football_dataset_watch` sees the remote images change (an Asset).
Everything is written under `IMGCLF_HOME`: `runs/<run_id>/metrics.json` and `report.html`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    BaseHook,
    CronTriggerTimetable,
    Param,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from imgclf import connections, dag_tasks, runs
from imgclf import params as run_params
from imgclf.github import DownloadError
from imgclf.operators import RunApproval, run_job
from imgclf.settings import DATASET_ASSET, Settings

SETTINGS = Settings.from_env()  # environment only: no I/O at parse time
# Unpausing waits for the next cron tick. Airflow 3.3's CronTriggerTimetable with catchup=False
# picks max(latest past tick, first tick >= start_date) and consults run_immediately only when
# no start_date is set (neither on the DAG nor on a task); run_immediately=False still takes the
# past tick if it is less than 10 % of the period old, timedelta(0) never does.
NOT_THE_PAST_TICK = timedelta(0)
# The trigger form: one Param per entry of the run-parameter schema (titles, sections, bounds)
PARAMS = {name: Param(**spec) for name, spec in run_params.airflow_params().items()}


def note_failure(context) -> None:
    """Every failed task leaves one line for `imgclf summary` (and `make run`) to show."""
    error = context.get("exception") or RuntimeError("failed")
    runs.record_failure(SETTINGS, context["run_id"], context["ti"].task_id, error)


with DAG(
    dag_id="football_classifier",
    description="Messi vs Ronaldo: GitHub images -> CNN features on Spark -> LogisticRegression",
    doc_md=__doc__,
    # weekly, or as soon as the data watcher reports new images, whichever comes first
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(
            "0 0 * * 0", timezone="UTC", run_immediately=NOT_THE_PAST_TICK
        ),
        assets=[Asset(DATASET_ASSET)],
    ),
    # No start_date (on purpose): with one, catchup=False schedules the latest past cron tick,
    # so unpausing would start a run at once; see NOT_THE_PAST_TICK.
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["imgclf", "spark", "transfer-learning"],
    default_args={
        "owner": "imgclf",
        "retries": 0,
        "on_failure_callback": note_failure,
        "execution_timeout": SETTINGS.timeout(),  # the Spark jobs and the download: their own
    },
) as dag:

    @task(retries=0)
    def validate_params() -> dict:
        ctx = get_current_context()
        try:  # pinned for every later task and job: runs/<run>/params.json
            checked = runs.save_params(SETTINGS, ctx["run_id"], dict(ctx["params"]))
        except ValueError as exc:  # recorded too: a FAILED MLflow run with the reason
            runs.reject_params(SETTINGS, ctx["dag"].dag_id, ctx["run_id"], dict(ctx["params"]), exc)
            raise AirflowFailException(str(exc)) from None
        runs.open_run(SETTINGS, ctx["dag"].dag_id, ctx["run_id"], checked)  # its MLflow run
        return checked

    @task(
        retries=1, retry_delay=timedelta(seconds=30), execution_timeout=SETTINGS.timeout("download")
    )
    def download(checked: dict) -> dict:
        api_url, token = connections.github_endpoint(BaseHook.get_connection)
        try:
            run_id = get_current_context()["run_id"]
            return dag_tasks.download(SETTINGS, run_id, checked, api_url, token)
        except DownloadError as exc:
            if exc.retryable:  # files that broke off after every attempt: worth one more try
                raise
            raise AirflowFailException(str(exc)) from None  # a bad listing, no route: fail now

    train = run_job(SETTINGS, "train", "train.py")

    @task.branch(retries=0)
    def choose_branch(checked: dict) -> str:
        run_id = get_current_context()["run_id"]
        tune_needed = dag_tasks.branch(SETTINGS, run_id, checked["target_accuracy"])
        return "tune" if tune_needed else "gate"

    tune = run_job(SETTINGS, "tune", "tune.py")

    @task(trigger_rule="none_failed_min_one_success", retries=0)
    def gate(checked: dict, dataset: dict | None = None) -> dict:
        try:
            return dag_tasks.gate(SETTINGS, get_current_context()["run_id"], checked, dataset)
        except dag_tasks.GateFailedError as exc:
            raise AirflowFailException(str(exc)) from None  # never retried

    challenge = run_job(SETTINGS, "challenge", "challenge.py")

    @task(retries=1, retry_delay=timedelta(seconds=10))
    def promote(checked: dict) -> dict:
        run_id = get_current_context()["run_id"]
        return dag_tasks.promote(SETTINGS, run_id, checked["max_regression"])

    @task(retries=0)
    def record() -> dict:
        """The run's history line and report, whatever happened before (a teardown)."""
        return runs.record(SETTINGS, get_current_context()["run_id"])

    # The checked params flow from validate_params to the tasks that use them (XCom; the
    # argument is not called `params`: Airflow reserves that name for the raw ones); the
    # spark-submit jobs read the same values from runs/<run>/params.json (they cannot read
    # XCom). Airflow types a task call by its function's parameters; at parse time these are
    # references (XComArgs) to the values at run time, hence Any.
    checked: Any = validate_params()
    fetched: Any = download(checked)
    branch = choose_branch(checked)
    gated = gate(checked, fetched)
    # what the gated model looks at (report and MLflow only: never fails the run), unless the
    # run's `evidence` Param is off
    evidence = run_job(SETTINGS, "evidence", "evidence.py", enabled=checked["evidence"])
    checked >> fetched >> train >> branch >> [tune, gated]
    # a person's OK when the `approval` Param asks for one (auto: returns at once, no wait)
    approve = RunApproval(task_id="approve", settings=SETTINGS, retries=0)
    promoted = promote(checked)
    tune >> gated >> challenge >> approve >> promoted
    gated >> evidence
    # last, whatever the outcome; a teardown, so the run's state stays that of the work
    done = [checked, fetched, train, branch, tune, gated, challenge, approve, promoted, evidence]
    done >> record().as_teardown()
