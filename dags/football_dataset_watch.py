"""
### football_dataset_watch: retrain when the images on GitHub change

Lists the class folders of the source repository (no downloads: two small API calls) and
compares the dataset fingerprint (a hash over the class and git blob SHA of every image) with the
dataset of the newest run that got one (not the champion's: a run that failed on new data must
not be retriggered by every check). When they differ it updates the Asset
`imgclf://football/dataset`, which triggers `football_classifier`; when they match it is skipped
and nothing is triggered.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import (
    DAG,
    Asset,
    BaseHook,
    CronTriggerTimetable,
    Param,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from imgclf import connections, dag_tasks
from imgclf import params as run_params
from imgclf.github import DownloadError
from imgclf.settings import DATASET_ASSET, Settings

SETTINGS = Settings.from_env()
WATCHED = ["repo", "ref", "classes"]  # the run parameters that say where the images are

with DAG(
    dag_id="football_dataset_watch",
    description="Trigger football_classifier when the GitHub images change",
    doc_md=__doc__,
    # 4 checks a day: 8 of the 60 unauthenticated requests an hour. A plain "0 */6 * * *" would
    # become CronTriggerTimetable(run_immediately=False), and with a start_date unpausing would
    # check at once for the latest past tick: no start_date, and never the past tick (as in
    # football_classifier).
    schedule=CronTriggerTimetable("0 */6 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    params={name: Param(**spec) for name, spec in run_params.airflow_params(WATCHED).items()},
    tags=["imgclf", "watch"],
    default_args={
        "owner": "imgclf",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": SETTINGS.timeout(),  # a listing, no download
    },
) as dag:

    @task(outlets=[Asset(DATASET_ASSET)])
    def check_dataset() -> dict:
        ctx = get_current_context()
        api_url, token = connections.github_endpoint(BaseHook.get_connection)
        try:  # the Params hold types only: the bounds and patterns are the schema's (one line)
            watched = run_params.validate(
                {k: ctx["params"][k] for k in WATCHED}, check_weights=False
            )
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        try:
            result = dag_tasks.dataset_changed(SETTINGS, watched, api_url, token)
        except DownloadError as exc:
            if exc.retryable:
                raise
            raise AirflowFailException(str(exc)) from None
        if not result["changed"]:
            raise AirflowSkipException(
                f"dataset unchanged ({result['fingerprint'][:12]}): nothing to retrain"
            )
        ctx["outlet_events"][Asset(DATASET_ASSET)].extra = {"fingerprint": result["fingerprint"]}
        return result

    check_dataset()
