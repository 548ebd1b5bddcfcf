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
8. **promote**: registers the model and makes it the champion (atomically) unless it is worse
   than the champion by more than `max_regression`; writes the run's report.

Runs weekly, and whenever `football_dataset_watch` sees the remote images change (an Asset).
Everything is written under `IMGCLF_HOME`: `runs/<run_id>/metrics.json` and `report.html`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
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

from imgclf import config, tasks
from imgclf import params as run_params
from imgclf.github import DownloadError
from imgclf.models import APPLICATIONS, FACE_MODELS, POOLINGS

SETTINGS = config.Settings.from_env()  # environment only: no I/O at parse time
# Unpausing waits for the next cron tick. Airflow 3.3's CronTriggerTimetable with catchup=False
# picks max(latest past tick, first tick >= start_date) and consults run_immediately only when
# no start_date is set (neither on the DAG nor on a task); run_immediately=False still takes the
# past tick if it is less than 10 % of the period old, timedelta(0) never does.
NOT_THE_PAST_TICK = timedelta(0)
D = run_params.DEFAULTS

PARAMS = {
    "model": Param(
        D["model"],
        type="string",
        minLength=1,
        title="Pretrained CNN",
        description="A keras.applications name (ImageNet weights), 'dlib-face' (a face-identity "
        "embedding: the right features for telling two players apart; 'dlib-face+<CNN>' adds "
        "that CNN's features alongside) or an absolute path to a .keras model file.",
        examples=[*sorted(APPLICATIONS), *FACE_MODELS],
    ),
    "pooling": Param(
        D["pooling"],
        type="string",
        enum=list(POOLINGS),
        description="How the CNN's feature maps become a vector.",
    ),
    "min_accuracy": Param(
        D["min_accuracy"],
        type="number",
        minimum=0,
        maximum=1,
        description="The run fails below this test accuracy.",
    ),
    "target_accuracy": Param(
        D["target_accuracy"],
        type="number",
        minimum=0,
        maximum=1,
        description="The baseline at or above this skips tuning.",
    ),
    "test_fraction": Param(
        D["test_fraction"],
        type="number",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
        description="Share of each class held out for test (0.4: 18+12).",
    ),
    "seed": Param(D["seed"], type="integer", minimum=0, description="Seed of the split."),
    "max_iter": Param(
        D["max_iter"],
        type="integer",
        minimum=1,
        maximum=10000,
        description="Baseline LogisticRegression maxIter (reference: 30).",
    ),
    "reg_param": Param(
        D["reg_param"],
        type="number",
        minimum=0,
        description="Baseline LogisticRegression regParam.",
    ),
    "elastic_net_param": Param(
        D["elastic_net_param"],
        type="number",
        minimum=0,
        maximum=1,
        description="Baseline LogisticRegression elasticNetParam.",
    ),
    "tune_grid": Param(
        D["tune_grid"],
        type="object",
        description="Grid searched by cross-validation on the training split.",
        properties={
            k: {"type": "array", "minItems": 1, "items": {"type": t, "minimum": lo}}
            for k, t, lo in (
                ("reg_param", "number", 0),
                ("elastic_net_param", "number", 0),
                ("max_iter", "integer", 1),
            )
        },
        required=["reg_param", "elastic_net_param", "max_iter"],
        additionalProperties=False,
    ),
    "cv_folds": Param(
        D["cv_folds"],
        type="integer",
        minimum=2,
        maximum=20,
        description="Cross-validation folds in the tuning branch.",
    ),
    "repo": Param(
        D["repo"],
        type="string",
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="GitHub repository owner/name.",
    ),
    "ref": Param(D["ref"], type="string", minLength=1, description="Branch, tag or commit."),
    "classes": Param(
        D["classes"],
        type="object",
        minProperties=2,
        additionalProperties={"type": "string", "minLength": 1},
        description="Class name -> folder in the repository.",
    ),
    "min_images_per_class": Param(
        D["min_images_per_class"],
        type="integer",
        minimum=1,
        description="Fewer valid images in a class fails the run.",
    ),
    "max_regression": Param(
        D["max_regression"],
        type="number",
        minimum=0,
        maximum=1,
        description="Promote only if the candidate is not worse than the champion by more than "
        "this (test accuracy, on the same test images).",
    ),
}

SPARK_CONF = SETTINGS.spark_conf()  # the project's interpreter on executors, the JVM archive
SPARK_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "IMGCLF_HOME": str(SETTINGS.home)}
JOB_ARGS = [
    "--data-root", str(SETTINGS.home),
    "--run-id", "{{ run_id }}",
    "--model", "{{ params.model }}",
    "--pooling", "{{ params.pooling }}",
    "--seed", "{{ params.seed }}",
    "--test-fraction", "{{ params.test_fraction }}",
    "--folds", "{{ params.cv_folds }}",
]  # fmt: skip

TRAIN_ARGS = [
    *JOB_ARGS,
    "--manifest", "{{ ti.xcom_pull(task_ids='download')['manifest'] }}",
    "--max-iter", "{{ params.max_iter }}",
    "--reg-param", "{{ params.reg_param }}",
    "--elastic-net-param", "{{ params.elastic_net_param }}",
]  # fmt: skip


def spark_job(task_id: str, script: str, args: list[str]) -> SparkSubmitOperator:
    """One spark-submit of ``spark_tasks/<script>`` on the ``spark_default`` master."""
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=str(config.spark_tasks_dir() / script),
        name=f"imgclf-{task_id}",
        conf=SPARK_CONF,
        env_vars=SPARK_ENV,
        py_files=SETTINGS.py_files or None,
        application_args=args,
        retries=1,  # a lost executor or driver is worth one more try
        retry_delay=timedelta(seconds=20),
    )


def note_failure(context) -> None:
    """Every failed task leaves one line for `imgclf summary` (and `make run`) to show."""
    error = context.get("exception") or RuntimeError("failed")
    tasks.record_failure(SETTINGS, context["run_id"], context["ti"].task_id, error)


with DAG(
    dag_id="football_classifier",
    description="Messi vs Ronaldo: GitHub images -> CNN features on Spark -> LogisticRegression",
    doc_md=__doc__,
    # weekly, or as soon as the data watcher reports new images, whichever comes first
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(
            "0 0 * * 0", timezone="UTC", run_immediately=NOT_THE_PAST_TICK
        ),
        assets=[Asset(config.DATASET_ASSET)],
    ),
    # No start_date (on purpose): with one, catchup=False schedules the latest past cron tick,
    # so unpausing would start a run at once; see NOT_THE_PAST_TICK.
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["imgclf", "spark", "transfer-learning"],
    default_args={"owner": "imgclf", "retries": 0, "on_failure_callback": note_failure},
) as dag:

    @task(retries=0)
    def validate_params() -> dict:
        try:
            checked = run_params.validate(dict(get_current_context()["params"]))
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        return {"model": checked["model"]}

    @task(retries=1, retry_delay=timedelta(seconds=30))
    def download() -> dict:
        ctx = get_current_context()
        api_url, token = tasks.github_endpoint(BaseHook.get_connection)
        try:
            return tasks.download(SETTINGS, ctx["run_id"], dict(ctx["params"]), api_url, token)
        except DownloadError as exc:
            if exc.retryable:  # files that broke off after every attempt: worth one more try
                raise
            raise AirflowFailException(str(exc)) from None  # a bad listing, no route: fail now

    train = spark_job("train", "train.py", TRAIN_ARGS)

    @task.branch(retries=0)
    def choose_branch() -> str:
        ctx = get_current_context()
        tune_needed = tasks.branch(SETTINGS, ctx["run_id"], ctx["params"]["target_accuracy"])
        return "tune" if tune_needed else "gate"

    tune = spark_job("tune", "tune.py", [*JOB_ARGS, "--grid", "{{ params.tune_grid | tojson }}"])

    @task(trigger_rule="none_failed_min_one_success", retries=0)
    def gate(dataset: dict) -> dict:
        ctx = get_current_context()
        try:
            return tasks.gate(SETTINGS, ctx["run_id"], dict(ctx["params"]), dataset)
        except tasks.GateFailedError as exc:
            raise AirflowFailException(str(exc)) from None  # never retried

    challenge = spark_job(
        "challenge", "challenge.py", ["--data-root", str(SETTINGS.home), "--run-id", "{{ run_id }}"]
    )

    @task(retries=1, retry_delay=timedelta(seconds=10))
    def promote() -> dict:
        ctx = get_current_context()
        return tasks.promote(SETTINGS, ctx["run_id"], ctx["params"]["max_regression"])

    checked = validate_params()
    fetched = download()
    branch = choose_branch()
    gated = gate(fetched)
    checked >> fetched >> train >> branch >> [tune, gated]
    tune >> gated >> challenge >> promote()
